"""Writes docs/results/mnist_spots_seeds.md (and copies the table and figures beside it) from a finished sweep.

    python -m launch.sweep --root=sweeps/mnist_spots_seeds --betas_1=0.1,1,10 --betas_2=0.1,1,10 --seeds=0,1,2 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --epochs=20 --workers=1 --threads=1 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    python -m evaluation.aggregate --root=sweeps/mnist_spots_seeds
    python docs/results/mnist_spots_seeds.py --root=sweeps/mnist_spots_seeds

Every number in the page is read from the sweep's results.json (its seed columns and seed_groups,
evaluation/seed_groups.py), its runs' config.json and its sweep_*.json records.
"""
import argparse
import json
import os

import numpy as np
from scipy import stats

import pages
from evaluation import seed_groups
from evaluation.table import column_values

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = [  # (header, results.csv column, digits)
    ("R(z1\\|z2)", "rate_nats_z1", 2), ("R(z2)", "rate_nats_z2", 2), ("D", "distortion_nats", 2),
    ("PSNR dB", "reconstruction_psnr_pooled_mse_db", 2),
    ("probe z2 samples", "probes_on_samples_z2_logistic_regression_accuracy", 3),
    ("I_q lower", "mutual_information_z2_label_lower_bound_nats", 2),
    ("I_q mixture", "mutual_information_z2_label_mixture_estimate_nats", 2),
    ("I_q k-NN", "mutual_information_z2_label_from_samples_value_nats", 2),
    ("I_p k-NN", "generative_information_value_nats", 2),
    ("sample score", "generation_inception_style_score_inception_score_mean", 2),
]
CHECKS = [  # (what is checked, x column, y column): Spearman correlation per seed over the points
    ("I_q(y; z2) lower bound follows R(z2)", "rate_nats_z2", "mutual_information_z2_label_lower_bound_nats"),
    ("PSNR follows R(z1|z2)", "rate_nats_z1", "reconstruction_psnr_pooled_mse_db"),
    ("I_p(z2; y_hat) follows R(z2)", "rate_nats_z2", "generative_information_value_nats"),
]


def load(root):
    with open(os.path.join(root, "results.json")) as f:
        table = json.load(f)
    rows = [r for r in table["rows"] if r["status"] == "evaluated"]
    if not rows:
        raise SystemExit(f"{root}/results.json has no evaluated run: run the sweep and aggregate it first")
    return rows


def mean_se(record, column, digits):
    mean, se = record["mean"].get(column), record["stderr"].get(column)
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" +- {se:.{digits}f}" if se is not None else "")


def group_records(rows):
    """One record per seed group (seed_groups.records), ordered by betas."""
    found = seed_groups.records(rows)
    by_run = {r["run"]: r for r in rows}
    for record in found:
        first = by_run[record["runs"][0]]
        record["betas"] = (first.get("beta_z1"), first.get("beta_z2"))
        record["t2"] = ["yes" if by_run[r].get("bound_t2_violated") else "no" for r in record["runs"]]
        over = first.get("bound_t2_violated_over_seeds")
        record["t2_group"] = "-" if over is None else "yes" if over else "no"
    return sorted(found, key=lambda r: r["betas"])


def checks(rows):
    """Per seed, the Spearman correlation of each CHECKS pair over the points of that seed."""
    seeds = sorted({r["seed"] for r in rows if r.get("seed") is not None})
    out = []
    for what, x_column, y_column in CHECKS:
        rho = {}
        for s in seeds:
            of_seed = [r for r in rows if r.get("seed") == s]
            x, y = column_values(of_seed, x_column), column_values(of_seed, y_column)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
                rho[s] = float(stats.spearmanr(x[ok], y[ok]).statistic)
        if rho:
            holds = all(v > 0.5 for v in rho.values())
            out.append(f"- {what}: Spearman correlation over the points " + "; ".join(
                f"seed {s}: {v:.2f}" for s, v in rho.items())
                + f". {'Holds for every seed' if holds else 'Does not hold for every seed'} (criterion: above 0.5).")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the sweep's folder (aggregated)")
    parser.add_argument("--out", default=os.path.join(HERE, "mnist_spots_seeds.md"))
    args = parser.parse_args()
    rows = load(args.root)
    assets, figures = pages.copy_sweep(args.root, args.out)
    with open(os.path.join(args.root, rows[0]["run"], "config.json")) as f:
        config = json.load(f)
    records = group_records(rows)
    seeds = sorted({r["seed"] for r in rows if r.get("seed") is not None})
    lines = pages.header("mnist_spots_seeds.py", f"The spot points trained with {len(seeds)} seeds", __doc__)
    lines += pages.command_lines(args.root)
    m = config["model"]
    lines += ["", f"{len(rows)} evaluated runs in {len(records)} settings, seeds {', '.join(map(str, seeds))}: "
              f"{m['architecture']} model, latent sizes {m['latent_dims']} ({m['top_latent']} top), {m['likelihood']} "
              f"likelihood on {config['dataset']}, {config['epochs']} epochs, batch {config['batch_size']}, learning "
              f"rate {config['learning_rate']:g}. Each cell: mean +- standard error over seeds (sample standard "
              "deviation / sqrt(n)); information in nats.", "",
              "## Which findings hold across seeds", ""]
    lines += [line for line in seed_groups.summary_lines(rows) if line.startswith("- ")]
    lines += checks(rows)
    lines += ["", "## Every point", "",
              "| beta_1 | beta_2 | seeds | " + " | ".join(h for h, _, _ in METRICS) + " | T2 violated per seed | "
              "T2 violated over seeds |", "|" + "---|" * (len(METRICS) + 5)]
    for record in records:
        lines.append("| " + " | ".join(
            [f"{record['betas'][0]:g}", f"{record['betas'][1]:g}", ",".join(str(s) for s in record["seeds"])]
            + [mean_se(record, column, digits) for _, column, digits in METRICS]
            + ["/".join(record["t2"]), record["t2_group"]]) + " |")
    lines += ["", "T2 per seed: each run's own check (sample-based probes on z2 against f^-1 of the information); "
              "over seeds: the mean accuracy against f^-1 of the mean information (evaluation/seed_groups.py).", "",
              "## Figures", "", "Error bars and the heatmaps' second panels: standard error over seeds.", ""]
    pages.write(args.out, lines, assets, figures, "The table of every run, with its seed columns")


if __name__ == "__main__":
    main()
