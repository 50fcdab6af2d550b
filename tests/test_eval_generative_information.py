"""I_p(z_L; y_hat) and the clustering accuracy of a categorical top layer, on a tiny model trained on digits."""
import numpy as np
import pytest

from conftest import train_config
from evaluation import evaluate as ev
from evaluation import information_estimators as ie
from test_eval_evaluate import fast_options

CATEGORIES = 6


@pytest.fixture(scope="module")
def categorical_result(tmp_path_factory):
    from hvae_repr.train import train
    workdir = str(tmp_path_factory.mktemp("runs") / "categorical")
    train(train_config(workdir=workdir, dataset="digits", latent_dims=(8, CATEGORIES), top_latent="categorical",
                       hidden_units=64, epochs=2, batch_size=64, seed=0), verbose=False)
    options = ev.EvalOptions(layers="top", probe_names=("logistic_regression",), cluster_max_train=600,
                             **fast_options(tmp_path_factory.mktemp("eval"), generative_draws=300))
    return ev.evaluate(workdir, options, verbose=False)


def test_every_category_is_drawn_equally_often_and_the_estimate_is_its_count_matrix(categorical_result):
    g = categorical_result["generative_information"]
    counts = np.array(g["counts"])
    assert counts.shape == (CATEGORIES, 10)  # category x predicted class
    assert counts.sum(1).tolist() == [50] * CATEGORIES  # 300 draws over 6 categories
    assert g["settings"]["num_draws"] == 300 and g["settings"]["draws_per_category"] == 50
    again = ie.plugin_mutual_information(counts, rows_fixed=True)
    assert g["plugin_nats"] == pytest.approx(again["plugin_nats"])
    assert g["value_nats"] == pytest.approx(g["plugin_nats"] - g["bias_nats"])
    assert 0 <= g["plugin_nats"] <= g["ceiling_nats"] <= np.log(CATEGORIES) + 1e-9
    assert np.sum(g["predicted_class_frequencies"]) == pytest.approx(1.0)
    assert np.allclose(g["predicted_class_frequencies"], counts.sum(0) / 300)


def test_clustering_accuracy_follows_from_the_mapping(categorical_result):
    c = categorical_result["clustering"]
    assert c["status"] == "computed" and c["settings"]["num_train"] == 600
    counts, mapping = np.array(c["test_counts"]), np.array(c["category_to_label"])
    correct = sum(counts[k, mapping[k]] for k in range(CATEGORIES) if mapping[k] >= 0)
    assert c["accuracy"] == pytest.approx(correct / counts.sum())
    assert counts.sum() == categorical_result["num_test_examples"]
    assert c["majority_class_rate"] <= c["train_accuracy"] + 1e-9  # the majority mapping beats one label


def test_categorical_layer_gets_the_plugin_estimate_of_its_samples(categorical_result):
    second = categorical_result["mutual_information"]["z2"]["label_from_samples"]
    assert second["estimator"].startswith("plug-in")
    assert np.array(second["plugin"]["counts"]).sum() == categorical_result["num_test_examples"]
    assert second["value_nats"] <= np.log(CATEGORIES) + 1e-9
