"""Sections 3-6 of the benchmark suite: the epoch with its input pipeline, a whole evaluation, the
mutual-information estimate, and grid throughput. Each is a function (context) -> dict, like the
sections in run.py; they run the project's own programs and code paths, not copies of them.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPOSITORY, "..", "shared", "data")
MI_SIZES = (1000, 5000, 10000, 20000)
MI_SIZES_QUICK = (500, 1000)


def _work_dir(context, name):
    """A folder for the section's runs: kept under --work_dir between calls (so a trained model and the
    reference classifier are reused), else temporary."""
    root = context["args"].work_dir or context.setdefault("tmp", tempfile.mkdtemp(prefix="hvae-bench-"))
    path = os.path.join(root, name)
    os.makedirs(path, exist_ok=True)
    return path


def _mnist_dir(context):
    data_dir = context["args"].data_dir or SHARED_DATA
    return data_dir if os.path.isfile(os.path.join(data_dir, "mnist.npz")) else None


def _config(**settings):
    from hvae_repr import cli
    from hvae_repr.config import TrainConfig
    return cli.build(TrainConfig, **settings)


# ------------------------------------------------------------------------- section 3
def epoch_section(context):
    """One epoch of the reference conv model on the 60,000 binarized MNIST images through the trainer's
    own loop (shuffled batches cut from the training array, fed to the tf.function step), against the
    same step on one fixed batch: the loop's overhead, and how many times the step was traced."""
    from hvae_repr.runs import RunDir
    from hvae_repr.trainer import Trainer
    from hvae_repr.tf_env import tf
    args = context["args"]
    data_dir = _mnist_dir(context)
    if data_dir is None:
        return {"status": "skipped: no mnist.npz in --data_dir (or ../shared/data)", "issue": "issue 11, part 3"}
    epochs = 1 if args.quick else 2  # the first epoch includes tracing; the second is timed
    workdir = os.path.join(_work_dir(context, "epoch"), "run")
    shutil.rmtree(workdir, ignore_errors=True)
    config = _config(dataset="binary_mnist", data_dir=data_dir, architecture="conv", epochs=epochs,
                     workdir=workdir, images_every_epochs=0, threads=args.threads)
    trainer = Trainer(config, verbose=False)
    trainer.prepare()
    trainer.claim()
    trainer.fit()
    with open(RunDir(workdir).file(RunDir.METRICS)) as f:
        lines = [json.loads(line) for line in f]
    steps = lines[-1]["step"] // epochs
    epoch_seconds = lines[-1]["train_seconds"] - (lines[-2]["train_seconds"] if epochs > 1 else 0.0)
    step = trainer.train_step
    x = trainer.dataset.x_train[:config.batch_size]
    seed, betas, temperature = tf.constant(0), np.ones(2, np.float32), tf.constant(1.0)
    times = []
    for i in range(max(5, args.rounds)):
        started = time.perf_counter()
        out = step(x, seed, tf.constant(i), betas, temperature)
        float(out["loss"])
        times.append(time.perf_counter() - started)
    step_ms = float(np.median(times[2:]) * 1000)
    loop_ms = epoch_seconds / steps * 1000
    return {"dataset": "binary_mnist", "images": len(trainer.dataset.x_train), "batch_size": config.batch_size,
            "steps_per_epoch": steps, "epoch_seconds": epoch_seconds, "loop_ms_per_step": loop_ms,
            "fixed_batch_ms_per_step_median": step_ms, "pipeline_overhead_fraction": loop_ms / step_ms - 1,
            "target_overhead_fraction": 0.05, "traces": int(step.experimental_get_tracing_count()),
            "timed_epoch": epochs}


