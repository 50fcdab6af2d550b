"""How the toolkit reports a number: every rate and distortion is in nats unless its name says
bits (1 bit = ln 2 nats), and every mean over examples carries its standard error."""
import math

import numpy as np


def nats_to_bits(nats):
    return nats / math.log(2.0)


def mean_stderr(values):
    """(mean, standard error of the mean) of a 1-D sample as floats; stderr 0 for a single value."""
    v = np.asarray(values, dtype=np.float64)
    # scipy.stats.sem's formula; numpy's own: scipy.stats costs 0.8 s of every training process's start
    stderr = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
    return float(v.mean()), stderr
