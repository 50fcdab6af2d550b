"""Evaluates a trained run on its test set and writes eval_result.json.

    python -m evaluation.evaluate --workdir=RUN      (or: hvae-evaluate --workdir=RUN)

The evaluation is a list of stages (evaluation.stages); each returns its own section of the
result, and a stage that reads other sections names them. Every number is per test example,
in nats unless its key says otherwise; result["seconds"] holds each stage's time.
"""
import contextlib
import dataclasses
import os
import time
from typing import Callable, ClassVar, NamedTuple

import numpy as np

import hvae_repr  # noqa: F401  (sets TF environment variables before TF loads)
from evaluation import stages
from evaluation.options import NEUTRAL_SETTINGS, EvalOptions
from hvae_repr import cli, io_utils, passes, preemption, rate_targets
from hvae_repr.cli import nested, setting
from hvae_repr.runs import RunDir
from hvae_repr.trainer import library_versions


@dataclasses.dataclass(frozen=True)
class EvaluateCommand:
    """The flags of `python -m evaluation.evaluate`."""
    help_group: ClassVar[str] = "run"
    workdir: str = setting("", "Run folder of a trained model (holds config.json and checkpoints).")
    overwrite: bool = setting(False, "Replace an eval_result.json computed with other settings (by default the "
                                     "evaluation refuses, so a quick check cannot replace a full one).")
    options: EvalOptions = nested(EvalOptions)


class Stage(NamedTuple):
    name: str                    # its section of eval_result.json
    run: Callable                # (EvalInput, **needed sections) -> section
    needs: tuple = ()            # sections of earlier stages it reads


STAGES = (
    Stage("rates", stages.rates),
    Stage("importance_weighted", stages.importance_weighted),
    Stage("probes", stages.probe_results),
    Stage("mutual_information", stages.mutual_informations),
    Stage("bound_t2", stages.bound_t2, needs=("rates", "probes", "mutual_information")),
    Stage("bound_t1", stages.bound_t1),
    Stage("reference_classifier", stages.reference_classifier_info),
    Stage("reconstruction", stages.reconstruction),
    Stage("generation", stages.generation),
    Stage("generative_information", stages.generative_information),
    Stage("clustering", stages.clustering),
    Stage("figures", stages.figures),
)


def resolved(options, config):
    """The options with the run's seed for seed -1 and the run's betas for none (as recorded in the result);
    ValueError for betas that the run cannot be evaluated at."""
    betas = tuple(options.betas) or tuple(config.betas)
    if len(betas) != config.model.num_layers:
        raise ValueError(f"--betas has {len(betas)} values but the run has {config.model.num_layers} latent "
                         f"layers; give one beta per layer, z1 first")
    if betas != tuple(config.betas) and not config.model.conditional_betas:
        raise ValueError(f"the run was trained at betas {','.join(f'{b:g}' for b in config.betas)} and is not "
                         f"beta-conditional; evaluate it without --betas (or train with --conditional_betas)")
    if min(betas) <= 0:
        raise ValueError(f"--betas must be positive (got {','.join(f'{b:g}' for b in betas)})")
    return dataclasses.replace(options, betas=betas, seed=config.seed if options.seed < 0 else options.seed)


def load_input(workdir, options, test_pass=True):
    """A finished run's model and test set, and one pass of the model over it (stages.EvalInput; without
    `test_pass` its arrays are None, for a caller that runs the passes itself). ValueError (one line) when
    the run cannot be evaluated."""
    from hvae_repr import trainer
    run = RunDir(workdir)
    run.require_trained()
    model, config = run.load_model()
    options = resolved(options, config)
    dataset = trainer.runs_dataset(config)
    x, y = dataset.x_test, np.asarray(dataset.y_test)
    if options.max_test:
        x, y = x[:options.max_test], y[:options.max_test]
    arrays = passes.dataset_pass(model, x, options.seed, options.batch_size, betas=options.betas) if test_pass else None
    if arrays is not None:
        passes.check_finite(arrays, workdir)
    return stages.EvalInput(model=model, config=config, dataset=dataset, x=x, labels=y, arrays=arrays,
                            options=options, seed=options.seed, betas=options.betas)


def evaluate(workdir, options=EvalOptions(), verbose=True, inp=None):
    """Evaluates the finished run in `workdir`; returns the result dict (does not write it; the figures
    stage writes workdir/figures/).

    inp: load_input(workdir, options) when the caller has it already.
    """
    started = time.perf_counter()
    inp = dataclasses.replace(inp or load_input(workdir, options), folder=os.path.abspath(workdir))
    passes.check_finite(inp.arrays, workdir)  # the stages' estimators need finite numbers
    seconds = {"load_and_test_pass": time.perf_counter() - started}
    result = {"workdir": os.path.abspath(workdir), "dataset": inp.dataset.name,
              "num_test_examples": int(len(inp.labels)), "num_classes": int(inp.dataset.num_classes),
              "latent_names": list(inp.latent_names), "betas": dict(zip(inp.latent_names, inp.betas)),
              "run_config": inp.config.to_json(), "settings": dataclasses.asdict(inp.options)}
    model_config = inp.config.model
    if model_config.conditional_betas:
        low, high = model_config.beta_range
        result["conditional"] = {"beta_range": [low, high], "betas_in_range": all(low <= b <= high for b in inp.betas),
                                 "note": "a beta-conditional model evaluated at these betas"}
        if inp.config.fixed_condition:
            result["conditional"]["note"] = (f"a beta-conditional model fine-tuned at these fixed betas for "
                                             f"{inp.config.epochs} epochs from {inp.config.init_from}")
        if not result["conditional"]["betas_in_range"]:
            result["conditional"]["warning"] = (f"betas outside the training range {low:g}..{high:g}: the model "
                                                f"extrapolates")
    with preemption.deferred():  # a SIGTERM or SIGINT stops the evaluation between stages
        for number, stage in enumerate(STAGES, 1):
            preemption.check(lambda: f"the evaluation of {workdir} stopped before its {stage.name} stage; "
                                     f"{RunDir.EVAL_RESULT} was not written; rerun the same command to evaluate it")
            if verbose:
                print(f"[evaluate] {number}/{len(STAGES)} {stage.name} ...", flush=True)
            clock = time.perf_counter()
            result[stage.name] = stage.run(inp, **{name: result[name] for name in stage.needs})
            seconds[stage.name] = time.perf_counter() - clock
            if verbose:
                print(f"[evaluate] {number}/{len(STAGES)} {stage.name}: {seconds[stage.name]:.1f} s", flush=True)
    rate_targets.annotate_evaluation(result, inp.config, workdir)  # a --target_rates run: its final betas
    result["versions"] = library_versions()
    result["seconds"] = dict(seconds, total=sum(seconds.values()))
    return result


