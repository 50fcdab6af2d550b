"""Writes docs/results/mnist_categorical.md (and copies the table and figures beside it) from a finished sweep.

    python -m launch.sweep --root=sweeps/mnist_categorical --betas_1=0.1,1,10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --top_latent=categorical \\
        --latent_dims=256,10 --epochs=20 --workers=1 --threads=1 --eval_layers=top \\
        --eval_probe_names=logistic_regression --eval_num_generated=5000
    python -m evaluation.aggregate --root=sweeps/mnist_categorical
    python docs/results/mnist_categorical.py --root=sweeps/mnist_categorical

Every number in the page is read from the sweep's results.csv, its runs' eval_result.json and config.json,
and its sweep_*.json records; each statement under "What the grid shows" is computed from them.
"""
import argparse
import csv
import json
import math
import os

import numpy as np
from scipy import stats

import pages

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = {  # short name -> results.csv column
    "b1": "beta_z1", "b2": "beta_z2", "r1": "rate_nats_z1", "r2": "rate_nats_z2", "d": "distortion_nats",
    "psnr": "reconstruction_psnr_pooled_mse_db", "recon_acc": "reconstruction_classifier_accuracy",
    "probe_s": "probes_on_samples_z2_logistic_regression_accuracy",
    "probe_m": "probes_on_means_z2_logistic_regression_accuracy",
    "mi_low": "mutual_information_z2_label_lower_bound_nats",
    "mi_mix": "mutual_information_z2_label_mixture_estimate_nats",
    "mi_counts": "mutual_information_z2_label_from_samples_value_nats",
    "h_y": "mutual_information_z2_label_label_entropy_nats",
    "ip": "generative_information_value_nats", "ip_se": "generative_information_stderr_nats",
    "ip_bias": "generative_information_bias_nats", "ip_ceiling": "generative_information_ceiling_nats",
    "cluster": "clustering_accuracy", "chance": "clustering_majority_class_rate",
    "used": "clustering_categories_used", "k": "clustering_num_categories", "t2": "bound_t2_violated",
    "classifier": "generative_information_reference_classifier_test_accuracy",
}