# ------------------------------------------------------------------------- section 4
def evaluation_section(context):
    """A whole evaluation (python -m evaluation.evaluate's work, default options) of a binarized-MNIST
    conv model on its 10,000 test images, per stage; the model (1 epoch) and the reference classifier
    are made first and not timed."""
    from evaluation import evaluate as ev
    from evaluation import reference_classifier
    from hvae_repr.runs import RunDir
    from hvae_repr.train import train
    from hvae_repr.trainer import runs_dataset
    args = context["args"]
    data_dir = _mnist_dir(context)
    if data_dir is None:
        return {"status": "skipped: no mnist.npz in --data_dir (or ../shared/data)", "issue": "issue 11, part 4"}
    folder = _work_dir(context, "evaluation")
    workdir = os.path.join(folder, "run")
    config = _config(dataset="binary_mnist", data_dir=data_dir, architecture="conv", epochs=1, workdir=workdir,
                     images_every_epochs=0)
    train(config, verbose=False)
    options = ev.EvalOptions(classifier_dir=os.path.join(folder, "classifiers"), probe_jobs=args.threads,
                             **({"max_test": 1000, "num_generated": 1000, "generative_draws": 1000}
                                if args.quick else {}))
    classifier_started = time.perf_counter()  # trains and caches the reference classifier unless cached already
    reference_classifier.load_or_train(runs_dataset(config), cache_dir=options.classifier_dir,
                                       epochs=options.classifier_epochs, min_steps=options.classifier_min_steps)
    classifier_seconds = time.perf_counter() - classifier_started
    started = time.perf_counter()
    result = ev.evaluate(workdir, options, verbose=False)
    wall = time.perf_counter() - started
    ev.write_result(workdir, result, overwrite=True)
    seconds = dict(result["seconds"])
    return {"test_images": result["num_test_examples"], "seconds_per_stage": seconds, "wall_seconds": wall,
            "target_seconds": 60, "reference_classifier_seconds_before": classifier_seconds,
            "model": "conv reference, 1 epoch", "run": RunDir(workdir).path}


# ------------------------------------------------------------------------- section 5
def _posteriors(n, d, rng):
    """Gaussian posteriors of n points with 10 classes whose means carry the label (a layer with signal)."""
    labels = rng.integers(0, 10, n)
    centres = rng.normal(size=(10, d))
    means = centres[labels] + 0.5 * rng.normal(size=(n, d))
    stds = np.full((n, d), 0.3)
    return means, stds, means + stds * rng.normal(size=(n, d)), labels


def _interval(means, stds, samples, labels):
    from evaluation import bounds, mutual_information, probes
    mixture = mutual_information.gaussian_mutual_information(means, stds, labels, rng=None, samples=samples)
    split = probes.split_indices(labels, 0.2, 0)
    return mutual_information.label_information_interval(mixture, samples, labels, bounds.label_prior(labels, 10),
                                                         split)


def mutual_information_section(context):
    """The evaluation's mutual-information stage for one layer (mixture estimates of I(y; z), I(x; z) and
    the Barber-Agakov lower bound): seconds (without tracing) and peak memory of its Python allocations
    (tracemalloc, which sees numpy's arrays), for N points of a 20-dimensional layer."""
    rng = np.random.default_rng(0)
    out = {"dimensions": 20, "classes": 10, "sizes": {}, "target": "N = 10,000 under 5 s and 1 GB"}
    for n in (MI_SIZES_QUICK if context["args"].quick else MI_SIZES):
        data = _posteriors(n, 20, rng)
        started = time.perf_counter()
        _interval(*data)
        seconds = time.perf_counter() - started
        tracemalloc.start()
        _interval(*data)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out["sizes"][str(n)] = {"seconds": seconds, "peak_mib": peak / 2 ** 20}
    return out


# ------------------------------------------------------------------------- section 6
GRID_ARGS = ["--dataset=binary_digits", "--betas_1=0.3,3", "--betas_2=0.3,3", "--epochs=100"]
GRID_ARGS_QUICK = ["--dataset=binary_digits", "--betas_1=0.3,3", "--betas_2=1", "--epochs=2"]


