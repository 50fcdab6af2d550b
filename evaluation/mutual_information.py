"""I_q(y; z) and I_q(x; z) of a latent layer: mixture estimates and an interval that holds at any rate.

Mixture estimates. With x ~ the N test points and z ~ q(z | x), the marginal q(z)
is the mixture (1/N) sum_i q(z | x_i) and q(z | y=c) the mixture over the N_c
points of class c. Draw z_j ~ q(z | x_j) once per point and average, over j,
    I(y; z):  log[(1/N_c) sum_{i: y_i = y_j} q(z_j | x_i)] - log[(1/N) sum_i q(z_j | x_i)]
    I(x; z):  log q(z_j | x_j)                              - log[(1/N) sum_i q(z_j | x_i)]
(Xiao & Bamler 2023): an unbiased Monte Carlo estimate of the plug-in value, i.e.
of the information for x uniform over these N points. Both sums include i = j.

Saturation. Write w_j = q(z_j|x_j) / sum_i q(z_j|x_i), the share of z_j's own
point in the mixture. The input term is ln N + log w_j, and since the class sum
contains the own term, the label term is at least log(N/N_c) + log w_j and at
most log(N/N_c). Averaged over j:
    H(y) - (ln N - I(x; z))  <=  I(y; z)  <=  H(y)        (H(y) of the N labels).
So once I(x; z) comes within g nats of its ceiling ln N (narrow posteriors,
rates above about ln N), the label estimate is forced into [H(y) - g, H(y)]
whatever the layer holds: on 10,000 images it reads ~ln 10 even for labels
independent of z. The results flag `saturated` when g < 1 nat: the own point
then holds on (geometric) average more than e^-1 = 37% of the mixture at its
own sample, and the label estimate cannot be told from H(y) to within 1 nat.
The same inequality holds for the exact categorical sums (with x uniform over
the points, I(x; z | y) <= H(x | y) = ln N - H(y)); with K categories it can only
fire when ln K > ln N - 1.

Interval. label_information_interval puts beside the mixture estimate the
Barber-Agakov bound I(y; z) >= H(y) - E[-log r(y | z)] for any distribution r,
with r a logistic-regression probe trained on samples z ~ q(z | x) and the
cross-entropy measured on held-out points: a lower bound valid at any rate.

The [N, N] matrix of log q(z_j | x_i) is built in row chunks with matrix
products, so memory is O(chunk_size * N) instead of O(N^2 d).
"""
import warnings

import numpy as np
from scipy.special import log_softmax, logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from evaluation.stats import entropy, mean_stderr
from hvae_repr.units import nats_to_bits

SATURATION_HEADROOM_NATS = 1.0
# The probe's distribution is mixed with the uniform one, r' = (1 - eps) r + eps / M: still a
# distribution (so the bound stays valid), never 0, and it costs at most -log(1 - eps) nats.
PROBE_UNIFORM_WEIGHT = 1e-6


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

    def log_density(self, z, out=None):
        """[len(z), N]; written into `out` when given (in place: no fresh pages per chunk)."""
        z = np.asarray(z, dtype=np.float64)
        out = np.matmul(np.concatenate([np.square(z), z, np.ones((len(z), 1))], 1), self.rhs, out=out)
        np.maximum(out, 0.0, out=out)
        out *= -0.5
        out += self.log_norm
        return out


def _summary(value, stderr, ceiling=None, **settings):
    out = {"value_nats": float(value), "stderr_nats": float(stderr), "value_bits": nats_to_bits(float(value))}
    if ceiling is not None:
        out["ceiling_nats"] = float(ceiling)
    out["settings"] = settings
    return out


def _result(label_value, label_stderr, input_value, input_stderr, label_entropy, n, settings):
    """The mixture estimators' result: {"label", "input", "saturation"} (see the module docstring)."""
    headroom = np.log(n) - input_value
    return {"label": _summary(label_value, label_stderr, **settings),
            "input": _summary(input_value, input_stderr, ceiling=np.log(n), **settings),
            "saturation": {
                "saturated": bool(headroom < SATURATION_HEADROOM_NATS),
                "input_headroom_nats": float(headroom),
                "label_entropy_nats": float(label_entropy),
                "label_forced_minimum_nats": float(label_entropy - headroom),
                "test": f"saturated when I(x; z) is within {SATURATION_HEADROOM_NATS:g} nat of its ceiling ln N; "
                        "the label estimate can never fall below label_forced_minimum_nats = "
                        "H(y) - (ln N - I(x; z)), whatever the layer holds"}}


