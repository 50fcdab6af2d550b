"""evaluation.aggregate and evaluation.figures on fabricated run folders with known numbers."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from evaluation import aggregate, bounds, figures, table

BETAS = (0.1, 1.0, 10.0)
R1 = {0.1: 30.0, 1.0: 10.0, 10.0: 1.0}   # R(z1|z2) by beta_1
R2 = {0.1: 20.0, 1.0: 5.0, 10.0: 0.5}    # R(z2) by beta_2
PRIOR = [0.4, 0.3, 0.2, 0.1]
ENTROPY = 120.0
TRAIN_OFFSET = 0.01  # train_result's rates differ from eval_result's, to see which one a column took


def known(b1, b2):
    """The fabricated metrics of grid point (b1, b2)."""
    r1, r2 = R1[b1], R2[b2]
    distortion = 100.0 - r1 - 0.5 * r2
    return dict(r1=r1, r2=r2, total=r1 + r2, distortion=distortion, neg_elbo=distortion + r1 + r2,
                psnr=10 + 0.3 * r1 + 0.01 * r2,                     # best at (0.1, 0.1)
                probe=0.1 + 0.04 * r2 - 0.001 * r1,                 # best at (10, 0.1)
                mi=0.9 * min(r2, 1.2),
                score=8.0 - abs(np.log10(b1)) - abs(np.log10(b2)),  # best at (1, 1)
                frechet=1.0 + abs(np.log10(b1) - 1) + abs(np.log10(b2)),  # best at (10, 1)
                accuracy=0.5 + 0.01 * r1)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def mean_se(value):
    return {"mean": value, "stderr": 0.1}


def train_result(betas, rates, distortion):
    rates = {k: v + TRAIN_OFFSET for k, v in rates.items()}
    total = sum(rates.values())
    return {"betas": betas, "dataset": "fake", "epochs": 3, "train_seconds": 9.5, "versions": {"numpy": "2"},
            "test": {"distortion_nats": mean_se(distortion), "rate_nats": {k: mean_se(v) for k, v in rates.items()},
                     "total_rate_nats": mean_se(total), "neg_elbo_nats": mean_se(distortion + total),
                     "active_units": {k: 3 for k in rates}}}


def eval_result(betas, rates, k, violated=False, old_schema=False):
    top = sorted(rates)[-1]
    probe = {"logistic_regression": {"accuracy": k["probe"], "num_correct": int(round(100 * k["probe"])),
                                     "num_test": 100, "seconds": 0.2, "hyperparameters": {"C": 1.0}},
             "knn5": {"accuracy": k["probe"] - 0.02, "num_test": 100}, "settings": {"num_points": 400}}
    means = {name: {"logistic_regression": {"accuracy": k["probe"] + 0.05, "num_test": 100}} for name in rates}
    label = ({"value_nats": k["mi"], "stderr_nats": 0.01} if old_schema else
             {"lower_bound_nats": k["mi"] - 0.1, "mixture_estimate_nats": k["mi"], "saturated": k["mi"] > 1.0,
              "settings": {"chunk_size": 500}})
    psnr = ({"mean_db": k["psnr"] + 0.5} if old_schema else
            {"pooled_mse_db": k["psnr"], "mean_per_image_db": k["psnr"] + 0.5, "settings": {"data_range": 1.0}})
    result = {
        "dataset": "fake", "num_test_examples": 400, "latent_names": sorted(rates), "workdir": "/somewhere",
        "settings": {"seed": 0}, "versions": {"numpy": "2"}, "seconds": {"total": 12.0}, "run_config": {"epochs": 3},
        "rates": {"rate_nats": {n: mean_se(r) for n, r in rates.items()}, "total_rate_nats": mean_se(k["total"]),
                  "distortion_nats": mean_se(k["distortion"]), "neg_elbo_nats": mean_se(k["neg_elbo"]),
                  "settings": {"seed": 0}},
        "probes": {"on_means": means, "on_samples": {top: probe}, "notes": "fabricated"},
        "mutual_information": {top: {"label": label, "component": "exact",
                                     "label_from_samples": {"value_nats": k["mi"] - 0.05, "estimator": "k-NN"}}},
        "generative_information": {"value_nats": 0.8 * k["mi"], "counts": [[1, 2], [3, 4]], "layer": top},
        "clustering": {"accuracy": k["probe"] - 0.01, "status": "computed"},
        "bound_t2": {"label_prior": PRIOR, "violated": violated, "confidence": 0.99, "layer": top},
        "bound_t1": {"data_entropy_nats": ENTROPY, "violated": False, "status": "checked"},
        "reconstruction": {"psnr": psnr, "classifier_accuracy": k["accuracy"]},
        "generation": {"inception_style_score": {"inception_score": {"mean": k["score"], "std": 0.1}},
                       "frechet_distance": {"value": k["frechet"], "features": "penultimate"}},
        "reference_classifier": {"test_accuracy": 0.99}}
    if not old_schema:
        result["betas"] = betas
    return result


def run_name(b1, b2):
    return f"b1_{b1:g}-b2_{b2:g}"


def make_grid(root, old_schema=False):
    """3x3 grid; beta_2 = 10 nested one level down; (10, 10) trained only; (1, 0.1) flags T2; plus a failed point."""
    for b1 in BETAS:
        for b2 in BETAS:
            k = known(b1, b2)
            folder = os.path.join(root, "high_beta2" if b2 == 10 else "", run_name(b1, b2))
            betas, rates = {"z1": b1, "z2": b2}, {"z1": k["r1"], "z2": k["r2"]}
            write_json(os.path.join(folder, "train_result.json"), train_result(betas, rates, k["distortion"]))
            write_json(os.path.join(folder, "export", "config.json"), {})  # inside a run: never a run
            if (b1, b2) != (10, 10):
                write_json(os.path.join(folder, "eval_result.json"),
                           eval_result(betas, rates, k, violated=(b1, b2) == (1, 0.1), old_schema=old_schema))
    failed = os.path.join(root, "failed_point")
    write_json(os.path.join(failed, "config.json"), {"betas": [3.0, 0.3], "dataset": "fake"})
    with open(os.path.join(failed, "error.txt"), "w") as f:
        f.write("\nValueError: the loss became NaN at epoch 2\nTraceback (most recent call last): ...\n")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sweep"))
    make_grid(root)
    paths = aggregate.aggregate(root)
    with open(os.path.join(root, "results.csv")) as f:
        reader = csv.DictReader(f)
        rows = {r["run"]: r for r in reader}
        columns = reader.fieldnames
    with open(os.path.join(root, "summary.md")) as f:
        summary = f.read()
    return dict(root=root, paths=paths, rows=rows, columns=columns, summary=summary)


def test_csv_holds_every_run_with_its_numbers(sweep):
    rows, columns = sweep["rows"], sweep["columns"]
    assert len(rows) == 10
    assert set(rows) == {run_name(b1, b2) for b1 in BETAS for b2 in (0.1, 1.0)} | {
        os.path.join("high_beta2", run_name(b1, 10.0)) for b1 in BETAS} | {"failed_point"}
    assert columns[:11] == ["run", "status", "error", "dataset", "num_layers", "top_layer", "epochs", "terms_source",
                            "seed", "seed_group", "num_seeds"]
    assert [c for c in columns if "_seed_" not in c][11:23] == [
        "beta_z1", "beta_z2", "rate_nats_z1", "rate_nats_z2", "total_rate_nats", "distortion_nats",
        "neg_elbo_nats", "active_units_z1", "active_units_z2",
        "bound_t1_data_entropy_nats", "bound_t1_violated", "bound_t2_label_prior_0"]
    assert columns[20:23] == ["rate_nats_z1_seed_mean", "rate_nats_z1_seed_stderr", "rate_nats_z1_seed_n"]
    for b1 in BETAS:
        for b2 in (0.1, 1.0):
            row, k = rows[run_name(b1, b2)], known(b1, b2)
            assert row["status"] == "evaluated" and row["terms_source"] == "eval_result.json"
            assert (float(row["beta_z1"]), float(row["beta_z2"])) == (b1, b2)
            assert float(row["rate_nats_z1"]) == k["r1"] and float(row["rate_nats_z2"]) == k["r2"]
            assert float(row["total_rate_nats"]) == k["total"]
            assert float(row["distortion_nats"]) == k["distortion"]
            assert float(row["reconstruction_psnr_pooled_mse_db"]) == pytest.approx(k["psnr"])
            assert float(row["reconstruction_psnr_mean_per_image_db"]) == pytest.approx(k["psnr"] + 0.5)
            assert float(row["probes_on_samples_z2_logistic_regression_accuracy"]) == pytest.approx(k["probe"])
            assert float(row["generation_frechet_distance_value"]) == pytest.approx(k["frechet"])
            assert row["mutual_information_z2_label_saturated"] == str(int(k["mi"] > 1.0))
            assert float(row["bound_t2_label_prior_3"]) == PRIOR[3]
            assert row["bound_t2_violated"] == ("1" if (b1, b2) == (1, 0.1) else "0")
    trained = rows[os.path.join("high_beta2", run_name(10.0, 10.0))]
    assert trained["status"] == "trained" and trained["terms_source"] == "train_result.json"
    assert float(trained["rate_nats_z2"]) == R2[10.0] + TRAIN_OFFSET
    assert trained["reconstruction_psnr_pooled_mse_db"] == "" and trained["active_units_z1"] == "3"
    failed = rows["failed_point"]
    assert failed["status"] == "failed" and failed["error"] == "ValueError: the loss became NaN at epoch 2"
    assert (failed["beta_z1"], failed["beta_z2"]) == ("3.0", "0.3")  # from config.json
    # Settings, timings and versions are not columns; strings are left out.
    assert not [c for c in columns if any(word in c for word in ("settings", "seconds", "versions", "hyperparam",
                                                                 "notes", "reference_classifier", "confidence"))]
    assert "probes_on_samples_z2_logistic_regression_num_correct" in columns
    assert "bound_t2_layer" not in columns


def test_json_matches_csv(sweep):
    with open(os.path.join(sweep["root"], "results.json")) as f:
        table = json.load(f)
    assert table["columns"] == sweep["columns"]
    assert set(table["metrics"]) == set(aggregate.METRICS)
    by_run = {r["run"]: r for r in table["rows"]}
    for run, row in sweep["rows"].items():
        for column in table["columns"]:
            value = by_run[run][column]
            assert row[column] == ("" if value is None else str(value)), (run, column)


def test_summary_names_best_runs_failures_and_flags(sweep):
    summary = sweep["summary"]
    line = {key: next(l for l in summary.splitlines() if l.startswith(f"| {m.axis_label()} |"))
            for key, m in aggregate.METRICS.items()}
    assert f"| {run_name(0.1, 0.1)} |" in line["psnr"]
    assert f"| {run_name(10, 0.1)} |" in line["probe_samples_top"]
    assert f"| {run_name(1, 1)} |" in line["sample_score"] and "| 8 (highest)" in line["sample_score"]
    assert f"| {run_name(10, 1)} |" in line["frechet_distance"] and "(lowest)" in line["frechet_distance"]
    assert "These 3 tasks have 3 distinct best runs" in summary
    assert "flagged violated in 1 of 8 checked runs: " + run_name(1, 0.1) in summary
    assert "T1 (E[D] >= H - E[total rate]): checked in 8 runs" in summary
    assert "estimate flagged saturated in 6 of 8 runs" in summary  # mi > 1 exactly where R(z2) >= 5
    assert "All betas = 1 (b1_1-b2_1): 8, rank 1 of 8" in summary
    assert "- failed_point: ValueError: the loss became NaN at epoch 2" in summary
    assert "- " + os.path.join("high_beta2", run_name(10, 10)) in summary
    assert "1 failed, 0 unfinished" in summary and "8 evaluated, 1 trained but not evaluated" in summary


def test_summary_compares_distortion_at_equal_total_rate(tmp_path):
    rows = [{"run": f"r{i}", "status": "trained", "error": None, "total_rate_nats": t, "distortion_nats": d}
            for i, (t, d) in enumerate([(10.0, 50.0), (10.5, 40.0), (30.0, 20.0)])]
    text = aggregate.summarize(rows, num_bins=2)
    assert "| 10 to 20 | 2 | 0.5 | 40 | 50 | 10 |" in text
    assert "| 20 to 30 | 1 | 0 | 20 | 20 | 0 |" in text


def test_every_figure_is_a_png(sweep):
    out = os.path.join(sweep["root"], "figures")
    expected = {"rate_plane.png", "metrics_vs_total_rate.png", "t2_probe_accuracy.png", "t1_distortion.png"} | {
        f"heatmap_{key}.png" for key in aggregate.METRICS}
    assert set(os.listdir(out)) == expected  # no temporary file left behind
    for name in expected:
        with open(os.path.join(out, name), "rb") as f:
            data = f.read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    assert set(sweep["paths"]) >= {os.path.join(out, n) for n in expected}


def test_older_schema_falls_back_and_says_what_is_missing(tmp_path):
    make_grid(str(tmp_path), old_schema=True)
    rows, columns = aggregate.collect(str(tmp_path))
    mi, column = aggregate.metric_values(rows, aggregate.METRICS["label_information_top"])
    assert column == "mutual_information_{top}_label_value_nats"
    by_run = {r["run"]: i for i, r in enumerate(rows)}
    assert mi[by_run[run_name(1, 1)]] == pytest.approx(known(1, 1)["mi"])
    assert rows[by_run[run_name(1, 1)]]["beta_z2"] == 1.0  # from train_result
    assert "reconstruction_psnr_mean_db" in columns
    assert "No run has a value for: PSNR, pooled MSE (reconstruction_psnr_pooled_mse_db)" in aggregate.summarize(rows)


def test_flatten_rule():
    tree = {"a": {"b": 1.5, "flag": True, "none": None, "name": "text", "pair": [0.25, 1], "names": ["x"],
                  "settings": {"seed": 3}, "seconds": 2.0}, "top": 7}
    assert aggregate.flatten(tree) == {"a_b": 1.5, "a_flag": 1, "a_none": None, "a_pair_0": 0.25, "a_pair_1": 1,
                                       "top": 7}
    with pytest.raises(ValueError, match="give the column a_b_c"):
        aggregate.flatten({"a_b": {"c": 1}, "a": {"b_c": 2}})


def test_frontier():
    x = [1, 2, 3, 4, 5, 3]
    y = [0.5, 0.4, 0.7, 0.6, 0.9, np.nan]
    assert table.frontier(x, y, higher_is_better=True) == [0, 2, 4]
    assert table.frontier(x, y, higher_is_better=False) == [0, 1]
    # Equal rates: only the best of them; a later equal value is not an improvement.
    assert table.frontier([1, 1, 2, 3], [0.2, 0.3, 0.3, 0.1], higher_is_better=True) == [1]
    assert table.frontier([1, 1, 2, 3], [0.2, 0.3, 0.3, 0.1], higher_is_better=False) == [0, 3]


def test_bins_best_per_bin_and_beta_paths():
    total = np.array([0.0, 1.0, 2.5, 4.0, np.nan])
    edges = table.total_rate_bins(total, 2)
    np.testing.assert_allclose(edges, [0, 2, 4])
    assert [m.tolist() for m in table.bin_members(total, edges)] == [[0, 1], [2, 3]]
    v = np.array([5.0, 3.0, 1.0, 2.0, 9.0])
    assert table.best_per_bin(total, v, True, edges) == [0, 3]
    assert table.best_per_bin(total, v, False, edges) == [1, 2]
    rows = [{"beta_z1": 2.0, "beta_z2": 2.0}, {"beta_z1": 0.5, "beta_z2": 1.0}, {"beta_z1": 1.0, "beta_z2": 1.0},
            {"beta_z1": 0.1, "beta_z2": 0.1}, {"beta_z1": 1.0}]
    assert table.equal_beta_path(rows) == [3, 2, 0]
    assert table.all_betas_one(rows) == [2, 4]


def test_t2_curve_is_fano_inverse():
    rates, bound = figures.t2_bound_curve(PRIOR, max_rate=2.0, num=5)
    np.testing.assert_allclose(rates, [0, 0.5, 1, 1.5, 2])
    for r, b in zip(rates, bound):
        assert b == pytest.approx(float(bounds.fano_inverse(r, PRIOR)))
    assert bound[0] == pytest.approx(float(bounds.fano_inverse(0.0, PRIOR))) and bound[-1] == 1.0  # 2 > H(y)
    assert np.all(np.diff(bound) >= 0)
    assert figures.label_prior({"bound_t2_label_prior_0": 0.7, "bound_t2_label_prior_1": 0.3}).tolist() == [0.7, 0.3]


def test_one_layer_skips_the_rate_plane_and_heatmaps(tmp_path):
    for b in BETAS:
        k = known(b, 1.0)
        betas, rates = {"z1": b}, {"z1": k["r1"]}
        k["total"] = k["r1"]
        write_json(str(tmp_path / f"b{b:g}" / "train_result.json"), train_result(betas, rates, k["distortion"]))
        write_json(str(tmp_path / f"b{b:g}" / "eval_result.json"), eval_result(betas, rates, k))
    paths = aggregate.aggregate(str(tmp_path))
    names = sorted(os.listdir(tmp_path / "figures"))
    assert names == ["metrics_vs_total_rate.png", "t1_distortion.png", "t2_probe_accuracy.png"]
    assert {os.path.basename(p) for p in paths} >= set(names)
    summary = (tmp_path / "summary.md").read_text()
    assert "rate plane: no run has two or more layers" in summary and "heatmaps: no run has betas" in summary


def test_three_layers_heatmaps_per_upper_beta_and_rerun(tmp_path):
    """A sparse eval_result (rates and PSNR only) also shows that absent sections are no error."""
    for b1 in (0.1, 1.0):
        for b3 in (0.5, 2.0):
            betas, rates = {"z1": b1, "z2": 1.0, "z3": b3}, {"z1": R1[b1], "z2": 2.0, "z3": 1.0 / b3}
            total, distortion = sum(rates.values()), 50.0 - R1[b1]
            folder = tmp_path / f"b1_{b1:g}-b3_{b3:g}"
            write_json(str(folder / "train_result.json"), train_result(betas, rates, distortion))
            write_json(str(folder / "eval_result.json"), {
                "rates": {"rate_nats": {n: mean_se(r) for n, r in rates.items()}, "total_rate_nats": mean_se(total),
                          "distortion_nats": mean_se(distortion), "neg_elbo_nats": mean_se(distortion + total)},
                "reconstruction": {"psnr": {"pooled_mse_db": 10 + b1 + b3}}})
    out = tmp_path / "elsewhere"
    aggregate.aggregate(str(tmp_path), figures_dir=str(out))
    assert sorted(os.listdir(out)) == [
        "heatmap_neg_elbo_z3-0.5.png", "heatmap_neg_elbo_z3-2.png", "heatmap_psnr_z3-0.5.png", "heatmap_psnr_z3-2.png",
        "metrics_vs_total_rate.png", "rate_plane.png", "t1_distortion.png"]
    summary = (tmp_path / "summary.md").read_text()
    assert "T2 figure: no run has probes" in summary
    # A second run replaces every output with the same content and leaves no temporary file.
    (tmp_path / "results.csv").write_text("stale")
    os.remove(out / "rate_plane.png")
    aggregate.aggregate(str(tmp_path), figures_dir=str(out))
    assert (tmp_path / "results.csv").read_text().startswith("run,status,")
    assert (tmp_path / "summary.md").read_text() == summary and (out / "rate_plane.png").exists()
    assert not [n for n in os.listdir(tmp_path) + os.listdir(out) if n.startswith(".tmp")]
    rows, _ = aggregate.collect(str(tmp_path), figures_dir=str(out))  # else "elsewhere" is a foreign folder
    x, y = table.rate_plane_coordinates(rows)
    assert x.tolist() == [2.0, 0.5, 2.0, 0.5]  # R(z3)
    np.testing.assert_allclose(y, [32.0, 32.0, 12.0, 12.0])  # R(z1|z2,z3) + R(z2|z3)


def test_bad_root_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        aggregate.collect(str(tmp_path / "missing"))
    (tmp_path / "only_failed").mkdir()
    (tmp_path / "only_failed" / "error.txt").write_text("boom\n")
    with pytest.raises(ValueError, match="holds no finished run .*1 failed"):
        aggregate.collect(str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "evaluation.aggregate", f"--root={tmp_path / 'missing'}"],
                          capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: --root={tmp_path / 'missing'} is not a folder; "
                                                "pass the sweep's root folder"]
