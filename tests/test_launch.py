"""The sweep launcher: grid expansion, run naming, skipping and resuming, failures, two launchers on one
root, and the Ray engine."""
import json
import os
import subprocess
import sys

import pytest

from conftest import crash_after_epoch, run_in_process
from absl import flags

from hvae_repr import cli, io_utils, machine
from hvae_repr.runs import RunDir
from launch import engines, grid, point, sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset=binary_digits", "--latent_dims=4,2", "--hidden_units=16", "--batch_size=128", "--epochs=2",
        "--checkpoint_every_secs=0", "--noexport",
        "--eval_num_generated=100", "--eval_generative_draws=200", "--eval_classifier_epochs=1",
        "--eval_classifier_min_steps=20",
        "--eval_probe_names=logistic_regression", "--eval_probe_jobs=1", "--eval_layers=top", "--noeval_figures"]


# ------------------------------------------------------------------ the grid
def test_logspace_and_explicit_lists():
    assert grid.parse_betas("logspace:0.1,10,5", 1) == [0.1, 0.316228, 1.0, 3.16228, 10.0]
    assert len(grid.parse_betas("logspace:0.1,10,21", 2)) == 21
    assert grid.parse_betas("0.3, 3", 1) == [0.3, 3.0] and grid.parse_betas("logspace:2,2,1", 1) == [2.0]
    points = grid.expand([[0.3, 3.0], [0.1, 1.0, 10.0]])
    assert points == [(0.3, 0.1), (0.3, 1.0), (0.3, 10.0), (3.0, 0.1), (3.0, 1.0), (3.0, 10.0)]  # z1 slowest


@pytest.mark.parametrize("text,message", [("logspace:0.1,10", "logspace:LOW,HIGH,N"), ("logspace:10,0.1,3", "LOW <= HIGH"),
                                          ("a,b", "--betas_2='a,b' is neither"), ("", "neither"), ("1,-2", "non-negative")])
def test_bad_beta_lists_are_one_line_errors(text, message):
    with pytest.raises(ValueError, match=message):
        grid.parse_betas(text, 2)


def test_one_list_per_layer():
    assert len(grid.grid_from_flags({1: "1,2", 2: "3"}, 2)) == 2
    with pytest.raises(ValueError, match=r"the model has 2 latent layers .* \(missing --betas_2\)"):
        grid.grid_from_flags({1: "1,2"}, 2)
    with pytest.raises(ValueError, match=r"\(--betas_3 given\)"):
        grid.grid_from_flags({1: "1", 2: "2", 3: "3"}, 2)


def test_a_grid_of_target_rates_mixes_target_and_beta_layers():
    assert grid.parse_values("linspace:0,30,4", "--target_rates_2", "rates") == [0.0, 10.0, 20.0, 30.0]
    points = grid.target_grid({2: "5"}, {1: "10,40"}, 2, (1.0, 1.0))
    assert points == [((1.0, 5.0), ("10", "-")), ((1.0, 5.0), ("40", "-"))]
    with pytest.raises(ValueError, match="layer z2 needs either --target_rates_2 .* not neither"):
        grid.target_grid({}, {1: "10"}, 2, (1.0, 1.0))
    with pytest.raises(ValueError, match="non-negative rates"):
        grid.target_grid({}, {1: "10", 2: "-3"}, 2, (1.0, 1.0))


# ------------------------------------------------------------------ planning and the command line
def _command(*argv):
    flag_values = flags.FlagValues()
    sweep.define(flag_values)
    flag_values(["sweep", *argv])
    command = sweep.command_from_flags(flag_values)
    texts = {l: flag_values[f"betas_{l}"].value for l in range(1, sweep.MAX_LAYERS + 1)}
    return command, texts


def test_each_point_gets_a_folder_named_from_its_settings_and_a_command_that_rebuilds_them(tmp_path):
    command, texts = _command(f"--root={tmp_path}", "--betas_1=0.3,3", "--betas_2=logspace:0.1,10,3", "--workers=2",
                              *TINY)
    jobs = sweep.plan(command, texts, cores=2)
    assert [j.index for j in jobs] == list(range(6)) and len({j.workdir for j in jobs}) == 6
    for job, betas in zip(jobs, grid.expand([[0.3, 3.0], [0.1, 1.0, 10.0]])):
        assert os.path.dirname(job.workdir) == str(tmp_path) and job.threads == 1
        assert f"betas{betas[0]:g}-{betas[1]:g}" in os.path.basename(job.workdir)
        flag_values = flags.FlagValues()
        point.define(flag_values)
        flag_values(["point", *job.argv])
        rebuilt = cli.from_flags(point.PointCommand, flag_values)
        assert rebuilt.train.betas == betas and rebuilt.train.workdir == job.workdir
        assert rebuilt.train.epochs == 2 and rebuilt.train.model.latent_dims == (4, 2)  # passed through
        assert rebuilt.eval.num_generated == 100 and rebuilt.eval.probe_jobs == 1 and rebuilt.train.threads == 1
    assert [j.index for j in sweep.plan(_command(f"--root={tmp_path}", "--betas_1=0.3,3", "--betas_2=1",
                                                 "--index=1")[0], texts)] == [1]


