"""evaluation.information_estimators on cases with known answers."""
import numpy as np
import pytest
from scipy import integrate, stats

from evaluation import information_estimators as ie
from evaluation.stats import entropy

# A categorical "model": category k decodes to an image the classifier labels c with probability CHANNEL[k, c].
CHANNEL = np.array([[0.8, 0.1, 0.1, 0.0],
                    [0.0, 0.9, 0.05, 0.05],
                    [0.1, 0.1, 0.7, 0.1],
                    [0.25, 0.25, 0.25, 0.25]])


def channel_information(channel):
    """I(category; class) for categories drawn equally often through `channel`."""
    rows = np.full(len(channel), 1 / len(channel))
    return entropy(rows @ channel) - float(np.sum(rows * entropy(channel)))


def channel_counts(rng, per_row):
    return np.stack([rng.multinomial(per_row, row) for row in CHANNEL])


def test_count_matrix_and_exact_values():
    counts = ie.count_matrix(np.array([0, 0, 1, 2]), np.array([1, 1, 0, 2]), 3, 3)
    assert counts.tolist() == [[0, 2, 0], [1, 0, 0], [0, 0, 1]]
    identity = ie.plugin_mutual_information(np.eye(4) * 25)  # a perfect channel: I = ln 4
    assert identity["plugin_nats"] == pytest.approx(np.log(4))
    assert identity["ceiling_nats"] == pytest.approx(np.log(4))
    assert identity["counts"] == (np.eye(4) * 25).astype(int).tolist()
    independent = ie.plugin_mutual_information(np.full((3, 5), 7))
    assert independent["plugin_nats"] == pytest.approx(0.0, abs=1e-12)
    assert independent["bias_nats"] == pytest.approx(2 * 4 / (2 * 105))  # (R - 1)(C - 1) / (2N)
    with pytest.raises(ValueError, match="empty"):
        ie.plugin_mutual_information(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="lie in"):
        ie.count_matrix(np.array([3]), np.array([0]), 3, 3)


def test_plugin_bias_and_stderr_on_a_known_channel():
    truth = channel_information(CHANNEL)
    rng = np.random.default_rng(0)
    errors = {}
    for per_row in (25, 2500):
        found = [ie.plugin_mutual_information(channel_counts(rng, per_row), rows_fixed=True) for _ in range(400)]
        plugin = np.array([f["plugin_nats"] for f in found])
        corrected = np.array([f["miller_madow_nats"] for f in found])
        errors[per_row] = abs(plugin.mean() - truth), abs(corrected.mean() - truth)
        # the stated bias is the plug-in's mean error, to within the Monte Carlo error of 400 repeats
        # plus the second-order terms
        mc = plugin.std() / np.sqrt(len(plugin))
        stated = np.mean([f["bias_nats"] for f in found])
        assert plugin.mean() - truth == pytest.approx(stated, abs=4 * mc + 0.2 / per_row)
        assert errors[per_row][1] < errors[per_row][0]  # Miller-Madow removes most of it
        # the delta-method standard error matches the spread over repeats
        assert np.mean([f["stderr_nats"] for f in found]) == pytest.approx(plugin.std(), rel=0.2)
    assert errors[2500][0] < errors[25][0] / 20  # the plug-in bias shrinks like 1/N
    large = ie.plugin_mutual_information(channel_counts(rng, 2500), rows_fixed=True)
    assert large["miller_madow_nats"] == pytest.approx(truth, abs=4 * large["stderr_nats"])


def test_plugin_of_independent_draws_is_biased_by_the_stated_amount():
    rng = np.random.default_rng(1)
    found = [ie.plugin_mutual_information(ie.count_matrix(rng.integers(0, 5, 400), rng.integers(0, 10, 400), 5, 10))
             for _ in range(300)]
    plugin = np.array([f["plugin_nats"] for f in found])
    assert plugin.mean() == pytest.approx(4 * 9 / (2 * 400), rel=0.15)  # truth 0
    assert abs(np.mean([f["miller_madow_nats"] for f in found])) < 0.1 * plugin.mean()


def test_knn_on_separated_classes_gives_the_label_entropy():
    rng = np.random.default_rng(2)
    labels = rng.choice(3, size=3000, p=[0.5, 0.3, 0.2])
    z = rng.normal(size=(3000, 2)) + 30.0 * labels[:, None]
    found = ie.knn_mutual_information(z, labels, k=5)
    h = entropy(np.bincount(labels) / 3000)
    assert found["value_nats"] == pytest.approx(h, abs=0.01)
    assert found["value_nats"] == pytest.approx(found["ceiling_nats"], abs=1e-9)
    assert found["dimension"] == 2 and found["settings"]["k"] == 5


def test_knn_on_independent_labels_is_near_zero():
    rng = np.random.default_rng(3)
    found = ie.knn_mutual_information(rng.normal(size=(2000, 3)), rng.integers(0, 4, 2000), k=5)
    assert abs(found["value_nats"]) < 0.03


def _two_gaussians_information(shift):
    """I(z; y) for y uniform on {0, 1} and z ~ N(+-shift, 1), by quadrature: h(z) - h(z | y)."""
    def density(x):
        return 0.5 * (stats.norm.pdf(x, -shift) + stats.norm.pdf(x, shift))
    h, _ = integrate.quad(lambda x: -density(x) * np.log(density(x)), -shift - 12, shift + 12, limit=200)
    return h - 0.5 * np.log(2 * np.pi * np.e)


def test_knn_on_overlapping_gaussians_and_its_bias_shrinks_with_n():
    truth = _two_gaussians_information(1.0)  # 0.35 nats
    rng = np.random.default_rng(4)
    errors = {}
    for n, repeats in ((100, 60), (4000, 6)):
        found = []
        for _ in range(repeats):
            y = rng.integers(0, 2, n)
            z = rng.normal(size=n) + np.where(y == 1, 1.0, -1.0)
            found.append(ie.knn_mutual_information(z[:, None], y, k=5, chunk_size=700)["value_nats"])
        errors[n] = abs(np.mean(found) - truth)
    assert errors[4000] < 0.015
    assert errors[4000] < errors[100]


def test_knn_rejects_bad_input_and_counts_ties():
    with pytest.raises(ValueError, match="one label per row"):
        ie.knn_mutual_information(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="two or more points"):
        ie.knn_mutual_information(np.zeros((3, 1)), np.arange(3))
    tied = ie.knn_mutual_information(np.repeat(np.arange(5.0), 10)[:, None], np.repeat([0, 1], 25), k=3)
    assert tied["ties"] > 0
