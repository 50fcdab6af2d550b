"""Fano inversion properties and the T1/T2 checkers."""
import numpy as np
import pytest

from conftest import entropy_estimate

from evaluation import bounds


def _random_prior(rng, m):
    return rng.dirichlet(np.full(m, rng.uniform(0.2, 3.0)))


def test_f_at_one_is_label_entropy_and_ln_m_for_uniform():
    for m in (2, 3, 10):
        uniform = np.full(m, 1 / m)
        assert bounds.fano_f(1.0, uniform) == pytest.approx(np.log(m))
        assert bounds.fano_f(1 / m, uniform) == pytest.approx(0.0, abs=1e-12)
        # f is flat at its minimum a = 1/M, so float error of 1e-16 in f moves a by ~1e-8.
        assert bounds.fano_inverse(0.0, uniform) == pytest.approx(1 / m, abs=1e-7)
        assert bounds.fano_inverse(np.log(m), uniform) == 1.0
    assert bounds.fano_inverse(np.log(10), np.full(10, 0.1)) == 1.0
    # Ten balanced classes: perfect accuracy needs ln 10 = 2.30 nats.
    assert bounds.fano_inverse(2.2, np.full(10, 0.1)) < 1.0


def test_inverse_at_zero_is_majority_rate_when_minority_classes_are_equal():
    prior = np.array([0.55, 0.15, 0.15, 0.15])
    assert bounds.fano_inverse(0.0, prior) == pytest.approx(0.55, abs=1e-7)


def test_properties_over_random_priors():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(2, 12))
        prior = _random_prior(rng, m)
        h = bounds.entropy(prior)
        assert bounds.fano_f(1.0, prior) == pytest.approx(h)
        # Valid at zero information: the constant majority classifier is covered.
        assert bounds.fano_inverse(0.0, prior) >= prior.max() - 1e-9
        grid = np.linspace(0, 1.2 * h, 25)
        inv = bounds.fano_inverse(grid, prior)
        assert np.all(np.diff(inv) >= -1e-12) and np.all((inv >= 1 / m) & (inv <= 1))
        assert np.all(inv[grid >= h] == 1.0)
        # f(f^{-1}(x)) = x where x is reachable on the branch (0 <= x < H).
        inside = grid < h
        np.testing.assert_allclose(bounds.fano_f(inv[inside], prior), grid[inside], atol=1e-9)
        a = rng.uniform(1 / m, 1)
        if bounds.fano_f(a, prior) >= 0:
            assert bounds.fano_inverse(bounds.fano_f(a, prior), prior) == pytest.approx(a, abs=1e-9)


def test_bound_holds_for_bayes_classifier_of_random_joint_distributions():
    # The bound is a theorem; check it on exact discrete joints p(y, z).
    rng = np.random.default_rng(1)
    for _ in range(300):
        m, k = int(rng.integers(2, 8)), int(rng.integers(1, 10))
        joint = rng.dirichlet(np.full(m * k, rng.uniform(0.05, 2))).reshape(m, k)
        prior, p_z = joint.sum(1), joint.sum(0)
        nz = joint > 0
        info = np.sum(joint[nz] * np.log(joint[nz] / np.outer(prior, p_z)[nz]))
        bayes_accuracy = joint.max(0).sum()
        assert bayes_accuracy <= bounds.fano_inverse(info, prior) + 1e-9


def test_label_prior_comes_from_data():
    np.testing.assert_allclose(bounds.label_prior(np.array([0, 0, 0, 2])), [0.75, 0, 0.25])
    assert len(bounds.label_prior(np.array([0, 1]), num_classes=5)) == 5
    with pytest.raises(ValueError):
        bounds.label_prior(np.array([0.5, 1.0]))


def _t2(num_correct, info_nats, stderr=0.01, n=1000, lower_nats=0.0):
    probes = {"logistic_regression": {"num_correct": num_correct, "num_test": n}}
    info = {"mutual_information_upper": {"value_nats": info_nats, "stderr_nats": stderr, "judged": True},
            "top_rate": {"value_nats": info_nats + 0.2, "stderr_nats": stderr, "judged": True},
            "mutual_information_lower": {"value_nats": lower_nats, "stderr_nats": stderr, "judged": False}}
    return bounds.check_t2(probes, info, np.full(10, 0.1))


def test_t2_flags_fabricated_inconsistent_result():
    # No information about the label, yet 90% accuracy on 1000 test points.
    result = _t2(900, 0.0)
    entry = result["probes"]["logistic_regression"]["mutual_information_upper"]
    assert result["violated"] and entry["violated"] and entry["judged"]
    assert entry["slack"] < -0.7


def test_t2_passes_consistent_result_and_tolerates_noise():
    bound = bounds.fano_inverse(1.0, np.full(10, 0.1))
    assert not _t2(int(0.8 * bound * 1000), 1.0)["violated"]
    # Accuracy slightly above the bound, within binomial noise: not flagged.
    result = _t2(int(round((bound + 0.01) * 1000)), 1.0)
    assert not result["violated"]
    assert result["probes"]["logistic_regression"]["mutual_information_upper"]["slack"] < 0


