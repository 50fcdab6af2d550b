"""Writes docs/results/conditional.md (and copies the 21x21 table and figures beside it): one beta-conditional
model against separately trained models of the same architecture and epochs.

    python -m launch.sweep --root=sweeps/mnist_conditional --conditional \\
        --betas_1=logspace:0.1,10,21 --betas_2=logspace:0.1,10,21 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --epochs=20 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    python -m launch.sweep --root=sweeps/mnist_spots_warmup --betas_1=0.1,1,10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --epochs=20 \\
        --kl_warmup_epochs=4 --workers=2
    python -m launch.sweep --root=sweeps/mnist_spots_lr1e-3 --betas_1=0.1,1,10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --epochs=20 \\
        --kl_warmup_epochs=4 --learning_rate=1e-3 --workers=2
    python -m launch.sweep --root=sweeps/mnist_conditional_lr1e-3 --conditional \\
        --betas_1=0.1,1,10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --epochs=20 --learning_rate=1e-3
    python -m launch.sweep --root=sweeps/mnist_conditional_60ep --conditional \\
        --betas_1=0.1,1,10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --epochs=60
    for r in mnist_conditional mnist_spots_warmup mnist_spots_lr1e-3 mnist_conditional_lr1e-3 \\
        mnist_conditional_60ep; do python -m evaluation.aggregate --root=sweeps/$r; done
    python docs/results/conditional.py --root=sweeps/mnist_conditional \\
        --separate=sweeps/mnist_grid --separate=sweeps/mnist_spots_warmup \\
        --also=sweeps/mnist_conditional_lr1e-3,sweeps/mnist_spots_lr1e-3 \\
        --also=sweeps/mnist_conditional_60ep,sweeps/mnist_spots_warmup

(sweeps/mnist_grid is the 5x5 grid of separately trained models with the paper's settings,
docs/results/mnist_grid.py.) Every number in the page is read from the sweeps' results.csv, sweep_*.json,
the points' eval_result.json and the runs' config.json. The page also writes conditional/spots.csv (every
model at every spot point, evaluation/spots.py) and judges each conditional (and --refined) sweep against the
best known separate model per point (--reference sweeps, default --separate; --seeds: seed runs whose
spread may widen a tolerance).
"""
import argparse
import csv
import glob
import json
import os

import numpy as np

import pages
from evaluation import spots

HERE = os.path.dirname(os.path.abspath(__file__))
SPOTS = [(b1, b2) for b1 in (0.1, 1.0, 10.0) for b2 in (0.1, 1.0, 10.0)]
# metric -> (results.csv column, label, tolerance: ("rate", 10% or 0.5 nats) or ("relative", 5%))
METRICS = {
    "r2": ("rate_nats_z2", "R(z2) nats", "rate"),
    "r1": ("rate_nats_z1", "R(z1\\|z2) nats", "rate"),
    "d": ("distortion_nats", "D nats", "relative"),
    "psnr": ("reconstruction_psnr_pooled_mse_db", "PSNR dB", "relative"),
    "probe": ("probes_on_samples_z2_logistic_regression_accuracy", "probe on z2 samples", "relative"),
}


