"""The Monte Carlo mixture estimator against cases with known answers."""
import numpy as np
import pytest
from scipy.stats import norm

from evaluation import mutual_information as mi


def test_log_density_matrix_matches_scipy():
    rng = np.random.default_rng(0)
    means, stds, z = rng.normal(size=(7, 3)), rng.uniform(0.1, 2, (7, 3)), rng.normal(size=(5, 3))
    expected = norm.logpdf(z[:, None, :], means[None], stds[None]).sum(-1)
    np.testing.assert_allclose(mi._GaussianMixture(means, stds).log_density(z), expected, rtol=1e-10)


def test_well_separated_classes_give_label_entropy():
    # Tolerance: classes 20 std apart overlap with probability ~1e-23, so the
    # estimate equals H(y) up to float error; we allow 0.01 nats.
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 2000)
    means = 20.0 * np.eye(5)[y] + 0.1 * rng.standard_normal((2000, 5))
    result = mi.gaussian_mutual_information(means, np.ones_like(means), y, rng)
    p = np.bincount(y) / len(y)
    assert result["label"]["value_nats"] == pytest.approx(-np.sum(p * np.log(p)), abs=0.01)
    assert result["input"]["ceiling_nats"] == pytest.approx(np.log(2000))


def test_label_independent_posteriors_give_zero():
    # Posteriors do not depend on the label and overlap heavily (means spread 0.3,
    # std 1): the true I(y; z) is 0; the estimator's upward bias at N = 2000 with
    # 4 classes is about (M - 1) / (2 N) times a small factor. Tolerance 0.02 nats.
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 2000)
    means = 0.3 * rng.standard_normal((2000, 2))
    result = mi.gaussian_mutual_information(means, np.ones_like(means), y, rng)
    assert abs(result["label"]["value_nats"]) < 0.02
    # I(x; z) of z = m + e with m ~ N(0, 0.09), e ~ N(0, 1) per dim is 2 * 0.5 ln(1.09).
    assert result["input"]["value_nats"] == pytest.approx(np.log(1.09), abs=0.03)


def test_collapsed_posteriors_give_zero_for_both():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 500)
    result = mi.gaussian_mutual_information(np.zeros((500, 4)), np.ones((500, 4)), y, rng)
    assert result["label"]["value_nats"] == pytest.approx(0.0, abs=1e-12)
    assert result["input"]["value_nats"] == pytest.approx(0.0, abs=1e-12)


def test_narrow_distinct_posteriors_reach_ln_n_ceiling():
    rng = np.random.default_rng(4)
    means = np.arange(300, dtype=float)[:, None]
    result = mi.gaussian_mutual_information(means, np.full((300, 1), 1e-3), np.zeros(300, int), rng)
    assert result["input"]["value_nats"] == pytest.approx(np.log(300), abs=1e-6)


def test_chunked_and_unchunked_agree():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 777)
    means = y[:, None] + rng.standard_normal((777, 3))
    stds = rng.uniform(0.3, 1.5, (777, 3))
    samples = means + stds * rng.standard_normal(means.shape)
    whole = mi.gaussian_mutual_information(means, stds, y, None, samples=samples, chunk_size=10_000)
    chunked = mi.gaussian_mutual_information(means, stds, y, None, samples=samples, chunk_size=64)
    for key in ("label", "input"):
        assert chunked[key]["value_nats"] == pytest.approx(whole[key]["value_nats"], rel=1e-12)


def test_categorical_exact_values():
    y = np.array([0, 0, 1, 1])
    one_hot = np.eye(2)[y]
    result = mi.categorical_mutual_information(one_hot, y)
    assert result["label"]["value_nats"] == pytest.approx(np.log(2))
    assert result["input"]["value_nats"] == pytest.approx(np.log(2))
    uniform = mi.categorical_mutual_information(np.full((4, 3), 1 / 3), y)
    assert uniform["label"]["value_nats"] == pytest.approx(0.0, abs=1e-12)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="stds"):
        mi.gaussian_mutual_information(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3, int), None)
    with pytest.raises(ValueError, match="shape"):
        mi.gaussian_mutual_information(np.zeros((3, 2)), np.ones((3, 1)), np.zeros(3, int), None)


def _naive(means, stds, labels, z):
    """The estimator written out directly with scipy, for comparison."""
    from scipy.special import logsumexp
    log_q = norm.logpdf(z[:, None, :], means[None], stds[None]).sum(-1)
    n = len(labels)
    marginal = logsumexp(log_q, axis=1) - np.log(n)
    own_class = np.array([logsumexp(log_q[j, labels == labels[j]]) - np.log(np.sum(labels == labels[j]))
                          for j in range(n)])
    return np.mean(own_class - marginal), np.mean(np.diag(log_q) - marginal)