def test_t2_reports_the_lower_end_but_never_judges_it():
    # The upper end (2.2 nats) allows 90%; the lower bound (0.1 nats) is far below what 90% needs:
    # that only says the lower bound is loose, so nothing is flagged.
    result = _t2(900, 2.2, lower_nats=0.1)
    lower = result["probes"]["logistic_regression"]["mutual_information_lower"]
    assert not result["violated"]
    assert lower["violated"] is None and lower["judged"] is False and lower["slack"] < -0.5
    assert lower["bound_accuracy"] == pytest.approx(bounds.fano_inverse(0.1, np.full(10, 0.1)))
    assert "bound_accuracy_at_upper_information" not in result["bounds"]["mutual_information_lower"]
    assert result["bounds"]["top_rate"]["bound_accuracy_at_upper_information"] >= result["bounds"]["top_rate"][
        "bound_accuracy"]
    # The same values, all judged, would flag: the marker is what keeps the check sound.
    info = {"mi": {"value_nats": 0.1, "stderr_nats": 0.01, "judged": True}}
    assert bounds.check_t2({"p": {"num_correct": 900, "num_test": 1000}}, info, np.full(10, 0.1))["violated"]


def test_t2_needs_every_information_entry_marked():
    with pytest.raises(ValueError, match="judged"):
        bounds.check_t2({"p": {"num_correct": 1, "num_test": 2}}, {"mi": {"value_nats": 1.0, "stderr_nats": 0.1}},
                        np.full(2, 0.5))


def test_t1_checked_with_known_entropy_and_unknown_otherwise():
    rng = np.random.default_rng(2)
    log_prob = -50 + rng.normal(size=500)
    # A consistent model: D + R >= -log p per example.
    d, r = -log_prob * 0.7 + 1.0, -log_prob * 0.3 + rng.uniform(0, 2, 500)
    ok = bounds.check_t1(d, r, log_prob)
    assert ok["status"] == "checked" and not ok["violated"]
    assert ok["data_entropy_nats"] == pytest.approx(50, abs=0.2) and ok["slack_nats"] > 0
    bad = bounds.check_t1(d - 5.0, r, log_prob)  # distortion below what T1 allows
    assert bad["violated"] and bad["slack_nats"] < 0
    unknown = bounds.check_t1(d, r, None)
    assert unknown["status"] == "unknown" and unknown["data_entropy_nats"] is None
    assert unknown["violated"] is None and "unknown" in unknown["reason"]


def test_t1_on_the_synthetic_mixture_with_its_exact_posterior():
    # A "model" whose latent is the mixture component, with the exact posterior
    # q(k|x) = p(k|x) and the true prior p(k): its ELBO is tight, so per example
    # D + R = -log p(x) and the T1 slack is 0. Any other q has positive slack.
    from scipy.special import logsumexp, softmax

    from hvae_repr import synthetic
    source = synthetic.make_synthetic(image_shape=(4, 4, 1), num_classes=3, num_styles=2, seed=0)
    x, _ = source.sample(400, np.random.default_rng(0))
    flat = x.reshape(len(x), -1).astype(np.float64)
    probs = source.probs.reshape(-1, flat.shape[1])
    log_lik = flat @ np.log(probs).T + (1 - flat) @ np.log1p(-probs).T  # log p(x | k)
    log_w = np.log(source.weights.ravel())
    log_prob = source.log_prob(x)
    np.testing.assert_allclose(logsumexp(log_lik + log_w, axis=1), log_prob, rtol=1e-12)

    def terms(q):
        distortion = -np.sum(q * log_lik, axis=1)
        rate = np.sum(q * (np.log(np.clip(q, 1e-300, None)) - log_w), axis=1)
        return distortion, rate
    exact = bounds.check_t1(*terms(softmax(log_lik + log_w, axis=1)), log_prob)
    assert exact["status"] == "checked" and not exact["violated"]
    assert exact["slack_nats"] == pytest.approx(0.0, abs=1e-9)
    assert exact["data_entropy_nats"] == pytest.approx(entropy_estimate(source.log_prob, x)[0])
    uniform = bounds.check_t1(*terms(np.full_like(log_lik, 1 / log_lik.shape[1])), log_prob)
    assert uniform["slack_nats"] > 0.1 and not uniform["violated"]
    d, r = terms(softmax(log_lik + log_w, axis=1))
    assert bounds.check_t1(d - 0.5, r, log_prob)["violated"]


def test_t1_needs_a_discrete_likelihood():
    rng = np.random.default_rng(3)
    log_prob = -20 + rng.normal(size=200)
    d, r = -log_prob + 1.0, rng.uniform(0, 2, 200)
    from hvae_repr.likelihoods import LIKELIHOODS
    assert {name for name, lik in LIKELIHOODS.items() if lik.discrete} == {"bernoulli", "discretized_logistic_mixture"}
    for discrete in ("bernoulli", "discretized_logistic_mixture"):
        assert bounds.check_t1(d, r, log_prob, likelihood=discrete)["status"] == "checked"
    for density in ("gaussian", "gaussian_learned_sigma"):
        result = bounds.check_t1(d - 100.0, r, log_prob, likelihood=density, discrete=False)  # violated if checked
        assert result["status"] == "not applicable" and result["violated"] is None
        assert result["data_entropy_nats"] is None and density in result["reason"]
        assert result["expected_distortion_nats"] == pytest.approx(np.mean(d - 100.0))
