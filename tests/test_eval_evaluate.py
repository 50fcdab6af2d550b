"""End to end: the evaluation program on few-step runs writes every field."""
import dataclasses
import json
import os
import shutil
import types

import numpy as np
import pytest

from conftest import entropy_estimate, run_in_process, train_config
from evaluation import bounds, stages
from evaluation import evaluate as ev
from hvae_repr.runs import RunDir

PROBES = ("logistic_regression", "linear_svm", "rbf_svm", "knn5")


def fast_options(tmp_path, **kw):
    return {**dict(num_generated=200, generative_draws=500, classifier_dir=str(tmp_path / "classifiers"),
                   classifier_epochs=1, classifier_min_steps=20), **kw}


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
                "reference_classifier.test_accuracy", "reconstruction.psnr.pooled_mse_db",
                "reconstruction.psnr.mean_per_image_db", "reconstruction.reference_classifier_test_accuracy",
                "generation.reference_classifier_test_accuracy", "settings.probe_protocol",
                "reconstruction.classifier_accuracy", "generation.frechet_distance.value", "generation.note",
                "versions.tensorflow", "versions.scikit_learn", "seconds.total", "settings.probe_seed",
                "probes.on_means.concat.settings.split_seed", "generative_information.value_nats",
                "generative_information.stderr_nats", "generative_information.ceiling_nats",
                "generative_information.settings.num_draws", "clustering.status"]
    for layer in layers:
        required += [f"rates.rate_nats.{layer}.mean", f"rates.rate_nats.{layer}.stderr",
                     f"rates.rate_bits.{layer}.mean", f"mutual_information.{layer}.label.lower_bound_nats",
                     f"mutual_information.{layer}.label.lower_bound_stderr_nats",
                     f"mutual_information.{layer}.label.mixture_estimate_nats",
                     f"mutual_information.{layer}.label.saturated", f"mutual_information.{layer}.label.trust",
                     f"mutual_information.{layer}.input.ceiling_nats", f"mutual_information.{layer}.component",
                     f"mutual_information.{layer}.label_from_samples.value_nats",
                     f"mutual_information.{layer}.label_from_samples.estimator"]
        required += [f"probes.on_means.{layer}.{p}.accuracy" for p in PROBES]
    for probe in PROBES:
        required += [f"probes.on_means.concat.{probe}.hyperparameters",
                     f"bound_t2.probes.{probe}.accuracy_interval",
                     f"bound_t2.probes.{probe}.mutual_information_mixture.violated",
                     f"bound_t2.probes.{probe}.mutual_information_lower_bound.bound_accuracy",
                     f"bound_t2.probes.{probe}.top_rate.slack"]
    for factor in ("inception_score", "diversity", "sharpness"):
        required += [f"generation.inception_style_score.{factor}.mean",
                     f"generation.inception_style_score.{factor}.std"]
    for key in required:
        _get(result, key)
    assert "not the Inception network" in result["generation"]["note"]


@pytest.mark.slow
def test_command_line_on_tiny_run_writes_every_field(tiny_run, tmp_path, capsys):
    opts = fast_options(tmp_path, iw_samples=5)
    args = [f"--{k}={v}" for k, v in opts.items()] + ["--probe_samples", f"--workdir={tiny_run}"]
    # The program's flags and main in this process (a real process's exit path: tests/test_cli.py).
    run_in_process(ev.define, ev.main, ["hvae-evaluate", *args])
    out = capsys.readouterr().out
    assert "wrote" in out
    # Each stage is named as it starts and timed as it ends.
    stages_run = [s.name for s in ev.STAGES]
    assert f"[evaluate] 1/{len(stages_run)} rates ...\n" in out
    assert f"[evaluate] {len(stages_run)}/{len(stages_run)} figures: " in out
    with open(RunDir(tiny_run).file(RunDir.EVAL_RESULT)) as f:
        result = json.load(f)
    assert result["figures"]["status"] == "drawn" and "resample_z2" in result["figures"]["files"]
    for relative in result["figures"]["files"].values():  # recorded relative to the run folder
        assert os.path.getsize(os.path.join(tiny_run, relative)) > 1000
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
    # A Gaussian top: I_p(z_L; y_hat) by k-NN over the prior draws, at most the entropy of the predicted classes.
    generative = result["generative_information"]
    assert generative["estimator"].startswith("k-NN") and generative["knn"]["num_points"] == 500
    assert generative["knn"]["dimension"] == 4 and generative["value_nats"] <= generative["ceiling_nats"] + 1e-9
    assert result["clustering"]["status"] == "not applicable"
    for layer in layers:
        knn = result["mutual_information"][layer]["label_from_samples"]
        assert knn["num_points"] == result["num_test_examples"] and knn["dimension"] == {"z1": 8, "z2": 4}[layer]
    iw = result["importance_weighted"]
    assert iw["settings"]["num_samples"] == 5
    # log p(x) >= IW bound >= ELBO in expectation: the IW bound is not below the ELBO beyond their errors.
    bound, elbo = iw["log_likelihood_lower_bound_nats"], result["rates"]["neg_elbo_nats"]
    assert bound["mean"] + elbo["mean"] > -4 * np.hypot(bound["stderr"], elbo["stderr"])


