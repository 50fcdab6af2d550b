"""The cost of a conditional model's grid evaluation, per stage (issue 16, part 4).

    python -m benchmarks.grid_eval [--workdir=/tmp/grid_eval] [--points=16] [--points_per_pass=4,16]
                                   [--test_copies=1] [--epochs=5] [--size=8 --architecture=mlp]
    python -m benchmarks.grid_eval --model=RUN --points=24 --points_per_pass=4

Trains (once, kept in --workdir) a small beta-conditional mlp on binary digits, or takes the trained
conditional model in --model=RUN (e.g. a map's ROOT/model, on its own data set), then evaluates it at
--points grid points with the 21x21 map's evaluation settings (--eval_layers=top, logistic regression
only, 5000 samples, no k-NN estimates, no I_p(z_L; y_hat), no figures: the metrics of the 39.6-minute map),
once per --points_per_pass value and --processes value, each into a fresh folder, and prints the wall
seconds and the seconds of each part: the grid's own (load, test_pass, stages, write) and each stage
summed over the points (from the points' eval_result.json). --processes=N evaluates in N processes of
one chunk each (with POINTS_PER_PASS points per pass; other --points_per_pass values are skipped there), every process with cores // N threads (launch.engines.evaluate_grid_local, what
`launch.sweep --conditional --workers=N` does); 1 is one process with every core (evaluation.grid).
--test_copies=K evaluates a test set of K copies of the digits test images (binarized
again with another seed per copy), to see how a stage grows with the test set (MNIST has 10,000);
--size=28 --architecture=conv --test_copies=28 gives MNIST's shapes (28 x 28 x 1 images, the reference
conv model, 10,080 test images) without MNIST: the digits enlarged 3.5 times (nearest pixels, 8 -> 28).
Run it with PYTHONPATH set to two checkouts to measure what a change saves.
"""
import hvae_repr  # noqa: F401  (before TensorFlow)

import argparse
import glob
import json
import os
import shutil
import time

import numpy as np


def digits_npz(path, copies, size=8):
    """binary_digits with its test set repeated `copies` times (each copy binarized with its own seed), the
    images enlarged to size x size (nearest pixels)."""
    from hvae_repr import data
    grey = data.load_dataset("digits")
    index = np.arange(size) * 8 // size

    def enlarged(x):
        return x[:, index][:, :, index]
    rng = np.random.default_rng(0)
    x_test = np.concatenate([(rng.random(enlarged(grey.x_test).shape) < enlarged(grey.x_test)).astype(np.float32)
                             for _ in range(copies)])
    x_train = enlarged(grey.x_train)
    x_train = (np.random.default_rng(1).random(x_train.shape) < x_train).astype(np.float32)
    np.savez(path, x_train=x_train, y_train=grey.y_train, x_test=x_test, y_test=np.tile(grey.y_test, copies))
    return f"npz:{path}"


def map_options(classifier_dir):
    """The 21x21 map's evaluation settings (docs/results/conditional.py's map command)."""
    from evaluation import evaluate as ev
    kwargs = {"classifier_dir": classifier_dir, "classifier_epochs": 1, "classifier_min_steps": 200} \
        if classifier_dir else {}
    return ev.EvalOptions(layers="top", probe_names=("logistic_regression",), num_generated=5000, figures=False,
                          generative_draws=0, knn_k=0, **kwargs)


def stage_seconds(root):
    stages = {}
    for path in glob.glob(os.path.join(root, "*", "eval_result.json")):
        for stage, s in json.load(open(path))["seconds"].items():
            stages[stage] = stages.get(stage, 0.0) + s
    return stages


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/grid_eval")
    parser.add_argument("--model", default="", help="a trained conditional model's run folder (default: train "
                                                    "a small one on digits)")
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--points_per_pass", default="4,16")
    parser.add_argument("--test_copies", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, default=8, help="image side: 8 (digits) or 28 (MNIST's)")
    parser.add_argument("--architecture", default="mlp")
    args = parser.parse_args()
    from evaluation import grid
    from hvae_repr import cli
    from hvae_repr.config import TrainConfig
    from hvae_repr.train import train
    os.makedirs(args.workdir, exist_ok=True)
    if args.model:
        model, what = os.path.abspath(args.model), args.model
        options = map_options("")  # the cached reference classifier of the model's data set
    else:
        name = f"x{args.test_copies}_{args.size}px_{args.architecture}"
        dataset = digits_npz(os.path.join(args.workdir, f"digits_{name}.npz"), args.test_copies, args.size)
        model = os.path.join(args.workdir, f"model_{name}_{args.epochs}ep")
        small = {"latent_dims": (16, 8), "hidden_units": 128} if args.architecture == "mlp" else {}
        train(cli.build(TrainConfig, dataset=dataset, architecture=args.architecture, batch_size=64,
                        epochs=args.epochs, conditional_betas=True, workdir=model, threads=2, **small), verbose=False)
        what = f"{args.test_copies * 360} test images ({args.size} x {args.size}, {args.architecture})"
        options = map_options(os.path.join(args.workdir, "classifiers"))
    side = int(np.ceil(np.sqrt(args.points)))
    betas = np.geomspace(0.1, 10, side)
    points = [(float(a), float(b)) for a in betas for b in betas][:args.points]
    grid.evaluate_grid(model, points[:1], os.path.join(args.workdir, "warm"), options, log=lambda m: None)  # classifier
    shutil.rmtree(os.path.join(args.workdir, "warm"))
    report = {}
    for per_pass in (int(p) for p in args.points_per_pass.split(",")):
        root = os.path.join(args.workdir, f"grid_{per_pass}")
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        outcome = grid.evaluate_grid(model, points, root, options, log=lambda m: None, points_per_pass=per_pass)
        wall = time.perf_counter() - started
        stages = stage_seconds(root)
        report[per_pass] = {"wall": wall, "grid": outcome["seconds"], "stages": stages}
        print(f"{per_pass} points per pass, {len(points)} points, {what}: {wall:.1f} s ({wall / len(points):.2f} s "
              "per point)")
        print("  grid: " + ", ".join(f"{k} {v:.2f}" for k, v in outcome["seconds"].items()))
        print("  stages summed over points: " + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1]) if k not in ("total",)))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