@pytest.mark.parametrize("argv,message", [
    (["--betas_1=1"], "--root is required"),
    (["--root={tmp}", "--betas_1=1", "--betas_2=1", "--refine_epochs=2"], "together with --conditional"),
    (["--root={tmp}", "--betas_1=1", "--betas_2=1", "--conditional", "--refine_learning_rate=1e-4"],
     "together with --refine_epochs"),
    (["--root={tmp}", "--betas_1=1"], "missing --betas_2"),
    (["--root={tmp}", "--betas_1=1", "--betas_2=1", "--betas=1,1"], "--betas is set per point by the sweep"),
    (["--root={tmp}", "--betas_1=1", "--betas_2=1", "--workdir=x"], "--workdir is set per point"),
    (["--root={tmp}", "--betas_1=1", "--betas_2=1", "--index=5"], "--index=5 is outside the grid's 1 points"),
    (["--root={tmp}", "--betas_1=1", "--betas_2=1", "--engine=slurm"], "engine"),
    (["--root={tmp}", "--betas_1=1", "--betas_2=x"], "--betas_2='x' is neither"),
])
def test_bad_sweep_input_is_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(sweep.define, sweep.main, ["sweep", *[a.format(tmp=tmp_path) for a in argv]])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and "\n" not in err and message in err, err


def test_dry_run_prints_one_line_per_point_and_runs_nothing(tmp_path, capsys):
    run_in_process(sweep.define, sweep.main, ["sweep", f"--root={tmp_path}", "--betas_1=0.3,3",
                                                  "--betas_2=1,2", "--dry_run", *TINY])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all("-m launch.point" in l and "--epochs=2" in l for l in lines)
    assert os.listdir(tmp_path) == []


