"""The Monte Carlo mixture estimator against cases with known answers."""
import numpy as np
import pytest
from scipy.stats import norm

from evaluation import mutual_information as mi


def test_log_density_matrix_matches_scipy():
    rng = np.random.default_rng(0)
    means, stds, z = rng.normal(size=(7, 3)), rng.uniform(0.1, 2, (7, 3)), rng.normal(size=(5, 3))
    expected = norm.logpdf(z[:, None, :], means[None], stds[None]).sum(-1)
    np.testing.assert_allclose(mi.gaussian_log_density_matrix(z, means, stds), expected, rtol=1e-10)


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
