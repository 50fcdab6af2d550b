"""Seed groups of a sweep's runs (evaluation.seed_groups) through evaluation.aggregate, on fabricated folders."""
import json
import os

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from conftest import train_config
from evaluation import aggregate, figures
from test_aggregate import eval_result, known, train_result, write_json

SEEDS = (0, 1, 2)
PSNR_STEP = 0.3  # PSNR of seed s: the point's + s * PSNR_STEP


def make_run(root, b1, b2, seed, eval_settings=None, **settings):
    config = train_config(**{"dataset": "digits", "betas": (b1, b2), "seed": seed, "epochs": 3, **settings})
    folder = os.path.join(root, config.run_name())
    k = known(b1, b2)
    k["psnr"] += seed * PSNR_STEP
    betas, rates = {"z1": b1, "z2": b2}, {"z1": k["r1"], "z2": k["r2"]}
    result = eval_result(betas, rates, k)
    result["run_config"], result["settings"] = config.to_json(), {"seed": seed, **(eval_settings or {})}
    write_json(os.path.join(folder, "config.json"), config.to_json())
    write_json(os.path.join(folder, "train_result.json"), train_result(betas, rates, k["distortion"]))
    write_json(os.path.join(folder, "eval_result.json"), result)
    return os.path.basename(folder)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("seeds"))
    runs = {(b1, b2, s): make_run(root, b1, b2, s) for b1 in (0.1, 10.0) for b2 in (0.1, 1.0) for s in SEEDS}
    runs["epochs"] = make_run(root, 0.1, 0.1, 1, epochs=4)                  # differs in a training setting
    runs["probe_seed"] = make_run(root, 0.1, 1.0, 5, eval_settings={"probe_seed": 3})  # in an evaluation setting
    runs["threads"] = make_run(root, 10.0, 1.0, 3, threads=1)             # in a setting that changes no run
    aggregate.aggregate(root)
    with open(os.path.join(root, "results.json")) as f:
        table = json.load(f)
    with open(os.path.join(root, "summary.md")) as f:
        summary = f.read()
    return dict(root=root, runs=runs, rows={r["run"]: r for r in table["rows"]}, table=table, summary=summary)


def test_runs_that_differ_in_anything_but_the_seed_never_share_a_group(seeded):
    rows, runs = seeded["rows"], seeded["runs"]
    group = {key: rows[name]["seed_group"] for key, name in runs.items()}
    for b1 in (0.1, 10.0):
        for b2 in (0.1, 1.0):
            assert len({group[(b1, b2, s)] for s in SEEDS}) == 1
            assert [rows[runs[(b1, b2, s)]]["seed"] for s in SEEDS] == list(SEEDS)
    assert len({group[(b1, b2, 0)] for b1 in (0.1, 10.0) for b2 in (0.1, 1.0)}) == 4
    assert group["epochs"] not in {group[(0.1, 0.1, s)] for s in SEEDS}
    assert group["probe_seed"] not in {group[(0.1, 1.0, s)] for s in SEEDS}
    assert group["threads"] == group[(10.0, 1.0, 0)]  # threads do not change what is trained
    assert rows[runs[(10.0, 1.0, 0)]]["num_seeds"] == 4 and rows[runs["epochs"]]["num_seeds"] == 1
    assert group[(0.1, 0.1, 0)].startswith("digits_mlp_hvae_bernoulli_z32-16_gaussian_betas0.1-0.1_")


def test_every_metric_gets_its_mean_stderr_and_number_of_seeds(seeded):
    rows, runs = seeded["rows"], seeded["runs"]
    row = rows[runs[(0.1, 1.0, 2)]]
    psnr = np.array([known(0.1, 1.0)["psnr"] + s * PSNR_STEP for s in SEEDS])
    column = "reconstruction_psnr_pooled_mse_db"
    assert row[f"{column}_seed_mean"] == pytest.approx(psnr.mean())
    assert row[f"{column}_seed_stderr"] == pytest.approx(psnr.std(ddof=1) / np.sqrt(3))
    assert row[f"{column}_seed_n"] == 3 and row["rate_nats_z2_seed_stderr"] == pytest.approx(0.0)
    assert rows[runs["epochs"]][f"{column}_seed_stderr"] is None  # one seed: no spread
    record = next(r for r in seeded["table"]["seed_groups"] if r["seed_group"] == row["seed_group"])
    assert record["seeds"] == list(SEEDS) and record["mean"][column] == pytest.approx(psnr.mean())
    assert record["n"]["probes_on_samples_z2_logistic_regression_accuracy"] == 3
    assert row["bound_t2_violated_over_seeds"] == 0


def test_summary_says_which_findings_hold_across_seeds(seeded):
    summary = seeded["summary"]
    assert "## Across seeds" in summary
    line = next(l for l in summary.splitlines() if l.startswith("- reconstruction"))
    assert "seed 0: (0.1, 0.1)" in line and "The same point for every seed" in line  # PSNR best at (0.1, 0.1)
    assert "T2 per seed: seed 0: 0 of 4 flagged" in summary and "0 of 4 groups flagged" in summary


def test_figures_draw_error_bars_where_a_group_has_several_seeds(seeded, monkeypatch, tmp_path):
    drawn = {}
    monkeypatch.setattr(figures, "save_figure",
                        lambda fig, path, dpi=110: drawn.setdefault(os.path.basename(path), fig))
    rows, _ = aggregate.collect(seeded["root"])
    figures.draw_all(rows, str(tmp_path))
    panels = drawn["metrics_vs_total_rate.png"].axes
    psnr = next(ax for ax in panels if ax.get_title() == aggregate.METRICS["psnr"].label)
    bars = [c for c in psnr.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    _, _, (_, yerr) = bars[0].lines  # (data line, caps, (x bars, y bars))
    half_heights = sorted(np.ptp(seg[:, 1]) / 2 for seg in yerr.get_segments())
    expected = PSNR_STEP * np.std(SEEDS, ddof=1) / np.sqrt(3)  # every group of 3 seeds; the 4-run group: seeds 0-3
    assert len(half_heights) == 4 and half_heights[0] == pytest.approx(expected)
    heatmap = drawn["heatmap_psnr.png"]
    assert len([ax for ax in heatmap.axes if ax.get_label() != "<colorbar>"]) == 2  # the metric and its seed spread
    assert any(isinstance(c, ErrorbarContainer) for c in drawn["rate_plane.png"].axes[0].containers)
    assert any(isinstance(c, ErrorbarContainer) for c in drawn["t2_probe_accuracy.png"].axes[0].containers)


def test_rows_without_a_group_are_groups_of_one():
    from evaluation import seed_groups
    rows = [{"run": "a", "seed": 0}, {"run": "b", "seed": 1}, {"run": "c", "seed_group": "g"},
            {"run": "d", "seed_group": "g"}]
    assert list(seed_groups.groups(rows).values()) == [[0], [1], [2, 3]]
    assert seed_groups.summary_lines(rows[:2]) == []
