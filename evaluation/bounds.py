"""The paper's bounds (Xiao & Bamler 2023) as checks on measured numbers.

T1: E[D] >= H[p_data] - E[total rate].
T2: accuracy of any classifier of y that sees only z_L
        <= f^{-1}(I_q(y; z_L)) <= f^{-1}(E[R(z_L)]),
    f(a) = H(y) + a log a + (1 - a) log((1 - a) / (M - 1))    (Fano's inequality).
All information quantities are in nats.
"""
import numpy as np
from scipy import stats
from scipy.special import xlogy

from evaluation.stats import entropy, mean_stderr

def label_prior(labels, num_classes=None):
    """Class frequencies of `labels` (ints 0..M-1); M = num_classes or max label + 1.

    Pass the data set's num_classes when `labels` may miss a class (a truncated test
    set): absent classes get prior 0 and M stays the number of classes.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError("labels must be a non-empty 1-D array of integers >= 0")
    counts = np.bincount(y, minlength=num_classes or 0)
    if num_classes is not None and len(counts) > num_classes:
        raise ValueError(f"labels reach {len(counts) - 1} but num_classes is {num_classes}")
    return counts / counts.sum()


def fano_f(accuracy, prior):
    """f(a) = H(y) + a log a + (1 - a) log((1 - a) / (M - 1)), with 0 log 0 = 0.

    f(a) = H(y) - [entropy of (a, (1-a)/(M-1), ..., (1-a)/(M-1))]; it falls to
    its minimum H(y) - ln M <= 0 at a = 1/M and rises to f(1) = H(y) (ln M for
    uniform labels). Fano: a classifier with accuracy a has I(y; z) >= f(a).
    """
    p = np.asarray(prior, dtype=np.float64)
    m = len(p)
    a = np.asarray(accuracy, dtype=np.float64)
    return entropy(p) + xlogy(a, a) + (xlogy(1.0 - a, (1.0 - a) / (m - 1)) if m > 1 else 0.0)


def fano_inverse(information_nats, prior, iterations=60):
    """The largest accuracy a in [1/M, 1] with f(a) <= information (the T2 bound).

    f is increasing on [1/M, 1], so this is f^{-1} on that branch, found by
    bisection; information >= H(y) gives 1 (enough information for any
    accuracy). Consequences:
    - f^{-1} is non-decreasing, and f^{-1}(f(a)) = a for f(a) >= 0.
    - f^{-1}(0) >= the majority-class rate p_max, with equality exactly when the
      non-majority classes are equally likely (in particular for uniform labels,
      where it is 1/M). It must be >= p_max: a classifier that ignores z and
      always answers the majority class reaches p_max with I = 0, and Fano's
      bound covers it. For other priors Fano's inequality is loose at I = 0
      (it only knows H(y), not the whole prior), so the bound at 0 lies above p_max.
    Negative information (estimator noise) is treated as 0.
    """
    p = np.asarray(prior, dtype=np.float64)
    m = len(p)
    info = np.maximum(np.asarray(information_nats, dtype=np.float64), 0.0)
    if m == 1:
        return np.ones_like(info)[()]
    low = np.full(info.shape, 1.0 / m)
    high = np.ones(info.shape)
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        below = fano_f(mid, p) <= info
        low = np.where(below, mid, low)
        high = np.where(below, high, mid)
    return np.where(info >= entropy(p), 1.0, low)[()]


def minimum_information(accuracy, prior):
    """T2 turned around: the least information I(y; z_L) (and so the least E[R(z_L)], which bounds it
    from above) at which a classifier of z_L can reach `accuracy`: max(f(a), 0) for a >= 1/M, 0 below.
    Below it no classifier reaches `accuracy` (fano_inverse(I) < accuracy for every I < this value)."""
    a = np.asarray(accuracy, dtype=np.float64)
    if np.any((a < 0) | (a > 1)) or not np.all(np.isfinite(a)):
        raise ValueError(f"an accuracy must lie in [0, 1] (got {accuracy})")
    m = len(np.asarray(prior))
    return np.where(a <= 1.0 / max(m, 1), 0.0, np.maximum(fano_f(np.maximum(a, 1.0 / max(m, 1)), prior), 0.0))[()]


def binomial_interval(num_correct, num_total, confidence=0.99):
    """Clopper-Pearson (exact) confidence interval of a success fraction."""
    ci = stats.binomtest(int(num_correct), int(num_total)).proportion_ci(confidence, method="exact")
    return float(ci.low), float(ci.high)


def check_t2(probes, information, prior, confidence=0.99):
    """Checks probe accuracies against f^{-1} of information quantities about z_L.

    probes: {name: {"num_correct": k, "num_test": n, ...}} of probes that see z_L
    itself (samples z_L ~ q(z_L|x)).
    information: {key: {"value_nats", "stderr_nats", "judged": bool}}. The caller
    marks each entry:
    - judged=True only for a value meant to lie at or above I_q(y; z_L), so that a
      flagged violation is real: E[R(z_L)] (a proven upper bound, since
      E[R(z_L)] >= I_q(x; z_L) >= I_q(y; z_L)) and the mixture estimate, the
      upper end of mutual_information.label_information_interval (a plug-in value,
      pushed up towards H(y) when saturated, near the truth otherwise; never above
      H(y)). A probe violates such a bound when the lower end of its
      Clopper-Pearson interval exceeds f^{-1}(value + z * stderr), the bound at
      the upper end of the value's normal interval: noise in either number alone
      does not flag.
    - judged=False for a lower bound on I_q(y; z_L) (e.g. the Barber-Agakov end):
      f^{-1}(lower bound) is reported as information only. A probe above it says
      the lower bound is loose, not that the theorem fails, so it is never judged
      ("violated" is None).
    Slack = bound - accuracy (negative means the point estimate exceeds the bound).
    """
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    prior = np.asarray(prior, dtype=np.float64)
    bounds = {}
    for key, info in information.items():
        if not isinstance(info.get("judged"), (bool, np.bool_)):
            raise ValueError(f"information[{key!r}] needs 'judged': True for a value at or above I_q(y; z_L) "
                             "(top-layer rate, mixture estimate) or False for a lower bound (reported only)")
        value, se = float(info["value_nats"]), float(info.get("stderr_nats", 0.0))
        bounds[key] = {"information_nats": value, "information_stderr_nats": se, "judged": bool(info["judged"]),
                       "bound_accuracy": float(fano_inverse(value, prior))}
        if info["judged"]:
            bounds[key]["bound_accuracy_at_upper_information"] = float(fano_inverse(value + z * se, prior))
    result = {
        "label_prior": prior.tolist(), "num_classes": int(len(prior)),
        "label_entropy_nats": entropy(prior), "majority_class_rate": float(prior.max()),
        "bound_at_zero_information": float(fano_inverse(0.0, prior)),
        "confidence": confidence, "interval": "Clopper-Pearson (exact binomial) for accuracy; "
        "normal (value + z * stderr) for information",
        "judged": "only information entries marked judged (values at or above I_q(y; z_L)) can flag a "
                  "violation; the others' bounds are information, with violated None",
        "bounds": bounds, "probes": {}}
    violated_any = False
    for name, probe in probes.items():
        k, n = probe["num_correct"], probe["num_test"]
        accuracy = k / n
        low, high = binomial_interval(k, n, confidence)
        entry = {"accuracy": accuracy, "accuracy_interval": [low, high]}
        for key, b in bounds.items():
            violated = None
            if b["judged"]:
                violated = bool(low > b["bound_accuracy_at_upper_information"])
                violated_any |= violated
            entry[key] = {"bound_accuracy": b["bound_accuracy"], "slack": b["bound_accuracy"] - accuracy,
                          "judged": b["judged"], "violated": violated}
        result["probes"][name] = entry
    result["violated"] = bool(violated_any)
    return result


def check_t1(distortion, total_rate, log_prob=None, confidence=0.99, likelihood=None, discrete=True):
    """Checks E[D] >= H[p_data] - E[total rate] from per-example arrays in nats.

    distortion, total_rate: [N] per test example; log_prob: exact log p_data(x)
    of the same examples (only known for synthetic data), or None. H is
    estimated as -mean log p(x) over the test points (samples of p_data). The
    slack D + R + log p(x) is averaged per example (a paired estimate, so its
    standard error accounts for correlations between D, R and log p); violated
    when slack + z * stderr < 0. likelihood, discrete: the model's p(x|z) by name and whether it
    is a probability mass per image (hvae_repr.choices.LIKELIHOODS[name].discrete): only then
    does -log p(x|z) compare with the data's discrete entropy; a density (e.g. gaussian) makes T1
    "not applicable", its -log p being a differential quantity.
    """
    d_mean, d_se = mean_stderr(distortion)
    r_mean, r_se = mean_stderr(total_rate)
    result = {"expected_distortion_nats": d_mean, "expected_distortion_stderr_nats": d_se,
              "expected_total_rate_nats": r_mean, "expected_total_rate_stderr_nats": r_se,
              "confidence": confidence}
    if log_prob is None:
        result.update(status="unknown", data_entropy_nats=None, violated=None,
                      reason="the data entropy H[p_data] is unknown for this data set; "
                             "T1 is checked only on data with an exact log-probability")
        return result
    if not discrete:
        result.update(status="not applicable", data_entropy_nats=None, violated=None,
                      reason=f"the {likelihood or 'model'}'s likelihood is a density, so its distortion is not "
                             f"comparable with the discrete data entropy; T1 needs a discrete likelihood")
        return result
    h_mean, h_se = mean_stderr(-np.asarray(log_prob, dtype=np.float64))
    slack, slack_se = mean_stderr(np.asarray(distortion) + np.asarray(total_rate) + np.asarray(log_prob))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    result.update(status="checked", data_entropy_nats=h_mean, data_entropy_stderr_nats=h_se,
                  lower_bound_on_distortion_nats=h_mean - r_mean,
                  slack_nats=slack, slack_stderr_nats=slack_se,
                  violated=bool(slack + z * slack_se < 0))
    return result
