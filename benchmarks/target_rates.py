"""Training cost of --target_rates against fixed betas: the same data, model, epochs and threads, trained in
turns (fixed, targeted, fixed, targeted, ...) in one process, so that both see the same machine and load.

    python -m benchmarks.target_rates [--dataset=binary_mnist --data_dir=../shared/data] [--architecture=conv]
        [--epochs=1] [--pairs=3] [--threads=1] [--target_rates=15,15] [--out=FILE.json]

Each run is a fresh run folder trained from scratch; its cost is train_result.json's train_seconds (the
training loop's wall time, the same figure docs/results/target_rates.py compares). The targeted runs
adapt their betas from the first step (no warm-up in either), the most dual steps a run can take.
Prints every run's seconds and the median of the pairs' ratios targeted / fixed; --out writes them as JSON.
"""
import argparse
import os
import shutil
import tempfile

from benchmarks import timing


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="binary_mnist")
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--architecture", default="conv")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target_rates", default="15,15", help="nats per example, z1 first")
    parser.add_argument("--out", default="", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import numpy as np

    from hvae_repr import cli
    from hvae_repr.config import TrainConfig
    from hvae_repr.train import train

    common = dict(dataset=args.dataset, data_dir=args.data_dir, architecture=args.architecture, epochs=args.epochs,
                  threads=args.threads, kl_warmup_epochs=0, images_every_epochs=0, checkpoint_every_secs=10 ** 6)
    kinds = {"fixed": {}, "targeted": {"target_rates": tuple(args.target_rates.split(","))}}
    seconds, loads = {kind: [] for kind in kinds}, []
    scratch = tempfile.mkdtemp(prefix="target_cost_")
    try:
        for pair in range(args.pairs):
            for kind, more in kinds.items():
                workdir = os.path.join(scratch, f"{kind}{pair}")
                result = train(cli.build(TrainConfig, workdir=workdir, **common, **more), verbose=False)
                seconds[kind].append(result["train_seconds"])
                loads.append(timing.load_average())
                shutil.rmtree(workdir)
                print(f"pair {pair + 1}/{args.pairs} {kind}: {result['train_seconds']:.1f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ratios = [t / f for t, f in zip(seconds["targeted"], seconds["fixed"])]
    out = {"settings": {**vars(args), "kl_warmup_epochs": 0}, "train_seconds": seconds, "ratios": ratios,
           "median_ratio": float(np.median(ratios)), "machine": timing.machine_description(),
           "load_average_after_each_run": loads,
           "what": "train_seconds of each run (the training loop's wall time); ratio = targeted / fixed per pair"}
    print(f"targeted / fixed train_seconds: median {out['median_ratio']:.3f} "
          f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)})")
    if args.out:
        from hvae_repr import io_utils
        io_utils.write_json_atomic(args.out, out)
        print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
