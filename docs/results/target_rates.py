"""Writes docs/results/target_rates.md (and its table as CSV beside it): runs trained to target rates against
a fixed-beta run of the same length, from their train_result.json files, and the training cost of targeting
measured by benchmarks/target_rates.py.

The experiment (binarized MNIST, the paper's conv model, 20 epochs; five targets across the rate plane
(R(z1|z2), R(z2)) picked from the measured 5x5 beta grid, docs/results/mnist_grid/results.csv: one with
R(z2) = 0, one with R(z1|z2) near 0, the latter also with a wider beta range), one launch.sweep command per
target on one root, one fixed-beta run at betas (1, 1), and the cost benchmark (fixed and targeted runs in turns
in one process: the sweep's runs shared the 2 cores with other jobs, so their wall times are no cost):

    for t in 40,0 0.3,30 15,15 80,10 5,45; do
      python -m launch.sweep --root=sweeps/target_rates --target_rates_1=${t%,*} --target_rates_2=${t#*,} \\
          --dataset=binary_mnist --data_dir=/work/shared/data --architecture=conv --epochs=20 --noevaluate
    done
    python -m launch.sweep --root=sweeps/target_rates --target_rates_1=0.3 --target_rates_2=30 --beta_range=0.1,100 \\
        --dataset=binary_mnist --data_dir=/work/shared/data --architecture=conv --epochs=20 --noevaluate
    python -m launch.sweep --root=sweeps/target_rates_fixed --betas_1=1 --betas_2=1 \\
        --dataset=binary_mnist --data_dir=/work/shared/data --architecture=conv --epochs=20 --noevaluate
    python -m benchmarks.target_rates --data_dir=/work/shared/data --epochs=2 --pairs=3 --out=target_cost.json
    python docs/results/target_rates.py --root=sweeps/target_rates --fixed=sweeps/target_rates_fixed \\
        --cost=target_cost.json

Success (issue 21): every target within 5% or 0.3 nats (whichever is larger) on the test set, at a training
cost (train_seconds) within 10% of the fixed-beta run's.
"""
import argparse
import csv
import glob
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pages  # noqa: E402

COST_LIMIT = 1.10  # the targeted runs' training time at most 10% above the fixed run's


def train_results(root):
    """(run folder, train_result.json) of every finished run under `root`, sorted by folder."""
    out = []
    for path in sorted(glob.glob(os.path.join(root, "**", "train_result.json"), recursive=True)):
        with open(path) as f:
            out.append((os.path.relpath(os.path.dirname(path), root), json.load(f)))
    return out


def layers(result):
    return sorted(result["test"]["rate_nats"], key=lambda k: int(k[1:]))


def row(run, result):
    """One table row: target, achieved test-set rate and final beta per layer, D, seconds."""
    section = result.get("target_rates", {}).get("layers", {})
    out = {"run": run, "D_nats": result["test"]["distortion_nats"]["mean"], "train_seconds": result["train_seconds"],
           "epochs": result["epochs"], "all_reached": result.get("target_rates", {}).get("all_reached"),
           "beta_range": "..".join(f"{b:g}" for b in result["run_config"]["model"]["beta_range"])}
    for name in layers(result):
        out[f"target_{name}"] = section.get(name, {}).get("target_nats")
        out[f"achieved_{name}"] = result["test"]["rate_nats"][name]["mean"]
        out[f"beta_{name}"] = result["betas"][name]
        out[f"reached_{name}"] = section.get(name, {}).get("reached")
        out[f"pinned_{name}"] = section.get(name, {}).get("pinned")
    return out


def _cell(value, digits=2):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(rows, names):
    head = (["target " + "/".join(f"R({n})" for n in reversed(names)), "achieved", "reached", "final betas "
             + "/".join(f"b{n[1:]}" for n in reversed(names)), "beta range", "D (nats)", "seconds"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            ", ".join(_cell(r[f"target_{n}"], 1) for n in reversed(names)),
            ", ".join(_cell(r[f"achieved_{n}"]) for n in reversed(names)),
            ", ".join(_cell(r[f"reached_{n}"]) + (f" (pinned {r[f'pinned_{n}']})" if r[f"pinned_{n}"] else "")
                      for n in reversed(names) if r[f"target_{n}"] is not None) or "-",
            ", ".join(f"{r[f'beta_{n}']:.3g}" for n in reversed(names)), r["beta_range"],
            _cell(r["D_nats"]), _cell(r["train_seconds"], 0)]) + " |")
    return lines


