"""The statistics shared by the evaluation modules."""
import numpy as np
import pytest

from evaluation import stats


def test_mean_stderr():
    mean, stderr = stats.mean_stderr([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and stderr == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert stats.mean_stderr([5.0]) == (5.0, 0.0)
    assert isinstance(mean, float) and isinstance(stderr, float)


def test_entropy_treats_zero_probabilities_as_zero_and_works_along_an_axis():
    assert stats.entropy([0.5, 0.5, 0.0]) == pytest.approx(np.log(2))
    assert stats.entropy([1.0, 0.0]) == 0.0 and isinstance(stats.entropy([1.0, 0.0]), float)
    batch = np.array([[0.25] * 4, [1.0, 0, 0, 0]])
    np.testing.assert_allclose(stats.entropy(batch), [np.log(4), 0.0])
    np.testing.assert_allclose(stats.entropy(batch.T, axis=0), [np.log(4), 0.0])




def test_entropy_matches_scipy_stats_entropy():
    from scipy import stats as scipy_stats
    p = np.random.default_rng(0).dirichlet(np.full(6, 0.3), 50)
    p[0, :3] = 0.0
    p[0] /= p[0].sum()
    np.testing.assert_allclose(stats.entropy(p), scipy_stats.entropy(p, axis=1), rtol=1e-12)
