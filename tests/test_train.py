"""The training program: it learns, writes its files, resumes, reproduces, and rejects bad input."""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from conftest import crash_after_epoch, train_config
from hvae_repr import cli, io_utils, train
from hvae_repr.config import TrainConfig
from hvae_repr.features import load_encoder
from hvae_repr.runs import RunDir

# export=False: these runs' SavedModels are never read (test_export and test_features test it); --noexport
# itself is tested on the first of them.
SMALL = dict(dataset="digits", latent_dims=(6, 4), hidden_units=32, batch_size=128, epochs=3,
             kl_warmup_epochs=0, checkpoint_every_secs=0, seed=1, export=False)


def lines(workdir):
    with open(RunDir(workdir).file(RunDir.METRICS)) as f:
        return [json.loads(line) for line in f]


def weights(workdir):
    model, _ = RunDir(workdir).load_model()
    return [v.numpy() for v in model.trainable_variables]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("train") / "run")
    result = train.train(train_config(workdir=workdir, **SMALL), verbose=False)
    return workdir, result


def test_run_writes_every_file_with_named_layers_and_units(finished):
    workdir, result = finished
    for name in ("config.json", "metrics.jsonl", "train_result.json", "checkpoints", "summaries"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert not os.path.exists(os.path.join(workdir, "export"))  # --noexport; a default run writes it
    with pytest.raises(ValueError, match=f"run folder {workdir} has no export/ yet; write it with: python -m "
                                         "hvae_repr.export"):
        load_encoder(workdir)
    config = io_utils.read_json(os.path.join(workdir, "config.json"))
    assert config["betas"] == [1.0, 1.0] and config["model"]["latent_dims"] == [6, 4]
    assert config["model"]["input_shape"] == [8, 8, 1]
    assert RunDir(workdir).read_config() == train_config(workdir=workdir, **SMALL).with_input_shape((8, 8, 1))
    test = result["test"]
    assert set(test["rate_nats"]) == {"z1", "z2"} == set(test["rate_bits"]) == set(test["active_units"])
    for key in ("z1", "z2"):
        assert test["rate_nats"][key]["mean"] > 0 and test["rate_nats"][key]["stderr"] > 0
        assert np.isclose(test["rate_bits"][key]["mean"], test["rate_nats"][key]["mean"] / np.log(2))
    assert np.isclose(test["total_rate_nats"]["mean"], sum(r["mean"] for r in test["rate_nats"].values()))
    assert np.isclose(test["neg_elbo_nats"]["mean"], test["distortion_nats"]["mean"] + test["total_rate_nats"]["mean"])
    assert result["skipped_steps"] == 0 and "warning" in result  # digits has grey levels: not a code length
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
    before = os.path.getmtime(RunDir(workdir).file(RunDir.TRAIN_RESULT))
    again = train.train(train_config(workdir=workdir, **SMALL), verbose=True)
    assert again == result
    assert os.path.getmtime(RunDir(workdir).file(RunDir.TRAIN_RESULT)) == before
    assert "not training again" in capsys.readouterr().out


def test_same_seed_reproduces_the_run(finished, tmp_path):
    workdir = str(tmp_path / "again")
    result = train.train(train_config(workdir=workdir, **SMALL), verbose=False)
    assert result["test"] == finished[1]["test"]
    for a, b in zip(weights(workdir), weights(finished[0])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_interrupted_run_resumes_where_it_stopped(finished, tmp_path, monkeypatch):
    workdir = str(tmp_path / "interrupted")
    with crash_after_epoch(monkeypatch, 2):
        train.train(train_config(workdir=workdir, **SMALL), verbose=False)
    assert not RunDir(workdir).is_trained
    # The crash came after epoch 2's metrics line but before its checkpoint: resuming drops that line.
    assert [line["epoch"] for line in lines(workdir)] == [1, 2]
    assert RunDir(workdir).checkpoints()[0].endswith("ckpt-1")

    result = train.train(train_config(workdir=workdir, **SMALL), verbose=False)
    assert [line["epoch"] for line in lines(workdir)] == [1, 2, 3]
    # Resuming after epoch 2 gives exactly the uninterrupted run.
    assert result["test"] == finished[1]["test"]
    for a, b in zip(weights(workdir), weights(finished[0])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_cosine_schedule_decays_to_zero_and_a_resumed_run_continues_it(finished, tmp_path, monkeypatch):
    cosine = {**SMALL, "lr_schedule": "cosine", "learning_rate": 3e-3}
    whole = str(tmp_path / "whole")
    result = train.train(train_config(workdir=whole, **cosine), verbose=False)
    assert result["test"] != finished[1]["test"]  # another recipe, another model
    assert "lr_schedule" not in RunDir(finished[0]).read_config().result_settings()  # the old runs' names stay
    from hvae_repr import trainer
    schedule = trainer.learning_rate(train_config(**cosine), steps_per_epoch=10)
    assert [float(schedule(step)) for step in (0, 15, 30)] == pytest.approx([3e-3, 1.5e-3, 0.0], abs=1e-9)
    interrupted = str(tmp_path / "interrupted")
    with crash_after_epoch(monkeypatch, 2):
        train.train(train_config(workdir=interrupted, **cosine), verbose=False)
    assert train.train(train_config(workdir=interrupted, **cosine), verbose=False)["test"] == result["test"]


def test_workdir_of_another_run_is_never_overwritten(finished):
    workdir, _ = finished
    with pytest.raises(ValueError, match=r"holds a run with other settings \(betas: 1,1 there vs 2,1 now\); "
                                         r"pick a new --workdir"):
        train.train(train_config(workdir=workdir, **{**SMALL, "betas": (2.0, 1.0)}), verbose=False)


def test_non_empty_folder_without_a_run_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty but holds no config.json"):
        train.train(train_config(workdir=str(tmp_path), **SMALL), verbose=False)
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("changes,message", [
    (dict(betas=(1.0,)), "--betas has 1 values but --latent_dims has 2 layers"),
    (dict(betas=(1.0, -1.0)), "must be finite and non-negative"),
    (dict(epochs=0), "--epochs must be at least 1"),
    (dict(learning_rate=0.0), "--learning_rate must be positive"),
])
def test_bad_settings_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        train_config(**{**SMALL, **changes})


def test_batch_larger_than_the_data_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="--batch_size=5000 exceeds the 1437 training examples"):
        train.train(train_config(workdir=str(tmp_path / "r"), **{**SMALL, "batch_size": 5000}), verbose=False)


def test_conv_on_small_images_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="conv architecture needs 28x28xC or 32x32xC images"):
        train.train(train_config(workdir=str(tmp_path / "r"), **{**SMALL, "architecture": "conv",
                                                                 "latent_dims": (32, 4)}), verbose=False)


def parsed(*argv):
    flag_values = flags.FlagValues()
    train.define(flag_values)
    flag_values(["hvae-train", *argv])
    return cli.from_flags(TrainConfig, flag_values)


def test_flags_list_layers_from_z1_up():
    config = parsed("--betas=2,0.5", "--latent_dims=10,3", "--workdir=/tmp/x")
    assert config.betas == (2.0, 0.5) and config.model.latent_dims == (10, 3)
    default = parsed()
    assert default.betas == (1.0, 1.0) and default.model.latent_dims == (32, 16)
    assert default.dataset == "binary_digits" and default.kl_warmup_epochs == 0  # the paper: no warm-up for hvae
    assert parsed("--architecture=conv").model.latent_dims == (256, 20)
    with pytest.raises(ValueError, match="--betas must be a comma-separated list of float"):
        parsed("--betas=one,two")
    # The flags rebuild the same settings (the sweep launcher writes each run's command this way).
    config = parsed("--betas=0.1,3", "--likelihood=gaussian", "--epochs=7", "--inference=ladder")
    assert parsed(*cli.to_argv(config)) == config
    assert config.model.gaussian_sigma == 0.03 and config.kl_warmup_epochs == 1  # the ladder: a fifth of 7
    assert parsed("--conditional_betas", "--epochs=10").kl_warmup_epochs == 2  # a conditional model: a fifth
    # A resolved default is written out: an explicit 0 stays 0 for a model whose default is a warm-up.
    config = dataclasses.replace(config, kl_warmup_epochs=0,
                                 model=dataclasses.replace(config.model, conditional_betas=True))
    assert "--kl_warmup_epochs=0" in cli.to_argv(config) and parsed(*cli.to_argv(config)) == config


def test_derived_run_name_holds_every_setting_that_changes_the_run():
    base = parsed()
    assert os.path.dirname(base.workdir) == "runs"
    assert os.path.basename(base.workdir).startswith("binary_digits_mlp_hvae_bernoulli_z32-16_gaussian_betas1-1_seed0_")
    names = {parsed(*argv).workdir for argv in [
        (), ("--latent_dims=32,8",), ("--likelihood=gaussian",), ("--top_latent=categorical",), ("--epochs=3",),
        ("--learning_rate=0.001",), ("--betas=1,2",), ("--gaussian_sigma=0.1", "--likelihood=gaussian")]}
    assert len(names) == 8
    # Where the files are and how fast they are made do not change the run, nor its name.
    assert parsed("--threads=1", "--data_dir=/elsewhere", "--checkpoint_every_secs=5").workdir == base.workdir
    # Settings added later leave the names of earlier runs as they were (names computed before them).
    assert train_config(dataset="digits").run_name() == "digits_mlp_hvae_bernoulli_z32-16_gaussian_betas1-1_seed0_17a51277"
    assert train_config(dataset="binary_mnist", architecture="conv", epochs=20, conditional_betas=True).run_name() == \
        "binary_mnist_conv_hvae_bernoulli_z256-20_gaussian_betas1-1_seed0_fa8296b8"
    assert parsed("--init_from=/a/run").workdir != base.workdir


def test_categorical_top_layer_trains(tmp_path, monkeypatch):
    result = train.train(train_config(workdir=str(tmp_path / "cat"), top_latent="categorical",
                                      **{**SMALL, "latent_dims": (6, 10), "epochs": 1}), verbose=False)
    assert np.isfinite(result["test"]["neg_elbo_nats"]["mean"])
    assert 0 <= result["test"]["rate_nats"]["z2"]["mean"] <= np.log(10) + 1e-4
    # Its figures get one row of samples per category.
    from evaluation import model_figures
    from hvae_repr import data
    model, config = RunDir(str(tmp_path / "cat")).load_model()
    drawn, draw = {}, model_figures.draw_grid
    monkeypatch.setattr(model_figures, "draw_grid", lambda path, images, columns, title, rows=(), *a: (
        drawn.setdefault(os.path.basename(path), (len(images), columns, rows)), draw(path, images, columns, title,
                                                                                    rows, *a)))
    section = model_figures.write_figures(model, data.load_dataset("digits", None).x_test[:8], 0, config.betas,
                                          str(tmp_path / "cat"))
    per_row = model_figures.NUM_RESAMPLES
    assert drawn["samples_by_category.png"] == (10 * per_row, per_row, [f"z2={k}" for k in range(10)])
    assert section["files"]["samples_by_category"] == "figures/samples_by_category.png"
    assert os.path.getsize(tmp_path / "cat" / section["files"]["samples_by_category"]) > 1000


def test_tensorboard_shows_rates_in_nats_and_bits(finished):
    import tensorflow as tf
    summaries = RunDir(finished[0]).file(RunDir.SUMMARIES)
    tags = set()
    for name in os.listdir(summaries):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(summaries, name)):
            tags.update(v.tag for v in event.summary.value)
    assert {"train/rate_z1_nats", "train/rate_z1_bits", "train/rate_z2_bits", "train/total_rate_bits",
            "train/distortion_nats", "train/active_units_z1", "train/kl_per_dim_z2_nats",
            "images/test_and_reconstruction", "images/prior_samples"} <= tags


