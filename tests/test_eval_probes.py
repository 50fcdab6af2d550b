"""Oracle checks of the probes, their protocols and their fixed splits."""
import dataclasses
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from evaluation import probes


def _blobs(n=600, classes=4, dims=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = 10.0 * rng.standard_normal((classes, dims))
    return centers[y] + rng.standard_normal((n, dims)), y


def test_every_protocol_has_every_probe_and_paper_is_the_default():
    assert probes.DEFAULT_PROTOCOL == "paper"
    for protocol in probes.PROTOCOLS.values():
        assert tuple(protocol.probes) == probes.PROBES and protocol.description


@pytest.mark.parametrize("protocol", list(probes.PROTOCOLS))
def test_identity_representation_of_separable_set_is_near_perfect(protocol):
    x, y = _blobs()
    result = probes.evaluate_probes(x, y, seed=0, protocol=protocol)
    num_test = {"paper": 120, "standardized": 150}[protocol]
    assert result["settings"]["protocol"] == protocol and result["settings"]["num_test"] == num_test
    for name in probes.PROBES:
        assert result[name]["accuracy"] >= 0.98, (name, result[name])
        assert result[name]["num_test"] == num_test and result[name]["protocol"] == protocol
        assert result[name]["converged"] and result[name]["convergence_warnings"] == 0
    if protocol == "standardized":
        assert "chosen_C" in result["logistic_regression"]["hyperparameters"]
    else:  # scikit-learn defaults, recorded from the fitted classifier
        assert result["logistic_regression"]["hyperparameters"]["C"] == 1.0
        assert result["logistic_regression"]["hyperparameters"]["max_iter"] == 100


@pytest.mark.parametrize("protocol", list(probes.PROTOCOLS))
def test_constant_representation_scores_chance(protocol):
    _, y = _blobs(n=800, classes=4)
    result = probes.evaluate_probes(np.zeros((len(y), 3)), y, seed=1, protocol=protocol)
    for name in probes.PROBES:
        # Balanced classes: any constant prediction is right for 1/4 of the test split.
        assert abs(result[name]["accuracy"] - 0.25) <= 0.05, (name, result[name]["accuracy"])


def test_a_dead_dimension_fools_the_standardized_protocol_but_not_the_paper_one():
    # A collapsed layer: two uninformative unit-scale dimensions and one dead dimension, a constant
    # plus wiggles of 1e-4 that follow the label. Its samples (the dead dimension drawn from a
    # posterior of std 1, the prior) carry no label information at all.
    rng = np.random.default_rng(0)
    n = 2000
    y = np.arange(n) % 4
    means = np.c_[rng.standard_normal((n, 2)), 0.3 + 1e-4 * (y + 0.3 * rng.standard_normal(n))]
    samples = means + np.c_[np.zeros((n, 2)), rng.standard_normal(n)]
    chance = 0.25  # 400 balanced test points: one standard error of a chance accuracy is 0.022
    paper = probes.evaluate_probes(means, y, protocol="paper")
    standardized = probes.evaluate_probes(means, y, protocol="standardized")
    for name in probes.PROBES:
        assert abs(paper[name]["accuracy"] - chance) < 0.08, (name, paper[name]["accuracy"])
        # Standardizing blows the wiggles up to unit variance: every probe reads the label off them.
        assert standardized[name]["accuracy"] > 0.8, (name, standardized[name]["accuracy"])
    for protocol in probes.PROTOCOLS:  # on samples both protocols agree: nothing to find
        on_samples = probes.evaluate_probes(samples, y, protocol=protocol)
        for name in probes.PROBES:
            assert abs(on_samples[name]["accuracy"] - chance) < 0.08, (protocol, name)


def test_paper_logistic_regression_averages_five_splits():
    x, y = _blobs(n=500, classes=3, dims=2, seed=3)
    x = x / 10 + np.random.default_rng(1).standard_normal(x.shape)  # overlapping classes: accuracies differ
    result = probes.evaluate_probes(x, y, probes=("logistic_regression", "knn5"), seed=7, protocol="paper")
    logistic = result["logistic_regression"]
    assert logistic["split_seeds"] == [7, 8, 9, 10, 11]
    # Each split's accuracy, recomputed directly with scikit-learn's default classifier.
    expected = []
    for seed in range(7, 12):
        train, test = probes.split_indices(y, 0.2, seed)
        expected.append(np.mean(LogisticRegression().fit(x[train], y[train]).predict(x[test]) == y[test]))
    np.testing.assert_allclose(logistic["accuracy_per_split"], expected)
    assert len(set(expected)) > 1
    assert logistic["accuracy"] == pytest.approx(np.mean(expected))
    assert logistic["accuracy_std_over_splits"] == pytest.approx(np.std(expected, ddof=1))
    # Counts are the first split's, the split every other probe uses.
    assert logistic["num_correct"] / logistic["num_test"] == pytest.approx(expected[0])
    assert result["knn5"]["split_seeds"] == [7] and result["knn5"]["accuracy_std_over_splits"] is None
    assert result["knn5"]["num_test"] == logistic["num_test"] == 100


def test_split_depends_only_on_labels_and_seed():
    _, y = _blobs(n=300, classes=3)
    train_a, test_a = probes.split_indices(y, seed=3)
    train_b, test_b = probes.split_indices(y.copy(), seed=3)
    np.testing.assert_array_equal(test_a, test_b)
    assert len(np.intersect1d(train_a, test_a)) == 0 and len(train_a) + len(test_a) == 300
    # Stratified: every class has the same share in the test split.
    assert np.all(np.bincount(y[test_a]) == 25)
    assert not np.array_equal(test_a, probes.split_indices(y, seed=4)[1])


def test_results_are_reproducible_and_any_representation_gets_the_same_split():
    x, y = _blobs(n=400)
    first = probes.evaluate_probes(x, y, seed=5, protocol="paper")
    again = probes.evaluate_probes(x.copy(), y, seed=5, protocol="paper")
    other = probes.evaluate_probes(np.zeros((400, 1)), y, seed=5, protocol="paper")
    for name in probes.PROBES:
        assert first[name]["accuracy_per_split"] == again[name]["accuracy_per_split"]
        assert first[name]["num_test"] == other[name]["num_test"]
    assert first["settings"]["num_train_split"] == other["settings"]["num_train_split"] == 320


def test_non_convergence_is_counted_not_printed():
    # Unscaled features of very different sizes: lbfgs with the default 100 iterations stops early.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((600, 5)) * np.array([1e3, 1, 1e-2, 1e4, 1])
    y = (x[:, 0] / 1e3 + x[:, 1] + rng.standard_normal(600) > 0).astype(int) + 2 * (x[:, 4] > 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = probes.evaluate_probes(x, y, probes=("logistic_regression",), protocol="paper")
    assert not caught
    assert result["logistic_regression"]["convergence_warnings"] == 5  # one per split
    assert result["logistic_regression"]["converged"] is False


def test_rbf_training_size_is_capped_and_reported(monkeypatch):
    table = probes.PROTOCOLS["standardized"].probes
    monkeypatch.setitem(table, "rbf_svm", dataclasses.replace(table["rbf_svm"], train_cap=100))
    x, y = _blobs(n=400)
    result = probes.evaluate_probes(x, y, probes=("rbf_svm",), protocol="standardized")
    assert result["rbf_svm"]["num_train"] == 100 and result["rbf_svm"]["train_cap"] == 100


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="labels"):
        probes.evaluate_probes(np.zeros((5, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match="unknown probe"):
        probes.evaluate_probes(*_blobs(n=40), probes=("tree",))
    with pytest.raises(ValueError, match="unknown probe protocol"):
        probes.evaluate_probes(*_blobs(n=40), protocol="mine")


@pytest.mark.parametrize("protocol", list(probes.PROTOCOLS))
def test_probe_sets_in_worker_processes_match_sequential(protocol):
    x, y = _blobs(n=300)
    reps = {"a": x, ("b", "const"): np.zeros((300, 2))}
    names = ("logistic_regression", "knn5")
    sequential = probes.evaluate_probe_sets(reps, y, probes=names, seed=2, protocol=protocol)
    parallel = probes.evaluate_probe_sets(reps, y, probes=names, seed=2, n_jobs=2, protocol=protocol)
    for key in reps:
        assert list(parallel[key]) == ["settings", *names]
        assert parallel[key]["settings"]["protocol"] == protocol
        for name in names:
            assert parallel[key][name]["accuracy_per_split"] == sequential[key][name]["accuracy_per_split"]
            assert parallel[key][name]["num_correct"] == sequential[key][name]["num_correct"]
