"""Evaluates one beta-conditional model at every point of a beta grid.

Each point gets a folder like a separately trained run's: RUN/point.json (the model's run folder and
the point's betas) and RUN/eval_result.json from the same stages as `python -m evaluation.evaluate
--betas=...`, so evaluation.aggregate, load_encoder and the figures treat it as one grid point.
What does not depend on the betas is computed once for the whole grid (the reference classifier and
its predictions of the test images and their feature statistics, the probes' split, the label prior),
the model's pass over the test set serves several points at once and is traced once for the whole
grid, like the prior sampler (the betas are an input of the model; each point keeps the seed it would
have on its own, so its numbers do not depend on the grouping). The outcome's "seconds" holds the grid's
own parts and, as stage_<name>, each stage's seconds summed over the points.
"""
import dataclasses
import os
import time

import numpy as np

from evaluation import evaluate as ev
from evaluation import stages
from evaluation.options import POINTS_PER_PASS
from hvae_repr import io_utils, passes, progress
from hvae_repr.runs import RunBusy, RunDir


def point_folder(root, config, betas):
    """The folder of the point `betas` under `root`, named like a separate run of the same settings."""
    return os.path.join(root, dataclasses.replace(config, betas=tuple(betas)).run_name())


def evaluate_grid(model_run, points, root, options=ev.EvalOptions(), log=print, points_per_pass=POINTS_PER_PASS):
    """Evaluates the conditional model in `model_run` at each of `points` (tuples of betas, z1 first),
    skipping points already evaluated; returns {"done", "skipped", "busy", "failed": [...]} of absolute
    folders and the seconds of each part in "seconds". points_per_pass: points per test-set pass (more
    use more memory: about 75 MB per point for binarized MNIST's 10,000 test images; the numbers do not
    depend on it)."""
    started = time.perf_counter()
    root = os.path.abspath(root)  # the folders it returns are absolute, like a sweep's jobs'
    run = RunDir(model_run)
    run.require_trained()
    config = run.read_config()
    if not config.model.conditional_betas:
        raise ValueError(f"{model_run} holds a model trained at fixed betas; a grid of one model needs a "
                         f"beta-conditional run (--conditional_betas)")
    options = ev.resolved(options, config)
    folders = [point_folder(root, config, betas) for betas in points]
    todo = [(betas, folder) for betas, folder in zip(points, folders) if not RunDir(folder).is_evaluated]
    outcome = {"done": [], "skipped": [f for f in folders if RunDir(f).is_evaluated], "busy": [], "failed": [],
               "seconds": {"load": 0.0, "test_pass": 0.0, "stages": 0.0, "write": 0.0}}
    if not todo:
        return outcome
    base = ev.load_input(model_run, options, test_pass=False)  # the model and its test set
    shared = base.shared
    outcome["seconds"]["load"] = time.perf_counter() - started
    countdown = progress.Countdown(len(todo))
    if points_per_pass < 1:
        raise ValueError(f"points_per_pass must be at least 1 (got {points_per_pass})")
    for first in range(0, len(todo), points_per_pass):
        group = todo[first:first + points_per_pass]
        clock = time.perf_counter()
        arrays = passes.dataset_passes(base.model, base.x, options.seed, [b for b, _ in group], options.batch_size)
        outcome["seconds"]["test_pass"] += time.perf_counter() - clock
        for (betas, folder), point_arrays in zip(group, arrays):
            point, point_started = RunDir(folder), time.perf_counter()
            try:
                with point.lock():
                    if point.is_evaluated:
                        outcome["skipped"].append(folder)
                        countdown.tick()
                        continue
                    clock = time.perf_counter()
                    point_options = dataclasses.replace(options, betas=tuple(betas))
                    inp = dataclasses.replace(base, arrays=point_arrays, options=point_options, betas=tuple(betas),
                                              shared=shared)
                    result = ev.evaluate(folder, point_options, verbose=False, inp=inp)
                    result["model_run"] = os.path.abspath(model_run)
                    outcome["seconds"]["stages"] += time.perf_counter() - clock
                    for stage, seconds in result["seconds"].items():  # each stage summed over the points
                        if stage not in ("total", "load_and_test_pass"):
                            key = f"stage_{stage}"
                            outcome["seconds"][key] = outcome["seconds"].get(key, 0.0) + seconds
                    clock = time.perf_counter()
                    point.write_point(model_run, betas)
                    ev.write_result(folder, result)
                    outcome["seconds"]["write"] += time.perf_counter() - clock
                    outcome["done"].append(folder)
                    status = "done"
            except RunBusy:
                outcome["busy"].append(folder)
                status = "busy"
            except ValueError as e:  # e.g. the model is not finite at this point: the point fails, the grid goes on
                io_utils.write_text_atomic(point.file(point.ERROR), " ".join(str(e).split()) + "\n")
                outcome["failed"].append(folder)
                status = f"failed: {' '.join(str(e).split())}"
            countdown.tick()
            log(f"[grid] point betas {','.join(f'{b:g}' for b in betas)} {status} in "
                f"{progress.duration(time.perf_counter() - point_started)}; {countdown.status()}")
    outcome["seconds"]["total"] = time.perf_counter() - started
    return outcome