@pytest.mark.slow
def test_synthetic_run_checks_t1(tmp_path):
    from hvae_repr.train import train
    workdir = str(tmp_path / "synthetic_run")
    train(train_config(dataset="synthetic", workdir=workdir, latent_dims=(8, 4), hidden_units=32, epochs=1,
                       batch_size=100), verbose=False)
    result = ev.evaluate(workdir, ev.EvalOptions(max_test=300, **fast_options(tmp_path)), verbose=False)
    _check_fields(result, ["z1", "z2"])
    t1 = result["bound_t1"]
    assert t1["status"] == "checked" and t1["violated"] is False
    # An 8x8 binary image has at most 64 ln 2 = 44.4 nats of entropy.
    assert 0 < t1["data_entropy_nats"] < 64 * 0.6932
    # H against an independent estimate: -log p of 20,000 fresh draws of the same generator.
    from hvae_repr import data, synthetic
    source = synthetic.make_synthetic()
    test_x = data.load_dataset("synthetic").x_test[:300]
    assert t1["data_entropy_nats"] == pytest.approx(-np.mean(source.log_prob(test_x)), rel=1e-12)
    fresh_x, _ = source.sample(20000, np.random.default_rng(7))
    fresh_h, fresh_se = entropy_estimate(source.log_prob, fresh_x)
    assert abs(t1["data_entropy_nats"] - fresh_h) < 4 * np.hypot(t1["data_entropy_stderr_nats"], fresh_se)
    # -ELBO >= H for any model with a discrete likelihood; a one-epoch model is far from tight.
    assert t1["slack_nats"] - 4 * t1["slack_stderr_nats"] > 0
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


def test_every_stage_reads_only_sections_of_earlier_stages():
    done = set()
    for stage in ev.STAGES:
        assert set(stage.needs) <= done, f"{stage.name} needs {set(stage.needs) - done} before it runs"
        done.add(stage.name)
    assert len(done) == len(ev.STAGES)


def test_train_and_evaluation_report_the_same_test_set_rates(tiny_run, tmp_path):
    # One pass (hvae_repr.passes) with the same seeds serves both: no sampling noise between the two files.
    with open(RunDir(tiny_run).file(RunDir.TRAIN_RESULT)) as f:
        trained = json.load(f)["test"]
    inp = ev.load_input(tiny_run, ev.EvalOptions(**fast_options(tmp_path)))
    assert inp.seed == 0  # the run's seed
    rates = stages.rates(inp)
    for key in ("rate_nats", "rate_bits", "total_rate_nats", "distortion_nats", "neg_elbo_nats", "active_units"):
        assert rates[key] == trained[key], key
    other = stages.rates(ev.load_input(tiny_run, ev.EvalOptions(seed=5, **fast_options(tmp_path))))
    assert other["distortion_nats"] != trained["distortion_nats"]  # another seed draws other samples


