"""Monte Carlo mixture estimates of I_q(y; z) and I_q(x; z) from posteriors.

With x ~ the N test points and z ~ q(z | x), the marginal q(z) is the mixture
(1/N) sum_i q(z | x_i) and q(z | y=c) the mixture over the N_c points of class c.
Draw z_j ~ q(z | x_j) once per point and average, over j,
    I(y; z):  log[(1/N_c) sum_{i: y_i = y_j} q(z_j | x_i)] - log[(1/N) sum_i q(z_j | x_i)]
    I(x; z):  log q(z_j | x_j)                              - log[(1/N) sum_i q(z_j | x_i)]
(Xiao & Bamler 2023). Both sums include i = j, so I(x; z) <= ln N and the
estimates are biased upward when posteriors are narrow compared with the
spacing of the points (every z_j is then "explained" by its own x_j alone).
The [N, N] matrix of log q(z_j | x_i) is built in row chunks with matrix
products, so memory is O(chunk_size * N) instead of O(N^2 d).
"""
import numpy as np
from scipy.special import logsumexp

from evaluation.stats import entropy, mean_stderr
from hvae_repr.units import nats_to_bits


def _check(means, stds, labels):
    mu = np.asarray(means, dtype=np.float64)
    sd = np.asarray(stds, dtype=np.float64)
    y = np.asarray(labels)
    if mu.ndim != 2 or mu.shape != sd.shape or y.shape != (len(mu),):
        raise ValueError(
            f"need means and stds of shape [N, d] and labels [N]; got {mu.shape}, {sd.shape}, "
            f"{y.shape}: flatten each layer to [N, d]")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sd)) and np.all(sd > 0)):
        raise ValueError("posterior means must be finite and stds finite and > 0: check the encoder")
    return mu, sd, y


class _GaussianMixture:
    """log N(z; means_i, diag(stds_i^2)) for all components i with one matrix product.

    sum_d (z_d - mu_id)^2 / s_id^2 = [z^2, z, 1] . [1/s^2, -2 mu/s^2, sum_d mu^2/s^2]_i.
    """

    def __init__(self, means, stds):
        precision = 1.0 / np.square(stds)
        self.rhs = np.concatenate([precision, -2.0 * means * precision,
                                   np.sum(np.square(means) * precision, 1, keepdims=True)], 1).T
        self.log_norm = -np.sum(np.log(stds), axis=1) - 0.5 * means.shape[1] * np.log(2 * np.pi)

    def log_density(self, z):
        z = np.asarray(z, dtype=np.float64)
        quad = np.concatenate([np.square(z), z, np.ones((len(z), 1))], 1) @ self.rhs
        return -0.5 * np.maximum(quad, 0.0) + self.log_norm


def gaussian_log_density_matrix(z, means, stds):
    """log N(z_j; means_i, diag(stds_i^2)) as an array [len(z), len(means)] (float64)."""
    return _GaussianMixture(np.asarray(means, np.float64), np.asarray(stds, np.float64)).log_density(z)


def _summary(value, stderr, ceiling=None, **settings):
    out = {"value_nats": float(value), "stderr_nats": float(stderr), "value_bits": nats_to_bits(float(value))}
    if ceiling is not None:
        out["ceiling_nats"] = float(ceiling)
    out["settings"] = settings
    return out


def gaussian_mutual_information(means, stds, labels, rng, samples=None, chunk_size=500):
    """Estimates I_q(y; z) and I_q(x; z) for diagonal-Gaussian posteriors.

    means, stds: [N, d] parameters of q(z | x_i); labels: int [N]; rng: numpy
    Generator (used only when `samples` is None); samples: optional [N, d] draws
    z_j ~ q(z | x_j) to use instead. Returns {"label": {...}, "input": {...}} with
    "value_nats", "stderr_nats" (i.i.d. standard error over j, ignoring the
    dependence through the shared mixture), "value_bits" and settings; "input"
    also carries "ceiling_nats" = ln N.
    """
    mu, sd, y = _check(means, stds, labels)
    n = len(y)
    if samples is None:
        z = mu + sd * rng.standard_normal(mu.shape)
    else:
        z = np.asarray(samples, dtype=np.float64)
        if z.shape != mu.shape:
            raise ValueError(f"samples have shape {z.shape}, expected {mu.shape} like the means")
    classes, y_index, counts = np.unique(y, return_inverse=True, return_counts=True)
    one_hot = np.eye(len(classes))[y_index]  # [N, M]
    mixture = _GaussianMixture(mu, sd)
    label_terms = np.empty(n)
    input_terms = np.empty(n)
    for start in range(0, n, chunk_size):
        rows = np.arange(start, min(start + chunk_size, n))
        log_q = mixture.log_density(z[rows])  # [chunk, N]
        own = log_q[np.arange(len(rows)), rows]
        # logsumexp per class as one product: exp(log_q - row max) @ one_hot.
        row_max = log_q.max(axis=1, keepdims=True)
        class_sums = np.exp(log_q - row_max) @ one_hot  # [chunk, M]
        log_marginal = np.log(class_sums.sum(1)) + row_max[:, 0] - np.log(n)
        with np.errstate(divide="ignore"):
            log_own_class = np.log(class_sums[np.arange(len(rows)), y_index[rows]]) + row_max[:, 0]
        for r in np.flatnonzero(~np.isfinite(log_own_class)):  # underflow: redo this row exactly
            log_own_class[r] = logsumexp(log_q[r, y_index == y_index[rows[r]]])
        label_terms[rows] = log_own_class - np.log(counts[y_index[rows]]) - log_marginal
        input_terms[rows] = own - log_marginal
    settings = {"estimator": "Monte Carlo mixture, one draw z_j ~ q(z|x_j) per point",
                "num_points": int(n), "num_dims": int(mu.shape[1]), "chunk_size": int(chunk_size)}
    return {"label": _summary(*mean_stderr(label_terms), **settings),
            "input": _summary(*mean_stderr(input_terms), ceiling=np.log(n), **settings)}


def categorical_mutual_information(probs, labels):
    """Exact I_q(y; z) and I_q(x; z) for a categorical latent with q(z=k|x_i) = probs[i, k].

    With x uniform over the N points both are finite sums, so no sampling:
    I(x; z) = H[mean_i q] - mean_i H[q_i],  I(y; z) = H[mean_i q] - sum_c p(c) H[mean_{i in c} q].
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or y.shape != (len(p),) or np.any(p < 0) or not np.allclose(p.sum(1), 1, atol=1e-4):
        raise ValueError("need probs [N, K] with rows summing to 1 and labels [N]")
    marginal_entropy = entropy(p.mean(0))
    classes, counts = np.unique(y, return_counts=True)
    conditional = sum(cnt / len(y) * entropy(p[y == c].mean(0)) for c, cnt in zip(classes, counts))
    settings = {"estimator": "exact sum over the empirical data distribution", "num_points": int(len(y)),
                "num_categories": int(p.shape[1])}
    return {"label": _summary(marginal_entropy - conditional, 0.0, **settings),
            "input": _summary(marginal_entropy - np.mean(entropy(p)), 0.0, ceiling=np.log(len(y)),
                              **settings)}