# ------------------------------------------------ NaN steps, and a crash while writing a checkpoint
def _marked_digits(tmp_path):
    """Digits as an npz data set whose first training image is all 0.5: a marker the poisoned model sees."""
    from hvae_repr.data import load_dataset
    ds = load_dataset("digits")
    x_train = ds.x_train.copy()
    x_train[0] = 0.5
    path = tmp_path / "marked.npz"
    np.savez(path, x_train=x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test)
    return f"npz:{path}"


def _poison_marked_batches(monkeypatch, armed):
    """Makes the distortion NaN for training batches holding the marked image while `armed` is True."""
    from hvae_repr.model import HierarchicalVAE
    original = HierarchicalVAE.terms

    def terms(self, x, seed, training=False, temperature=None, betas=None):
        out = original(self, x, seed, training, temperature, betas)
        if training:
            marked = tf.reduce_any(tf.reduce_all(tf.equal(x, 0.5), axis=[1, 2, 3])) & armed
            out["distortion"] = tf.where(marked, tf.constant(np.nan, tf.float32), out["distortion"])
        return out
    monkeypatch.setattr(HierarchicalVAE, "terms", terms)


def test_nan_steps_are_skipped_and_counted(tmp_path, monkeypatch):
    _poison_marked_batches(monkeypatch, tf.Variable(True))
    workdir = str(tmp_path / "run")
    result = train.train(train_config(workdir=workdir, **{**SMALL, "dataset": _marked_digits(tmp_path),
                                                          "max_bad_steps": 3}), verbose=False)
    # One batch per epoch holds the marked image: one skipped step per epoch, no update from it.
    assert result["skipped_steps"] == SMALL["epochs"]
    assert [line["skipped_steps"] for line in lines(workdir)] == [1, 1, 1]
    assert all(np.isfinite(line["loss"]) for line in lines(workdir))
    assert all(np.all(np.isfinite(w)) for w in weights(workdir))