def test_the_launcher_loads_no_tensorflow():
    """Planning, naming and checking points needs no TensorFlow (seconds per launcher and per Ray worker)."""
    code = ("import sys; import launch.sweep, launch.engines, hvae_repr.config; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tensorflow_probability') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


# ------------------------------------------------------------------ running sweeps (real processes)
def _run_sweep(root, *argv):
    return subprocess.run([sys.executable, "-m", "launch.sweep", f"--root={root}", *TINY, *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_sweep_skips_finished_points_resumes_an_interrupted_one_and_survives_a_failure(tmp_path, monkeypatch):
    root, classifiers = tmp_path / "sweep", f"--eval_classifier_dir={tmp_path / 'classifiers'}"
    command, texts = _command(f"--root={root}", "--betas_1=0.5,2", "--betas_2=1", classifiers, *TINY)
    interrupted, broken = sweep.plan(command, texts)
    # Point 0: interrupted in its second epoch (a crash between its metrics line and its checkpoint).
    flag_values = flags.FlagValues()
    point.define(flag_values)
    flag_values(["point", *interrupted.argv])
    first = cli.from_flags(point.PointCommand, flag_values)
    from hvae_repr import trainer
    with crash_after_epoch(monkeypatch, 2):
        trainer.Trainer(first.train, verbose=False).run()
    # Point 1: its folder holds somebody's file, so training it fails.
    os.makedirs(broken.workdir)
    with open(os.path.join(broken.workdir, "notes.txt"), "w") as f:
        f.write("mine")

    proc = _run_sweep(root, "--betas_1=0.5,2", "--betas_2=1", classifiers)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "done 1, skipped (finished already) 0, busy (run by another launcher) 0, failed 1" in proc.stdout
    assert f"failed: point 1 {broken.workdir}: " in proc.stdout and "not empty but holds no config.json" in proc.stdout
    # One line per finished point as it ends: its status, wall time, the points left and the time left.
    progress = sorted(line for line in proc.stdout.splitlines() if line.startswith("[sweep] point"))
    assert len(progress) == 2 and "point 0 (betas 0.5,1) done in " in progress[0], proc.stdout
    assert "point 1 (betas 2,1) failed in " in progress[1], proc.stdout
    assert sum("1 of 2 finished, 1 left, about " in line for line in progress) == 1
    assert sum(line.endswith("2 of 2 finished, 0 left") for line in progress) == 1
    run = RunDir(interrupted.workdir)
    assert run.is_trained and run.is_evaluated
    with open(run.file(run.LOG)) as f:
        assert "after epoch 1 (ckpt-1)" in f.read()  # resumed from its checkpoint
    with open(run.file(run.METRICS)) as f:
        assert [json.loads(line)["epoch"] for line in f] == [1, 2]
    with open(RunDir(broken.workdir).file(RunDir.ERROR)) as f:
        assert "not empty but holds no config.json" in f.readline()

    # Fixed, the same command finishes the failed point and skips the finished one; error.txt goes.
    os.remove(os.path.join(broken.workdir, "notes.txt"))
    proc = _run_sweep(root, "--betas_1=0.5,2", "--betas_2=1", classifiers)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "done 1, skipped (finished already) 1, busy (run by another launcher) 0, failed 0" in proc.stdout
    assert not os.path.exists(RunDir(broken.workdir).file(RunDir.ERROR))
    assert RunDir(broken.workdir).is_evaluated


@pytest.mark.slow
def test_two_launchers_on_one_root_train_each_point_once(tmp_path):
    root, classifiers = tmp_path / "sweep", f"--eval_classifier_dir={tmp_path / 'classifiers'}"
    argv = [sys.executable, "-m", "launch.sweep", f"--root={root}", "--betas_1=0.5,2", "--betas_2=1", classifiers,
            "--noevaluate", *TINY]
    launchers = [subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in launchers]
    assert all(p.returncode == 0 for p in launchers), outputs
    folders = [f for f in os.listdir(root) if os.path.isdir(root / f)]
    assert len(folders) == 2
    for folder in folders:
        with open(root / folder / RunDir.METRICS) as f:
            assert [json.loads(line)["epoch"] for line in f] == [1, 2]  # trained once: no epoch twice
        with open(root / folder / RunDir.LOG) as f:
            log = f.read()
        assert log.count("epoch 1/2") == 1, log


@pytest.mark.slow
def test_the_ray_engine_without_an_address_starts_a_local_instance_of_this_machines_cores_and_stops_it():
    """--engine=ray without --ray_address. Sweeps on the engine, points and all, run on a real two-node
    cluster in tests/test_ray_cluster.py; this is the one branch that differs."""
    import signal
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e \".[ray]\"")
    handler = signal.getsignal(signal.SIGTERM)
    with engines.RayCluster("") as cluster:
        assert cluster.started_here and ray.is_initialized()
        assert signal.getsignal(signal.SIGTERM) == handler  # ray.init's own is replaced by the launcher's
        cluster.check_cpus(machine.usable_cores())
        with pytest.raises(ValueError, match=f"asks for {machine.usable_cores() + 1} CPUs .* largest live node"):
            cluster.check_cpus(machine.usable_cores() + 1)
    assert not ray.is_initialized() and signal.getsignal(signal.SIGTERM) == handler


@pytest.mark.slow
def test_conditional_sweep_trains_one_model_and_writes_a_folder_per_point(tmp_path):
    from evaluation import aggregate
    root, classifiers = tmp_path / "sweep", f"--eval_classifier_dir={tmp_path / 'classifiers'}"
    # 3 epochs: the conditional model's default warm-up is then 1 epoch, a setting the point folders' names
    # must share with the model's.
    # A root relative to the working directory: the grid's folders must still match the plan's.
    proc = _run_sweep(os.path.relpath(root, REPO), "--betas_1=0.5,2", "--betas_2=1", "--conditional", "--epochs=3",
                      classifiers)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "done 2, skipped (finished already) 0" in proc.stdout
    assert "[sweep] the conditional model: done in " in proc.stdout
    assert "[grid] point betas 0.5,1 done in " in proc.stdout and "1 of 2 finished, 1 left, about" in proc.stdout
    model = RunDir(root / "model")
    assert model.is_trained and model.read_config().model.conditional_betas and not model.is_evaluated
    assert model.read_config().kl_warmup_epochs == 1
    points = {f: RunDir(root / f) for f in os.listdir(root) if f != "model" and os.path.isdir(root / f)}
    assert len(points) == 2
    for point in points.values():
        assert point.read_point()["model_run"] == str(root / "model") and point.is_evaluated
        result = io_utils.read_json(point.file(point.EVAL_RESULT))
        assert tuple(result["settings"]["betas"]) == point.read_point()["betas"]
        assert result["conditional"]["betas_in_range"] is True
    rows, _ = aggregate.collect(str(root))  # the model is represented by its points
    assert sorted((r["beta_z1"], r["status"]) for r in rows) == [(0.5, "evaluated"), (2.0, "evaluated")]
    # The same command again finds every point done.
    proc = _run_sweep(root, "--betas_1=0.5,2", "--betas_2=1", "--conditional", "--epochs=3", classifiers)
    assert proc.returncode == 0 and "done 0, skipped (finished already) 2" in proc.stdout, proc.stdout
    # --refine_epochs: each point's model is a run of its own, warm-started from ROOT/model at its betas.
    proc = _run_sweep(root, "--betas_1=0.5", "--betas_2=1", "--conditional", "--epochs=3", "--refine_epochs=1",
                      classifiers)
    assert proc.returncode == 0 and "done 1, skipped (finished already) 0" in proc.stdout, proc.stdout + proc.stderr
    refined = root / "refined_1epochs"
    [folder] = [f for f in os.listdir(refined) if os.path.isdir(refined / f)]  # and the sweep's record
    run = RunDir(refined / folder)
    assert run.is_trained and run.is_evaluated
    config = run.read_config()
    assert config.init_from == str(root / "model") and config.fixed_condition and config.epochs == 1
    assert config.betas == (0.5, 1.0) and config.kl_warmup_epochs == 0
    assert io_utils.read_json(run.file(run.TRAIN_RESULT))["init_from"]["run_epochs"] == 3
    assert "fine-tuned at these fixed betas" in io_utils.read_json(run.file(run.EVAL_RESULT))["conditional"]["note"]
    rows, _ = aggregate.collect(str(refined))
    assert [(r["beta_z1"], r["epochs"], r["status"]) for r in rows] == [(0.5, 1, "evaluated")]
    [record] = map(io_utils.read_json, refined.glob("sweep_*.json"))  # beside its points, not among ROOT's
    assert "--refine_epochs=1" in record["argv"]
    assert not [r for r in map(io_utils.read_json, root.glob("sweep_*.json")) if "--refine_epochs=1" in r["argv"]]
    assert record["stage_seconds"]["refined_points"] > 0 and record["stage_seconds"]["per_refined_point"] > 0


def test_refined_points_take_the_refinement_learning_rate_and_a_folder_of_their_own(tmp_path):
    args = (f"--root={tmp_path}", "--betas_1=0.3", "--betas_2=1", "--conditional", "--learning_rate=2e-3",
            "--refine_epochs=2", *TINY)
    for extra, rate, folder in (((), 2e-3, "refined_2epochs"),
                                (("--refine_learning_rate=1e-4",), 1e-4, "refined_2epochs_lr0.0001")):
        command, texts = _command(*args, *extra)
        [job] = sweep.plan(command, texts, cores=2)
        assert os.path.dirname(job.workdir) == str(tmp_path / folder)
        assert f"--learning_rate={rate:g}" in job.argv or f"--learning_rate={rate}" in job.argv, job.argv


def test_grid_chunks_evaluate_the_first_points_alone_and_split_the_rest_among_the_slots():
    # The chunks of a grid spread over a Ray cluster (engines.evaluate_grid_ray).
    from evaluation.options import POINTS_PER_PASS
    points = [(float(i), 1.0) for i in range(POINTS_PER_PASS + 7)]
    chunks = engines.grid_chunks(points, 3)
    assert chunks[0] == points[:POINTS_PER_PASS] and [len(c) for c in chunks[1:]] == [3, 3, 1]
    assert [p for c in chunks for p in c] == points  # every point once, in order
    assert engines.grid_chunks(points[:2], 4) == [points[:2]]


def test_seeds_give_one_folder_per_seed_named_as_a_run_of_that_seed(tmp_path):
    from hvae_repr.config import TrainConfig
    command, texts = _command(f"--root={tmp_path}", "--betas_1=0.3,3", "--betas_2=1", "--seeds=0,1,2", *TINY)
    jobs = sweep.plan(command, texts, cores=2)
    assert [j.index for j in jobs] == list(range(6)) and len({j.workdir for j in jobs}) == 6
    for job, (betas, seed) in zip(jobs, [(b, s) for b in ((0.3, 1.0), (3.0, 1.0)) for s in (0, 1, 2)]):
        single, _ = _command(f"--root={tmp_path}", "--betas_1=0.3,3", "--betas_2=1", f"--seed={seed}", *TINY)
        alone = [j for j in sweep.plan(single, texts, cores=2) if j.betas == betas][0]
        assert job.workdir == alone.workdir  # the folder of a run trained with --seed=S, so old runs are found
        name = TrainConfig(**{**vars(single.train), "betas": betas, "workdir": ""}).run_name()
        assert os.path.basename(job.workdir) == name and f"seed{seed}" in name
    assert [j.workdir for j in sweep.plan(_command(f"--root={tmp_path}", "--betas_1=0.3,3", "--betas_2=1",
                                                   "--seeds=0,1,2", "--index=4", *TINY)[0], texts)] == [jobs[4].workdir]
    with pytest.raises(ValueError, match="lists a seed twice"):
        sweep.plan(_command(f"--root={tmp_path}", "--betas_1=1", "--betas_2=1", "--seeds=1,1")[0], texts)
    with pytest.raises(ValueError, match="one conditional sweep per seed"):
        sweep.plan(_command(f"--root={tmp_path}", "--betas_1=1", "--betas_2=1", "--seeds=0,1", "--conditional")[0],
                   texts)