def gaussian_mutual_information(means, stds, labels, rng, samples=None, chunk_size=500):
    """Estimates I_q(y; z) and I_q(x; z) for diagonal-Gaussian posteriors.

    means, stds: [N, d] parameters of q(z | x_i); labels: int [N]; rng: numpy
    Generator (used only when `samples` is None); samples: optional [N, d] draws
    z_j ~ q(z | x_j) to use instead. Returns {"label": {...}, "input": {...},
    "saturation": {...}}: label and input hold "value_nats", "stderr_nats" (i.i.d.
    standard error over j, ignoring the dependence through the shared mixture),
    "value_bits" and settings, input also "ceiling_nats" = ln N; saturation says
    whether the label value can be trusted (module docstring).
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
    buffer = np.empty((min(chunk_size, n), n))
    for start in range(0, n, chunk_size):
        rows = np.arange(start, min(start + chunk_size, n))
        log_q = mixture.log_density(z[rows], out=buffer[:len(rows)])  # [chunk, N]
        own = log_q[np.arange(len(rows)), rows]
        # logsumexp per class as one product: exp(log_q - row max) @ one_hot.
        row_max = log_q.max(axis=1)
        log_q -= row_max[:, None]
        class_sums = np.exp(log_q, out=log_q) @ one_hot  # [chunk, M]
        log_marginal = np.log(class_sums.sum(1)) + row_max - np.log(n)
        with np.errstate(divide="ignore"):
            log_own_class = np.log(class_sums[np.arange(len(rows)), y_index[rows]]) + row_max
        for r in np.flatnonzero(~np.isfinite(log_own_class)):  # underflow: redo this row exactly
            row = mixture.log_density(z[rows[r]][None])[0]
            log_own_class[r] = logsumexp(row[y_index == y_index[rows[r]]])
        label_terms[rows] = log_own_class - np.log(counts[y_index[rows]]) - log_marginal
        input_terms[rows] = own - log_marginal
    settings = {"estimator": "Monte Carlo mixture, one draw z_j ~ q(z|x_j) per point", "exact_sums": False,
                "num_points": int(n), "num_dims": int(mu.shape[1]), "chunk_size": int(chunk_size)}
    return _result(*mean_stderr(label_terms), *mean_stderr(input_terms), entropy(counts / n), n, settings)


def categorical_mutual_information(probs, labels):
    """Exact I_q(y; z) and I_q(x; z) for a categorical latent with q(z=k|x_i) = probs[i, k].

    With x uniform over the N points both are finite sums, so no sampling:
    I(x; z) = H[mean_i q] - mean_i H[q_i],  I(y; z) = H[mean_i q] - sum_c p(c) H[mean_{i in c} q].
    Exact for the N points (stderr 0) but still plug-in values; "saturation" is
    judged as for the Gaussian estimate and can only fire when ln K > ln N - 1.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or y.shape != (len(p),) or np.any(p < 0) or not np.allclose(p.sum(1), 1, atol=1e-4):
        raise ValueError("need probs [N, K] with rows summing to 1 and labels [N]")
    marginal_entropy = entropy(p.mean(0))
    classes, counts = np.unique(y, return_counts=True)
    conditional = sum(cnt / len(y) * entropy(p[y == c].mean(0)) for c, cnt in zip(classes, counts))
    settings = {"estimator": "exact sum over the empirical data distribution", "exact_sums": True,
                "num_points": int(len(y)),
                "num_categories": int(p.shape[1])}
    return _result(marginal_entropy - conditional, 0.0, marginal_entropy - np.mean(entropy(p)), 0.0,
                   entropy(counts / len(y)), len(y), settings)


