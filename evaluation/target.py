"""The betas at which a beta-conditional model reaches given rates, found without training.

    python -m evaluation.target --workdir=CONDITIONAL_RUN --rates=r1,r2 [--out=target.json]

A conditional model's rates move smoothly with log beta, so the search is Newton's method on
log((rate + 1) / (target + 1)) (the error hvae_repr.rate_targets trains against) in log beta, with a
finite-difference Jacobian: each iteration evaluates the current betas and one step along each searched
layer's log beta in one pass over the examples (hvae_repr.passes.dataset_passes), first on the first
--subset test examples, then refined on the whole test set, whose rates are the ones reported. The betas
stay inside the model's --beta_range (where it was trained); a target that the range cannot reach is
reported as such. "-" keeps a layer's beta at the run's --betas value.

The betas found are a starting point for a separately trained model that trains to the same rates:
the program prints that training command (--betas plus --target_rates).
"""
import dataclasses
import math
import shlex

import numpy as np

import hvae_repr  # noqa: F401  (sets TF environment variables before TF loads)
from hvae_repr import batching, cli, io_utils, passes, rate_targets
from hvae_repr.cli import setting
from hvae_repr.runs import RunDir

FINITE_STEP = 0.25  # log-beta step of the finite differences
MAX_STEP = 1.5      # largest Newton step in log beta per iteration (the rates are smooth, not linear)


@dataclasses.dataclass(frozen=True)
class TargetCommand:
    workdir: str = setting("", "Run folder of a beta-conditional model (--conditional_betas).")
    rates: tuple = setting((), "Target rates in nats per example, z1 first; - keeps that layer's beta at the "
                               "run's --betas value.", item=str)
    subset: int = setting(1000, "Test examples of the coarse search (0 = all); the result is refined and "
                                "reported on the whole test set.")
    iterations: int = setting(8, "Newton iterations on the subset (the whole set gets up to 3 more).")
    seed: int = setting(-1, "Seed of the posterior samples (-1 = the run's training seed, as in evaluate).")
    batch_size: int = setting(batching.DEFAULT_BATCH_SIZE, "Examples per model call.")
    out: str = setting("", "Also write the result as JSON to this file.")


def _errors(rates, targets, adapted):
    return np.log((rates[adapted] + rate_targets.RATE_OFFSET_NATS) / (targets[adapted] + rate_targets.RATE_OFFSET_NATS))


def _reached(rates, targets, adapted):
    return all(abs(rates[l] - targets[l]) <= rate_targets.tolerance(targets[l]) for l in np.flatnonzero(adapted))


def search(model, x_subset, x_all, targets, start_betas, beta_range, seed, iterations=8, batch_size=500, log=None):
    """Newton's search (module docstring) for the betas at which `model` reaches `targets` ([float or None]
    per layer, z1 first). Returns (betas, PassArrays of the whole set at them, history of (betas, rates))."""
    adapted = np.array([t is not None for t in targets])
    goal = np.array([t if t is not None else 0.0 for t in targets])
    low, high = (math.log(b) for b in beta_range)
    u = np.clip(np.log(np.asarray(start_betas, np.float64)), low, high)
    history = []

    def evaluate(x, with_steps):
        points = [u] + ([u + FINITE_STEP * np.eye(len(u))[l] for l in np.flatnonzero(adapted)] if with_steps else [])
        arrays = passes.dataset_passes(model, x, seed, [tuple(np.exp(p)) for p in points], batch_size, views=False)
        rates = [a.rates.mean(0).astype(np.float64) for a in arrays]
        history.append((np.exp(u).tolist(), rates[0].tolist()))
        if log:
            log(f"  betas {', '.join(f'{b:.4g}' for b in np.exp(u))}: rates "
                f"{', '.join(f'{r:.3f}' for r in rates[0])} nats ({len(x)} examples)")
        return arrays[0], rates

    current = None  # the whole set's arrays at the current betas, once evaluated there
    for x, count in ((x_subset, iterations), (x_all, 3)):
        for _ in range(count):
            arrays, rates = evaluate(x, with_steps=True)
            current = arrays if x is x_all else None
            if _reached(rates[0], goal, adapted):
                break
            e = _errors(rates[0], goal, adapted)
            jacobian = np.stack([(_errors(r, goal, adapted) - e) / FINITE_STEP for r in rates[1:]], axis=1)
            step, *_ = np.linalg.lstsq(jacobian, -e, rcond=1e-6)
            moved = np.clip(u[adapted] + np.clip(step, -MAX_STEP, MAX_STEP), low, high)
            if np.allclose(moved, u[adapted]):  # pinned at the range's edges: no progress left
                break
            u[adapted], current = moved, None
    if current is None:
        current, _ = evaluate(x_all, with_steps=False)  # the whole set at the last betas
    return np.exp(u), current, history