def cost_lines(cost):
    """What benchmarks/target_rates.py measured (its JSON, or None): the targeted runs' training time over the
    fixed runs'."""
    if cost is None:
        return ["No cost measurement given (--cost): the runs above shared the machine with other jobs, so their "
                "seconds are no cost comparison."]
    s, m = cost["settings"], cost["machine"]
    ratio = cost["median_ratio"]
    return [f"Training cost, from `python -m benchmarks.target_rates` ({s['dataset']}, {s['architecture']} model, "
            f"{s['epochs']} epochs from scratch per run, {s['threads']} thread(s), targets {s['target_rates']} adapted "
            f"from the first step; {s['pairs']} pairs of a fixed and a targeted run in turns in one process, on "
            f"{m['cpu_model']}, {m['cores']} cores): targeted / fixed train_seconds per pair "
            + ", ".join(f"{r:.3f}" for r in cost["ratios"]) + f", median **{ratio:.3f}**: "
            f"{'within' if ratio <= COST_LIMIT else '**above**'} the 10% allowance (the pairs spread as the machine's "
            f"noise does: the fixed runs alone span {min(cost['train_seconds']['fixed']):.1f}.."
            f"{max(cost['train_seconds']['fixed']):.1f} s). Seconds: fixed "
            + ", ".join(f"{t:.1f}" for t in cost["train_seconds"]["fixed"]) + "; targeted "
            + ", ".join(f"{t:.1f}" for t in cost["train_seconds"]["targeted"]) + "; 1-minute load average after "
            "each run " + ", ".join(f"{v:.1f}" for v in cost["load_average_after_each_run"] if v is not None) + "."]


def build(root, fixed_root, out, cost_file=""):
    targeted = [row(run, res) for run, res in train_results(root) if "target_rates" in res]
    fixed = [row(run, res) for run, res in train_results(fixed_root) if "target_rates" not in res]
    if not targeted or not fixed:
        raise SystemExit(f"need finished targeted runs under {root} and a fixed-beta run under {fixed_root}")
    names = layers(train_results(root)[0][1])
    targeted.sort(key=lambda r: [-(r[f"target_{n}"] or 0) for n in reversed(names)])
    reference = fixed[0]
    cost = max(r["train_seconds"] for r in targeted) / reference["train_seconds"]
    reached = sum(bool(r["all_reached"]) for r in targeted)
    goals = {tuple(r[f"target_{n}"] for n in names) for r in targeted}
    met = {tuple(r[f"target_{n}"] for n in names) for r in targeted if r["all_reached"]}
    fixed_betas = ", ".join(f"{reference['beta_' + n]:g}" for n in reversed(names))
    lines = ["<!-- Generated by docs/results/target_rates.py from the runs below; do not edit by hand. -->",
             "# Training to target rates", "", "```"]
    for record in pages.records(root) + pages.records(fixed_root):
        lines.append("python -m launch.sweep " + " ".join(record["argv"][1:]))
    benchmark = None
    if cost_file:
        with open(cost_file) as f:
            benchmark = json.load(f)
        settings = benchmark["settings"]
        lines.append("python -m benchmarks.target_rates " + " ".join(
            f"--{k}={settings[k]}" for k in ("dataset", "data_dir", "architecture", "epochs", "pairs", "threads",
                                             "target_rates", "out")))
    lines += [f"python docs/results/target_rates.py --root={root} --fixed={fixed_root}"
              + (f" --cost={cost_file}" if cost_file else ""), "```", "",
              f"{len(targeted)} targeted runs of {targeted[0]['epochs']} epochs; {reached} reached every target "
              f"within 5% or 0.3 nats (whichever is larger) on the test set; {len(met)} of the {len(goals)} distinct "
              f"targets were reached by at least one run (the beta range column says with which). Achieved rates are "
              f"test-set means per example (train_result.json), the betas those at the end of training.", "",
              *table(targeted, names), "",
              f"Fixed-beta run of the same length ({reference['run']}, betas {fixed_betas}): D = "
              f"{reference['D_nats']:.2f} nats, {reference['train_seconds']:.0f} s of training; the slowest targeted "
              f"run took {cost:.2f} times as long, but these runs shared the 2 cores with other jobs (the load "
              f"differed from run to run), so the cost is the benchmark's:", "", *cost_lines(benchmark)]
    folder = os.path.splitext(out)[0]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(targeted[0]))
        writer.writeheader()
        writer.writerows(targeted + fixed)
    if cost_file:  # the measurement beside the page, as the table is
        shutil.copy(cost_file, os.path.join(folder, "cost.json"))
        lines.append(f"The benchmark's figures: [{os.path.basename(folder)}/cost.json]({os.path.basename(folder)}/cost.json).")
    pages.write(out, lines, folder, [], "Every run's numbers")
    return {"targeted": targeted, "fixed": reference, "cost_ratio": cost, "all_reached": reached,
            "targets_met": len(met), "targets": len(goals)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the target-rate sweep's root")
    parser.add_argument("--fixed", required=True, help="the fixed-beta run's sweep root (or run folder)")
    parser.add_argument("--cost", default="", help="the JSON file of python -m benchmarks.target_rates --out")
    parser.add_argument("--out", default=os.path.join(HERE, "target_rates.md"))
    args = parser.parse_args()
    build(args.root, args.fixed, args.out, args.cost)


if __name__ == "__main__":
    main()
