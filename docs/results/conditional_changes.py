"""Writes docs/results/conditional_changes.md and conditional_changes/spots.csv: the log of issue 16, part 2.
Each change to the beta-conditional model (its recipe: a flag, a width, the epochs) is one conditional sweep
at the 9 spot points, judged against the best known separately trained model per point.

    python -m launch.sweep --root=sweeps/mnist_conditional_60ep_base --conditional \\
        --betas_1=0.1,1,10 --betas_2=0.1,1,10 --dataset=binary_mnist --data_dir=../shared/data \\
        --architecture=conv --epochs=60 --threads=1 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    python -m launch.sweep --root=sweeps/mnist_conditional_60ep_balance --conditional --balance_betas \\
        --betas_1=0.1,1,10 --betas_2=0.1,1,10 --dataset=binary_mnist --data_dir=../shared/data \\
        --architecture=conv --epochs=60 --threads=1 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    python -m launch.sweep --root=sweeps/mnist_conditional_100ep_lr4e-3_cosine --conditional --balance_betas \\
        --betas_1=0.1,1,10 --betas_2=0.1,1,10 --dataset=binary_mnist --data_dir=../shared/data \\
        --architecture=conv --epochs=100 --learning_rate=4e-3 --lr_schedule=cosine --threads=1 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    python -m launch.sweep --root=sweeps/mnist_conditional_60ep_c32_lr2e-3_cosine --conditional --balance_betas \\
        --betas_1=0.1,1,10 --betas_2=0.1,1,10 --dataset=binary_mnist --data_dir=../shared/data --architecture=conv \\
        --channels=32 --epochs=60 --learning_rate=2e-3 --lr_schedule=cosine --threads=1 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    python -m launch.sweep --root=sweeps/mnist_conditional_60ep_c32_lr2e-3_cosine_range0.05-20 --conditional \\
        --balance_betas --beta_range=0.05,20 --betas_1=0.1,1,10 --betas_2=0.1,1,10 --dataset=binary_mnist \\
        --data_dir=../shared/data --architecture=conv --channels=32 --epochs=60 --learning_rate=2e-3 \\
        --lr_schedule=cosine --threads=2 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    python -m launch.sweep --root=sweeps/mnist_conditional_120ep_c32_lr2e-3_cosine_range0.05-20 --conditional \\
        --balance_betas --beta_range=0.05,20 --betas_1=0.1,1,10 --betas_2=0.1,1,10 --dataset=binary_mnist \\
        --data_dir=../shared/data --architecture=conv --channels=32 --epochs=120 --learning_rate=2e-3 \\
        --lr_schedule=cosine --threads=1 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    python -m launch.sweep --root=sweeps/mnist_conditional_60ep_c48_z512_lr2e-3_cosine_range0.05-20 --conditional \\
        --balance_betas --beta_range=0.05,20 --betas_1=0.1,1,10 --betas_2=0.1,1,10 --dataset=binary_mnist \\
        --data_dir=../shared/data --architecture=conv --channels=48 --latent_dims=512,20 --epochs=60 \\
        --learning_rate=2e-3 --lr_schedule=cosine --threads=1 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    for c_epochs in 48,120 64,60; do python -m launch.sweep \\
        --root=sweeps/mnist_conditional_${c_epochs#*,}ep_c${c_epochs%,*}_z512_lr2e-3_cosine_range0.05-20 --conditional \\
        --balance_betas --beta_range=0.05,20 --betas_1=0.1,1,10 --betas_2=0.1,1,10 --dataset=binary_mnist \\
        --data_dir=../shared/data --architecture=conv --channels=${c_epochs%,*} --latent_dims=512,20 \\
        --epochs=${c_epochs#*,} --learning_rate=2e-3 --lr_schedule=cosine --threads=1 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000 & done; wait
    for a in 1 0.5; do python -m launch.sweep \\
        --root=sweeps/mnist_conditional_60ep_c32_lr2e-3_cosine_range0.05-20_tilt$a --conditional \\
        --balance_betas --beta_range=0.05,20 --beta_tilt=$a --betas_1=0.1,1,10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --channels=32 --epochs=60 \\
        --learning_rate=2e-3 --lr_schedule=cosine --threads=1 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000 & done; wait
    for c in 48 64; do python -m launch.sweep \\
        --root=sweeps/mnist_conditional_60ep_c${c}_z512_lr2e-3_cosine_range0.05-20_tilt1 --conditional \\
        --balance_betas --beta_range=0.05,20 --beta_tilt=1 --betas_1=0.1,1,10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --channels=$c --latent_dims=512,20 \\
        --epochs=60 --learning_rate=2e-3 --lr_schedule=cosine --threads=1 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000 & done; wait
    python -m launch.sweep --root=sweeps/mnist_conditional_120ep_c64_z512_lr2e-3_cosine_range0.05-20_tilt1 \\
        --conditional --balance_betas --beta_range=0.05,20 --beta_tilt=1 --betas_1=0.1,1,10 --betas_2=0.1,1,10 \\
        --dataset=binary_mnist --data_dir=../shared/data --architecture=conv --channels=64 --latent_dims=512,20 \\
        --epochs=120 --learning_rate=2e-3 --lr_schedule=cosine --threads=2 --test_every_epochs=5 \\
        --eval_layers=top --eval_probe_names=logistic_regression --eval_num_generated=5000
    for r in mnist_conditional_100ep_lr4e-3_cosine mnist_conditional_60ep_c32_lr2e-3_cosine \\
            mnist_conditional_60ep_c32_lr2e-3_cosine_range0.05-20 mnist_conditional_120ep_c32_lr2e-3_cosine_range0.05-20 \\
            mnist_conditional_60ep_c48_z512_lr2e-3_cosine_range0.05-20 \\
            mnist_conditional_120ep_c48_z512_lr2e-3_cosine_range0.05-20 \\
            mnist_conditional_60ep_c64_z512_lr2e-3_cosine_range0.05-20 \\
            mnist_conditional_60ep_c32_lr2e-3_cosine_range0.05-20_tilt1 \\
            mnist_conditional_60ep_c32_lr2e-3_cosine_range0.05-20_tilt0.5 \\
            mnist_conditional_60ep_c48_z512_lr2e-3_cosine_range0.05-20_tilt1 \\
            mnist_conditional_60ep_c64_z512_lr2e-3_cosine_range0.05-20_tilt1 \\
            mnist_conditional_120ep_c64_z512_lr2e-3_cosine_range0.05-20_tilt1; do
        python -m evaluation.aggregate --root=sweeps/$r; done
    python docs/results/conditional_changes.py --rows=docs/results/conditional_changes/spots.csv \\
        --reference=sweeps/mnist_spots_100ep --reference=sweeps/mnist_spots_seeds \\
        --reference=sweeps/mnist_spots_100ep_lr4e-3_cosine --reference=sweeps/mnist_spots_warmup \\
        --reference=sweeps/mnist_spots_warmup_100ep \\
        --seeds=sweeps/mnist_spots_seeds \\
        --change=sweeps/mnist_conditional_60ep_base --change=sweeps/mnist_conditional_60ep_balance \\
        --change=sweeps/mnist_conditional_60ep_balance_prefilm --change=sweeps/mnist_conditional_100ep_lr4e-3_cosine \\
        --change=sweeps/mnist_conditional_60ep_c32_lr2e-3_cosine --change=sweeps/mnist_map \\
        --change=sweeps/mnist_conditional_60ep_c32_lr2e-3_cosine_range0.05-20 \\
        --change=sweeps/mnist_conditional_120ep_c32_lr2e-3_cosine_range0.05-20 \\
        --change=sweeps/mnist_conditional_60ep_c48_z512_lr2e-3_cosine_range0.05-20 \\
        --change=sweeps/mnist_conditional_120ep_c48_z512_lr2e-3_cosine_range0.05-20 \\
        --change=sweeps/mnist_conditional_60ep_c64_z512_lr2e-3_cosine_range0.05-20 \\
        --change=sweeps/mnist_conditional_60ep_c32_lr2e-3_cosine_range0.05-20_tilt1 \\
        --change=sweeps/mnist_conditional_60ep_c32_lr2e-3_cosine_range0.05-20_tilt0.5 \\
        --change=sweeps/mnist_conditional_60ep_c48_z512_lr2e-3_cosine_range0.05-20_tilt1 \\
        --change=sweeps/mnist_conditional_60ep_c64_z512_lr2e-3_cosine_range0.05-20_tilt1 \\
        --change=sweeps/mnist_conditional_120ep_c64_z512_lr2e-3_cosine_range0.05-20_tilt1 \\
        --refined=sweeps/mnist_conditional_60ep_balance/refined_1epochs \\
        --refined=sweeps/mnist_conditional_60ep_balance/refined_2epochs \\
        --refined=sweeps/mnist_conditional_60ep_balance/refined_5epochs \\
        --refined=sweeps/mnist_conditional_60ep_c32_lr2e-3_cosine/refined_1epochs \\
        --refined=sweeps/mnist_map/refined_1epochs_lr0.0003 --refined=sweeps/mnist_map/refined_2epochs_lr0.0003 \\
        --refined=sweeps/mnist_map/refined_5epochs_lr0.0003

The first three changes (base, balance, prefilm: --epochs=60 at the paper's Adam 3e-4, as above without the
learning-rate flags; prefilm adds --film_placement=before_activation) and the references were run by an earlier
session (their sweeps' commands are in docs/results/mnist_spots_100ep.md and mnist_spots_seeds.md); their
folders are gone and their rows come from --rows. `sweeps/mnist_spots_warmup` and
`sweeps/mnist_spots_warmup_100ep` (the three beta_1 = 10 points with KL warm-up, where the others collapse, for
60 and 100 epochs) are made by the commands of docs/results/mnist_spots_warmup.md and
mnist_spots_warmup_100ep.md, run from ~/hvae_runs. `sweeps/mnist_map` is the 21x21 map's model
(docs/results/conditional.py's first command: the 60ep_c32_lr2e-3_cosine change's recipe trained again, without
--threads=1), read at its 9 spot points; the range0.05-20 change is that recipe trained for betas in 0.05..20
instead of 0.1..10 (so that the spot points at beta = 10 are not at the edge of what it trains on), run from
~/hvae_runs. On that recipe, two single changes: twice the epochs (120; the warm-up is 20% of them), and 48 instead
of 32 channels with z1 kept at 512 dimensions (4x4x32; the default would grow it with the channels), run side by
side from ~/hvae_runs with --data_dir=/work/shared/data (code of commit 6a1ee10); then, the same way, both
together (48 channels, 120 epochs) and 64 channels (60 epochs): the loop after them. Last, the range0.05-20 recipe
with its training betas drawn with more weight at the top of the range (--beta_tilt=1 and 0.5: density
proportional to exp(a u) over the normalized log beta u, so that the (10, 10) corner is drawn 3.5 and 2 times as
often), side by side the same way (code of commit 67255e8); then --beta_tilt=1 on the 48- and 64-channel recipes
(60 epochs, z1 at 512), side by side: the last loop of sweeps; then the 64-channel one for 120 epochs
alone at --threads=2 (the command after that loop; stopped once and resumed from its checkpoint by the same
command; code of commit 67255e8). Refinement: the balance
model's points at its own Adam 3e-4, the 32-channel model's (one epoch) at its 2e-3, and the map's at 3e-4 by

    for K in 1 2 5; do python -m launch.sweep ...the map's command in conditional.py, with \\
            --betas_1=0.1,1,10 --betas_2=0.1,1,10... --refine_epochs=$K --refine_learning_rate=3e-4 --workers=2
        python -m evaluation.aggregate --root=sweeps/mnist_map/refined_${K}epochs_lr0.0003; done

(the balance model's: `--refine_epochs=$K --workers=2` added to its --change command). The map and its
refinements were run from ~/hvae_runs with --data_dir=/work/shared/data.

Each --change is compared with the earlier entry closest to it (the fewest settings that differ, the latest of
equals), so that a change made on an older recipe is named against that recipe: what differs is read from the
two conditional models' config.json, so the log names every setting that changed. Every number is read from the sweeps'
results.csv, the models' config.json and train_result.json (evaluation/spots.py computes the verdicts).

A sweep whose folder is gone (an earlier session's) is read from the spots.csv that an earlier run of this
page wrote (--rows=docs/results/conditional_changes/spots.csv): its rows are kept there by the sweep's
name, and each change's model (its config.json and training seconds) and each refined folder's cost line in
conditional_changes/models.json, so a new change can be judged against the references without retraining
them: the next entry is the generator's command above with one more --change (the base, balance and prefilm
models' config.json were not kept, so their entries say so; from the 100-epoch cosine model on, models.json keeps
them).
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
import pages  # noqa: E402
from evaluation import spots  # noqa: E402
from hvae_repr import io_utils  # noqa: E402

# beside spots.csv: {change sweep: {"config": its model's config.json, "train_seconds"}, refined folder: {"cost"}}
MODELS = "models.json"
IGNORED = {"workdir", "threads", "data_dir", "test_every_epochs", "log_every", "checkpoint_every_secs",
           "images_every_epochs", "betas"}  # settings that do not change the model a sweep trains


def model_run(root):
    return os.path.join(root, "model")


def flat_settings(config, prefix=""):
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{key}."))
        elif key not in IGNORED:
            out[prefix + key] = value
    return out


def differences(before, after):
    """'setting: old -> new' for every training setting that differs between two config.json."""
    a, b = flat_settings(before), flat_settings(after)
    unset = "(not in its config.json: the default)"  # a run trained before the setting existed
    return [f"{k.split('.')[-1]}: {a.get(k, unset)} -> {b.get(k, unset)}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def closest_earlier(config, earlier):
    """(name, config) of the earlier entry whose model differs from `config` in the fewest settings (the latest of
    equals), so that a change made on an older recipe is named against that recipe; None if none was kept."""
    known = [(name, before) for name, before in earlier if before is not None]
    return min(reversed(known), key=lambda entry: len(differences(entry[1], config)), default=None)


def change_lines(name, rows, best, spreads, config, earlier, train_seconds):
    """config and train_seconds are None for a model whose files were not kept; earlier: (name, config) of the
    entries before it."""
    found = spots.verdicts(rows, best, spreads)
    gaps = [v["metrics"]["objective_nats"]["candidate"] / v["metrics"]["objective_nats"]["reference"] - 1
            for v in found.values()]
    if config is None:
        what, training = "changed: not known (this model's config.json was not kept)", (
            f"{rows[0]['recipe'] if rows else 'not known'}; its training time was not kept")
    else:
        closest = closest_earlier(config, earlier)
        what = ("changed: nothing to compare with (the first model of the log)" if not earlier else
                "changed: not known (no earlier model's config.json was kept)" if closest is None else
                f"changed from `{closest[0]}` (the closest earlier entry): "
                + ("; ".join(differences(closest[1], config)) or "nothing (a rerun)"))
        training = (f"{spots.recipe(config)}, {train_seconds / 60:.1f} minutes (train_result.json's train_seconds, "
                    f"--threads={config.get('threads', 0)}; a time measured beside other runs on the same cores is "
                    "longer than alone)")
    lines = [f"## `{name}`", "", f"- {what}", f"- training: {training}"]
    if gaps:
        lines.append(f"- objective against the reference, over the {len(gaps)} points with one: mean "
                     f"{100 * np.mean(gaps):+.1f}%, worst {100 * max(gaps):+.1f}%, best {100 * min(gaps):+.1f}%")
    return lines + ["", *spots.verdict_lines(name, found)]


def refined_lines(folder, rows, best, spreads, kept_cost):
    """A refined sweep (ROOT/refined_<K>epochs): each point's objective before (its conditional model there)
    and after K epochs at its fixed betas, against the reference, and the refinement's cost per point.
    kept_cost: the cost line kept from an earlier run, for a folder that is gone. Returns (lines, cost)."""
    refined = [r for r in rows if r["sweep"] == folder]
    if not refined:
        return [f"## `{folder}`: no evaluated spot points", ""], kept_cost
    if os.path.isdir(folder):
        model = os.path.normpath(io_utils.read_json(os.path.join(folder, _run_of(folder, refined[0]),
                                                                 "config.json"))["init_from"])
        root = os.path.dirname(model)
        runs = [os.path.join(folder, _run_of(folder, r)) for r in refined]
        seconds = [io_utils.read_json(os.path.join(run, "train_result.json"))["train_seconds"] for run in runs]
        evaluation = [io_utils.read_json(os.path.join(run, "eval_result.json"))["seconds"]["total"] for run in runs]
        cost = (f"training seconds per point: mean {np.mean(seconds):.0f}, from {min(seconds):.0f} to "
                f"{max(seconds):.0f} (train_result.json's train_seconds); its evaluation: mean "
                f"{np.mean(evaluation):.0f} s (eval_result.json's seconds, total)")
    else:  # from --rows: ROOT/refined_<K>epochs refines ROOT's model
        root, cost = os.path.dirname(os.path.normpath(folder)), kept_cost or "training seconds per point: not kept"
    start = {spots.point_of(r): r for r in rows if os.path.normpath(r["sweep"]) == root
             or os.path.abspath(r["sweep"]) == root}
    found = spots.verdicts(refined, best, spreads)
    lines = [f"## `{folder}`", "", f"- {refined[0]['recipe']}; {cost}", "",
             "| betas (z1, z2) | objective nats: conditional model | refined | change | reference | refined vs reference |",
             "|---|---|---|---|---|---|"]
    for row in refined:
        point = spots.point_of(row)
        before = start.get(point, {}).get("objective_nats", float("nan"))
        ref = best[point]["objective_nats"] if point in best else float("nan")
        lines.append(f"| ({point[0]:g}, {point[1]:g}) | {before:.2f} | {row['objective_nats']:.2f} | "
                     f"{100 * (row['objective_nats'] / before - 1):+.1f}% | {ref:.2f} | "
                     f"{100 * (row['objective_nats'] / ref - 1):+.1f}% |")
    return lines + ["", *spots.verdict_lines(folder, found)], cost


def _run_of(folder, row):
    """The run folder of a spots row of `folder` (the one whose config.json has the row's betas and seed)."""
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name, "config.json")
        if os.path.isfile(path):
            config = io_utils.read_json(path)
            if tuple(round(b, 6) for b in config["betas"]) == spots.point_of(row) and config["seed"] == row["seed"]:
                return name
    raise ValueError(f"no run of {folder} has betas {spots.point_of(row)} and seed {row['seed']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--change", action="append", required=True,
                        help="an aggregated conditional sweep at the spot points, in the log's order (repeatable)")
    parser.add_argument("--reference", action="append", required=True,
                        help="an aggregated sweep of separately trained models; a point's reference is the lowest "
                             "objective among them (repeatable)")
    parser.add_argument("--seeds", action="append", default=[],
                        help="a sweep of seed runs whose spread may widen a tolerance (repeatable)")
    parser.add_argument("--refined", action="append", default=[],
                        help="an aggregated folder of refined points (ROOT/refined_<K>epochs of a --change's "
                             "sweep run with --refine_epochs=K), tabulated after the changes (repeatable)")
    parser.add_argument("--rows", action="append", default=[],
                        help="a spots.csv of an earlier run of this page: a sweep whose folder is not here takes "
                             "its rows from it (by the sweep's name), a change's model from models.json beside it")
    parser.add_argument("--out", default=os.path.join(HERE, "conditional_changes.md"))
    args = parser.parse_args()
    sweeps = list(dict.fromkeys(args.change + args.reference + args.seeds + args.refined))
    earlier = [row for path in args.rows for row in spots.read_csv(path)]
    kept = {}
    for path in args.rows:
        models = os.path.join(os.path.dirname(path), MODELS)
        if os.path.isfile(models):
            kept.update(io_utils.read_json(models))
    try:
        rows = spots.rows_of_sweeps(sweeps, earlier)
    except ValueError as e:
        parser.error(str(e))
    folder = os.path.splitext(args.out)[0]
    os.makedirs(folder, exist_ok=True)
    for sweep in args.change:  # each model's config.json and training seconds, for when its folder is gone
        if os.path.isfile(os.path.join(model_run(sweep), "train_result.json")):
            kept[sweep] = {"config": io_utils.read_json(os.path.join(model_run(sweep), "config.json")),
                           "train_seconds": io_utils.read_json(os.path.join(model_run(sweep), "train_result.json"))
                           ["train_seconds"]}
    spots.write_csv(os.path.join(folder, "spots.csv"), rows)
    best, spreads = spots.references(rows, args.reference), spots.seed_spreads(rows, args.seeds)
    lines = pages.header("conditional_changes.py", "The beta-conditional model against converged separate "
                         "models: what each change gained", __doc__, "the sweeps below") + [
        "Each point's reference is the separately trained model of lowest objective among "
        + ", ".join(f"`{s}`" for s in args.reference) + f" ({len(best)} of 9 points have one). Target: objective "
        "within 2% (or lower), rates within 10% or 1 nat, PSNR and the probe on z2 samples within 3% relative; "
        "where 3 seed standard deviations are wider they stand in (marked 'from seeds').", "",
        f"Every row: [{os.path.basename(folder)}/spots.csv]({os.path.basename(folder)}/spots.csv).", ""]
    logged = []  # (sweep, its model's config.json) of the entries so far
    for sweep in args.change:
        model = kept.get(sweep, {"config": None, "train_seconds": None})
        lines += change_lines(sweep, [r for r in rows if r["sweep"] == sweep], best, spreads, model["config"],
                              logged, model["train_seconds"])
        logged.append((sweep, model["config"]))
    if args.refined:
        lines += ["# Refinement: each point fine-tuned at its fixed betas for K epochs", "",
                  "A refined point starts from the conditional model's weights (a fresh Adam, no warm-up) and trains "
                  "K epochs with its FiLM condition held at the point (`--refine_epochs=K`); its cost is K epochs "
                  "of one separate model per point, on top of the conditional model's training.", ""]
        for refined in args.refined:
            more, cost = refined_lines(refined, rows, best, spreads, kept.get(refined, {}).get("cost"))
            lines += more
            if cost:
                kept[refined] = {"cost": cost}
    io_utils.write_json_atomic(os.path.join(folder, MODELS),
                               {s: kept[s] for s in args.change + args.refined if s in kept})
    io_utils.write_text_atomic(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out} and {folder}/spots.csv")


if __name__ == "__main__":
    main()