def grid_section(context):
    """Points per hour of a small sweep (python -m launch.sweep, train and evaluate each point) with 1 and
    with 2 local workers, and from one beta-conditional model trained for the same epochs and evaluated at
    every point; each from an empty root (the reference classifier cached beforehand)."""
    args = context["args"]
    folder = _work_dir(context, "grid")
    classifiers = os.path.join(folder, "classifiers")
    grid = GRID_ARGS_QUICK if args.quick else GRID_ARGS
    common = [*grid, f"--eval_classifier_dir={classifiers}"]
    _sweep(os.path.join(folder, "warm"), common + ["--betas_1=1", "--betas_2=1", "--epochs=1"])  # the classifier
    out = {"sweep": "python -m launch.sweep " + " ".join(grid), "runs": {}}
    for name, extra in (("1 worker", ["--workers=1"]), ("2 workers", ["--workers=2"]),
                        ("conditional (one model)", ["--conditional"])):
        root = os.path.join(folder, name.split()[0])
        shutil.rmtree(root, ignore_errors=True)
        seconds, points = _sweep(root, common + extra)
        out["runs"][name] = {"points": points, "seconds": seconds, "points_per_hour": points / seconds * 3600}
    return out


def _sweep(root, argv):
    """(seconds, evaluated points) of one sweep run from an empty root."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "launch.sweep", f"--root={root}", *argv],
                          cwd=REPOSITORY, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"the benchmark sweep failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    from hvae_repr.runs import RunDir
    points = sum(RunDir(os.path.join(root, d)).is_evaluated for d in os.listdir(root))
    return time.perf_counter() - started, points


SECTIONS = {"epoch": epoch_section, "evaluation": evaluation_section,
            "mutual_information": mutual_information_section, "grid": grid_section}


def report_tables(results):
    """[(title, headers, rows)] of sections 3-6 (those that ran)."""
    tables = []
    epoch = results.get("epoch")
    if epoch and "epoch_seconds" in epoch:
        tables.append((f"Epoch of {epoch['dataset']} ({epoch['images']:,} images, batch {epoch['batch_size']}) "
                       f"through the trainer's loop, epoch {epoch['timed_epoch']} timed",
                       ["epoch s", "steps", "loop ms/step", "fixed-batch ms/step", "pipeline overhead", "target",
                        "traces of the step"],
                       [[f"{epoch['epoch_seconds']:.1f}", epoch["steps_per_epoch"], f"{epoch['loop_ms_per_step']:.1f}",
                         f"{epoch['fixed_batch_ms_per_step_median']:.1f}",
                         f"{100 * epoch['pipeline_overhead_fraction']:.1f}%", "< 5%", epoch["traces"]]]))
    evaluation = results.get("evaluation")
    if evaluation and "seconds_per_stage" in evaluation:
        stages = evaluation["seconds_per_stage"]
        tables.append((f"Evaluation of a binarized-MNIST conv model on {evaluation['test_images']:,} test images "
                       f"(reference classifier cached; making it took {evaluation['reference_classifier_seconds_before']:.0f} s "
                       f"beforehand); target under {evaluation['target_seconds']} s",
                       ["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in stages.items()] +
                       [["wall, whole call", f"{evaluation['wall_seconds']:.1f}"]]))
    mi = results.get("mutual_information")
    if mi and "sizes" in mi:
        tables.append((f"Mutual-information stage of one {mi['dimensions']}-dimensional layer ({mi['target']})",
                       ["N", "seconds", "peak MiB"],
                       [[f"{int(n):,}", f"{v['seconds']:.2f}", f"{v['peak_mib']:.0f}"] for n, v in mi["sizes"].items()]))
    grid = results.get("grid")
    if grid and "runs" in grid:
        tables.append((f"Grid throughput: {grid['sweep']}",
                       ["how", "points", "seconds", "points per hour"],
                       [[k, v["points"], f"{v['seconds']:.0f}", f"{v['points_per_hour']:.0f}"]
                        for k, v in grid["runs"].items()]))
    return tables
