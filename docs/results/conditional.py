"""Writes docs/results/conditional.md (and copies the map's table and figures beside it): the 21x21 map of one
beta-conditional model on binarized MNIST, what it cost, the paper's findings read off it beside the
separately trained 5x5 grid, and its spot points against the best known separately trained models.

    python -m launch.sweep --root=sweeps/mnist_map --conditional --balance_betas \\
        --betas_1=logspace:0.1,10,21 --betas_2=logspace:0.1,10,21 --dataset=binary_mnist --data_dir=/work/shared/data \\
        --architecture=conv --channels=32 --epochs=60 --learning_rate=2e-3 --lr_schedule=cosine \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000 \\
        --eval_knn_k=0 --eval_generative_draws=0 --noeval_figures
    python -m evaluation.aggregate --root=sweeps/mnist_map
    (cd REPO && python -m benchmarks.run --sections=step --cases=mnist_conv --results_dir=/tmp/bench_here \\
        --docs=/tmp/bench_here/benchmarks.md
        cp /tmp/bench_here/amd-epyc_2-cores.json docs/results/conditional/step_benchmark_map_cpu.json)
    for K in 1 2 5; do python -m launch.sweep ...the map's first command, with --betas_1=0.1,1,10 \\
            --betas_2=0.1,1,10... --refine_epochs=$K --refine_learning_rate=3e-4 --workers=2
        python -m evaluation.aggregate --root=sweeps/mnist_map/refined_${K}epochs_lr0.0003; done
    cp REPO/docs/results/conditional_changes/spots.csv /tmp/conditional_changes_spots.csv
    python REPO/docs/results/conditional.py --root=sweeps/mnist_map --grid=REPO/docs/results/mnist_grid \\
        --reference=sweeps/mnist_spots_100ep --reference=sweeps/mnist_spots_seeds \\
        --reference=sweeps/mnist_spots_100ep_lr4e-3_cosine --reference=sweeps/mnist_spots_warmup \\
        --reference=sweeps/mnist_spots_warmup_100ep \\
        --seeds=sweeps/mnist_spots_seeds \\
        --refined=sweeps/mnist_map/refined_1epochs_lr0.0003 --refined=sweeps/mnist_map/refined_2epochs_lr0.0003 \\
        --refined=sweeps/mnist_map/refined_5epochs_lr0.0003 --rows=/tmp/conditional_changes_spots.csv \\
        --benchmark REPO/docs/results/conditional/step_benchmark_map_cpu.json \\
            REPO/docs/results/conditional/step_benchmark_target_cpu.json --out=REPO/docs/results/conditional.md

(run in ~/hvae_runs, REPO being the checkout and the map run alone on the machine; PYTHONPATH=REPO for the
programs. docs/results/mnist_grid is the committed table of the 5x5 grid of separately trained models with
the paper's settings, docs/results/mnist_grid.py; /tmp/conditional_changes_spots.csv a copy of
docs/results/conditional_changes/spots.csv, which keeps the rows of the reference sweeps whose folders are
gone; step_benchmark_target_cpu.json is benchmarks/results/amd-epyc_2-cores.json, measured on 2026-11-26,
the day of the first map's 39.6 minutes, on an AVX-512 EPYC like its.)

Every number in the page is read from the map's results.csv, sweep_*.json and eval_result.json, its
model's config.json and train_result.json, the grid's results.csv and the spot rows; the findings are
judged by docs/results/mnist_grid.py's criteria, the spot points by evaluation/spots.py's.
"""
import argparse
import csv
import glob
import json
import os

import numpy as np

import mnist_grid
import pages
from evaluation import spots
from hvae_repr import io_utils, machine

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_MINUTES = 60  # issue 16: the whole map, training and evaluation, on a 2-core CPU like the AVX-512 one
REPOSITORY = os.path.dirname(os.path.dirname(HERE))
# (stage_seconds key of a sweep record, its name on the page): the parts of a map command's wall time
SHOWN_STAGES = (("model", "training the model"), ("grid_load", "loading it"),
                ("grid_test_pass", "test-set passes"), ("grid_stages", "the points' metrics"),
                ("grid_write", "writing the points' files"))
SHOWN_CHARACTERS = 700  # a finding's evidence on the page is cut to about this length (the table has it all)


def shown(path):
    """A path as the page shows it: relative to the repository when inside it."""
    relative = os.path.relpath(os.path.abspath(path), REPOSITORY)
    return path if relative.startswith("..") else relative


def cut(text, limit=SHOWN_CHARACTERS):
    """`text`, a list of '; '-separated items, cut after the item that passes `limit` characters."""
    items, kept = text.split("; "), []
    for item in items:
        kept.append(item)
        if len("; ".join(kept)) > limit:
            break
    left = len(items) - len(kept)
    return "; ".join(kept) + (f"; and {left} more (results.csv has every point)" if left else "")