def load(root):
    with open(os.path.join(root, "results.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "evaluated"]
    return {(round(float(r["beta_z1"]), 6), round(float(r["beta_z2"]), 6)): r for r in rows}


def value(row, key):
    cell = row.get(METRICS[key][0], "")
    return float(cell) if cell != "" else float("nan")


def hit_loss(row):
    """The objective both models minimize at the row's point: D + beta_1 R(z1|z2) + beta_2 R(z2), nats."""
    return (value(row, "d") + float(row["beta_z1"]) * value(row, "r1")
            + float(row["beta_z2"]) * value(row, "r2"))


def within(key, separate, conditional):
    if METRICS[key][2] == "rate":
        return abs(conditional - separate) <= max(0.1 * abs(separate), 0.5)
    return abs(conditional - separate) <= 0.05 * abs(separate)


def stage_seconds(root):
    """Seconds of each evaluation stage summed over the points of `root` (the stages the points ran)."""
    total = {}
    for path in glob.glob(os.path.join(root, "*", "eval_result.json")):
        with open(path) as f:
            for stage, s in json.load(f).get("seconds", {}).items():
                if stage not in ("total", "load_and_test_pass"):
                    total[stage] = total.get(stage, 0.0) + s
    return total


def side_by_side(separate, conditional, path):
    """The rate plane of both, x = R(z2), y = R(z1|z2), colour = pooled PSNR on one scale."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    values = [value(r, "psnr") for r in list(separate.values()) + list(conditional.values())]
    low, high = np.nanmin(values), np.nanmax(values)
    for ax, rows, title in ((axes[0], separate, f"{len(separate)} separately trained models"),
                            (axes[1], conditional, f"one conditional model at {len(conditional)} points")):
        x = [value(r, "r2") for r in rows.values()]
        y = [value(r, "r1") for r in rows.values()]
        c = [value(r, "psnr") for r in rows.values()]
        points = ax.scatter(x, y, c=c, vmin=low, vmax=high, cmap="viridis", s=36 if len(rows) < 50 else 14)
        spots = [k for k in SPOTS if k in rows]
        ax.scatter([value(rows[k], "r2") for k in spots], [value(rows[k], "r1") for k in spots], s=110,
                   facecolors="none", edgecolors="red", linewidths=1.2, label="spot checks")
        ax.set_title(title)
        ax.set_xlabel("R(z2), nats")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_yscale("symlog", linthresh=1)
    axes[0].set_ylabel("R(z1|z2), nats")
    axes[1].legend(loc="lower left")
    fig.colorbar(points, ax=axes, label="PSNR, dB (pooled MSE)")
    fig.savefig(path, dpi=110)


WARMUP_NOTE = ("Conditional models warm their betas up over the first fifth of the epochs by default: without "
               "warm-up this conditional model lost z2 at every beta in its second epoch (R(z2) = 0.00 nats at betas "
               "(0.1, 0.1), where the separately trained model holds 42), while the paper's hierarchical VAE trains "
               "without warm-up.")


def run_config(root):
    """The training settings of a sweep's runs (its conditional model, or the first separately trained point)."""
    model = os.path.join(root, "model", "config.json")
    paths = [model] if os.path.exists(model) else sorted(glob.glob(os.path.join(root, "*", "config.json")))
    with open(paths[0]) as f:
        return json.load(f)


def recipe(config):
    """The training recipe in words: epochs, learning rate, warm-up."""
    warmup = config["kl_warmup_epochs"]
    return (f"{config['epochs']} epochs, Adam at learning rate {config['learning_rate']:g}, batch "
            f"{config['batch_size']}, seed {config['seed']}, "
            + (f"betas warmed up over the first {warmup} epochs" if warmup else "no warm-up"))


def spot_table(separate, conditional):
    """Markdown lines: the spot points side by side, each check marked, and a line of totals."""
    lines = ["| betas (z1, z2) | " + " | ".join(f"{METRICS[k][1]}: separate / conditional" for k in METRICS) +
             " | HIT loss nats: separate / conditional |", "|" + "---|" * (len(METRICS) + 2)]
    lower, checked, passed = 0, 0, {k: 0 for k in METRICS}
    for spot in SPOTS:
        if spot not in separate or spot not in conditional:
            continue
        checked += 1
        cells = []
        for k in METRICS:
            a, b = value(separate[spot], k), value(conditional[spot], k)
            ok = within(k, a, b)
            passed[k] += ok
            cells.append(f"{a:.3g} / {b:.3g} {'ok' if ok else '**off**'}")
        a, b = hit_loss(separate[spot]), hit_loss(conditional[spot])
        lower += b < a
        cells.append(f"{a:.1f} / {b:.1f} ({(b - a) / a:+.0%}, {'conditional lower' if b < a else 'separate lower'})")
        lines.append(f"| ({spot[0]:g}, {spot[1]:g}) | " + " | ".join(cells) + " |")
    every = sum(passed.values()) == checked * len(METRICS)
    return lines + ["", "Within the criterion: " + ", ".join(f"{METRICS[k][1]} {passed[k]} of {checked}"
                                                              for k in METRICS)
                    + f"; {'every' if every else 'not every'} check passed. The conditional model reaches the lower "
                    f"objective at {lower} of {checked} points.", ""]


def wall_time(root):
    """The wall time of every launch.sweep command run on ROOT, in words: its total, then each command's."""
    records = pages.records(root)
    runs = ", ".join(f"{r['seconds'] / 60:.1f} min for {len(r['points'].get('done', []))} points" for r in records)
    return (f"{sum(r['seconds'] for r in records) / 60:.1f} minutes of wall time in {len(records)} command(s) "
            f"({runs})")


def comparison(conditional_root, separate_root):
    """Markdown lines: one separately trained reference (its recipe, cost and spot table) against a
    conditional sweep."""
    conditional, separate = load(conditional_root), load(separate_root)
    return [f"### Against `{separate_root}`: {recipe(run_config(separate_root))}", "",
            f"{len(separate)} separately trained models, {wall_time(separate_root)}.", "",
            *spot_table(separate, conditional)]


def target_section(args, assets):
    """Writes ASSETS/spots.csv (every model at every spot point) and returns the page's lines on issue 16's
    target: each conditional or refined model against the best known separate model at each point."""
    conditionals = [args.root] + [pair.split(",")[0] for pair in args.also] + args.refined
    reference_sweeps = args.reference or args.separate
    sweeps = list(dict.fromkeys(conditionals + args.separate + [p.split(",")[1] for p in args.also]
                                + reference_sweeps + args.seeds))
    rows = [row for sweep in sweeps for row in spots.rows_from_sweep(sweep)]
    spots.write_csv(os.path.join(assets, "spots.csv"), rows)
    best, spreads = spots.references(rows, reference_sweeps), spots.seed_spreads(rows, args.seeds)
    lines = ["## The target: every spot point within tolerance of the best known separate model", "",
             "Each point's reference is the separately trained model of lowest objective among "
             + ", ".join(f"`{s}`" for s in reference_sweeps) + " (its sweep, seed and recipe named). Tolerances: "
             "objective within 2% (or lower), rates within 10% or 1 nat, PSNR and the probe on z2 samples within "
             "3% relative; " + (f"where 3 seed standard deviations (seed runs: {', '.join(f'`{s}`' for s in args.seeds)}; "
                                "at a point without them, those of the nearest seed-run points in log beta) are "
                                "wider, they stand in (marked 'from seeds')." if spreads else
                                "no seed runs were given, so no seed spread widens a tolerance."), "",
             f"Every row is in [{os.path.basename(assets)}/spots.csv]({os.path.basename(assets)}/spots.csv) "
             "(evaluation/spots.py recomputes the verdicts from it).", ""]
    for sweep in conditionals:
        candidates = [row for row in rows if row["sweep"] == sweep]
        lines += [f"### `{sweep}` ({candidates[0]['recipe'] if candidates else 'no spot points'})", "",
                  *spots.verdict_lines(sweep, spots.verdicts(candidates, best, spreads))]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the conditional sweep of the whole grid (aggregated)")
    parser.add_argument("--separate", required=True, action="append",
                        help="a sweep of separately trained models to compare it with (aggregated; repeatable; the "
                             "first is drawn beside it)")
    parser.add_argument("--also", action="append", default=[], metavar="CONDITIONAL,SEPARATE",
                        help="another pair of sweeps (conditional, separate), compared the same way (repeatable)")
    parser.add_argument("--reference", action="append", default=[],
                        help="a sweep of separately trained models that may be a point's reference: the best known "
                             "model there, of lowest objective (repeatable; default: the --separate sweeps)")
    parser.add_argument("--seeds", action="append", default=[],
                        help="a sweep of seed runs (the same recipe at several seeds) whose spread may widen a "
                             "tolerance (repeatable)")
    parser.add_argument("--refined", action="append", default=[],
                        help="an aggregated folder of refined points (ROOT/refined_<K>epochs of a "
                             "--refine_epochs sweep), judged against the references too (repeatable)")
    parser.add_argument("--out", default=os.path.join(HERE, "conditional.md"))
    args = parser.parse_args()
    conditional, first = load(args.root), load(args.separate[0])
    config = run_config(args.root)
    assets, figures = pages.copy_sweep(args.root, args.out)
    name = os.path.basename(assets)
    side_by_side(first, conditional, os.path.join(assets, "rate_planes_side_by_side.png"))

    low, high = config["model"]["beta_range"]
    lines = pages.header("conditional.py", "One beta-conditional model for the whole rate plane", __doc__,
                         "the sweeps below") + [
             "The model: the paper's reference conv model on binarized MNIST with every hidden layer FiLM-modulated "
             "by an embedding of (log beta_1, log beta_2); each training example draws its betas log-uniformly in "
             f"{low:g}..{high:g}, independently per layer, and its rates are weighted by them (loss-conditional "
             f"training, Dosovitskiy & Djolonga 2020, per layer). Its training: {recipe(config)}. "
             + WARMUP_NOTE + " Each sweep of separately trained models below has the same architecture and epochs; "
             "their recipes differ as their headings say.",
             "", "## Cost", ""]
    for record in pages.records(args.root):
        stage = record.get("stage_seconds", {})
        parts = "".join(f"; {k.replace('grid_', 'grid evaluation: ')} {v / 60:.1f} min" for k, v in stage.items())
        done = {k: len(v) for k, v in record["points"].items()}
        lines.append(f"- whole command: **{record['seconds'] / 60:.1f} minutes** of wall time on the 2-core CPU for "
                     f"{done.get('done', 0)} points evaluated ({done.get('skipped', 0)} found finished){parts}.")
    per_stage = stage_seconds(args.root)
    if per_stage:
        lines.append("- inside the grid evaluation, each metric's seconds summed over the points (from each point's "
                     "eval_result.json; the test-set pass, shared by four points, is counted above): " +
                     ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(per_stage.items(), key=lambda kv: -kv[1])
                               if v >= 0.05 * 60) + ".")
    lines.append(f"- for comparison, the {len(first)} separately trained models of `{args.separate[0]}` took "
                 f"{wall_time(args.separate[0])}.")
    lines += ["", "What was traded for speed in the 21x21 evaluation (the separately trained grid ran the full "
              "evaluation): probes and mutual information of the top layer z2 only (`--eval_layers=top`), logistic "
              "regression as the only probe (on samples and on means of z2, the paper's protocol), 5,000 prior "
              "samples for the sample score instead of 10,000. What does not depend on the betas (the reference "
              "classifier, its features of the test images, the probes' split) is computed once, and the test-set "
              "pass serves four points at a time.", "",
              "## Spot checks: the conditional model against separately trained models", "",
              "Criteria: rates within 10% or 0.5 nats; distortion, PSNR and the sample-based probe accuracy within "
              "5% relative.", "",
              "The 9-point sweeps of separately trained models and the conditional sweep at learning rate 1e-3 shared "
              "the 2 cores with other runs, so their wall times below overstate what each costs alone.", "",
              "The last column is the objective each model minimizes at that point, D + beta_1 R(z1|z2) + beta_2 "
              "R(z2) in nats (lower is better), with the conditional model's difference relative to the separate "
              "model's: it says which of the two is the better model of that point where they differ.", ""]
    for separate_root in args.separate:
        lines += comparison(args.root, separate_root)
    lines += ["![side by side](" + f"{name}/rate_planes_side_by_side.png)", ""]
    for pair in args.also:
        conditional_root, separate_root = pair.split(",")
        lines += [f"## Another conditional model: `{conditional_root}` ({recipe(run_config(conditional_root))})", "",
                  "The same comparison at the spot points; the headings give both models' recipes. " +
                  "".join(f"Its sweep took {r['seconds'] / 60:.1f} minutes ({r.get('stage_seconds', {}).get('model', 0) / 60:.1f} "
                          f"of them training) for {len(r['points'].get('done', []))} points. "
                          for r in pages.records(conditional_root)), "",
                  *comparison(conditional_root, separate_root)]
    lines += target_section(args, assets)
    lines += ["## The 21x21 map from the conditional model", ""]
    pages.write(args.out, lines, assets, figures, "The table of every point")


if __name__ == "__main__":
    main()
