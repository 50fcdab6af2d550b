"""Trains and evaluates a model at every point of a beta grid (or of a grid of target rates).

    python -m launch.sweep --root=sweeps/mnist --betas_1=logspace:0.1,10,5 --betas_2=logspace:0.1,10,5 \\
        --dataset=binary_mnist --architecture=conv --epochs=20 [--workers=2] [--engine=ray]

One beta list per latent layer (--betas_1 for z1, --betas_2 for z2, ...; launch.grid), or a list of
target rates in nats for some layers instead (--target_rates_1, ...: each run adapts those layers'
betas to reach its rates, starting from --betas; hvae_repr.rate_targets), every other
training flag passes through to every run unchanged, evaluation flags take the prefix --eval_.
Each point is one run folder under --root named from every setting that can differ between runs
(TrainConfig.run_name; --seeds=0,1,2 makes one per seed, named as a run trained with --seed=S),
trained and evaluated in a process of its own (launch.point). Finished points are skipped, so the
same command resumes a sweep; an interrupted point resumes from its checkpoint; a failed point
leaves RUN/error.txt and the sweep goes on. Two launchers on one root
run each point once (each point's lock). A SIGTERM or SIGINT is forwarded to the running points, which
write a checkpoint and stop; the summary and sweep_*.json name them and the same command finishes
them. Exit status 143 / 130 after a SIGTERM / SIGINT, else 1 if any point failed, else 0.
"""
import dataclasses
import json
import os
import shlex
import sys
import time
from typing import ClassVar


from evaluation.options import EvalOptions
from hvae_repr import cli, io_utils, machine, preemption, progress, warm_start
from hvae_repr.cli import nested, setting
from hvae_repr.config import TrainConfig
from hvae_repr.runs import RunDir
from launch import engines, grid, point

MAX_LAYERS = 9  # flags --betas_1 ... --betas_9
SWEEP_RECORD = "sweep.json"


@dataclasses.dataclass(frozen=True)
class SweepCommand:
    help_group: ClassVar[str] = "sweep"
    root: str = setting("", "The sweep's folder; each grid point gets a run folder in it.")
    workers: int = setting(1, "Points run at once (local engine); each point's process gets cores // workers "
                              "threads unless --threads is given.")
    engine: str = setting("local", "local: processes on this machine; ray: one Ray task per point (pip install "
                                   "-e \".[ray]\").", ("local", "ray"))
    ray_address: str = setting("", "Ray cluster for --engine=ray: auto, or host:port ('' = start a local Ray "
                                   "instance with this machine's cores).")
    dry_run: bool = setting(False, "Print each point's run folder and full command, one line per point, and exit.")
    index: int = setting(-1, "Run only the point with this index (0-based; z1's beta varies slowest): one task of "
                             "a batch scheduler's array job; -1 = every point.")
    evaluate: bool = setting(True, "Evaluate each point after training it.")
    seeds: tuple = setting((), "Train every grid point once per training seed (e.g. 0,1,2), one run folder each, "
                               "named as a run trained with --seed=S; jobs are numbered point by point, seed "
                               "fastest. Empty = once, with --seed.", item=int)
    conditional: bool = setting(False, "Train one beta-conditional model (ROOT/model, --conditional_betas, "
                                       "trained for the betas in --beta_range) and evaluate it at every grid point, "
                                       "writing the same per-point folders as separate runs.")
    refine_epochs: int = setting(0, "With --conditional: each point's model is the conditional model fine-tuned "
                                    "at the point's fixed betas for this many epochs (a run of its own under "
                                    "ROOT/refined_<K>epochs, warm-started from ROOT/model with a fresh Adam, "
                                    "hvae_repr.warm_start), evaluated like a separately trained point. 0 = evaluate "
                                    "the conditional model itself.")
    refine_learning_rate: float = setting(0.0, "With --refine_epochs: the refinement's Adam learning rate (0 = "
                                               "the conditional model's --learning_rate; its --lr_schedule then "
                                               "runs over the K epochs). Its points live under "
                                               "ROOT/refined_<K>epochs_lr<rate>.")
    train: TrainConfig = nested(TrainConfig)
    eval: EvalOptions = nested(EvalOptions, prefix="eval_")


