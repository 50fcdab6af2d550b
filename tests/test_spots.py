"""The spot-check table as data (evaluation.spots): verdicts of known rows, the seed spread standing in for a
tolerance, and docs/results/conditional.py writing spots.csv from tiny sweeps' result files."""
import csv
import json
import os
import subprocess
import sys

import pytest

from evaluation import spots

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def row(point, sweep, objective=100.0, r1=5.0, r2=40.0, psnr=20.0, probe=0.9, seed=0, recipe="20 epochs"):
    return {"beta_z1": point[0], "beta_z2": point[1], "kind": "separate", "sweep": sweep, "recipe": recipe,
            "epochs": 20, "seed": seed, "rate_nats_z1": r1, "rate_nats_z2": r2, "distortion_nats": 0.0,
            "objective_nats": objective, "psnr_db": psnr, "probe_z2_samples": probe}


def test_verdicts_of_known_rows_follow_the_tolerances():
    p = (1.0, 1.0)
    best = spots.references([row(p, "a", objective=100.0), row(p, "b", objective=98.0), row(p, "c", objective=90.0)],
                            ["a", "b"])
    assert best[p]["sweep"] == "b"  # the lowest objective among the reference sweeps (not c, not given)

    def verdict(**values):
        return spots.verdicts([row(p, "conditional", **values)], best)[p]["metrics"]
    assert verdict(objective=99.9)["objective_nats"]["ok"]  # +1.9 within 2% of 98 (1.96)
    assert not verdict(objective=100.0)["objective_nats"]["ok"]
    assert verdict(objective=50.0)["objective_nats"]["ok"]  # lower always passes
    assert verdict(objective=50.0)["objective_nats"]["below"] and not verdict(objective=97.0)["objective_nats"]["below"]
    lines = spots.verdict_lines("cond", spots.verdicts([row(p, "conditional", objective=50.0)], best))
    assert "50 / 98 (±2) ok, lower" in lines[2] and "lower than the reference's by more than the tolerance at 1 of " \
        "them ((1, 1))" in lines[-2], lines
    assert "lower than" not in spots.verdict_lines("cond", spots.verdicts([row(p, "conditional", objective=97.0)],
                                                                           best))[-2]
    assert verdict(r1=5.99)["rate_nats_z1"]["ok"] and not verdict(r1=6.01)["rate_nats_z1"]["ok"]  # 1 nat floor
    assert verdict(r1=4.01)["rate_nats_z1"]["ok"] and not verdict(r1=3.99)["rate_nats_z1"]["ok"]
    assert verdict(r2=43.9)["rate_nats_z2"]["ok"] and not verdict(r2=44.1)["rate_nats_z2"]["ok"]  # 10% of 40
    assert verdict(psnr=20.59)["psnr_db"]["ok"] and not verdict(psnr=20.61)["psnr_db"]["ok"]  # 3%, both ways
    assert not verdict(psnr=19.39)["psnr_db"]["ok"] and not verdict(probe=0.93)["probe_z2_samples"]["ok"]
    found = spots.verdicts([row(p, "conditional", objective=99.0), row((10.0, 10.0), "conditional")], best)
    assert list(found) == [p] and found[p]["ok"]  # no reference at (10, 10): no verdict there


def test_three_seed_deviations_stand_in_where_they_are_wider_than_the_tolerance():
    seeds = [row((1.0, 1.0), "seeds", psnr=v, seed=s) for s, v in enumerate((19.0, 20.0, 21.0))]  # std 1 dB
    seeds += [row((0.1, 0.1), "seeds", psnr=20.0 + 0.1 * s, seed=s) for s in range(3)]  # std 0.1 dB
    spreads = spots.seed_spreads(seeds, ["seeds"])
    assert spreads[(1.0, 1.0)]["psnr_db"] == pytest.approx(1.0)
    best = spots.references([row((1.0, 1.0), "ref"), row((0.1, 0.1), "ref"), row((0.1, 10.0), "ref")], ["ref"])
    found = spots.verdicts([row((1.0, 1.0), "cond", psnr=22.5), row((0.1, 0.1), "cond", psnr=20.7)], best, spreads)
    psnr = found[(1.0, 1.0)]["metrics"]["psnr_db"]
    assert psnr["tolerance"] == pytest.approx(0.6) and psnr["used"] == pytest.approx(3.0) and psnr["ok"]
    narrow = found[(0.1, 0.1)]["metrics"]["psnr_db"]
    assert narrow["used"] == pytest.approx(0.6) and not narrow["ok"]  # 3 x 0.1 < 0.6: the tolerance holds
    # A point without seed runs takes the nearest seed points' spread (in log10 betas): (0.1, 10) -> (1, 1);
    # (0.1, 1) is as near to (0.1, 0.1) as to (1, 1): the root mean square of both.
    assert spots.spread_at((0.1, 10.0), spreads)["psnr_db"] == pytest.approx(1.0)
    assert spots.spread_at((0.1, 1.0), spreads)["psnr_db"] == pytest.approx(((1.0 + 0.01) / 2) ** 0.5)
    with pytest.raises(ValueError, match="differ in more than the seed"):
        spots.seed_spreads(seeds + [row((1.0, 1.0), "seeds", seed=7, recipe="100 epochs")], ["seeds"])