def test_matches_direct_formula_including_underflowing_rows():
    rng = np.random.default_rng(6)
    n, d = 60, 200
    y = np.arange(n) % 2
    means = 0.5 * rng.standard_normal((n, d)) + y[:, None]
    stds = np.ones((n, d))
    z = means + stds * rng.standard_normal((n, d))
    # Point 1 (class 1) sits exactly on z_0 with a tiny std: for row 0 the class-0
    # sum is ~1000 nats below the row maximum, which underflows exp().
    means[1], stds[1] = z[0], 0.01
    result = mi.gaussian_mutual_information(means, stds, y, None, samples=z, chunk_size=16)
    label, inp = _naive(means, stds, y, z)
    assert result["label"]["value_nats"] == pytest.approx(label, rel=1e-9)
    assert result["input"]["value_nats"] == pytest.approx(inp, rel=1e-9)


# ------------------------------------------------------------------ saturation and the interval
def _interval(means, stds, y, prior=None, seed=0):
    from evaluation import bounds, probes
    rng = np.random.default_rng(seed)
    samples = means + stds * rng.standard_normal(means.shape)
    mixture = mi.gaussian_mutual_information(means, stds, y, None, samples=samples)
    prior = bounds.label_prior(y) if prior is None else prior
    return mi.label_information_interval(mixture, samples, y, prior, probes.split_indices(y, 0.2, seed))


def test_saturation_inequality_holds_for_every_width():
    # H(y) - (ln N - I(x; z)) <= I(y; z) <= H(y) holds term by term (module docstring), so exactly.
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 400)
    means = rng.standard_normal((400, 2)) + 0.5 * y[:, None]
    for std in (1e-3, 0.03, 0.3, 3.0):
        result = mi.gaussian_mutual_information(means, np.full_like(means, std), y, rng)
        sat = result["saturation"]
        h = -np.sum(np.bincount(y) / 400 * np.log(np.bincount(y) / 400))
        assert sat["label_entropy_nats"] == pytest.approx(h)
        assert sat["label_forced_minimum_nats"] - 1e-9 <= result["label"]["value_nats"] <= h + 1e-9
        assert sat["input_headroom_nats"] == pytest.approx(np.log(400) - result["input"]["value_nats"])
        assert sat["saturated"] == (sat["input_headroom_nats"] < 1.0)


def test_narrow_posteriors_with_labels_independent_of_z_are_flagged_and_bounded_near_zero():
    # Truth: I(y; z) = 0. The mixture reads H(y) = ln 4 because every point's own posterior dominates.
    rng = np.random.default_rng(8)
    n = 4000
    y = rng.permutation(np.arange(n) % 4)
    means = rng.standard_normal((n, 3))
    result = _interval(means, np.full_like(means, 1e-4), y)
    assert result["saturated"] and result["input_headroom_nats"] < 1e-3
    assert result["mixture_estimate_nats"] == pytest.approx(np.log(4), abs=0.01)
    assert result["label_entropy_nats"] == pytest.approx(np.log(4))
    se = result["lower_bound_stderr_nats"]
    # Valid bound: above the truth 0 only by noise. Below it by noise plus the probe's
    # overfitting, about (M - 1)(d + 1) / (2 n_train) = 12 / 6400 = 0.002 nats.
    assert -3 * se - 0.005 < result["lower_bound_nats"] < 3 * se
    assert "trust only the lower bound" in result["trust"] and result["probe_converged"]


def _true_information_collinear_classes(num_classes, spacing):
    """Exact I(y; z) for z | y=c ~ N(c * spacing * e_1, I), y uniform: only z_1 carries y."""
    from scipy import integrate
    from scipy.special import log_softmax
    centers = spacing * np.arange(num_classes)

    def conditional_entropy_term(t, c):
        log_post = log_softmax(-0.5 * (t - centers) ** 2)
        return norm.pdf(t, centers[c]) * -log_post[c]
    h_given_z = np.mean([integrate.quad(conditional_entropy_term, centers[c] - 12, centers[c] + 12, args=(c,),
                                        epsabs=1e-12, epsrel=1e-12, limit=200)[0]
                         for c in range(num_classes)])
    return np.log(num_classes) - h_given_z