def define(flag_values):
    cli.define_flags(SweepCommand, flag_values)
    for layer in range(1, MAX_LAYERS + 1):
        cli.define("string", f"betas_{layer}", "", f"Betas of z{layer}: a list or logspace:LOW,HIGH,N.",
                   flag_values, group="sweep")
        cli.define("string", f"target_rates_{layer}", "", f"Target rates of z{layer} in nats, instead of "
                   f"--betas_{layer}: a list, linspace:LOW,HIGH,N or logspace:LOW,HIGH,N.", flag_values, group="sweep")


def command_from_flags(flag_values):
    """The SweepCommand of parsed flags. --conditional turns on the model's --conditional_betas before the
    settings are built, so that the defaults that depend on it (the warm-up) resolve as the model's do."""
    if flag_values["conditional"].value:
        flag_values["conditional_betas"].value = True
    command = cli.from_flags(SweepCommand, flag_values)
    targeted = any(flag_values[f"target_rates_{l}"].value for l in range(1, MAX_LAYERS + 1))
    if targeted and not flag_values["kl_warmup_epochs"].present:  # the warm-up a targeted run's default gives
        probe = dataclasses.replace(command.train, kl_warmup_epochs=-1,
                                    target_rates=("0",) * command.train.model.num_layers)
        command = dataclasses.replace(command, train=dataclasses.replace(
            command.train, kl_warmup_epochs=probe.kl_warmup_epochs))
    return command


