"""Statistics shared by the evaluation modules: mean with standard error (hvae_repr.units's), entropy."""
import numpy as np
from scipy import special

from hvae_repr.units import mean_stderr  # noqa: F401  (re-exported for the metric modules)


def entropy(p, axis=-1):
    """Shannon entropy in nats of probability vectors along `axis`, with 0 log 0 = 0.

    A float for one vector, an array for a batch of them. Sums scipy.special.entr
    (-p log p): scipy.stats.entropy gives the same but costs about 140 us per call
    against 2 us, and the Fano inversion calls this inside its bisection.
    """
    h = np.sum(special.entr(np.asarray(p, dtype=np.float64)), axis=axis)
    return float(h) if np.ndim(h) == 0 else h