def write_result(workdir, result, overwrite=False):
    """Writes RUN/eval_result.json atomically; refuses to replace one of other settings unless `overwrite`."""
    run = RunDir(workdir)
    run.refuse_other_result(run.EVAL_RESULT, result["settings"], NEUTRAL_SETTINGS, overwrite)
    io_utils.write_json_atomic(run.file(run.EVAL_RESULT), result)
    return run.file(run.EVAL_RESULT)


def define(flag_values):
    cli.define_flags(EvaluateCommand, flag_values)


def main(flag_values):
    with contextlib.ExitStack() as held:
        with cli.one_line_errors():  # bad flags, run folder or data set: one line, no traceback
            command = cli.from_flags(EvaluateCommand, flag_values)
            if not command.workdir:
                raise ValueError("--workdir is required: pass the folder of a trained run")
            run = RunDir(command.workdir)
            run.require_trained()
            options = resolved(command.options, run.read_config())
            run.refuse_other_result(run.EVAL_RESULT, dataclasses.asdict(options), NEUTRAL_SETTINGS,
                                    command.overwrite)
            held.enter_context(run.lock())
            print(f"[evaluate] loading {command.workdir} and its test set, one pass of the model ...", flush=True)
            clock = time.perf_counter()
            inp = load_input(command.workdir, options)
            print(f"[evaluate] loaded: {time.perf_counter() - clock:.1f} s", flush=True)
        with preemption.exit_on_interrupt():  # a SIGTERM or SIGINT: one line, exit 143 or 130
            result = evaluate(command.workdir, options, inp=inp)
            with cli.one_line_errors((io_utils.WriteFailed,), status=1), io_utils.reported_write(
                    run.file(run.EVAL_RESULT), "the run (and an earlier eval_result.json) is intact; free space "
                                               "(or fix the permissions), then rerun the same command"):
                path = write_result(command.workdir, result, overwrite=True)  # checked above
    print(format_summary(result))
    print(f"wrote {path}")


def format_summary(result):
    rates = result["rates"]
    lines = [f"{result['dataset']}: {result['num_test_examples']} test examples"]
    protocol = result["settings"]["probe_protocol"]
    for name in result["latent_names"]:
        r = rates["rate_nats"][name]
        if name not in result["mutual_information"]:  # --layers=top
            lines.append(f"  {name}: rate {r['mean']:.3f} +- {r['stderr']:.3f} nats")
            continue
        mi = result["mutual_information"][name]["label"]
        acc = result["probes"]["on_means"][name]["logistic_regression"]["accuracy"] \
            if "logistic_regression" in result["probes"]["on_means"][name] else float("nan")
        lines.append(f"  {name}: rate {r['mean']:.3f} +- {r['stderr']:.3f} nats, I(y;{name}) in "
                     f"[{mi['lower_bound_nats']:.3f}, {mi['mixture_estimate_nats']:.3f}] nats"
                     f"{' (mixture saturated)' if mi['saturated'] else ''}, logistic probe on means "
                     f"{acc:.3f} ({protocol})")
    lines.append(f"  distortion {rates['distortion_nats']['mean']:.3f} nats, negative ELBO "
                 f"{rates['neg_elbo_nats']['mean']:.3f} nats")
    lines.append(f"  T2 violated: {result['bound_t2']['violated']}; T1: {result['bound_t1']['status']}"
                 f" (violated: {result['bound_t1']['violated']})")
    lines.append(f"  PSNR {result['reconstruction']['psnr']['pooled_mse_db']:.2f} dB (pooled MSE), classifier accuracy on "
                 f"reconstructions {result['reconstruction']['classifier_accuracy']:.3f} (on test images "
                 f"{result['reference_classifier']['test_accuracy']:.3f})")
    g = result["generation"]
    lines.append(f"  Inception-style score {g['inception_style_score']['inception_score']['mean']:.2f}, "
                 f"Frechet distance {g['frechet_distance']['value']:.2f} (reference CNN, not Inception)")
    for section in ("reconstruction", "generation"):
        if "warning" in result[section]:
            lines.append(f"  warning: {result[section]['warning']}")
    drawn = result.get("figures", {})
    if drawn.get("status") == "drawn":
        lines.append(f"  figures: {', '.join(drawn['files'].values())} (in {result['workdir']})")
    elif drawn:
        lines.append(f"  figures {drawn['status']}: {drawn['reason']}")
    lines.append(f"  {result['seconds']['total']:.1f} s")
    return "\n".join(lines)


def run_main():
    cli.run(define, main)


if __name__ == "__main__":
    run_main()