def load(root):
    """{(beta_z1, beta_z2): results.csv row} of the evaluated points."""
    with open(os.path.join(root, "results.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "evaluated"]
    return {spots.point_of(r): r for r in rows}


def number(row, column):
    return float(row[column]) if row.get(column, "") != "" else np.nan


def side_by_side(separate, conditional, path):
    """The rate plane of both, x = R(z2), y = R(z1|z2), colour = pooled PSNR on one scale."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    psnr, r1, r2 = "reconstruction_psnr_pooled_mse_db", "rate_nats_z1", "rate_nats_z2"
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    values = [number(r, psnr) for r in list(separate.values()) + list(conditional.values())]
    low, high = np.nanmin(values), np.nanmax(values)
    for ax, rows, title in ((axes[0], separate, f"{len(separate)} separately trained models"),
                            (axes[1], conditional, f"one conditional model at {len(conditional)} points")):
        points = ax.scatter([number(r, r2) for r in rows.values()], [number(r, r1) for r in rows.values()],
                            c=[number(r, psnr) for r in rows.values()], vmin=low, vmax=high, cmap="viridis",
                            s=36 if len(rows) < 50 else 14)
        shared = [k for k in spots.SPOTS if k in rows]
        ax.scatter([number(rows[k], r2) for k in shared], [number(rows[k], r1) for k in shared], s=110,
                   facecolors="none", edgecolors="red", linewidths=1.2, label="spot points")
        ax.set_title(title)
        ax.set_xlabel("R(z2), nats")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_yscale("symlog", linthresh=1)
    axes[0].set_ylabel("R(z1|z2), nats")
    axes[1].legend(loc="lower left")
    fig.colorbar(points, ax=axes, label="PSNR, dB (pooled MSE)")
    io_utils.write_atomic(path, lambda f: fig.savefig(f, dpi=110, format="png"), mode="wb", suffix=".png")


def restricted(table, points):
    """mnist_grid.load's table keeping only `points` (rounded betas)."""
    keep = np.array([(round(a, 6), round(b, 6)) in points for a, b in zip(table["b1"], table["b2"])])
    return {k: v[keep] for k, v in table.items()}


def t2_line(table):
    flagged = int(np.nansum(table["t2"]))
    return (f"{flagged} of {int(np.sum(np.isfinite(table['t2'])))} points flagged violated",
            "agrees" if flagged == 0 else "differs")


def findings_section(grid_root, map_root):
    """The paper's findings (mnist_grid.findings' criteria) read off the separately trained grid, the whole
    map, and the map at the grid's own points."""
    separate, whole = mnist_grid.load(grid_root), mnist_grid.load(map_root)
    grid_points = {(round(a, 6), round(b, 6)) for a, b in zip(separate["b1"], separate["b2"])}
    at_grid = restricted(whole, grid_points)
    tables = {"separate": separate, "map": whole, "map_at_grid": at_grid}
    found = {name: mnist_grid.findings(t) for name, t in tables.items()}
    lines = ["## The paper's findings: the map beside the separately trained grid", "",
             f"Each finding is judged by the criterion of docs/results/mnist_grid.py on three tables: the "
             f"{len(separate['b1'])} separately trained models of `{shown(grid_root)}`, the conditional model's {len(whole['b1'])} map points, and the map at the grid's own "
             f"{len(at_grid['b1'])} betas (the same points as the grid, so the peaks are located on the same "
             "candidates).", "",
             "| the paper's finding | separate grid | map | map at the grid's betas | the map reads the same |",
             "|---|---|---|---|---|"]
    for i, (claim, _, verdict, criterion) in enumerate(found["separate"]):
        others = [found[name][i][2] for name in ("map", "map_at_grid")]
        same = "yes" if all(v == verdict for v in others) else "no"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in (f"{claim} ({criterion})", verdict, *others, same))
                     + " |")
    t2 = {name: t2_line(t) for name, t in tables.items()}
    lines.append("| T2 holds at every point: no sample-based probe above its bound (criterion: no point flagged) | "
                 + " | ".join(f"{t2[n][1]} ({t2[n][0]})" for n in tables) + " | "
                 + ("yes" if len({v for _, v in t2.values()}) == 1 else "no") + " |")
    lines += ["", "What each table shows:", ""]
    for i, (claim, evidence, _, _) in enumerate(found["separate"]):
        lines += [f"- {claim}", f"  - separate grid: {cut(evidence)}", f"  - map: {cut(found['map'][i][1])}",
                  f"  - map at the grid's betas: {cut(found['map_at_grid'][i][1])}"]
    return lines + [""]


