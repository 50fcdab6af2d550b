"""Faults a cluster user meets: a diverging run, preemption (SIGTERM, SIGINT) in training, evaluation and
a sweep, a full or read-only disk, and damaged or foreign files. Each is injected, and the test checks the
exit status, the one line, the files left intact and, where one applies, the exact resume."""
import dataclasses
import errno
import json
import os
import shutil
import signal
import sys
import threading
import time

import numpy as np
import pytest

from conftest import run_in_process, train_config
from hvae_repr import cli, io_utils, preemption, train, trainer
from hvae_repr.runs import RunDir

# 1437 digits training examples in batches of 128: 11 steps per epoch.
SETTINGS = dict(dataset="digits", latent_dims=(6, 4), hidden_units=32, batch_size=128, epochs=3,
                kl_warmup_epochs=0, seed=1, images_every_epochs=0)
STEPS = 11


def metrics(workdir, drop=("train_seconds",)):
    with open(RunDir(workdir).file(RunDir.METRICS)) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in f]


def weights(workdir):
    model, _ = RunDir(workdir).load_model()
    return [v.numpy() for v in model.trainable_variables]


def assert_same_run(workdir, reference):
    """The run in `workdir` ended exactly as the uninterrupted `reference` (workdir, result)."""
    result = io_utils.read_json(RunDir(workdir).file(RunDir.TRAIN_RESULT))
    assert result["test"] == reference[1]["test"] and result["skipped_steps"] == reference[1]["skipped_steps"]
    assert metrics(workdir) == metrics(reference[0])
    for a, b in zip(weights(workdir), weights(reference[0])):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (a checkpoint after every epoch)."""
    workdir = str(tmp_path_factory.mktemp("faults") / "reference")
    return workdir, train.train(train_config(workdir=workdir, checkpoint_every_secs=0, **SETTINGS), verbose=False)


def argv_of(config):
    return ["hvae-train", *cli.to_argv(config)]


def signal_at_step(monkeypatch, step, signum):
    """Sends `signum` to this process just before global training step `step` runs (from the temperature
    schedule, which the loop asks once per step)."""
    original = trainer.gumbel_temperature
    sent = []

    def hook(config, epoch, at):
        if at == step and not sent:
            sent.append(at)
            os.kill(os.getpid(), signum)
        return original(config, epoch, at)
    monkeypatch.setattr(trainer, "gumbel_temperature", hook)


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


# ------------------------------------------------------------------ a diverging run
def test_the_diverging_run_of_the_issue_ends_in_a_flagged_result_and_evaluating_it_in_one_line(tmp_path, capsys):
    from evaluation import evaluate
    workdir = str(tmp_path / "diverged")
    # python -m hvae_repr.train --dataset=digits --epochs=4 --learning_rate=1e9 --betas=1,1 --seed=0
    run_in_process(train.define, train.main, ["hvae-train", "--dataset=digits", "--epochs=4", "--learning_rate=1e9",
                                              "--betas=1,1", "--seed=0", f"--workdir={workdir}"])
    out = capsys.readouterr().out
    lines = metrics(workdir)
    # Epoch 1 has finite steps, epochs 2 to 4 none: their lines hold nulls, and the log says why.
    assert lines[0]["loss"] is not None and lines[0]["skipped_steps"] == 4
    assert [l["skipped_steps"] for l in lines[1:]] == [5, 5, 5]
    assert all(l["loss"] is None and l["rate_nats"] == {"z1": None, "z2": None} for l in lines[1:])
    assert "every step had a NaN or infinite loss or gradient and was skipped" in out
    result = io_utils.read_json(RunDir(workdir).file(RunDir.TRAIN_RESULT))
    test = result["test"]
    assert test["non_finite"]["rate_nats"] == {"z1": 360, "z2": 360}
    assert "NaN or infinite rate of z1 on 360 of 360" in test["warning"] and "warning: NaN or infinite" in out
    assert result["skipped_steps"] == 19
    # The evaluation refuses the diverged model in one line, before writing anything.
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(evaluate.define, evaluate.main, ["hvae-evaluate", f"--workdir={workdir}"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err, err
    assert err.startswith(f"error: {workdir}: the model gives a NaN or infinite rate of z1 on 360 of 360") and \
        "cannot be evaluated" in err, err
    assert not RunDir(workdir).is_evaluated


def test_too_many_bad_steps_end_the_command_in_one_line(tmp_path, capsys):
    workdir = str(tmp_path / "diverged")
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(train.define, train.main, ["hvae-train", "--dataset=digits", "--epochs=4",
                                                  "--learning_rate=1e9", "--max_bad_steps=3", f"--workdir={workdir}"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and "\n" not in err and "Traceback" not in err, err
    assert err.startswith("error: training stopped at step 3: 3 steps in a row had a NaN or infinite"), err
    assert not RunDir(workdir).is_trained


# ------------------------------------------------------------------ preemption
def test_signals_stop_training_at_a_step_and_the_resumed_run_equals_the_uninterrupted_one(reference, tmp_path,
                                                                                          monkeypatch, capsys):
    workdir = str(tmp_path / "preempted")
    config = train_config(workdir=workdir, **SETTINGS)  # checkpoints every 30 s: only the signals write them
    run = RunDir(workdir)

    # Ctrl-C in epoch 2 (global step 15 is its 5th): the step finishes, a checkpoint holds the epoch so far.
    signal_at_step(monkeypatch, STEPS + 4, signal.SIGINT)
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(train.define, train.main, argv_of(config))
    err = capsys.readouterr().err
    assert exit_info.value.code == 130
    assert last_line(err) == (f"interrupted by SIGINT: stopped in epoch 2 after step 5 of {STEPS}; checkpoint "
                              f"{run.file('checkpoints')}/ckpt-2 written; rerun the same command "
                              f"(--workdir={workdir}) to resume"), err
    assert [os.path.basename(p) for p in run.checkpoints()] == ["ckpt-2"] and not run.is_trained
    assert [l["epoch"] for l in metrics(workdir)] == [1]

    # Resumed; a SIGTERM during the last step of epoch 2 stops it at the epoch's end.
    signal_at_step(monkeypatch, 2 * STEPS - 1, signal.SIGTERM)
    with pytest.raises(preemption.Interrupted) as stopped:
        train.train(config, verbose=True)
    assert stopped.value.exit_status == 143 and "stopped after epoch 2;" in stopped.value.line
    assert f"resuming {workdir} in epoch 2 after step 5 (ckpt-2)" in capsys.readouterr().out
    assert [os.path.basename(p) for p in run.checkpoints()] == ["ckpt-2"]  # ckpt-2 now holds all of epoch 2

    # Resumed at an epoch's start; SIGTERM again in epoch 3, then the run is finished.
    signal_at_step(monkeypatch, 2 * STEPS + 7, signal.SIGTERM)
    with pytest.raises(preemption.Interrupted, match=f"stopped in epoch 3 after step 8 of {STEPS}"):
        train.train(config, verbose=False)
    monkeypatch.undo()
    train.train(config, verbose=False)
    assert_same_run(workdir, reference)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handlers are put back


# ------------------------------------------------------------------ a full or read-only disk
def _fails_once(monkeypatch, owner, name, when, error):
    """owner.name raises `error` on its first call for which when(*args, **kwargs) holds."""
    original = getattr(owner, name)
    state = {"failed": False}

    def writer(*args, **kwargs):
        if not state["failed"] and when(*args, **kwargs):
            state["failed"] = True
            raise error
        return original(*args, **kwargs)
    monkeypatch.setattr(owner, name, writer)


def _command_fails(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(train.define, train.main, argv_of(config))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and "\n" not in err and err.startswith("error: cannot write "), err
    return err


def test_failed_writes_are_one_line_keep_what_was_written_and_a_rerun_resumes_exactly(reference, tmp_path,
                                                                                       monkeypatch, capsys):
    import tensorflow as tf
    workdir = str(tmp_path / "full_disk")
    config = train_config(workdir=workdir, checkpoint_every_secs=0, **SETTINGS)
    run = RunDir(workdir)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # The checkpoint after epoch 2 (TensorFlow's own error type, as its writer raises it).
    _fails_once(monkeypatch, tf.train.CheckpointManager, "save", lambda self, checkpoint_number=None: checkpoint_number == 2,
                tf.errors.ResourceExhaustedError(None, None, "ckpt-2_temp/part-00000: No space left on device"))
    err = _command_fails(config, capsys)
    assert err == (f"error: cannot write {run.file('checkpoints')}/ckpt-2 (ckpt-2_temp/part-00000: No space left on "
                   f"device); the previous checkpoint ckpt-1 is intact; free space (or fix the permissions), then "
                   f"rerun the same command to resume")
    assert [os.path.basename(p) for p in run.checkpoints()] == ["ckpt-1"] and weights(workdir)

    # Epoch 3's metrics line, cut short by the full disk.
    original_append = io_utils.append_jsonl

    def half_a_line(path, line):
        if line["epoch"] == 3:
            with open(path, "a") as f:
                f.write(json.dumps(line)[:40])
            raise full
        original_append(path, line)
    monkeypatch.setattr(io_utils, "append_jsonl", half_a_line)
    err = _command_fails(config, capsys)
    assert err.startswith(f"error: cannot write {run.file('metrics.jsonl')} (No space left on device); the "
                          f"checkpoints are intact"), err
    monkeypatch.setattr(io_utils, "append_jsonl", original_append)

    # export/ (its SavedModel), then train_result.json on a read-only disk.
    _fails_once(monkeypatch, tf.saved_model, "save", lambda *a, **k: True, full)
    err = _command_fails(config, capsys)
    assert err.startswith(f"error: cannot write {run.file('export')} (No space left on device)"), err
    assert not os.path.exists(run.file("export")) and not run.is_trained
    _fails_once(monkeypatch, io_utils, "write_json_atomic", lambda path, obj: path.endswith("train_result.json"),
                OSError(errno.EROFS, os.strerror(errno.EROFS)))
    err = _command_fails(config, capsys)
    assert err.startswith(f"error: cannot write {run.file('train_result.json')} (Read-only file system); the "
                          f"checkpoints and export/ are intact"), err
    assert os.path.isfile(run.file("export/saved_model.pb")) and not run.is_trained

    run_in_process(train.define, train.main, argv_of(config))  # with space again
    assert_same_run(workdir, reference)


def test_evaluation_stopped_by_a_signal_or_a_full_disk_writes_nothing(reference, tmp_path, monkeypatch, capsys):
    from evaluation import evaluate as ev
    workdir = str(tmp_path / "run")
    shutil.copytree(reference[0], workdir)
    run = RunDir(workdir)
    options = ev.resolved(ev.EvalOptions(), run.read_config())
    earlier = {"settings": dataclasses.asdict(options), "note": "an earlier evaluation"}
    io_utils.write_json_atomic(run.file(run.EVAL_RESULT), earlier)
    earlier = io_utils.read_json(run.file(run.EVAL_RESULT))
    argv = ["hvae-evaluate", f"--workdir={workdir}"]

    def rates_then_sigterm(inp):
        section = ev.stages.rates(inp)
        os.kill(os.getpid(), signal.SIGTERM)
        return section
    monkeypatch.setattr(ev, "STAGES", (ev.Stage("rates", rates_then_sigterm),) + ev.STAGES[1:])
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(ev.define, ev.main, argv)
    assert exit_info.value.code == 143
    assert last_line(capsys.readouterr().err) == (
        f"interrupted by SIGTERM: the evaluation of {workdir} stopped before its importance_weighted stage; "
        f"eval_result.json was not written; rerun the same command to evaluate it")
    assert io_utils.read_json(run.file(run.EVAL_RESULT)) == earlier

    monkeypatch.setattr(ev, "evaluate", lambda workdir, options, inp: {"settings": dataclasses.asdict(options)})
    _fails_once(monkeypatch, io_utils, "write_json_atomic", lambda path, obj: True, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(ev.define, ev.main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and err == (
        f"error: cannot write {run.file(run.EVAL_RESULT)} (No space left on device); the run (and an earlier "
        f"eval_result.json) is intact; free space (or fix the permissions), then rerun the same command"), err
    assert io_utils.read_json(run.file(run.EVAL_RESULT)) == earlier
    assert not [n for n in os.listdir(workdir) if n.startswith(".tmp")]


# ------------------------------------------------------------------ damaged or foreign files
def test_damaged_result_files_are_kept_aside_and_made_again(reference, tmp_path, monkeypatch):
    from launch import engines, point, sweep
    workdir = str(tmp_path / "run")
    shutil.copytree(reference[0], workdir)
    run = RunDir(workdir)
    with open(run.file(run.TRAIN_RESULT), "r+") as f:
        f.truncate(100)  # cut short
    assert run.damaged(run.TRAIN_RESULT).startswith("train_result.json is damaged (") and run.damaged("nothing") is None
    assert not point.is_finished(run, evaluate=False)
    # The launcher reports it in one line and runs the point again.
    command = sweep.SweepCommand(root=str(tmp_path), evaluate=False)
    job = engines.Job(index=0, workdir=workdir, argv=(), threads=1)
    ran, logged = [], []
    monkeypatch.setattr(engines, "run_local", lambda jobs, workers, on_finish=None: ran.extend(jobs) or ["done"] * len(jobs))
    done = sweep.sweep(command, [job], log=logged.append)["done"]  # (the jobs run carry the launch's id)
    assert [j.workdir for j in done] == [workdir] and [j.workdir for j in ran] == [workdir]
    assert logged[0].startswith(f"point 0 {workdir}: train_result.json is damaged (") and "it runs again" in logged[0]
    # The point keeps the damaged file as train_result.json.damaged and makes it again from the last checkpoint.
    config = dataclasses.replace(run.read_config(), workdir=workdir)
    assert point.run_point(point.PointCommand(evaluate=False, train=config), verbose=False) == point.EXIT_DONE
    assert os.path.getsize(run.file("train_result.json.damaged")) == 100
    assert io_utils.read_json(run.file(run.TRAIN_RESULT))["test"] == reference[1]["test"]


def test_a_point_folder_deleted_during_the_sweep_is_reported_in_one_line(tmp_path, monkeypatch):
    from launch import engines, sweep
    workdir = str(tmp_path / "gone")
    job = engines.Job(index=3, workdir=workdir, argv=(), threads=1)
    monkeypatch.setattr(engines, "command", lambda job: [sys.executable, "-c", "import shutil, sys; "
                                                         "shutil.rmtree(sys.argv[1]); sys.exit(1)", job.workdir])
    assert engines.run_job(job) == "failed"
    text = sweep.summary({"done": [], "skipped": [], "busy": [], "failed": [job]}, 1.0)
    assert f"  failed: point 3 {workdir}: its folder {workdir} is gone (deleted during the sweep?)" in text


def test_a_damaged_export_is_one_line(reference, tmp_path):
    from hvae_repr.features import load_encoder
    for name, damage in (("saved_model.pb", b"\x08\x01garbage"), ("hvae_repr.json", b'{"latent_na')):
        export = tmp_path / name / "export"
        shutil.copytree(RunDir(reference[0]).file(RunDir.EXPORT), export)
        (export / name).write_bytes(damage)
        with pytest.raises(ValueError) as error:
            load_encoder(export)
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"the SavedModel in {export} is damaged (") and \
            "python -m hvae_repr.export --workdir=RUN" in message, message


def test_aggregate_marks_damaged_and_foreign_folders_and_goes_on(tmp_path, capsys):
    from evaluation import aggregate
    good = {"betas": {"z1": 1.0}, "dataset": "fake", "epochs": 1,
            "test": {"rate_nats": {"z1": {"mean": 2.0, "stderr": 0.1}}, "distortion_nats": {"mean": 50.0},
                     "total_rate_nats": {"mean": 2.0}, "neg_elbo_nats": {"mean": 52.0}}}
    for folder in ("good", "truncated_eval", "not_json_train"):
        os.makedirs(tmp_path / folder)
        io_utils.write_json_atomic(str(tmp_path / folder / "train_result.json"), good)
    text = json.dumps({"rates": {}}, indent=1)
    (tmp_path / "truncated_eval" / "eval_result.json").write_text(text[:len(text) // 2])
    (tmp_path / "not_json_train" / "train_result.json").write_text("<html>proxy error</html>")
    os.makedirs(tmp_path / "someone" / "data")
    (tmp_path / "someone" / "data" / "notes.txt").write_text("mine")
    aggregate.aggregate(str(tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("warning: ") for line in err), err
    assert f"warning: {tmp_path / 'someone/data'}: foreign: holds no run's files (1 other files: notes.txt)" in err
    with open(tmp_path / "results.csv") as f:
        import csv
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert {k: r["status"] for k, r in rows.items()} == {"good": "trained", "truncated_eval": "damaged",
                                                         "not_json_train": "damaged", "someone/data": "foreign"}
    assert rows["truncated_eval"]["error"].startswith("eval_result.json is damaged (")
    assert rows["not_json_train"]["error"].startswith("train_result.json is damaged (")
    assert rows["truncated_eval"]["rate_nats_z1"] == "" and rows["good"]["rate_nats_z1"] == "2.0"
    summary = (tmp_path / "summary.md").read_text()
    assert "1 damaged" not in summary and "2 damaged, 1 foreign" in summary and "## Damaged" in summary


# ------------------------------------------------------------------ a sweep (real point processes)
@pytest.mark.slow  # real point processes
def test_a_sigterm_stops_a_sweep_its_running_point_checkpoints_and_a_rerun_finishes_the_points(tmp_path, capsys):
    from launch import sweep
    root = tmp_path / "sweep"
    argv = ["sweep", f"--root={root}", "--betas_1=0.5", "--betas_2=1", "--noevaluate", "--dataset=digits",
            "--latent_dims=4,2", "--hidden_units=16", "--batch_size=128", "--epochs=8",
            "--checkpoint_every_secs=1000", "--noexport"]

    def sigterm_once_a_point_has_trained_an_epoch():
        deadline = time.time() + 300
        while time.time() < deadline:
            if os.path.isdir(root) and any(os.path.isfile(root / d / RunDir.METRICS) for d in os.listdir(root)):
                os.kill(os.getpid(), signal.SIGTERM)  # to the launcher, as a scheduler sends it
                return
            time.sleep(0.05)
    watcher = threading.Thread(target=sigterm_once_a_point_has_trained_an_epoch, daemon=True)
    watcher.start()
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(sweep.define, sweep.main, argv)
    watcher.join()
    captured = capsys.readouterr()
    assert exit_info.value.code == 143, captured.out + captured.err
    assert "interrupted 1, not started 0 (the same command finishes them)" in captured.out
    assert last_line(captured.err) == "interrupted by SIGTERM: 1 points unfinished; rerun the same command to finish them"
    [record_file] = [f for f in os.listdir(root) if f.startswith("sweep_")]
    record = io_utils.read_json(str(root / record_file))
    assert record["interrupted_by"] == "SIGTERM"
    assert [p["index"] for p in record["points"]["interrupted"]] == [0]
    assert record["points"]["not_started"] == []
    first = RunDir(record["points"]["interrupted"][0]["workdir"])
    assert f"  interrupted: point 0 {first.path} (its checkpoint is written; it resumes)" in captured.out
    with open(first.file(first.LOG)) as f:
        log = f.read()
    assert "interrupted by SIGTERM: stopped " in log and "rerun the same command" in log, log
    assert first.checkpoints() and not first.is_trained and not os.path.exists(first.file(first.ERROR))

    with pytest.raises(SystemExit) as exit_info:  # the same command finishes the point
        run_in_process(sweep.define, sweep.main, argv)
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "done 1, skipped (finished already) 0" in out, out
    with open(first.file(first.LOG)) as f:
        assert "resuming " in f.read()
    assert first.is_trained


class RecordingChild:
    """A point process as engines.forward_signal sees it: it records each signal it is sent."""

    def __init__(self):
        self.sent = []

    def send_signal(self, signum):
        self.sent.append(signum)


def test_a_point_is_not_started_after_a_signal_and_forwarding_counts_each_signal(tmp_path, monkeypatch):
    from launch import engines
    job = engines.Job(index=1, workdir=str(tmp_path / "later"), argv=(), threads=1)

    child = RecordingChild()
    with preemption.deferred(engines.forward_signal):
        engines._children[child] = {}
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # a repeated SIGTERM is forwarded, and ignored by the points
            engines.forward_signal(signal.SIGTERM)  # once more, by a point's thread: nothing new to send
            assert engines.run_job(job) == "not_started" and not os.path.exists(job.workdir)
        finally:
            engines._children.pop(child)
    assert child.sent == [signal.SIGTERM, signal.SIGTERM]


def test_a_ray_tasks_cancel_reaches_its_point_as_sigterm_wherever_the_task_is(tmp_path):
    """Ray cancels a running task with _thread.interrupt_main (a simulated SIGINT): _ray_job's block records
    it as SIGTERM, so it stops a point that is starting or training (forwarded once per cancel, never as a second
    SIGINT that would stop the point without its checkpoint), and one that has not started does not start."""
    import _thread
    from launch import engines

    child = RecordingChild()
    job = engines.Job(index=1, workdir=str(tmp_path / "later"), argv=(), threads=1)
    before, sigterm = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with engines.cancel_as_sigterm():
        assert signal.getsignal(signal.SIGTERM) is sigterm  # Ray's own (the worker exits; Ray retries the task)
        engines._children[child] = {}
        try:
            for _ in range(2):  # a cancel sent twice
                _thread.interrupt_main()
                time.sleep(0.01)  # the handler runs between bytecodes of this (the main) thread
            assert preemption.received() == signal.SIGTERM and preemption.times_received(signal.SIGINT) == 0
            assert engines.run_job(job) == "not_started" and not os.path.exists(job.workdir)
        finally:
            engines._children.pop(child)
    assert child.sent == [signal.SIGTERM, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is before  # put back after the task
