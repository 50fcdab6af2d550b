"""PSNR, Inception-style score and Frechet distance on arrays with known answers."""
import numpy as np
import pytest
from scipy import linalg

from evaluation import image_quality as iq


def test_psnr_known_value():
    x = np.zeros((3, 4, 4, 1))
    result = iq.psnr(x, x + 0.1)
    assert result["mean_per_image_db"] == pytest.approx(20.0) and result["pooled_mse_db"] == pytest.approx(20.0)
    assert result["mean_per_image_stderr_db"] == 0.0 and result["pooled_mse_stderr_db"] == 0.0
    assert iq.psnr(x, x)["mean_per_image_db"] == 100.0 and iq.psnr(x, x)["pooled_mse_db"] == 100.0
    with pytest.raises(ValueError):
        iq.psnr(x, x[:2])


def test_psnr_pooled_and_per_image_differ_as_jensen_says():
    # Two 2x2 images, range 2: errors 0.2 everywhere (MSE 0.04) and 0.02 everywhere (MSE 0.0004).
    x = np.zeros((2, 2, 2))
    x_hat = x + np.array([0.2, 0.02])[:, None, None]
    result = iq.psnr(x, x_hat, data_range=2.0)
    per_image = [10 * np.log10(4 / 0.04), 10 * np.log10(4 / 0.0004)]  # 20 and 40 dB
    assert result["mean_per_image_db"] == pytest.approx(30.0) == pytest.approx(np.mean(per_image))
    assert result["pooled_mse_db"] == pytest.approx(10 * np.log10(4 / 0.0202))  # 22.95 dB
    assert result["mean_per_image_db"] > result["pooled_mse_db"] + 7
    # Delta method: stderr of the mean MSE (0.0198 / 1) over the MSE, in dB.
    assert result["pooled_mse_stderr_db"] == pytest.approx(10 / np.log(10) * 0.0198 / 0.0202)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.uniform(size=(2, 7, 5, 5))
        r = iq.psnr(a, a + rng.uniform(0.01, 0.5) * (b - a))
        assert r["mean_per_image_db"] >= r["pooled_mse_db"] - 1e-12


def test_inception_score_extremes_and_factorization():
    m = 10
    confident_diverse = np.eye(m)[np.arange(1000) % m]
    result = iq.inception_score(confident_diverse, num_splits=10)
    assert result["inception_score"]["mean"] == pytest.approx(m)
    assert result["diversity"]["mean"] == pytest.approx(m) and result["sharpness"]["mean"] == pytest.approx(1)
    collapsed = iq.inception_score(np.eye(m)[np.zeros(1000, int)])
    assert collapsed["inception_score"]["mean"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(m), 500)
    result = iq.inception_score(probs, num_splits=5)
    # IS = exp(E KL[p(y|x) || p(y)]) computed directly, per split, equals diversity * sharpness.
    direct = [np.exp(np.mean(np.sum(part * np.log(part / part.mean(0)), axis=1)))
              for part in np.split(probs, 5)]
    assert result["inception_score"]["mean"] == pytest.approx(np.mean(direct), rel=1e-10)
    assert result["inception_score"]["std"] == pytest.approx(np.std(direct), rel=1e-8)
    assert 1 < result["inception_score"]["mean"] < m


def test_frechet_distance_against_formula_and_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 6))
    b = 2.0 + rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb)
                - 2 * np.trace(linalg.sqrtm(ca @ cb).real))
    assert iq.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert iq.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert iq.frechet_distance(a, iq.feature_statistics(b)) == iq.frechet_distance(a, b)  # shared test statistics
    # Singular covariances (features that never vary) stay finite and >= 0.
    assert iq.frechet_distance(np.c_[a, np.zeros(400)], np.c_[b, np.zeros(400)]) == pytest.approx(expected, rel=1e-6)