def plan(command, beta_texts, cores=None, target_texts=None):
    """The jobs of the sweep: one launch.point job per grid point (of betas, or of target rates where
    target_texts has a list: launch.grid.target_grid). ValueError (one line) for bad input."""
    if not command.root:
        raise ValueError("--root is required: the folder that holds the sweep's runs")
    RunDir(command.root).check_folder()
    if command.conditional and not command.train.model.conditional_betas:
        raise ValueError("a --conditional sweep needs the model's conditional_betas on; build the command with "
                         "launch.sweep.command_from_flags")
    if command.refine_epochs < 0 or (command.refine_epochs and not command.conditional):
        raise ValueError(f"--refine_epochs={command.refine_epochs} refines the points of a conditional model: "
                         f"give a positive number of epochs together with --conditional")
    if command.refine_learning_rate < 0 or (command.refine_learning_rate and not command.refine_epochs):
        raise ValueError(f"--refine_learning_rate={command.refine_learning_rate:g} is the refinement's learning "
                         f"rate: give a positive rate together with --refine_epochs")
    if command.workers < 1:
        raise ValueError(f"--workers must be at least 1 (got {command.workers})")
    num_layers = command.train.model.num_layers
    if target_texts and any(target_texts.values()):
        if command.conditional:
            raise ValueError("a --conditional sweep evaluates one model at given betas; for target rates sweep "
                             "separate runs (leave out --conditional), or search a conditional model's betas "
                             "with python -m evaluation.target")
        points = grid.target_grid(beta_texts, target_texts, num_layers, command.train.betas)
    else:
        points = [(betas, ()) for betas in grid.grid_from_flags(beta_texts, num_layers)]
    if command.seeds and command.conditional:
        raise ValueError("--seeds trains separate runs per seed; a --conditional sweep trains one model: run one "
                         "conditional sweep per seed (--seed=S) in its own --root instead")
    if len(set(command.seeds)) != len(command.seeds):
        raise ValueError(f"--seeds lists a seed twice ({','.join(map(str, command.seeds))}); give each once")
    seeds = command.seeds or (command.train.seed,)
    points = [(betas, targets, seed) for betas, targets in points for seed in seeds]
    if not -1 <= command.index < len(points):
        raise ValueError(f"--index={command.index} is outside the grid's {len(points)} "
                         f"{'jobs (points x seeds)' if command.seeds else 'points'} (0 to {len(points) - 1})")
    cores = cores or machine.usable_cores()
    threads = command.train.threads or max(1, cores // command.workers)
    root = folder = os.path.abspath(command.root)
    if command.refine_epochs:
        folder = refined_folder(command)
    jobs = []
    for index, (betas, targets, seed) in enumerate(points):
        if command.index >= 0 and index != command.index:
            continue
        train = dataclasses.replace(command.train, betas=betas, target_rates=targets, seed=seed, threads=threads,
                                    workdir="unnamed")
        if command.refine_epochs:
            train = warm_start.refined(train, model_folder(root), command.refine_epochs,
                                       command.refine_learning_rate)
        train = dataclasses.replace(train, workdir=os.path.join(folder, train.run_name()))
        evaluation = command.eval
        if evaluation.probe_jobs == EvalOptions().probe_jobs:  # not chosen: fit the point's share of the cores
            evaluation = dataclasses.replace(evaluation, probe_jobs=threads)
        argv = cli.to_argv(point.PointCommand(evaluate=command.evaluate, train=train, eval=evaluation))
        jobs.append(engines.Job(index=index, workdir=train.workdir, argv=tuple(argv), threads=threads, betas=betas))
    return jobs


def say(text):
    print(text, flush=True)  # a sweep's output often goes to a file: each line when it happens


def sweep(command, jobs, log=say):
    """Runs the jobs that have not finished; returns {status: [job, ...]} (done, skipped, busy, failed)."""
    for job in jobs:  # a damaged result file: the point process keeps it as NAME.damaged and makes it again
        for problem in filter(None, (RunDir(job.workdir).damaged(name) for name in RunDir.RESULTS)):
            log(f"point {job.index} {job.workdir}: {problem}; it runs again")
    pending = [j for j in jobs if not point.is_finished(RunDir(j.workdir), command.evaluate)]
    outcome = {"done": [], "skipped": [j for j in jobs if j not in pending], "busy": [], "failed": [],
               "interrupted": [], "not_started": []}
    launch = engines.new_launch_id()
    pending = [j._replace(launch=launch) for j in pending]  # its attempt lines in RUN/sweep.log
    log(f"{len(jobs)} points, {len(outcome['skipped'])} finished already, running {len(pending)} "
        f"({command.engine} engine)")
    if pending:
        report = point_reporter(len(pending), log)
        statuses = (engines.run_ray(pending, command.ray_address, report) if command.engine == "ray"
                    else engines.run_local(pending, command.workers, report))
        for job, status in zip(pending, statuses):
            outcome[status].append(job)
    return outcome


def point_reporter(total, log=say):
    """on_finish for the engines: one line per finished point, with the points left and the time left."""
    countdown = progress.Countdown(total)

    def report(job, status, seconds):
        countdown.tick()
        betas = ",".join(f"{b:g}" for b in job.betas)
        took = "" if seconds is None else f" in {progress.duration(seconds)}"  # a cancelled Ray task's is unknown
        log(f"[sweep] point {job.index} (betas {betas}) {status}{took}; {countdown.status()}")
    return report


def model_folder(root):
    """A conditional sweep's model: ROOT/model."""
    return os.path.join(os.path.abspath(root), "model")


def refined_folder(command):
    """Where the points refined for --refine_epochs=K live: ROOT/refined_<K>epochs, with _lr<rate> for a
    --refine_learning_rate (aggregate that folder)."""
    rate = f"_lr{command.refine_learning_rate:g}" if command.refine_learning_rate else ""
    return os.path.join(os.path.abspath(command.root), f"refined_{command.refine_epochs}epochs{rate}")


def model_job(command, cores=None):
    """The job that trains a conditional sweep's one model, in ROOT/model."""
    threads = command.train.threads or cores or machine.usable_cores()
    train = dataclasses.replace(command.train, threads=threads, workdir=model_folder(command.root))
    argv = cli.to_argv(point.PointCommand(evaluate=False, train=train))
    return engines.Job(index=-1, workdir=train.workdir, argv=tuple(argv), threads=threads)


def conditional_sweep(command, jobs, log=say):
    """Trains the one conditional model (a point process like any other, without evaluation), then
    evaluates it at the grid's points in this process (evaluation.grid), or with --engine=ray in chunks
    spread over the cluster (engines.evaluate_grid_ray), or with --refine_epochs runs the points'
    refinements (`jobs`, warm-started from it) like a sweep of separate models; returns {status: [job, ...]}
    of the points like `sweep` (the model's job listed as failed if its training failed), and "seconds"."""
    model = model_job(command)
    log(f"{len(jobs)} points of one beta-conditional model ({model.workdir})")
    started = time.time()
    ray = command.engine == "ray"
    trained = (engines.run_ray if ray else engines.run_local)(
        [model], command.ray_address if ray else 1,
        lambda job, status, seconds: log(f"[sweep] the conditional model: {status} in {progress.duration(seconds)}"))[0]
    outcome = {"done": [], "skipped": [], "busy": [], "failed": [], "interrupted": [], "not_started": [],
               "seconds": {"model": time.time() - started}}
    if trained != "done" and trained != "skipped":
        outcome["failed" if trained == "failed" else trained] = [model]
        return outcome
    if command.refine_epochs:
        clock = time.time()
        outcome.update(sweep(command, jobs, log))
        done = len(outcome["done"])
        outcome["seconds"]["refined_points"] = time.time() - clock
        if done:  # the mean wall time of a point's process (its train_result.json and eval_result.json split it)
            outcome["seconds"]["per_refined_point"] = outcome["seconds"]["refined_points"] * command.workers / done
        log("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in outcome["seconds"].items()))
        return outcome
    if all(RunDir(job.workdir).is_evaluated for job in jobs):  # nothing to evaluate: no TensorFlow to load
        outcome["skipped"] = list(jobs)
        return outcome
    betas = [job.betas for job in jobs]
    if ray:  # one chunk per --threads CPUs of the cluster
        found = engines.evaluate_grid_ray(model.workdir, betas, command.root, command.eval, command.ray_address,
                                          command.train.threads or 1, log)
    else:
        from evaluation import grid as conditional_grid  # TensorFlow: loaded only to evaluate in this process
        found = conditional_grid.evaluate_grid(model.workdir, betas, command.root, command.eval, log)
    outcome["seconds"].update({f"grid_{k}": v for k, v in found["seconds"].items()})
    log("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in outcome["seconds"].items()))
    for job in jobs:
        status = next(s for s in ("done", "skipped", "busy", "failed") if job.workdir in found[s])
        outcome[status].append(job)
    return outcome


def summary(outcome, seconds):
    lines = [f"done {len(outcome['done'])}, skipped (finished already) {len(outcome['skipped'])}, "
             f"busy (run by another launcher) {len(outcome['busy'])}, failed {len(outcome['failed'])} "
             f"in {seconds:.0f} s"]
    if outcome.get("interrupted") or outcome.get("not_started"):
        lines[0] += (f"; interrupted {len(outcome.get('interrupted', []))}, not started "
                     f"{len(outcome.get('not_started', []))} (the same command finishes them)")
    for job in outcome["failed"]:
        lines.append(f"  failed: point {job.index} {job.workdir}: {_error_line(job.workdir)}")
    for job in outcome.get("interrupted", []):
        lines.append(f"  interrupted: point {job.index} {job.workdir} (its checkpoint is written; it resumes)")
    lines += retry_lines([j for done in outcome.values() for j in done])
    return "\n".join(lines)


def retry_lines(jobs):
    """A line for each job that ran more than once in this launch: the nodes of its attempts (each but
    the last lost with its node or worker, and retried by Ray) and the checkpoint its last attempt resumed."""
    lines = []
    for job in sorted(jobs, key=lambda j: j.index):
        tries = engines.attempts(job)
        if len(tries) < 2:
            continue
        nodes = " -> ".join(t["node"][:12] for t in tries)
        lines.append(f"  retried: point {job.index} {job.workdir}: {len(tries)} attempts on nodes {nodes} (each "
                     f"but the last lost with its node or worker); {engines.resumed_from(job) or 'trained from the start'}")
    return lines


def _error_line(workdir):
    try:
        with open(RunDir(workdir).file(RunDir.ERROR)) as f:
            return f.readline().strip()
    except OSError:
        return engines.FAILURE_NOTES.get(workdir, f"no {RunDir.ERROR} (its folder is gone or cannot be read)")


def main(flag_values):
    with cli.one_line_errors():
        target_texts = {l: flag_values[f"target_rates_{l}"].value for l in range(1, MAX_LAYERS + 1)}
        targeted = any(target_texts.values())
        # With target rates, --betas is the targeted layers' starting point (e.g. from evaluation.target).
        for name in ("target_rates", "workdir") + (() if targeted else ("betas",)):
            if flag_values[name].present:
                raise ValueError(f"--{name} is set per point by the sweep; give one list per layer "
                                 f"(--betas_1, --betas_2, ... or --target_rates_1, ...) and the sweep's folder "
                                 f"--root instead")
        if flag_values["seed"].present and flag_values["seeds"].value:
            raise ValueError("--seed and --seeds both given: --seeds=S1,S2,... sets each run's seed; drop --seed")
        command = command_from_flags(flag_values)
        jobs = plan(command, {l: flag_values[f"betas_{l}"].value for l in range(1, MAX_LAYERS + 1)},
                    target_texts=target_texts)
    if command.dry_run:
        model = model_job(command) if command.conditional else None
        if model:
            print(f"{model.workdir}\t{shlex.join(engines.command(model))}")
        for job in jobs:
            what = (f"the model in {model.workdir} evaluated at betas {','.join(f'{b:g}' for b in job.betas)}"
                    if model and not command.refine_epochs else shlex.join(engines.command(job)))
            print(f"{job.workdir}\t{what}")
        return
    started = time.time()
    # A SIGTERM or SIGINT goes to the running points (engines.forward_signal), no new point starts, and the
    # record and summary name the interrupted points; the exit status is then 143 or 130.
    with cli.one_line_errors(), preemption.exit_on_interrupt(), preemption.deferred(engines.forward_signal):
        outcome = conditional_sweep(command, jobs) if command.conditional else sweep(command, jobs)
    seconds = time.time() - started
    stage_seconds = outcome.pop("seconds", {})
    record = {"argv": sys.argv, "seconds": seconds, "stage_seconds": stage_seconds,
              "machine": machine.cpu_description(), "points": {
        status: [{"index": j.index, "workdir": j.workdir, "attempts": engines.attempts(j)} for j in done]
        for status, done in outcome.items()}}
    signum = preemption.received()
    if signum:
        record["interrupted_by"] = preemption.signal_name(signum)
    # A refinement's record goes beside its points, so that ROOT's records are the map's commands alone.
    folder = refined_folder(command) if command.refine_epochs else command.root
    record_path = os.path.join(folder, f"sweep_{time.strftime('%Y%m%d-%H%M%S')}.json")
    with cli.one_line_errors(status=1), io_utils.reported_write(record_path, "the points' folders are intact"):
        io_utils.write_json_atomic(record_path, record)
    print(summary(outcome, seconds))
    print(f"aggregate with: python -m evaluation.aggregate --root={folder}")
    if signum:
        unfinished = len(outcome["interrupted"]) + len(outcome["not_started"])
        print(f"interrupted by {preemption.signal_name(signum)}: {unfinished} points unfinished; rerun the same "
              f"command to finish them", file=sys.stderr, flush=True)
        sys.exit(128 + signum)
    sys.exit(1 if outcome["failed"] else 0)


def run_main():
    cli.run(define, main)


if __name__ == "__main__":
    run_main()