def load(root):
    with open(os.path.join(root, "results.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "evaluated"]
    if not rows:
        raise SystemExit(f"{root}/results.csv has no evaluated run: evaluate the sweep (run its command again) and "
                         f"aggregate it first")
    table = {k: np.array([float(r[c]) if r.get(c, "") != "" else np.nan for r in rows]) for k, c in COLUMNS.items()}
    order = np.lexsort((table["b2"], table["b1"]))
    table = {k: v[order] for k, v in table.items()}
    table["run"] = [rows[i]["run"] for i in order]
    return table


def read_json(root, run, name):
    with open(os.path.join(root, run, name)) as f:
        return json.load(f)


def fmt(v, digits=2):
    return "-" if not np.isfinite(v) else f"{v:.{digits}f}"


def point(t, i):
    return f"({t['b1'][i]:g}, {t['b2'][i]:g})"


def spearman(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def findings(t, root):
    """What the grid shows, each statement computed from the table."""
    n = len(t["b1"])
    k = int(np.nanmax(t["k"])) if np.isfinite(t["k"]).any() else 10
    out = []
    top = int(np.nanargmax(t["r2"]))
    out.append(f"R(z2) ranges from {fmt(np.nanmin(t['r2']))} to {fmt(np.nanmax(t['r2']))} nats (largest at betas "
               f"{point(t, top)}); a {k}-category top layer cannot hold more than ln {k} = {math.log(k):.2f} nats.")
    best = int(np.nanargmax(t["mi_low"]))
    out.append(f"I_q(y; z2): its lower bound is largest at betas {point(t, best)} ({fmt(t['mi_low'][best])} nats, "
               f"{100 * t['mi_low'][best] / t['h_y'][best]:.0f}% of H(y) = {fmt(t['h_y'][best])}); across the {n} "
               f"points it follows R(z2) "
               f"with Spearman correlation {fmt(spearman(t['mi_low'], t['r2']))} and R(z1|z2) with "
               f"{fmt(spearman(t['mi_low'], t['r1']))}. The exact mixture value and the plug-in of the sampled "
               f"categories agree to within {fmt(np.nanmax(np.abs(t['mi_mix'] - t['mi_counts'])), 3)} nats at every "
               "point.")
    if np.isfinite(t["ip"]).any():
        best_ip = int(np.nanargmax(t["ip"]))
        above = int(np.sum(t["ip"] > t["mi_mix"]))
        out.append(f"I_p(z2; y_hat), the information of the prior's category about the class of the decoded image: "
                   f"largest at betas {point(t, best_ip)} ({fmt(t['ip'][best_ip])} +- {fmt(t['ip_se'][best_ip])} "
                   f"nats, of at most {fmt(t['ip_ceiling'][best_ip])}); Spearman correlation with I_q(y; z2) "
                   f"{fmt(spearman(t['ip'], t['mi_mix']))}, with R(z2) {fmt(spearman(t['ip'], t['r2']))}; it exceeds "
                   f"I_q(y; z2) at {above} of {n} points. The plug-in bias removed is at most "
                   f"{fmt(np.nanmax(t['ip_bias']), 4)} nats.")
        counts = np.array(read_json(root, t["run"][best_ip], "eval_result.json")["generative_information"]["counts"])
        digits = ", ".join(f"{c}->{int(np.argmax(row))} ({100 * row.max() / max(row.sum(), 1):.0f}%)"
                           for c, row in enumerate(counts))
        out.append(f"At {point(t, best_ip)} the categories draw these classes (category->most frequent class of its "
                   f"decoded images, with its share): {digits}; {len(set(np.argmax(counts, 1)))} distinct classes "
                   f"for {len(counts)} categories.")
    if np.isfinite(t["cluster"]).any():
        best_c = int(np.nanargmax(t["cluster"]))
        out.append(f"Clustering accuracy of z2 (each category mapped to its majority training label): best "
                   f"{fmt(t['cluster'][best_c], 3)} at betas {point(t, best_c)}, lowest "
                   f"{fmt(np.nanmin(t['cluster']), 3)} "
                   f"(chance: the majority class, {fmt(np.nanmax(t['chance']), 3)}); Spearman correlation with "
                   f"I_q(y; z2) {fmt(spearman(t['cluster'], t['mi_mix']))}; categories used: "
                   f"{int(np.nanmin(t['used']))} to {int(np.nanmax(t['used']))} of {k}.")
    best_p = int(np.nanargmax(t["psnr"]))
    out.append(f"PSNR is best at betas {point(t, best_p)} ({fmt(t['psnr'][best_p])} dB, R(z1|z2) = "
               f"{fmt(t['r1'][best_p], 1)} nats); Spearman correlation of PSNR with R(z1|z2) "
               f"{fmt(spearman(t['psnr'], t['r1']))}.")
    best_s = int(np.nanargmax(t["probe_s"]))
    out.append(f"The logistic probe on z2 samples is best at betas {point(t, best_s)} ({fmt(t['probe_s'][best_s], 3)}; "
               f"on means {fmt(t['probe_m'][best_s], 3)}); T2 flagged violated at {int(np.nansum(t['t2']))} of {n} "
               "points.")
    return out


def settings_text(root, run):
    c = read_json(root, run, "config.json")
    m = c["model"]
    return (f"{m['architecture']} model, {m['inference']} inference, latent sizes {m['latent_dims']} (z1 first) with "
            f"a {m['top_latent']} top layer, {m['likelihood']} likelihood on {c['dataset']}; {c['epochs']} epochs, "
            f"batch {c['batch_size']}, learning rate {c['learning_rate']:g}, seed {c['seed']}, KL warm-up "
            f"{c['kl_warmup_epochs']} epochs; Gumbel-softmax temperature max({c['gumbel_min_temperature']:g}, "
            f"{c['gumbel_temperature']:g} exp(-{c['gumbel_anneal_rate']:g} t)), t in {c['gumbel_anneal_every']}s.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the sweep's folder (aggregated)")
    parser.add_argument("--out", default=os.path.join(HERE, "mnist_categorical.md"))
    args = parser.parse_args()
    t = load(args.root)
    assets, figures = pages.copy_sweep(args.root, args.out)
    evaluation = read_json(args.root, t["run"][0], "eval_result.json")
    lines = pages.header("mnist_categorical.py",
                         f"A {len(set(t['b1']))}x{len(set(t['b2']))} beta grid with a categorical top layer", __doc__)
    lines += pages.command_lines(args.root)
    g = evaluation.get("generative_information", {}).get("settings", {})
    lines += ["", "Settings (from the first run's config.json): " + settings_text(args.root, t["run"][0]),
              f"Evaluation: {evaluation['num_test_examples']} test images; I_p from {g.get('num_draws', '-')} prior "
              f"draws ({g.get('draws_per_category', '-')} per category), labelled by the reference classifier "
              f"(test accuracy {fmt(np.nanmin(t['classifier']), 3)}); clustering on "
              f"{evaluation.get('clustering', {}).get('settings', {}).get('num_train', '-')} training images. "
              "All information in nats.", "",
              "## What the grid shows", ""] + [f"- {s}" for s in findings(t, args.root)]
    lines += ["", "## Every model", "",
              "| beta_1 | beta_2 | R(z1\\|z2) | R(z2) | D | PSNR dB | I_q lower | I_q mixture | I_q counts | "
              "I_p (+- s.e.) | probe z2 samples | probe z2 means | clustering acc. | categories used |",
              "|" + "---|" * 14]
    for i in range(len(t["b1"])):
        lines.append("| " + " | ".join([
            f"{t['b1'][i]:g}", f"{t['b2'][i]:g}", fmt(t["r1"][i]), fmt(t["r2"][i]), fmt(t["d"][i]), fmt(t["psnr"][i]),
            fmt(t["mi_low"][i]), fmt(t["mi_mix"][i]), fmt(t["mi_counts"][i]),
            f"{fmt(t['ip'][i])} +- {fmt(t['ip_se'][i])}", fmt(t["probe_s"][i], 3), fmt(t["probe_m"][i], 3),
            fmt(t["cluster"][i], 3), fmt(t["used"][i], 0)]) + " |")
    lines += ["", "I_q counts: the Miller-Madow plug-in of the (sampled category, label) counts; I_p: the same "
              "estimator on the (prior category, predicted class) counts (evaluation/README.md).", "",
              "## Figures", ""]
    pages.write(args.out, lines, assets, figures, "The table of every number")


if __name__ == "__main__":
    main()
