"""Writes docs/results/mnist_spots_100ep.md and mnist_spots_100ep/results.csv: the 100-epoch separately trained
references at the spot points (issue 16, part 1), their test objective every 5 epochs, and how much it still
changed over the last 25 epochs; from each finished run's metrics.jsonl and train_result.json.

    python -m launch.sweep --root=sweeps/mnist_spots_100ep --betas_1=0.1,1,10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --epochs=100 --test_every_epochs=5 \\
        --workers=2 --threads=1 --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    python docs/results/mnist_spots_100ep.py --root=sweeps/mnist_spots_100ep
    python -m launch.sweep --root=sweeps/mnist_spots_100ep_lr4e-3_cosine --betas_1=0.1,1,10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --epochs=100 --learning_rate=4e-3 \\
        --lr_schedule=cosine --test_every_epochs=5 --workers=2 --threads=1 --eval_layers=top \\
        --eval_probe_names=logistic_regression --eval_num_generated=5000 --noexport
    python docs/results/mnist_spots_100ep.py --root=sweeps/mnist_spots_100ep_lr4e-3_cosine \\
        --out=docs/results/mnist_spots_100ep_lr4e-3_cosine.md
    python -m launch.sweep --root=sweeps/mnist_spots_warmup --betas_1=10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --epochs=60 --kl_warmup_epochs=12 \\
        --test_every_epochs=5 --workers=2 --threads=1 --eval_layers=top --eval_probe_names=logistic_regression \\
        --eval_num_generated=5000 --noexport
    python -m evaluation.aggregate --root=sweeps/mnist_spots_warmup
    python docs/results/mnist_spots_100ep.py --root=sweeps/mnist_spots_warmup --out=docs/results/mnist_spots_warmup.md
    python -m launch.sweep --root=sweeps/mnist_spots_warmup_100ep --betas_1=10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --epochs=100 --kl_warmup_epochs=20 \\
        --test_every_epochs=5 --workers=2 --threads=1 --eval_layers=top --eval_probe_names=logistic_regression \\
        --eval_num_generated=5000 --noexport
    python -m evaluation.aggregate --root=sweeps/mnist_spots_warmup_100ep
    python docs/results/mnist_spots_100ep.py --root=sweeps/mnist_spots_warmup_100ep \\
        --out=docs/results/mnist_spots_warmup_100ep.md

The first sweep is the paper's recipe (Adam 3e-4, constant); the second the recipe that made the conditional
model better (Adam 4e-3 cosine-decayed to 0, docs/results/conditional_changes.md), tried on the separate models
so that a point's reference is the best known model there. The third is the paper's recipe with the conditional
model's KL warm-up (every beta rising linearly from 0 over the first 12 of 60 epochs) at beta_1 = 10, where the
first two collapse (R(z1|z2) and, with the second, R(z2) near 0); the fourth the same warm-up recipe trained
longer (the warm-up over the first 20 of 100 epochs), since the third was still improving. The same command
resumes an unfinished sweep. The objective is D + beta_1 R(z1|z2) + beta_2 R(z2) on the test set (nats per
example), at the run's betas.
"""
import argparse
import csv
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
import pages  # noqa: E402
from evaluation import spots  # noqa: E402
from hvae_repr import io_utils  # noqa: E402

LAST = 25  # epochs over which the change is reported


def finished_runs(root):
    """(betas, test lines of metrics.jsonl, train_result.json) of every finished run, sorted by betas."""
    out = []
    for path in sorted(glob.glob(os.path.join(root, "*", "train_result.json"))):
        folder = os.path.dirname(path)
        with open(path) as f:
            result = json.load(f)
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            tested = [(line["epoch"], line["test"]) for line in map(json.loads, f) if "test" in line]
        out.append((tuple(result["betas"][k] for k in ("z1", "z2")), tested, dict(result, path=path)))
    return sorted(out, key=lambda r: r[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the 100-epoch sweep's folder")
    parser.add_argument("--out", default=os.path.join(HERE, "mnist_spots_100ep.md"))
    args = parser.parse_args()
    runs = finished_runs(args.root)
    if not runs:
        raise SystemExit(f"no finished run under {args.root}")
    folder = os.path.splitext(args.out)[0]
    os.makedirs(folder, exist_ok=True)
    rows = []
    for betas, tested, _ in runs:
        for epoch, test in tested:
            rows.append({"beta_1": betas[0], "beta_2": betas[1], "epoch": epoch,
                         "objective_nats": test["objective_nats"], "distortion_nats": test["distortion_nats"],
                         "rate_z1_nats": test["rate_nats"]["z1"], "rate_z2_nats": test["rate_nats"]["z2"]})
    with open(os.path.join(folder, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    epochs = sorted({r["epochs"] for _, _, r in runs})
    length = "/".join(map(str, epochs))
    lines = pages.header("mnist_spots_100ep.py", f"{length}-epoch references at the spot points", __doc__)
    recipes = sorted({spots.recipe(io_utils.read_json(os.path.join(os.path.dirname(r["path"]), "config.json")))
                      for _, _, r in runs})
    lines += [f"This page: `{args.root}`, trained with: {'; '.join(recipes)}."
              + (" With a cosine-decayed learning rate the last epochs take small steps, so a small change over them "
                 "says less about convergence than under a constant one." if any("cosine" in r for r in recipes)
                 else ""), ""]
    lines += pages.command_lines(args.root, " on the 2-core CPU")
    planned = sum(map(len, pages.records(args.root)[-1]["points"].values()))  # the newest command saw every point
    last = f"epoch {length}" if len(epochs) == 1 else "each run's last epoch"
    lines += ["", f"{len(runs)} of {planned} points finished. Test objective at {last} and its change over the last "
              f"{LAST} epochs ({last} minus {LAST} epochs before; negative: still improving):", "",
              f"| beta_1 | beta_2 | objective (nats) | change over the last {LAST} epochs | relative | D | R(z1\\|z2) | R(z2) |",
              "|---|---|---|---|---|---|---|---|"]
    for betas, tested, result in runs:
        by_epoch = dict(tested)
        end, before = by_epoch.get(result["epochs"]), by_epoch.get(result["epochs"] - LAST)
        if end is None or before is None:
            continue
        change = end["objective_nats"] - before["objective_nats"]
        lines.append(f"| {betas[0]:g} | {betas[1]:g} | {end['objective_nats']:.2f} | {change:+.2f} | "
                     f"{change / end['objective_nats']:+.2%} | {end['distortion_nats']:.2f} | "
                     f"{end['rate_nats']['z1']:.2f} | {end['rate_nats']['z2']:.2f} |")
    pages.write(args.out, lines, folder, [], "Every tested epoch of every run")


if __name__ == "__main__":
    main()
