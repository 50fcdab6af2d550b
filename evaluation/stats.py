"""Statistics shared by the evaluation modules: mean with standard error, entropy."""
import numpy as np


def mean_stderr(values):
    """(mean, standard error of the mean) of a 1-D sample as floats; stderr 0 for a single value."""
    v = np.asarray(values, dtype=np.float64)
    stderr = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return float(v.mean()), stderr


def entropy(p, axis=-1):
    """Shannon entropy in nats of probability vectors along `axis`, with 0 log 0 = 0.

    A float for one vector, an array for a batch of them.
    """
    p = np.asarray(p, dtype=np.float64)
    h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)
    return float(h) if np.ndim(h) == 0 else h


