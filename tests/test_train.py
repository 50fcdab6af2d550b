"""The training program: it learns, writes its files, resumes, reproduces, and rejects bad input."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from hvae_repr import io_utils, runs, train
from hvae_repr.config import TrainConfig

SMALL = dict(dataset="digits", latent_dims=(6, 4), hidden_units=32, batch_size=128, epochs=3,
             kl_warmup_epochs=0, checkpoint_every_secs=0, seed=1)


def lines(workdir):
    with open(runs.path(workdir, runs.METRICS)) as f:
        return [json.loads(line) for line in f]


def weights(workdir):
    model, _ = runs.load_model(workdir)
    return [v.numpy() for v in model.trainable_variables]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("train") / "run")
    result = train.train(TrainConfig(workdir=workdir, **SMALL), verbose=False)
    return workdir, result


def test_run_writes_every_file_with_named_layers_and_units(finished):
    workdir, result = finished
    for name in ("config.json", "metrics.jsonl", "train_result.json", "checkpoints", "summaries"):
        assert os.path.exists(os.path.join(workdir, name)), name
    config = io_utils.read_json(os.path.join(workdir, "config.json"))
    assert config["flags"]["betas"] == [1.0, 1.0] and config["flags"]["latent_dims"] == [6, 4]
    assert config["model"]["input_shape"] == [8, 8, 1]
    test = result["test"]
    assert set(test["rate_nats"]) == {"z1", "z2"} == set(test["rate_bits"]) == set(test["active_units"])
    for key in ("z1", "z2"):
        assert test["rate_nats"][key] > 0
        assert np.isclose(test["rate_bits"][key], test["rate_nats"][key] / np.log(2))
    assert np.isclose(test["total_rate_nats"], sum(test["rate_nats"].values()))
    assert np.isclose(test["neg_elbo_nats"], test["distortion_nats"] + test["total_rate_nats"])
    assert result["betas"] == {"z1": 1.0, "z2": 1.0}
    assert set(result["versions"]) >= {"tensorflow", "tensorflow_probability", "numpy"}
    assert result["train_seconds"] > 0
    assert [line["epoch"] for line in lines(workdir)] == [1, 2, 3]
    for line in lines(workdir):
        assert all(0 <= line["active_units"][k] <= d for k, d in (("z1", 6), ("z2", 4)))


def test_training_lowers_the_loss(finished):
    losses = [line["loss"] for line in lines(finished[0])]
    assert losses[-1] < losses[0]


def test_finished_run_is_not_trained_again(finished, capsys):
    workdir, result = finished
    before = os.path.getmtime(runs.path(workdir, runs.TRAIN_RESULT))
    again = train.train(TrainConfig(workdir=workdir, **SMALL), verbose=True)
    assert again == result
    assert os.path.getmtime(runs.path(workdir, runs.TRAIN_RESULT)) == before
    assert "not training again" in capsys.readouterr().out


def test_same_seed_reproduces_the_run(finished, tmp_path):
    workdir = str(tmp_path / "again")
    result = train.train(TrainConfig(workdir=workdir, **SMALL), verbose=False)
    assert result["test"] == finished[1]["test"]
    for a, b in zip(weights(workdir), weights(finished[0])):
        np.testing.assert_array_equal(a, b)


def test_interrupted_run_resumes_where_it_stopped(finished, tmp_path, monkeypatch):
    workdir = str(tmp_path / "interrupted")
    original = io_utils.append_jsonl

    def crash_after_epoch_2(path, line):
        original(path, line)
        if line["epoch"] == 2:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(io_utils, "append_jsonl", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.train(TrainConfig(workdir=workdir, **SMALL), verbose=False)
    assert not os.path.exists(runs.path(workdir, runs.TRAIN_RESULT))
    # The crash came after epoch 2's metrics line but before its checkpoint: resuming drops that line.
    assert [line["epoch"] for line in lines(workdir)] == [1, 2]
    assert tf.train.latest_checkpoint(runs.path(workdir, runs.CHECKPOINTS)).endswith("ckpt-1")
    monkeypatch.setattr(io_utils, "append_jsonl", original)

    result = train.train(TrainConfig(workdir=workdir, **SMALL), verbose=False)
    assert [line["epoch"] for line in lines(workdir)] == [1, 2, 3]
    # Resuming after epoch 2 gives exactly the uninterrupted run.
    assert result["test"] == finished[1]["test"]
    for a, b in zip(weights(workdir), weights(finished[0])):
        np.testing.assert_array_equal(a, b)


def test_workdir_of_another_run_is_never_overwritten(finished):
    workdir, _ = finished
    with pytest.raises(ValueError, match=r"holds a run with other settings \(betas: 1,1 there vs 2,1 now\); "
                                         r"pick a new --workdir"):
        train.train(TrainConfig(workdir=workdir, **{**SMALL, "betas": (2.0, 1.0)}), verbose=False)


def test_non_empty_folder_without_a_run_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty but holds no config.json"):
        train.train(TrainConfig(workdir=str(tmp_path), **SMALL), verbose=False)
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("changes,message", [
    (dict(betas=(1.0,)), "--betas has 1 values but --latent_dims has 2 layers"),
    (dict(betas=(1.0, -1.0)), "must be finite and non-negative"),
    (dict(epochs=0), "--epochs must be at least 1"),
    (dict(learning_rate=0.0), "--learning_rate must be positive"),
])
def test_bad_settings_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**SMALL, **changes})


def test_batch_larger_than_the_data_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="--batch_size=5000 exceeds the 1437 training examples"):
        train.train(TrainConfig(workdir=str(tmp_path / "r"), **{**SMALL, "batch_size": 5000}), verbose=False)


def test_conv_on_small_images_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="conv architecture needs 28x28xC or 32x32xC images"):
        train.train(TrainConfig(workdir=str(tmp_path / "r"), **{**SMALL, "architecture": "conv",
                                                                "latent_dims": (32, 4)}), verbose=False)


@pytest.fixture
def parsed_flags():
    def parse(*argv):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["hvae-train", *argv])
        return train.config_from_flags()
    yield parse
    flags.FLAGS.unparse_flags()


def test_flags_list_layers_from_z1_up(parsed_flags):
    config = parsed_flags("--betas=2,0.5", "--latent_dims=10,3", "--workdir=/tmp/x")
    assert config.betas == (2.0, 0.5) and config.latent_dims == (10, 3)
    default = parsed_flags()
    assert default.betas == (1.0, 1.0) and default.latent_dims == (32, 16)
    assert default.workdir == os.path.join("runs", "digits_mlp_hvae_betas1-1_seed0")
    assert parsed_flags("--architecture=conv").latent_dims == (256, 20)
    with pytest.raises(ValueError, match="--betas must be a comma-separated list of numbers"):
        parsed_flags("--betas=one,two")


def test_categorical_top_layer_trains(tmp_path):
    result = train.train(TrainConfig(workdir=str(tmp_path / "cat"), top_latent="categorical",
                                     **{**SMALL, "latent_dims": (6, 10), "epochs": 1}), verbose=False)
    assert np.isfinite(result["test"]["neg_elbo_nats"])
    assert 0 <= result["test"]["rate_nats"]["z2"] <= np.log(10) + 1e-4


def test_tensorboard_shows_rates_in_nats_and_bits(finished):
    import tensorflow as tf
    summaries = runs.path(finished[0], runs.SUMMARIES)
    tags = set()
    for name in os.listdir(summaries):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(summaries, name)):
            tags.update(v.tag for v in event.summary.value)
    assert {"train/rate_z1_nats", "train/rate_z1_bits", "train/rate_z2_bits", "train/total_rate_bits",
            "train/distortion_nats", "train/active_units_z1", "train/kl_per_dim_z2_nats"} <= tags


def test_command_line_reports_bad_input_in_one_line(parsed_flags, tmp_path, capsys):
    with pytest.raises(ValueError):
        parsed_flags("--betas=1,1,1", f"--workdir={tmp_path / 'run'}")  # flags parsed, config refused
    with pytest.raises(SystemExit) as exit_info:
        train.main(["hvae-train"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --betas has 3 values but --latent_dims has 2 layers") and "\n" not in err
    assert not os.path.exists(tmp_path / "run")