def barber_agakov_lower_bound(samples, labels, prior, split, C=1.0):
    """H(y) - held-out cross-entropy of a logistic-regression probe on samples z ~ q(z|x), in nats.

    For any distribution r(y|z), I(y; z) = H(y) - H(y|z) >= H(y) - E[-log r(y|z)]
    (Barber & Agakov 2003). r is fitted on the split's train part and the
    expectation is the mean over its test part, an unbiased estimate for the
    fitted probe: a lower bound valid at any rate (in expectation), as tight as
    the probe. It only needs samples, so below the top layer it uses the true
    marginal q(z_l|x) (no approximate mixture component).

    samples: [N, d] (or [N]) draws z_j ~ q(z|x_j); labels: ints 0..M-1 [N];
    prior: the label prior [M] (bounds.label_prior(labels, num_classes), a
    missing class still counts); split: (train_idx, test_idx), the probes' split
    (probes.split_indices). Returns "value_nats", "stderr_nats" (over held-out
    points, the probe held fixed), "label_entropy_nats", "cross_entropy_nats",
    "probe_converged" and settings. The value can be negative: a valid but empty
    bound (a probe that found nothing, or overfit).
    """
    z = np.asarray(samples, dtype=np.float64)
    z = z[:, None] if z.ndim == 1 else z
    y = np.asarray(labels)
    p = np.asarray(prior, dtype=np.float64)
    train_idx, test_idx = (np.asarray(i) for i in split)
    m = len(p)
    if z.ndim != 2 or y.shape != (len(z),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"need samples [N, d] and integer labels [N]; got {z.shape} and {y.shape} {y.dtype}")
    if not np.all(np.isfinite(z)):
        raise ValueError("samples have NaN or inf values: check the encoder's output")
    if y.min() < 0 or y.max() >= m:
        raise ValueError(f"labels must lie in 0..{m - 1} (the prior has {m} classes); pass the data set's prior")
    if len(train_idx) == 0 or len(test_idx) == 0 or len(np.intersect1d(train_idx, test_idx)):
        raise ValueError("split must be (train_idx, test_idx), both non-empty and disjoint: "
                         "use probes.split_indices(labels, ...)")
    log_r = np.full((len(test_idx), m), -np.inf)
    seen = np.unique(y[train_idx])
    num_warnings = 0
    if len(seen) == 1:  # one class to learn from: r puts all its mass there
        log_r[:, seen[0]] = 0.0
    else:
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            probe.fit(z[train_idx], y[train_idx])
        num_warnings = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        scores = probe.decision_function(z[test_idx])
        if scores.ndim == 1:  # two classes: one logit
            scores = np.stack([np.zeros_like(scores), scores], 1)
        log_r[:, probe.classes_] = log_softmax(scores, axis=1)  # exact, no exp underflow
    eps = PROBE_UNIFORM_WEIGHT
    log_r = np.logaddexp(np.log1p(-eps) + log_r, np.log(eps / m))
    cross_entropy, stderr = mean_stderr(-log_r[np.arange(len(test_idx)), y[test_idx]])
    label_entropy = entropy(p)
    return {"value_nats": label_entropy - cross_entropy, "stderr_nats": stderr,
            "label_entropy_nats": label_entropy, "cross_entropy_nats": cross_entropy,
            "probe_converged": num_warnings == 0,
            "settings": {
                "estimator": "Barber-Agakov: H(y) of the prior minus the held-out cross-entropy of a probe",
                "probe": "StandardScaler -> multinomial LogisticRegression (lbfgs, max_iter 1000), "
                         "fitted on samples z ~ q(z|x) of the split's train part",
                "regularization": f"L2, C = {C:g} (on standardized features)",
                "probability_floor": f"r' = (1 - {eps:g}) r + {eps:g} / M, a distribution that is never 0",
                "num_train": int(len(train_idx)), "num_test": int(len(test_idx)), "num_classes": int(m),
                "convergence_warnings": int(num_warnings)}}


def label_information_interval(mixture, samples, labels, prior, split, C=1.0):
    """An interval for I_q(y; z) in nats: the Barber-Agakov lower bound and the mixture estimate.

    mixture: the result of gaussian_mutual_information or
    categorical_mutual_information for the same N points; samples, labels,
    prior, split, C: as barber_agakov_lower_bound (pass the probes' split).
    - lower end (lower_bound_*): valid at any rate (in expectation), as tight as its probe.
    - upper end (mixture_estimate_*): the plug-in value for these N points, at
      most H(y); near the truth when not saturated, forced towards H(y) (biased
      upward for the population) when saturated. Not a proven bound.
    - saturated: I(x; z) within 1 nat of ln N (module docstring), when only the
      lower end can be trusted.
    The two ends come from different estimators, so noise can put the lower
    end above the upper one when both are close to the truth.
    """
    n = mixture["label"]["settings"]["num_points"]
    if n != len(labels):
        raise ValueError(f"the mixture estimate is over {n} points but {len(labels)} labels were given: "
                         "pass the estimate of the same points")
    lower = barber_agakov_lower_bound(samples, labels, prior, split, C)
    saturation = mixture["saturation"]
    exact_sums = mixture["label"]["settings"]["exact_sums"]
    exact = "exact sums over the N points (no Monte Carlo error); " if exact_sums else ""
    if saturation["saturated"]:
        trust = ("saturated: the sample size, not the layer, sets the mixture estimate (it cannot fall below "
                 "mixture_forced_minimum_nats); trust only the lower bound, valid at any rate. The truth lies "
                 "between lower_bound_nats and label_entropy_nats.")
    elif saturation["label_forced_minimum_nats"] > 0:
        trust = (exact + "not saturated, but the mixture estimate cannot fall below mixture_forced_minimum_nats "
                 "(> 0) whatever the layer holds: read it as the upper end only; the lower bound is valid at "
                 "any rate.")
    else:
        trust = (exact + "not saturated: the mixture estimate is the plug-in value for the N points and usable "
                 "as an estimate; the lower bound is valid at any rate and as tight as its probe.")
    return {"lower_bound_nats": lower["value_nats"], "lower_bound_stderr_nats": lower["stderr_nats"],
            "mixture_estimate_nats": mixture["label"]["value_nats"],
            "mixture_estimate_stderr_nats": mixture["label"]["stderr_nats"],
            "label_entropy_nats": lower["label_entropy_nats"],
            "probe_cross_entropy_nats": lower["cross_entropy_nats"],
            "probe_converged": lower["probe_converged"],
            "saturated": saturation["saturated"],
            "input_mixture_estimate_nats": mixture["input"]["value_nats"],
            "input_ceiling_nats": mixture["input"]["ceiling_nats"],
            "input_headroom_nats": saturation["input_headroom_nats"],
            "mixture_forced_minimum_nats": saturation["label_forced_minimum_nats"],
            "trust": trust,
            "settings": {"lower_bound": lower["settings"], "mixture": mixture["label"]["settings"],
                         "saturation_test": saturation["test"]}}