def test_too_many_bad_steps_stop_with_the_step_and_term_and_keep_the_last_checkpoint(tmp_path, monkeypatch):
    from hvae_repr.trainer import TrainingDiverged
    armed = tf.Variable(False)
    _poison_marked_batches(monkeypatch, armed)
    original = io_utils.append_jsonl

    def arm_after_epoch_1(path, line):
        original(path, line)
        armed.assign(True)
    monkeypatch.setattr(io_utils, "append_jsonl", arm_after_epoch_1)
    workdir = str(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match=r"training stopped at step 1\d: 1 step in a row had a NaN or "
                                               r"infinite loss, distortion; the last checkpoint .*\(after epoch 1\)"):
        train.train(train_config(workdir=workdir, **{**SMALL, "dataset": _marked_digits(tmp_path),
                                                     "max_bad_steps": 1}), verbose=False)
    run = RunDir(workdir)
    assert not run.is_trained and run.checkpoints()[0].endswith("ckpt-1")
    assert all(np.all(np.isfinite(w)) for w in weights(workdir))  # the last good checkpoint loads


KILL_DURING_SECOND_CHECKPOINT = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from conftest import train_config
import tensorflow as tf
from hvae_repr.train import train

save = tf.train.CheckpointManager.save

def save_then_die(self, *args, **kwargs):
    path = save(self, *args, **kwargs)
    if kwargs.get("checkpoint_number") == 2:  # the state file already names ckpt-2: cut its data, then die
        data = path + ".data-00000-of-00001"
        with open(data, "r+b") as f:
            f.truncate(os.path.getsize(data) // 3)
        os.kill(os.getpid(), signal.SIGKILL)
    return path

tf.train.CheckpointManager.save = save_then_die
train(train_config(workdir=sys.argv[1], **{settings}), verbose=False)
"""


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_then_resume_gives_the_uninterrupted_result(finished, tmp_path, capsys):
    import subprocess
    import sys
    workdir = str(tmp_path / "killed")
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_SECOND_CHECKPOINT.replace("{settings}", repr(SMALL)),
                           workdir, tests_dir], cwd=os.path.dirname(tests_dir), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = RunDir(workdir)
    assert run.checkpoints()[0].endswith("ckpt-2") and not run.is_trained
    result = train.train(train_config(workdir=workdir, **SMALL), verbose=True)
    out = capsys.readouterr().out
    assert "ckpt-2 is unreadable" in out and "resuming" in out and "ckpt-1" in out
    assert "\r" not in out and "epoch 2/3  loss=" in out and "epoch 3/3  loss=" in out  # no terminal: no live line
    assert result["test"] == finished[1]["test"]
    for a, b in zip(weights(workdir), weights(finished[0])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_betas_trade_information_between_the_layers(tmp_path):
    # The method's central claim: a large beta on one layer and a small one on the other moves the rate
    # (information about x) to the cheap layer. Two-layer mlp on binarized digits, 12 epochs each (measured:
    # each cheap layer then holds about 80x the other run's rate in that layer; the assertion asks for 2x).
    rates = {}
    for betas in ((0.1, 10.0), (10.0, 0.1)):
        result = train.train(train_config(workdir=str(tmp_path / f"b{betas[0]:g}"), dataset="binary_digits",
                                          latent_dims=(8, 4), hidden_units=64, batch_size=128, epochs=12, seed=0,
                                          betas=betas), verbose=False)
        rates[betas] = {k: v["mean"] for k, v in result["test"]["rate_nats"].items()}
    cheap_z1, cheap_z2 = rates[(0.1, 10.0)], rates[(10.0, 0.1)]
    assert cheap_z1["z1"] > 2 * cheap_z2["z1"] and cheap_z2["z2"] > 2 * cheap_z1["z2"], rates


class _Terminal:
    """A stdout that says it is a terminal, and keeps what is written."""
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_is_a_live_line_on_a_terminal_and_a_compact_line_every_log_every_epochs(tmp_path, monkeypatch):
    import sys
    from hvae_repr import trainer
    assert [e for e in range(1, 301) if trainer.should_log(e, 0, train_config(epochs=300))] == \
        [1] + list(range(15, 301, 15))  # the default: about 20 lines per run
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "300")  # the live line is cut at the terminal's width
    monkeypatch.setattr(trainer.progress.time, "monotonic", lambda c=iter(range(10 ** 6)): next(c))  # no throttle
    workdir = str(tmp_path / "run")
    train.train(train_config(workdir=workdir, **{**SMALL, "epochs": 4, "log_every": 3}), verbose=True)
    out = terminal.text
    live = [part for part in out.split("\r") if part.startswith("\033[Kepoch 2/4 step")]
    assert live and "loss=" in live[-1] and "D=" in live[-1] and "R(z2)=" in live[-1] and "R(z1)=" in live[-1]
    assert "steps/s" in live[-1] and "left in the epoch" in live[-1] and "in the run" in live[-1]
    compact = [line.split("\033[K")[-1] for line in out.splitlines() if "  loss=" in line and " nats  (" in line]
    assert [line.split()[1] for line in compact] == ["1/4", "3/4", "4/4"], out  # epoch 2 only in metrics.jsonl
    assert "steps/s" in compact[0] and "left)" in compact[0] and "left" not in compact[-1].split("(")[-1]
    assert [line["epoch"] for line in lines(workdir)] == [1, 2, 3, 4]


def test_test_set_objective_every_n_epochs_goes_to_metrics_and_tensorboard(tmp_path):
    settings = dict(SMALL, epochs=2, betas=(0.5, 2.0), test_every_epochs=1)
    workdir = str(tmp_path / "tested")
    result = train.train(train_config(workdir=workdir, **settings), verbose=False)
    tested = [line["test"] for line in lines(workdir)]
    assert len(tested) == 2 and tested[0] != tested[1]
    last, test = tested[-1], result["test"]  # the same pass and seeds as the final result
    assert last["distortion_nats"] == pytest.approx(test["distortion_nats"]["mean"], rel=1e-12)
    for name in ("z1", "z2"):
        assert last["rate_nats"][name] == pytest.approx(test["rate_nats"][name]["mean"], rel=1e-12)
    assert last["objective_nats"] == pytest.approx(last["distortion_nats"] + 0.5 * last["rate_nats"]["z1"]
                                                   + 2.0 * last["rate_nats"]["z2"], rel=1e-12)
    # Not a setting of what is trained: the run's name and weights are those of the run without it.
    assert train_config(**settings).run_name() == train_config(**dict(settings, test_every_epochs=0)).run_name()
    tags = set()
    summaries = RunDir(workdir).file(RunDir.SUMMARIES)
    for name in os.listdir(summaries):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(summaries, name)):
            tags.update(v.tag for v in event.summary.value)
    assert {"test/objective_nats", "test/distortion_nats", "test/rate_z1_nats", "test/rate_z2_nats"} <= tags