def test_narrow_posteriors_with_real_label_signal_recover_the_truth():
    # Gaussian classes of equal variance: the logistic probe is well specified, so the
    # Barber-Agakov bound is tight up to the probe's estimation error (~(M-1)(d+1)/(2 n_train)
    # = 6 / 9600 nats) and the noise of the held-out mean (its stderr).
    truth = _true_information_collinear_classes(3, 1.5)
    assert 0.3 < truth < 0.9  # far from both 0 and H(y) = ln 3
    rng = np.random.default_rng(9)
    n = 6000
    y = np.arange(n) % 3
    means = rng.standard_normal((n, 2))
    means[:, 0] += 1.5 * y
    result = _interval(means, np.full_like(means, 1e-4), y)
    se = result["lower_bound_stderr_nats"]
    assert 0 < se < 0.03
    assert abs(result["lower_bound_nats"] - truth) < 3 * se + 0.002
    # The mixture end is saturated and reads H(y) instead of the truth.
    assert result["saturated"] and result["mixture_estimate_nats"] == pytest.approx(np.log(3), abs=0.01)


def test_wide_posteriors_are_not_saturated_and_both_ends_agree():
    # Means spread 0.3 with posterior std 1: I(x; z) = 2 * 0.5 ln 1.09, far below ln N; labels independent.
    rng = np.random.default_rng(10)
    n = 3000
    y = rng.integers(0, 3, n)
    means = 0.3 * rng.standard_normal((n, 2))
    result = _interval(means, np.ones_like(means), y)
    assert not result["saturated"] and result["input_headroom_nats"] > 7
    assert "not saturated" in result["trust"]
    assert abs(result["mixture_estimate_nats"]) < 0.02
    assert result["lower_bound_nats"] < 3 * result["lower_bound_stderr_nats"]


def test_interval_for_an_exact_categorical_layer():
    # z = the label itself (2 categories): I(y; z) = ln 2 exactly, no saturation at N = 400.
    y = np.arange(400) % 2
    probs = np.eye(2)[y]
    from evaluation import bounds, probes
    mixture = mi.categorical_mutual_information(probs, y)
    result = mi.label_information_interval(mixture, probs, y, bounds.label_prior(y), probes.split_indices(y, 0.2, 0))
    assert result["mixture_estimate_nats"] == pytest.approx(np.log(2)) and result["mixture_estimate_stderr_nats"] == 0
    assert not result["saturated"] and result["trust"].startswith("exact sums")
    # A separable probe with C = 1 leaves a small cross-entropy; the bound is at most ln 2.
    assert np.log(2) - 0.05 < result["lower_bound_nats"] <= np.log(2) + 1e-12


def test_categorical_saturation_fires_only_with_as_many_categories_as_points():
    y = np.arange(50) % 5
    one_per_point = mi.categorical_mutual_information(np.eye(50), y)  # K = N: I(x; z) = ln N
    assert one_per_point["saturation"]["saturated"]
    assert one_per_point["label"]["value_nats"] == pytest.approx(np.log(5))
    assert not mi.categorical_mutual_information(np.eye(5)[y], y)["saturation"]["saturated"]


def test_lower_bound_survives_a_class_the_probe_never_saw():
    # Class 2 is only in the test part: the probe gives it probability 0, which the
    # uniform floor turns into eps / M, so each such point costs about -log(1e-6 / 3) nats.
    rng = np.random.default_rng(11)
    y = np.array([0, 1] * 50 + [2] * 10)
    z = rng.standard_normal((110, 2)) + 3.0 * np.eye(3)[y][:, :2]
    train, test = np.arange(0, 80), np.arange(80, 110)
    prior = np.bincount(y) / len(y)
    result = mi.barber_agakov_lower_bound(z, y, prior, (train, test))
    assert np.isfinite(result["value_nats"])
    cost_unseen = -np.log(mi.PROBE_UNIFORM_WEIGHT / 3)
    assert result["cross_entropy_nats"] == pytest.approx(10 / 30 * cost_unseen, rel=0.05)


def test_interval_bad_input_is_rejected():
    y = np.arange(20) % 2
    z = np.random.default_rng(0).standard_normal((20, 2))
    split = (np.arange(10), np.arange(10, 20))
    with pytest.raises(ValueError, match="labels must lie"):
        mi.barber_agakov_lower_bound(z, y + 1, np.array([0.5, 0.5]), split)
    with pytest.raises(ValueError, match="disjoint"):
        mi.barber_agakov_lower_bound(z, y, np.array([0.5, 0.5]), (np.arange(12), np.arange(10, 20)))
    mixture = mi.gaussian_mutual_information(z[:10], np.ones((10, 2)), y[:10], np.random.default_rng(0))
    with pytest.raises(ValueError, match="same points"):
        mi.label_information_interval(mixture, z, y, np.array([0.5, 0.5]), split)
