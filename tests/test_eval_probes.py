"""Oracle checks of the probes and their fixed split."""
import numpy as np
import pytest

from evaluation import probes


def _blobs(n=600, classes=4, dims=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = 10.0 * rng.standard_normal((classes, dims))
    return centers[y] + rng.standard_normal((n, dims)), y


def test_identity_representation_of_separable_set_is_near_perfect():
    x, y = _blobs()
    result = probes.evaluate_probes(x, y, seed=0)
    for name in probes.PROBES:
        assert result[name]["accuracy"] >= 0.98, (name, result[name])
        assert result[name]["num_test"] == result["settings"]["num_test"] == 150
    assert "chosen_C" in result["logistic_regression"]["hyperparameters"]


def test_constant_representation_scores_chance():
    _, y = _blobs(n=800, classes=4)
    result = probes.evaluate_probes(np.zeros((len(y), 3)), y, seed=1)
    for name in probes.PROBES:
        # Balanced classes: any constant prediction is right for 1/4 of the test split.
        assert abs(result[name]["accuracy"] - 0.25) <= 0.05, (name, result[name]["accuracy"])


def test_split_depends_only_on_labels_and_seed():
    _, y = _blobs(n=300, classes=3)
    train_a, test_a = probes.split_indices(y, seed=3)
    train_b, test_b = probes.split_indices(y.copy(), seed=3)
    np.testing.assert_array_equal(test_a, test_b)
    assert len(np.intersect1d(train_a, test_a)) == 0 and len(train_a) + len(test_a) == 300
    # Stratified: every class has the same share in the test split.
    assert np.all(np.bincount(y[test_a]) == 25)
    assert not np.array_equal(test_a, probes.split_indices(y, seed=4)[1])


def test_rbf_training_size_is_capped_and_reported(monkeypatch):
    factory, hyper, _ = probes.PROBES["rbf_svm"]
    monkeypatch.setitem(probes.PROBES, "rbf_svm", (factory, hyper, 100))
    x, y = _blobs(n=400)
    result = probes.evaluate_probes(x, y, probes=("rbf_svm",))
    assert result["rbf_svm"]["num_train"] == 100 and result["rbf_svm"]["train_cap"] == 100


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="labels"):
        probes.evaluate_probes(np.zeros((5, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match="unknown probe"):
        probes.evaluate_probes(*_blobs(n=40), probes=("tree",))


def test_probe_sets_in_worker_processes_match_sequential():
    x, y = _blobs(n=300)
    reps = {"a": x, ("b", "const"): np.zeros((300, 2))}
    names = ("linear_svm", "knn5")
    sequential = probes.evaluate_probe_sets(reps, y, probes=names, seed=2)
    parallel = probes.evaluate_probe_sets(reps, y, probes=names, seed=2, n_jobs=2)
    for key in reps:
        assert list(parallel[key]) == ["settings", *names]
        for name in names:
            assert parallel[key][name]["num_correct"] == sequential[key][name]["num_correct"]