def find_betas(command, log=print):
    """Loads the conditional run, searches and returns the result dict (ValueError, one line, for bad input)."""
    from hvae_repr import trainer
    if not command.workdir:
        raise ValueError("--workdir is required: pass the folder of a beta-conditional run")
    run = RunDir(command.workdir)
    run.require_trained()
    config = run.read_config()
    if not config.model.conditional_betas:
        raise ValueError(f"{command.workdir} holds a model trained at fixed betas; the search needs a "
                         f"beta-conditional run (--conditional_betas)")
    texts = rate_targets.parse_targets(command.rates, config.model.num_layers)
    if not texts:
        raise ValueError("--rates is required: one target rate in nats per layer, z1 first (- keeps a layer's beta)")
    for name in ("iterations", "batch_size"):
        if getattr(command, name) < 1:
            raise ValueError(f"--{name} must be at least 1 (got {getattr(command, name)})")
    if command.subset < 0:
        raise ValueError(f"--subset must be >= 0, 0 meaning the whole test set (got {command.subset})")
    targets = rate_targets.targets_of(texts)
    model, config = run.load_model()
    x = trainer.runs_dataset(config).x_test
    seed = config.seed if command.seed < 0 else command.seed
    low, high = config.model.beta_range
    log(f"searching betas in {low:g}..{high:g} for rates {','.join(texts)} nats")
    betas, arrays, history = search(model, x[:command.subset] if command.subset else x, x, targets, config.betas,
                                    (low, high), seed, command.iterations, command.batch_size, log)
    summary = passes.rate_summary(arrays, seed, command.batch_size)
    layers, out_of_range = {}, []
    for l, (target, beta) in enumerate(zip(targets, betas)):
        name = f"z{l + 1}"
        achieved = summary["rate_nats"][name]["mean"]
        if target is None:
            layers[name] = {"target_nats": None, "beta": float(beta), "achieved_nats": achieved}
            continue
        reached = abs(achieved - target) <= rate_targets.tolerance(target)
        edge = None if reached else "low" if math.isclose(beta, low, rel_tol=1e-6) else \
            "high" if math.isclose(beta, high, rel_tol=1e-6) else None
        layers[name] = {"target_nats": target, "beta": float(beta), "achieved_nats": achieved,
                        "error_nats": achieved - target, "tolerance_nats": rate_targets.tolerance(target),
                        "reached": bool(reached), "at_edge": edge}
        if edge:
            out_of_range.append(rate_targets.unreachable_line(name, target, achieved, edge, low, high)
                                .replace(" for the last 25% of training", "").replace("--beta_range", "the "
                                                                                      "model's --beta_range"))
    start = dataclasses.replace(config, betas=tuple(float(f"{b:.4g}") for b in betas), target_rates=texts,
                                model=dataclasses.replace(config.model, conditional_betas=False), workdir="unnamed")
    argv = [a for a in cli.to_argv(start) if not a.startswith("--workdir=")]
    return {"workdir": command.workdir, "targets": dict(zip([f"z{l + 1}" for l in range(len(targets))], targets)),
            "betas": {k: v["beta"] for k, v in layers.items()}, "layers": layers,
            "all_reached": all(v.get("reached", True) for v in layers.values()), "out_of_range": out_of_range,
            "distortion_nats": summary["distortion_nats"], "rates": summary, "beta_range": [low, high],
            "num_test_examples": int(len(x)), "search_examples": int(command.subset or len(x)),
            "evaluations": history, "train_command": "python -m hvae_repr.train " + shlex.join(argv),
            "settings": dataclasses.asdict(command)}


def format_result(result):
    rows = [f"{'layer':<7}{'target':>9}{'beta':>10}{'rate (nats)':>13}  status"]
    for name in sorted(result["layers"], key=lambda k: int(k[1:]), reverse=True):
        v = result["layers"][name]
        target = "-" if v["target_nats"] is None else f"{v['target_nats']:g}"
        status = "fixed" if v["target_nats"] is None else "reached" if v["reached"] else \
            f"not reached ({v['error_nats']:+.3g} nats)"
        rows.append(f"{name:<7}{target:>9}{v['beta']:>10.4g}{v['achieved_nats']:>13.3f}  {status}")
    rows.append(f"distortion {result['distortion_nats']['mean']:.3f} nats per test example ({result['num_test_examples']}"
                f" examples); betas searched in {result['beta_range'][0]:g}..{result['beta_range'][1]:g}")
    rows += [f"out of range: {line}" for line in result["out_of_range"]]
    rows.append(f"--betas={','.join(f'{b:.4g}' for b in result['betas'].values())}")
    rows.append(f"train to these rates from there: {result['train_command']}")
    return "\n".join(rows)


def define(flag_values):
    cli.define_flags(TargetCommand, flag_values)


def main(flag_values):
    with cli.one_line_errors():
        command = cli.from_flags(TargetCommand, flag_values)
        result = find_betas(command)
        if command.out:
            io_utils.write_json_atomic(command.out, result)
    print(format_result(result))


def run_main():
    cli.run(define, main)


if __name__ == "__main__":
    run_main()