def stage_seconds(root):
    """Seconds of each evaluation stage summed over the points of `root` (the stages the points ran)."""
    total = {}
    for path in glob.glob(os.path.join(root, "*", "eval_result.json")):
        with open(path) as f:
            for stage, s in json.load(f).get("seconds", {}).items():
                if stage not in ("total", "load_and_test_pass"):
                    total[stage] = total.get(stage, 0.0) + s
    return total


def step_milliseconds(path):
    """The median ms of the conditional TF training step of binarized MNIST in a benchmarks.run results JSON."""
    step = io_utils.read_json(path)["sections"]["step"]["cases"]["mnist_conv"]
    return step["conditional_tensorflow"]["median_ms"]


def cost_section(root, benchmarks=()):
    """The map's cost: its model's training, each map command's wall time and parts, and the total against
    the target (scaled to the target's CPU when `benchmarks` names this CPU's and that CPU's results JSON)."""
    model = os.path.join(root, "model")
    config = io_utils.read_json(os.path.join(model, "config.json"))
    train_seconds = io_utils.read_json(os.path.join(model, "train_result.json"))["train_seconds"]
    lines = ["## Cost", "",
             f"- training the model: **{train_seconds / 60:.1f} minutes** (its train_result.json's train_seconds, "
             f"--threads={config.get('threads', 0)}).",
             ]
    commands, trained_in_a_command = 0.0, False
    for record in pages.records(root):
        stage = record.get("stage_seconds", {})
        parts = "; ".join(f"{name} {stage[key] / 60:.1f} min" for key, name in SHOWN_STAGES if stage.get(key, 0) >= 3)
        done = {k: len(v) for k, v in record["points"].items()}
        where = machine.cpu_words(record["machine"]) if "machine" in record else "a CPU its record does not name"
        lines.append(f"- map command: **{record['seconds'] / 60:.1f} minutes** of wall time on {where}, for "
                     f"{done.get('done', 0)} points evaluated ({done.get('skipped', 0)} found finished)"
                     + (f": {parts}." if parts else "."))
        commands += record["seconds"]
        trained_in_a_command |= stage.get("model", 0.0) >= 0.9 * train_seconds
    # The map's wall time: its commands', plus the model's training where no command of the map trained it.
    total = (commands + (0.0 if trained_in_a_command else train_seconds)) / 60
    what = "the map commands' wall time" + ("" if trained_in_a_command else " plus the model's training")
    if benchmarks:  # the target is set on the reference CPU: scale by the step time measured on both
        here, there = (step_milliseconds(path) for path in benchmarks)
        scaled = total * there / here
        lines.append(f"- the whole map ({what}): **{total:.1f} minutes** on this CPU. The target of "
                     f"{TARGET_MINUTES} minutes is set on the AVX-512 CPU of the first map; scaled by the benchmark "
                     f"suite's conditional training step (binarized MNIST, conv c=16, batch 256, TF median: "
                     f"{here:.1f} ms here, `{shown(benchmarks[0])}`; {there:.1f} ms there, `{shown(benchmarks[1])}`), "
                     f"the map takes **{scaled:.1f} minutes** there "
                     f"({'within' if scaled <= TARGET_MINUTES else 'above'} the target).")
    else:
        lines.append(f"- the whole map ({what}): **{total:.1f} minutes** "
                     f"({'within' if total <= TARGET_MINUTES else 'above'} the target of {TARGET_MINUTES} minutes).")
    per_stage = stage_seconds(root)
    if per_stage:
        lines.append("- inside the grid evaluation, each stage's seconds summed over the points (from each point's "
                     "eval_result.json; the test-set pass, shared by four points, is counted above): " +
                     ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(per_stage.items(), key=lambda kv: -kv[1])
                               if v >= 0.05 * 60) + ".")
    return lines + [
        "", "What the map's evaluation leaves out, against a separately trained point's full evaluation: probes and "
        "mutual information of the top layer z2 only (`--eval_layers=top`), logistic regression as the only probe "
        "(on samples and on means of z2, the paper's protocol), 5,000 prior samples for the sample score instead "
        "of 10,000, and the metrics added after the first map (the k-NN estimates, I_p(z_L; y_hat), the per-point "
        "figures). What does not depend on the betas (the reference classifier, its features of the test images, "
        "the probes' split) is computed once, the test-set pass serves four points at a time, and the sampled and "
        "the mean pass of each point share their bottom-up features (`python -m benchmarks.grid_eval "
        "--model=ROOT/model` measures each stage).", ""]


