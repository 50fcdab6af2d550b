"""End to end: the evaluation program on few-step runs writes every field."""
import json
import os
import subprocess
import sys

import pytest

from evaluation import evaluate as ev

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBES = ("logistic_regression", "linear_svm", "rbf_svm", "knn5")


def fast_options(tmp_path, **kw):
    return dict(num_generated=200, classifier_dir=str(tmp_path / "classifiers"), classifier_epochs=1,
                classifier_min_steps=20, **kw)


def _get(result, dotted):
    value = result
    for key in dotted.split("."):
        assert isinstance(value, dict) and key in value, f"missing {dotted} (at {key})"
        value = value[key]
    return value


def _check_fields(result, layers):
    required = ["rates.total_rate_nats.mean", "rates.total_rate_nats.stderr", "rates.distortion_nats.mean",
                "rates.neg_elbo_nats.mean", "importance_weighted.status", "bound_t1.status",
                "bound_t2.violated", "bound_t2.label_prior", "bound_t2.mean_based_probes_outside_bound.note",
                "reference_classifier.test_accuracy", "reconstruction.psnr.mean_db",
                "reconstruction.classifier_accuracy", "generation.frechet_distance.value", "generation.note",
                "versions.tensorflow", "versions.scikit_learn", "seconds.total", "settings.probe_seed",
                "probes.on_means.concat.settings.split_seed"]
    for layer in layers:
        required += [f"rates.rate_nats.{layer}.mean", f"rates.rate_nats.{layer}.stderr",
                     f"rates.rate_bits.{layer}.mean", f"mutual_information.{layer}.label.value_nats",
                     f"mutual_information.{layer}.label.stderr_nats",
                     f"mutual_information.{layer}.input.ceiling_nats", f"mutual_information.{layer}.component"]
        required += [f"probes.on_means.{layer}.{p}.accuracy" for p in PROBES]
    for probe in PROBES:
        required += [f"probes.on_means.concat.{probe}.hyperparameters",
                     f"bound_t2.probes.{probe}.accuracy_interval",
                     f"bound_t2.probes.{probe}.mutual_information.violated",
                     f"bound_t2.probes.{probe}.top_rate.slack"]
    for factor in ("inception_score", "diversity", "sharpness"):
        required += [f"generation.inception_style_score.{factor}.mean",
                     f"generation.inception_style_score.{factor}.std"]
    for key in required:
        _get(result, key)
    assert "not the Inception network" in result["generation"]["note"]


def test_command_line_on_tiny_run_writes_every_field(tiny_run, tmp_path):
    opts = fast_options(tmp_path, iw_samples=5)
    args = [f"--{k}={v}" for k, v in opts.items()] + ["--probe_samples", f"--workdir={tiny_run}"]
    proc = subprocess.run([sys.executable, "-m", "evaluation.evaluate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote" in proc.stdout
    with open(os.path.join(tiny_run, ev.EVAL_RESULT)) as f:
        result = json.load(f)
    assert not [n for n in os.listdir(tiny_run) if n.startswith(".tmp")]
    layers = result["latent_names"]
    assert layers == ["z1", "z2"]
    _check_fields(result, layers)
    for layer in layers + ["concat"]:
        assert set(PROBES) <= set(result["probes"]["on_samples"][layer])
    # digits has no known entropy: T1 says so instead of inventing a number.
    assert result["bound_t1"]["status"] == "unknown" and result["bound_t1"]["data_entropy_nats"] is None
    # The bound is a theorem: no honest model may violate it.
    assert result["bound_t2"]["violated"] is False
    iw = result["importance_weighted"]
    assert iw["settings"]["num_samples"] == 5
    assert iw["log_likelihood_lower_bound_nats"]["mean"] >= -result["rates"]["neg_elbo_nats"]["mean"] - 1.0


def test_synthetic_run_checks_t1(tmp_path):
    from hvae_repr.config import TrainConfig
    from hvae_repr.train import train
    workdir = str(tmp_path / "synthetic_run")
    train(TrainConfig(dataset="synthetic", workdir=workdir, latent_dims=(8, 4), hidden_units=32, epochs=1,
                      batch_size=100, kl_warmup_epochs=0), verbose=False)
    result = ev.evaluate(workdir, ev.EvalOptions(max_test=300, **fast_options(tmp_path)), verbose=False)
    _check_fields(result, ["z1", "z2"])
    t1 = result["bound_t1"]
    assert t1["status"] == "checked" and t1["violated"] is False
    # An 8x8 binary image has at most 64 ln 2 = 44.4 nats of entropy.
    assert 0 < t1["data_entropy_nats"] < 64 * 0.6932
    assert t1["slack_nats"] == pytest.approx(
        t1["expected_distortion_nats"] + t1["expected_total_rate_nats"] - t1["data_entropy_nats"], abs=1e-6)
    assert result["importance_weighted"]["status"] == "off"
    assert "on_samples" in result["probes"] and list(result["probes"]["on_samples"]) == ["z2"]


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="run folder"):
        ev.evaluate(str(tmp_path), ev.EvalOptions(), verbose=False)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="num_generated"):
        ev.EvalOptions(num_generated=0)
    with pytest.raises(ValueError, match="confidence"):
        ev.EvalOptions(confidence=1.5)
    with pytest.raises(ValueError, match="probe_names"):
        ev.EvalOptions(probe_names=("tree",))