def _bounds_input(y, likelihood, log_prob=None):
    rng = np.random.default_rng(0)
    arrays = types.SimpleNamespace(distortion=30 + rng.random(len(y)), rates=5 + rng.random((len(y), 2)),
                                   latent_names=["z1", "z2"])
    return types.SimpleNamespace(
        labels=y, latent_names=["z1", "z2"], arrays=arrays, label_prior=bounds.label_prior(y, num_classes=10), x=np.zeros((len(y), 1)), options=ev.EvalOptions(),
        dataset=types.SimpleNamespace(num_classes=10, log_prob=None if log_prob is None else (lambda x: log_prob)),
        config=types.SimpleNamespace(model=types.SimpleNamespace(likelihood=likelihood)))


def test_t2_keeps_classes_missing_from_the_labels_and_t1_needs_a_discrete_likelihood():
    # 90 test labels of classes 0..8 from a 10-class data set (as after --max_test).
    y = np.arange(90) % 9
    counts = {"settings": {}, "logistic_regression": {"accuracy": 0.2, "num_correct": 6, "num_test": 30}}
    sections = dict(rates={"rate_nats": {"z2": {"mean": 0.5, "stderr": 0.01}}},
                    mutual_information={"z2": {"label": {
                        "mixture_estimate_nats": 0.1, "mixture_estimate_stderr_nats": 0.01, "saturated": False,
                        "lower_bound_nats": 0.05, "lower_bound_stderr_nats": 0.01}}},
                    probes={"on_samples": {"z2": counts}, "on_means": {"z2": counts}})
    log_prob = -20 - np.random.default_rng(1).random(90)
    t2 = stages.bound_t2(_bounds_input(y, "bernoulli", log_prob), **sections)
    assert t2["num_classes"] == 10 and len(t2["label_prior"]) == 10 and t2["label_prior"][9] == 0
    with_m_10 = bounds.fano_inverse(0.1, bounds.label_prior(y, num_classes=10))
    assert t2["bounds"]["mutual_information_mixture"]["bound_accuracy"] == pytest.approx(with_m_10)
    assert t2["bounds"]["mutual_information_lower_bound"]["judged"] is False
    assert with_m_10 != pytest.approx(bounds.fano_inverse(0.1, bounds.label_prior(y)), abs=1e-4)
    assert t2["bounds"]["top_rate"]["information_nats"] == 0.5
    assert stages.bound_t1(_bounds_input(y, "bernoulli", log_prob))["status"] == "checked"
    for density in ("gaussian", "gaussian_learned_sigma"):
        t1 = stages.bound_t1(_bounds_input(y, density, log_prob))
        assert t1["status"] == "not applicable" and t1["violated"] is None and t1["data_entropy_nats"] is None
        assert density in t1["reason"] and "discrete" in t1["reason"]


def test_eval_result_of_other_settings_is_not_overwritten(tiny_run, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(RunDir.EVAL_RESULT))
    quick = dataclasses.asdict(ev.EvalOptions(max_test=100))
    ev.write_result(run, {"settings": quick})
    full = dataclasses.asdict(ev.EvalOptions())
    with pytest.raises(ValueError, match="max_test: 100 there vs 0 now") as error:
        ev.write_result(run, {"settings": full})
    assert "batch_size" not in str(error.value) and "--overwrite" in str(error.value)  # only what differs
    ev.write_result(run, {"settings": dict(quick, probe_jobs=1)})  # the number of probe workers changes no number
    ev.write_result(run, {"settings": full}, overwrite=True)
    with open(RunDir(run).file(RunDir.EVAL_RESULT)) as f:
        assert json.load(f)["settings"]["max_test"] == 0


def test_top_layer_only_evaluation_measures_the_top_layer(tiny_run, tmp_path):
    options = ev.EvalOptions(layers="top", probe_names=("logistic_regression",), **fast_options(tmp_path))
    result = ev.evaluate(tiny_run, options, verbose=False)
    assert list(result["mutual_information"]) == ["z2"] and list(result["probes"]["on_means"]) == ["z2"]
    assert list(result["probes"]["on_samples"]) == ["z2"] and result["bound_t2"]["violated"] is False
    assert set(result["rates"]["rate_nats"]) == {"z1", "z2"}  # rates of every layer all the same
    assert "z1: rate" in ev.format_summary(result)
