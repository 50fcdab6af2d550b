"""Times the whole evaluation of one MNIST model (10,000 test images) per stage.

    python -m evaluation.benchmark --workdir=/tmp/bench_mnist

Trains a quick model first when the workdir holds no finished run (not timed),
then runs evaluation.evaluate with its defaults and prints seconds per stage.
The one-time training of the reference classifier is reported separately and
left out of the total when it happened in this call.
"""
import argparse
import dataclasses
import os

from evaluation import evaluate as ev
from hvae_repr import runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="Run folder (trained here first if unfinished).")
    parser.add_argument("--dataset", default="binary_mnist", help="Data set of the quick model.")
    parser.add_argument("--data_dir", default=SHARED_DATA if os.path.isdir(SHARED_DATA) else "")
    parser.add_argument("--architecture", default="conv", help="conv = the paper's reference model.")
    parser.add_argument("--train_epochs", type=int, default=1)
    parser.add_argument("--iw_samples", type=int, default=0)
    parser.add_argument("--probe_samples", action="store_true")
    parser.add_argument("--classifier_dir", default="")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace an eval_result.json of other settings in the workdir.")
    args = parser.parse_args()

    options = ev.EvalOptions(iw_samples=args.iw_samples, probe_samples=args.probe_samples,
                             classifier_dir=args.classifier_dir)
    try:
        ev.check_overwrite(args.workdir, dataclasses.asdict(options), args.overwrite)
    except ValueError as e:
        parser.error(str(e))
    if not os.path.isfile(runs.path(args.workdir, runs.TRAIN_RESULT)):
        from hvae_repr.config import TrainConfig
        from hvae_repr.train import train
        train(TrainConfig(dataset=args.dataset, data_dir=args.data_dir, architecture=args.architecture,
                          epochs=args.train_epochs, workdir=args.workdir, kl_warmup_epochs=0))
    result = ev.evaluate(args.workdir, options)
    ev.write_result(args.workdir, result, overwrite=args.overwrite)
    seconds = dict(result["seconds"])
    total = seconds.pop("total")
    trained_now = not result["reference_classifier"]["cached"]
    print(f"\n{result['dataset']}, {result['num_test_examples']} test images, "
          f"{result['run_config']['architecture']} model, latent dims {result['run_config']['latent_dims']}")
    for stage, value in seconds.items():
        note = "  (one-time training, excluded)" if stage == "reference_classifier" and trained_now else ""
        print(f"  {stage:<22}{value:8.1f} s{note}")
    if trained_now:
        total -= seconds["reference_classifier"]
    print(f"  {'total':<22}{total:8.1f} s")
    print(ev.format_summary(result))


if __name__ == "__main__":
    main()