def target_section(args, assets):
    """Writes ASSETS/spots.csv (every model at every spot point) and returns the page's lines on issue 16's
    target: the map's model (and each --refined folder) against the best known separate model per point."""
    candidates = [args.root] + args.refined
    references = args.reference or [args.grid]
    sweeps = list(dict.fromkeys(candidates + references + args.seeds))
    kept = [row for path in args.rows for row in spots.read_csv(path)]
    rows = spots.rows_of_sweeps(sweeps, kept)
    spots.write_csv(os.path.join(assets, "spots.csv"), rows)
    best, spreads = spots.references(rows, references), spots.seed_spreads(rows, args.seeds)
    lines = ["## The spot points against the best known separate model", "",
             "Each point's reference is the separately trained model of lowest objective among "
             + ", ".join(f"`{s}`" for s in references) + " (its sweep, seed and recipe named). Tolerances: "
             "objective within 2% (or lower), rates within 10% or 1 nat, PSNR and the probe on z2 samples within "
             "3% relative; " + (f"where 3 seed standard deviations (seed runs: {', '.join(f'`{s}`' for s in args.seeds)}; "
                                "at a point without them, those of the nearest seed-run points in log beta) are "
                                "wider, they stand in (marked 'from seeds')." if spreads else
                                "no seed runs were given, so no seed spread widens a tolerance."), "",
             f"Every row is in [{os.path.basename(assets)}/spots.csv]({os.path.basename(assets)}/spots.csv) "
             "(evaluation/spots.py recomputes the verdicts from it); docs/results/conditional_changes.md logs what "
             "each change to the conditional model gained.", ""]
    for sweep in candidates:
        found = [row for row in rows if row["sweep"] == sweep]
        lines += [f"### `{sweep}` ({found[0]['recipe'] if found else 'no spot points'})", "",
                  *spots.verdict_lines(sweep, spots.verdicts(found, best, spreads))]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the conditional sweep of the whole map (aggregated)")
    parser.add_argument("--grid", required=True, help="a grid of separately trained models (a folder with its "
                                                      "results.csv) to read the paper's findings off beside the map")
    parser.add_argument("--reference", action="append", default=[],
                        help="a sweep of separately trained models that may be a spot point's reference: the best "
                             "known model there, of lowest objective (repeatable; default: --grid)")
    parser.add_argument("--seeds", action="append", default=[],
                        help="a sweep of seed runs (the same recipe at several seeds) whose spread may widen a "
                             "tolerance (repeatable)")
    parser.add_argument("--refined", action="append", default=[],
                        help="an aggregated folder of refined points (ROOT/refined_<K>epochs of a "
                             "--refine_epochs sweep), judged against the references too (repeatable)")
    parser.add_argument("--rows", action="append", default=[],
                        help="a spots.csv written earlier: a sweep whose folder is not here takes its rows from it")
    parser.add_argument("--benchmark", nargs=2, default=(), metavar=("HERE", "THERE"),
                        help="results JSON of `python -m benchmarks.run --sections=step` on the map's CPU and on "
                             "the CPU the 60-minute target is set on: the map's time is scaled by their step times")
    parser.add_argument("--out", default=os.path.join(HERE, "conditional.md"))
    args = parser.parse_args()
    conditional, separate = load(args.root), load(args.grid)
    config = io_utils.read_json(os.path.join(args.root, "model", "config.json"))
    assets, figures = pages.copy_sweep(args.root, args.out)
    name = os.path.basename(assets)
    try:
        target = target_section(args, assets)
    except ValueError as e:
        parser.error(str(e))
    side_by_side(separate, conditional, os.path.join(assets, "rate_planes_side_by_side.png"))
    low, high = config["model"]["beta_range"]
    lines = pages.header("conditional.py", "One beta-conditional model for the whole rate plane", __doc__,
                         "the sweeps below") + [
        f"The model: the paper's reference conv model on binarized MNIST ({config['model'].get('channels', 16)} "
        "channels) with every hidden layer FiLM-modulated by an embedding of (log beta_1, log beta_2); each "
        f"training example draws its betas log-uniformly in {low:g}..{high:g}, independently per layer, and its "
        "rates are weighted by them (loss-conditional training, Dosovitskiy & Djolonga 2020, per layer)"
        + (", each example's loss divided by its betas' expected objective scale (--balance_betas)"
           if config.get("balance_betas") else "") + f". Its training: {spots.recipe(config)}. "
        f"Rates and distortion are in nats per test example (10,000 test images); beta_1 weighs R(z1|z2), "
        "beta_2 weighs R(z2).", "", *cost_section(args.root, args.benchmark), *findings_section(args.grid, args.root),
        f"![side by side]({name}/rate_planes_side_by_side.png)", "", *target, "",
        "## The 21x21 map from the conditional model", ""]
    pages.write(args.out, lines, assets, figures, "The table of every point")


if __name__ == "__main__":
    main()