def _write_sweep(root, kind, values, seeds=(0,), epochs=20):
    """A finished, aggregated sweep's result files: results.csv, each run's config.json (or a grid point's
    point.json and the model's config.json) and a sweep record. values: {point: (r1, r2, D, psnr, probe)}."""
    os.makedirs(root)
    config = {"epochs": epochs, "learning_rate": 3e-4, "batch_size": 256, "kl_warmup_epochs": 0, "seed": 0,
              "model": {"beta_range": [0.1, 10.0], "conditional_betas": kind == "conditional"}}
    if kind == "conditional":
        os.makedirs(os.path.join(root, "model"))
        json.dump(dict(config, kl_warmup_epochs=4), open(os.path.join(root, "model", "config.json"), "w"))
        json.dump({"train_seconds": 1500.0}, open(os.path.join(root, "model", "train_result.json"), "w"))
    table = []
    for (b1, b2), (r1, r2, d, psnr, probe) in values.items():
        for seed in seeds:
            run = f"betas{b1:g}-{b2:g}_seed{seed}"
            os.makedirs(os.path.join(root, run))
            if kind == "conditional":
                json.dump({"model_run": "../model", "betas": [b1, b2]}, open(os.path.join(root, run, "point.json"), "w"))
            else:
                json.dump(dict(config, seed=seed), open(os.path.join(root, run, "config.json"), "w"))
            # with the other columns docs/results/mnist_grid.py's findings read, made up from these
            table.append({"run": run, "status": "evaluated", "epochs": epochs, "beta_z1": b1, "beta_z2": b2,
                          "rate_nats_z1": r1, "rate_nats_z2": r2 + 0.5 * seed, "distortion_nats": d,
                          "reconstruction_psnr_pooled_mse_db": psnr,
                          "probes_on_samples_z2_logistic_regression_accuracy": probe,
                          "reconstruction_psnr_mean_per_image_db": psnr, "reconstruction_classifier_accuracy": probe,
                          "probes_on_means_z2_logistic_regression_accuracy": probe,
                          "mutual_information_z2_label_lower_bound_nats": r2 / 20,
                          "mutual_information_z2_label_mixture_estimate_nats": r2 / 20,
                          "mutual_information_z2_label_saturated": 0,
                          "generation_inception_style_score_inception_score_mean": psnr / 4,
                          "generation_inception_style_score_inception_score_std": 0.1,
                          "generation_frechet_distance_value": 100 / psnr, "bound_t2_violated": 0})
    with open(os.path.join(root, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    json.dump({"argv": ["launch.sweep"], "seconds": 120.0, "stage_seconds": {},
               "points": {"done": [{"index": i} for i in range(len(table))]}},
              open(os.path.join(root, "sweep_20260101-000000.json"), "w"))


def test_the_page_generator_writes_spots_csv_and_the_verdicts_from_result_files(tmp_path):
    spot, other = (1.0, 1.0), (10.0, 0.1)
    _write_sweep(str(tmp_path / "cond"), "conditional", {spot: (14.0, 19.0, 60.0, 17.5, 0.86),
                                                        other: (0.5, 50.0, 80.0, 15.0, 0.89), (0.5, 0.5): (1, 1, 1, 1, 1)})
    _write_sweep(str(tmp_path / "grid"), "separate", {spot: (13.9, 19.1, 59.8, 17.8, 0.864),
                                                     other: (0.1, 53.0, 140.0, 12.4, 0.79)})
    _write_sweep(str(tmp_path / "long"), "separate", {spot: (13.0, 20.0, 58.0, 17.9, 0.87)}, epochs=100)
    _write_sweep(str(tmp_path / "seeds"), "separate", {spot: (13.9, 19.1, 59.8, 17.8, 0.864)}, seeds=(0, 1, 2))
    out = tmp_path / "page" / "conditional.md"
    os.makedirs(out.parent)
    env = dict(os.environ, PYTHONPATH=REPO, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "docs", "results", "conditional.py"),
                           f"--root={tmp_path / 'cond'}", f"--grid={tmp_path / 'grid'}",
                           f"--reference={tmp_path / 'grid'}", f"--reference={tmp_path / 'long'}",
                           f"--seeds={tmp_path / 'seeds'}", f"--out={out}"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = spots.read_csv(str(tmp_path / "page" / "conditional" / "spots.csv"))
    kinds = sorted((r["kind"], r["sweep"].split(os.sep)[-1], r["epochs"], r["seed"]) for r in rows
                   if spots.point_of(r) == spot)
    assert kinds == [("conditional", "cond", 20, 0), ("separate", "grid", 20, 0), ("separate", "long", 100, 0),
                     ("separate", "seeds", 20, 0), ("separate", "seeds", 20, 1), ("separate", "seeds", 20, 2)]
    assert all(spots.point_of(r) in spots.SPOTS for r in rows)  # (0.5, 0.5) is not a spot point
    cond = next(r for r in rows if r["kind"] == "conditional" and spots.point_of(r) == spot)
    assert cond["objective_nats"] == pytest.approx(60.0 + 14.0 + 19.0)
    # Recomputed from the file alone: (1, 1)'s reference is the 100-epoch model (objective 91 < 92.8).
    found = spots.verdicts([r for r in rows if r["kind"] == "conditional"],
                           spots.references(rows, [str(tmp_path / "grid"), str(tmp_path / "long")]),
                           spots.seed_spreads(rows, [str(tmp_path / "seeds")]))
    assert found[spot]["reference"]["epochs"] == 100
    assert not found[spot]["metrics"]["objective_nats"]["ok"]  # 93 vs 91: +2.2%
    assert found[spot]["metrics"]["rate_nats_z2"]["ok"]  # 19 vs 20: 1 nat
    assert found[other]["metrics"]["objective_nats"]["ok"]  # conditional lower
    page = out.read_text()
    assert "meets the target at 0 of 2 points" in page and "conditional/spots.csv" in page
    # The cost: 25 minutes of training plus the map command's 2 minutes; the findings beside the grid's.
    assert ("the whole map (the map commands' wall time plus the model's training): **27.0 minutes** (within the "
            "target of 60 minutes)") in page
    assert "| the paper's finding | separate grid | map | map at the grid's betas |" in page
    assert "| T2 holds at every point" in page and "agrees (0 of 2 points flagged violated)" in page


def test_the_change_log_names_what_changed_and_judges_each_change_from_result_files(tmp_path, monkeypatch):
    import runpy
    spot = (1.0, 1.0)
    _write_sweep(str(tmp_path / "base"), "conditional", {spot: (14.0, 19.0, 62.0, 17.5, 0.86)})
    _write_sweep(str(tmp_path / "balance"), "conditional", {spot: (14.0, 19.0, 58.5, 17.8, 0.87)})
    for name, balance, seconds in (("base", False, 600.0), ("balance", True, 660.0)):
        model = tmp_path / name / "model"
        config = json.load(open(model / "config.json"))
        json.dump(dict(config, balance_betas=balance, threads=1 if balance else 2), open(model / "config.json", "w"))
        json.dump({"train_seconds": seconds}, open(model / "train_result.json", "w"))
    _write_sweep(str(tmp_path / "long"), "separate", {spot: (13.0, 20.0, 58.0, 17.9, 0.87)}, epochs=100)
    # A point of `balance` refined for 1 epoch (launch.sweep --refine_epochs=1): its run's files.
    refined = tmp_path / "balance" / "refined_1epochs"
    _write_sweep(str(refined), "separate", {spot: (13.5, 19.5, 57.5, 17.9, 0.87)}, epochs=1)
    [run] = [f for f in os.listdir(refined) if os.path.isdir(refined / f)]
    config = json.load(open(refined / run / "config.json"))
    json.dump(dict(config, betas=list(spot), fixed_condition=True, init_from=str(tmp_path / "balance" / "model")),
              open(refined / run / "config.json", "w"))
    json.dump({"train_seconds": 42.0}, open(refined / run / "train_result.json", "w"))
    json.dump({"seconds": {"total": 13.0}}, open(refined / run / "eval_result.json", "w"))
    out = tmp_path / "changes.md"
    monkeypatch.setattr(sys, "argv", ["conditional_changes.py", f"--change={tmp_path / 'base'}",
                                      f"--change={tmp_path / 'balance'}", f"--reference={tmp_path / 'long'}",
                                      f"--refined={refined}", f"--out={out}"])
    runpy.run_path(os.path.join(REPO, "docs", "results", "conditional_changes.py"), run_name="__main__")
    page = out.read_text()
    # The second entry names the one setting that changed (the thread count does not change the model).
    assert f"changed from `{tmp_path / 'base'}` (the closest earlier entry): balance_betas: False -> True\n" in page
    assert "10.0 minutes" in page and "11.0 minutes" in page
    # Objectives: 95 and 91.5 against the reference's 91: +4.4% (off) and +0.5% (within 2%).
    assert "mean +4.4%" in page and "mean +0.5%" in page
    assert page.count("meets the target at 0 of 1 points") == 1  # base; balance and the refined point pass
    assert page.count("meets the target at 1 of 1") == 2
    # The refined point: from the conditional model's 91.5 to 90.5 (-1.1%), 0.5% below the reference.
    assert "1 epoch, Adam 0.0003, batch 256, no warm-up, refined from balance's conditional model" in page
    assert "| (1, 1) | 91.50 | 90.50 | -1.1% | 91.00 | -0.5% |" in page and "mean 42, from 42 to 42" in page
    assert "its evaluation: mean 13 s" in page
    rows = spots.read_csv(str(tmp_path / "changes" / "spots.csv"))
    assert sorted(r["sweep"].split(os.sep)[-1] for r in rows) == ["balance", "base", "long", "refined_1epochs"]

    # A later session: every folder above is gone; a new change is judged against the rows and the models
    # that the first run of the page kept (--rows=its spots.csv; models.json beside it).
    import shutil
    for name in ("base", "balance", "long"):
        shutil.rmtree(tmp_path / name)
    _write_sweep(str(tmp_path / "wider"), "conditional", {spot: (14.0, 19.0, 57.0, 17.9, 0.87)})
    model = tmp_path / "wider" / "model"
    config = json.load(open(model / "config.json"))
    # Made on base's recipe, not balance's: the log names it against base (one setting), not the entry before.
    json.dump(dict(config, balance_betas=False, model=dict(config["model"], hidden_units=512)),
              open(model / "config.json", "w"))
    json.dump({"train_seconds": 720.0}, open(model / "train_result.json", "w"))
    again = tmp_path / "again.md"
    monkeypatch.setattr(sys, "argv", ["conditional_changes.py", f"--change={tmp_path / 'base'}",
                                      f"--change={tmp_path / 'balance'}", f"--change={tmp_path / 'wider'}",
                                      f"--reference={tmp_path / 'long'}", f"--refined={refined}",
                                      f"--rows={tmp_path / 'changes' / 'spots.csv'}", f"--out={again}"])
    runpy.run_path(os.path.join(REPO, "docs", "results", "conditional_changes.py"), run_name="__main__")
    page = again.read_text()
    base = tmp_path / "base"
    assert f"changed from `{base}` (the closest earlier entry): balance_betas: False -> True\n" in page  # models.json
    assert f"changed from `{base}` (the closest earlier entry): hidden_units: (not in its config.json: the default) " \
           "-> 512\n" in page
    # wider: 57 + 14 + 19 = 90 against the kept reference's 91 (-1.1%); balance's +0.5% as before.
    assert "12.0 minutes" in page and "mean +0.5%" in page and "mean -1.1%" in page
    # The refined folder is gone too: its cost line comes from models.json.
    assert "mean 42, from 42 to 42" in page and "| (1, 1) | 91.50 | 90.50 | -1.1% | 91.00 | -0.5% |" in page
    key = lambda r: r["sweep"]  # noqa: E731
    assert sorted(spots.read_csv(str(tmp_path / "again" / "spots.csv")), key=key) == sorted(
        rows + spots.rows_from_sweep(str(tmp_path / "wider")), key=key)
