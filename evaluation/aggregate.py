"""Collects a sweep's runs into one table, figures and a summary.

    python -m evaluation.aggregate --root=DIR [--out=FIGURES] [--total_rate_bins=8]

DIR holds one run folder per grid point (at any depth; a folder that holds
config.json, train_result.json, eval_result.json or error.txt is a run folder and
is not searched further). Writes, each atomically and replacing earlier ones:

    DIR/results.csv, DIR/results.json   one row per run folder (columns below)
    DIR/figures/*.png                   (or --out) see evaluation/figures.py
    DIR/summary.md                      best run per metric, bound flags, cross-run claims
    DIR/report.html                     all of it on one self-contained page (evaluation/report.py)

Columns, in this order (the rule is stable, so a column's name says where its number comes from):
- run (folder relative to DIR), status (evaluated | trained: not evaluated | failed: error.txt,
  first line in `error` | unfinished: neither result nor error | damaged: a result file truncated or
  not JSON, named in `error` | foreign: a folder of someone else's files), dataset, num_layers,
  top_layer, epochs;
- beta_z1, beta_z2, ...: eval_result["betas"], else train_result["betas"], else config.json's;
- rate_nats_z1, ..., total_rate_nats, distortion_nats, neg_elbo_nats: test-set means per example,
  from eval_result["rates"] when the run is evaluated, else from train_result["test"];
  terms_source says which (the metrics of an evaluated run then come from the same pass);
- active_units_z1, ...: from the same rates section;
- seed, seed_group, num_seeds after terms_source, and <column>_seed_mean, _seed_stderr, _seed_n (over
  the runs that differ only in the seed) for the rates, distortion, negative ELBO, every registry metric
  and the T2 flag, plus bound_t2_violated_over_seeds: evaluation/seed_groups.py;
- every other number of eval_result.json, named by its path with "_" between keys
  (eval_result["reconstruction"]["psnr"]["pooled_mse_db"] -> reconstruction_psnr_pooled_mse_db),
  sorted by name (numbers in names compare as numbers: z2 before z10). Booleans become 1/0, a list of
  numbers one column per entry (bound_t2_label_prior_0, ...), a null an empty cell; strings are left
  out. Keys that hold settings rather than results are left out wherever they occur: SKIPPED_KEYS.

evaluation/table.py holds METRICS, the one registry of the metrics that figures and summary use.
"""
import csv
import dataclasses
import io
import math
import os
import sys

import numpy as np

from evaluation import seed_groups
from evaluation.table import (METRICS, TASKS, all_betas_one, best_index, beta_vectors,  # noqa: F401
                              bin_members, column_values, is_number, metric_values, natural_key,
                              total_rate_bins)
from hvae_repr import io_utils
from hvae_repr.runs import RunDir

CONFIG, TRAIN_RESULT, EVAL_RESULT, ERROR_FILE = RunDir.CONFIG, RunDir.TRAIN_RESULT, RunDir.EVAL_RESULT, RunDir.ERROR
RUN_FILES = (CONFIG, TRAIN_RESULT, EVAL_RESULT, ERROR_FILE)
FIXED_COLUMNS = ("run", "status", "error", "dataset", "num_layers", "top_layer", "epochs", "terms_source")
RESULTS_CSV, RESULTS_JSON, SUMMARY, FIGURES = "results.csv", "results.json", "summary.md", "figures"

# Settings, bookkeeping and timings: not results, left out of the columns wherever they occur.
SKIPPED_KEYS = frozenset({"settings", "hyperparameters", "versions", "seconds", "train_seconds", "note",
                          "notes", "train_cap", "confidence", "run_config", "reference_classifier",
                          "workdir", "betas"})  # betas: the beta_* columns


# ------------------------------------------------------------------ reading runs
def find_run_folders(root):
    """Run folders under `root` (relative paths, sorted); a run folder's own subfolders are not searched."""
    found = []
    for folder, subfolders, files in os.walk(root):
        if any(name in files for name in RUN_FILES):
            found.append(os.path.relpath(folder, root))
            subfolders[:] = []
        else:
            subfolders[:] = [s for s in subfolders if not s.startswith(".")]
    return sorted(found, key=natural_key)


def flatten(tree, prefix=""):
    """{column: value} of every number in a nested dict (the column rule of the module docstring)."""
    out = {}
    for key, value in tree.items():
        if key in SKIPPED_KEYS:
            continue
        name = f"{prefix}_{key}" if prefix else str(key)
        if isinstance(value, dict):
            found = flatten(value, name)
        elif isinstance(value, list) and value and all(is_number(v) for v in value):
            found = {f"{name}_{i}": _number(v) for i, v in enumerate(value)}
        elif value is None or is_number(value):
            found = {name: _number(value)}
        else:
            continue
        clash = sorted(set(found) & set(out))
        if clash:  # e.g. keys "a_b" -> "c" and "a" -> "b_c"
            raise ValueError(f"two paths of the result give the column {clash[0]}; rename one key")
        out.update(found)
    return out


def _number(value):
    return int(value) if isinstance(value, bool) else value


def _layers(names):
    return sorted(names, key=natural_key)


def _mean(value):
    """eval_result's {"mean", "stderr"} (or a plain number) as the mean."""
    return value.get("mean") if isinstance(value, dict) else value


def _first_line(path):
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError as e:  # deleted meanwhile
        return f"(error.txt cannot be read: {e.strerror or e})"
    return lines[0] if lines else "(empty error.txt)"


def _read(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    value = io_utils.read_json(path)
    if not isinstance(value, dict):
        raise ValueError(f"{name} holds no JSON object")
    return value


def read_run(root, run):
    """One row: the run folder `run` (relative to `root`) as {column: value}."""
    folder = os.path.join(root, run)
    row = {"run": run, "status": None, "error": None}
    damaged = [problem for problem in (RunDir(folder).damaged(name) for name in (CONFIG, TRAIN_RESULT, EVAL_RESULT))
               if problem]
    if damaged:  # a truncated or foreign file: the point is marked and reported, the others go on
        config = train = evaluation = None
        row["error"] = "; ".join(damaged)
    else:
        config, train, evaluation = (_read(folder, name) for name in (CONFIG, TRAIN_RESULT, EVAL_RESULT))
    flags = config or {}  # config.json holds the run's settings (TrainConfig) at its top level
    if not damaged and os.path.isfile(os.path.join(folder, ERROR_FILE)):
        row["error"] = _first_line(os.path.join(folder, ERROR_FILE))
    # A conditional model's grid point holds eval_result.json (and point.json) without a training run.
    row["status"] = ("damaged" if damaged else "failed" if row["error"] else
                     "evaluated" if evaluation else "trained" if train else "unfinished")
    train, evaluation = train or {}, evaluation or {}

    betas = evaluation.get("betas") or train.get("betas")
    if not betas and flags.get("betas"):
        betas = {f"z{l + 1}": b for l, b in enumerate(flags["betas"])}
    betas = betas or {}
    layers = _layers(betas)
    row.update(dataset=evaluation.get("dataset") or train.get("dataset") or flags.get("dataset"),
               num_layers=len(layers) or None, top_layer=layers[-1] if layers else None,
               epochs=train.get("epochs", flags.get("epochs", (evaluation.get("run_config") or {}).get("epochs"))))
    # eval_result["rates"] and train_result["test"] come from the same test-set pass (hvae_repr.passes).
    rates = evaluation.get("rates") or train.get("test") or {}
    row["terms_source"] = EVAL_RESULT if evaluation.get("rates") else TRAIN_RESULT if rates else None
    terms = {"rate_nats": {k: _mean(v) for k, v in rates.get("rate_nats", {}).items()},
             **{k: _mean(rates.get(k)) for k in ("total_rate_nats", "distortion_nats", "neg_elbo_nats")}}
    row.update({f"beta_{l}": float(betas[l]) for l in layers})
    row.update({f"rate_nats_{l}": v for l, v in terms.get("rate_nats", {}).items()})
    for key in ("total_rate_nats", "distortion_nats", "neg_elbo_nats"):
        row[key] = terms.get(key)
    row.update({f"active_units_{l}": v for l, v in rates.get("active_units", {}).items()})
    metrics = flatten(evaluation)
    clash = sorted(set(metrics) & set(row))
    if clash:
        raise ValueError(f"{os.path.join(run, EVAL_RESULT)} gives columns that clash with fixed ones: {clash}")
    row.update(metrics)
    return row


def foreign_folders(root, runs, figures_dir=None):
    """(folder, why) for each folder under `root` that holds files but no run's files and is not inside a
    run folder (someone else's files in a sweep root): marked in the table, never silently dropped.
    The aggregate's own figures folder is not searched."""
    found, figures = [], os.path.realpath(figures_dir or os.path.join(root, FIGURES))
    for folder, subfolders, files in os.walk(root):
        relative = os.path.relpath(folder, root)
        if relative in runs:
            subfolders[:] = []
            continue
        subfolders[:] = [f for f in subfolders if not f.startswith(".") and
                         os.path.realpath(os.path.join(folder, f)) != figures]
        visible = sorted(f for f in files if not f.startswith(".") and f not in RunDir.BOOKKEEPING)
        if relative != "." and visible:
            found.append((relative, f"holds no run's files ({len(visible)} other files: "
                                    f"{', '.join(visible[:3])}{', ...' if len(visible) > 3 else ''})"))
    return found


def _is_grid_model(root, run):
    """A conditional sweep's model (ROOT/model): its grid points are the rows, not the model itself."""
    folder = os.path.join(root, run)
    if os.path.isfile(os.path.join(folder, EVAL_RESULT)) or not os.path.isfile(os.path.join(folder, CONFIG)):
        return False
    try:
        config = io_utils.read_json(os.path.join(folder, CONFIG))
    except (OSError, ValueError):
        return False
    # A point refined from the model (--fixed_condition) is a row of its own.
    return bool(config.get("model", {}).get("conditional_betas")) and not config.get("fixed_condition")


def collect(root, figures_dir=None):
    """(rows, columns) of every run folder under `root` (and a row for each foreign folder); ValueError
    when there is no finished run."""
    if not os.path.isdir(root):
        raise ValueError(f"--root={root} is not a folder; pass the sweep's root folder")
    runs = find_run_folders(root)
    rows = [read_run(root, run) for run in runs if not _is_grid_model(root, run)]
    rows += [dict(dict.fromkeys(FIXED_COLUMNS), run=folder, status="foreign", error=error)
             for folder, error in foreign_folders(root, runs, figures_dir)]
    if not any(r["status"] in ("evaluated", "trained") for r in rows):
        failed = sum(r["status"] == "failed" for r in rows)
        raise ValueError(f"{root} holds no finished run (no run folder with {TRAIN_RESULT}"
                         + (f"; {failed} failed, see their {ERROR_FILE}" if failed else "") + ")")
    seed_groups.add_columns(root, rows)
    return rows, columns_of(rows)


def columns_of(rows):
    """The column order of the module docstring over the union of the rows' columns."""
    fixed = list(FIXED_COLUMNS)
    fixed += [c for c in seed_groups.FIXED_COLUMNS if any(c in r for r in rows)]
    names = set().union(*rows) - set(fixed)
    layers = _layers({c.split("_")[-1] for c in names if c.startswith(("beta_z", "rate_nats_z"))})
    leading = ([f"beta_{l}" for l in layers] + [f"rate_nats_{l}" for l in layers]
               + ["total_rate_nats", "distortion_nats", "neg_elbo_nats"] + [f"active_units_{l}" for l in layers])
    leading += [f"{c}_seed_{s}" for c in leading for s in ("mean", "stderr", "n")]
    leading = [c for c in leading if c in names]
    return fixed + leading + sorted(names - set(leading), key=natural_key)


# ------------------------------------------------------------------ summary
def _fmt(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _betas_text(row):
    return ", ".join(f"{c[5:]}={_fmt(row[c])}" for c in sorted((c for c in row if c.startswith("beta_z")),
                                                                 key=natural_key))


def _rates_text(row):
    rates = [f"R({c[10:]})={_fmt(row[c])}" for c in sorted((c for c in row if c.startswith("rate_nats_z")),
                                                           key=natural_key, reverse=True)]
    return ", ".join(rates + [f"total={_fmt(row.get('total_rate_nats'))}"])


def _count_flag(rows, column):
    """(runs flagged 1, runs with the flag) of a 0/1 column."""
    v = column_values(rows, column)
    return [rows[i]["run"] for i in np.flatnonzero(v == 1)], int(np.isfinite(v).sum())


def summarize(rows, num_bins=8, notes=()):
    """summary.md's text: best run per metric, bound flags, T3, equal-total-rate spread, failed runs."""
    status = [r["status"] for r in rows]
    lines = ["# Sweep summary", "",
             f"{len(rows)} run folders: {status.count('evaluated')} evaluated, {status.count('trained')} trained "
             f"but not evaluated, {status.count('failed')} failed, {status.count('unfinished')} unfinished"
             + "".join(f", {status.count(s)} {s}" for s in ("damaged", "foreign") if s in status) + ". "
             "Rates and distortion in nats per test example; columns of results.csv are explained in "
             "evaluation/aggregate.py.", "",
             "## Best run per metric", "",
             "| metric | column | best | run | betas | rates (nats) |", "| --- | --- | --- | --- | --- | --- |"]
    best, missing = {}, []
    for key, metric in METRICS.items():
        v, column = metric_values(rows, metric)
        i = best_index(v, metric.higher_is_better)
        if i is None:
            missing.append(f"{metric.label} ({' or '.join(metric.columns)})")
            continue
        best[key] = i
        direction = "highest" if metric.higher_is_better else "lowest"
        lines.append(f"| {metric.axis_label()} | `{column}` | {_fmt(v[i])} ({direction}) | {rows[i]['run']} | "
                     f"{_betas_text(rows[i])} | {_rates_text(rows[i])} |")
    if missing:
        lines += ["", "No run has a value for: " + "; ".join(missing) + "."]

    lines += ["", "## Do the best points differ?", ""]
    tasks = {task: best.get(key) for task, key in TASKS.items()}
    known = {t: i for t, i in tasks.items() if i is not None}
    lines.append("Best run per task: " + "; ".join(
        f"{task} ({METRICS[TASKS[task]].label}): {rows[i]['run'] if i is not None else 'no values'}"
        for task, i in tasks.items()) + ".")
    if len(known) > 1:
        lines.append(f"These {len(known)} tasks have {len(set(known.values()))} distinct best runs "
                     "(the paper's \"no one VAE fits all\" expects one per task).")
    lines.append(f"Over all {len(best)} metrics with values: {len(set(best.values()))} distinct best runs.")

    lines += ["", "## Bound checks", ""]
    t2, t2_known = _count_flag(rows, "bound_t2_violated")
    t1, t1_known = _count_flag(rows, "bound_t1_violated")
    lines.append(f"- T2 (sample-based probes on z_L against f^-1 of I_q(y; z_L) and of R(z_L)): flagged violated in "
                 f"{len(t2)} of {t2_known} checked runs" + (f": {', '.join(t2)}" if t2 else "") + ". "
                 "Mean-based probes are outside the bound and never flagged.")
    lines.append(f"- T1 (E[D] >= H - E[total rate]): checked in {t1_known} runs (data entropy known, discrete "
                 f"likelihood), flagged violated in {len(t1)}" + (f": {', '.join(t1)}" if t1 else "") + ".")
    saturated, saturated_known = _count_flag(rows, "mutual_information_{top}_label_saturated")
    if saturated_known:
        lines.append(f"- I_q(y; z_L) estimate flagged saturated in {len(saturated)} of {saturated_known} runs"
                     + (f": {', '.join(saturated)}" if saturated else "") + ".")

    lines += ["", "## T3: the best sample score and all betas = 1", ""]
    score, _ = metric_values(rows, METRICS["sample_score"])
    i = best.get("sample_score")
    if i is None:
        lines.append("No run has a sample score.")
    else:
        logs = np.abs(np.log10(np.asarray(beta_vectors([rows[i]])[0] or [np.nan], float)))
        lines.append(f"Best {METRICS['sample_score'].label}: {_fmt(score[i])} at {rows[i]['run']} "
                     f"({_betas_text(rows[i])}; largest |log10 beta| {_fmt(float(logs.max()))}).")
        ones = [j for j in all_betas_one(rows) if np.isfinite(score[j])]
        ranked = np.sort(score[np.isfinite(score)])[::-1]
        for j in ones:
            rank = int(np.sum(ranked > score[j])) + 1
            lines.append(f"All betas = 1 ({rows[j]['run']}): {_fmt(score[j])}, rank {rank} of {len(ranked)} "
                         "(1 = best).")
        if not ones:
            lines.append("No evaluated run has all betas = 1.")

    lines += ["", "## Equal total rate, equal distortion bound", "",
              "T1 bounds the distortion by the total rate alone. Runs grouped in "
              f"{num_bins} equal-width bins of total rate (the bins of the figures); the spread of the distortion "
              "within a bin is compared with the spread of the total rate, which is what moves the bound.", "",
              "| total rate bin (nats) | runs | total rate spread | distortion min | distortion max "
              "| distortion spread |",
              "| --- | --- | --- | --- | --- | --- |"]
    total, distortion = column_values(rows, "total_rate_nats"), column_values(rows, "distortion_nats")
    edges = total_rate_bins(total, num_bins)
    for b, members in enumerate(bin_members(total, edges)):
        members = members[np.isfinite(distortion[members])]
        if len(members) == 0:
            continue
        d, r = distortion[members], total[members]
        lines.append(f"| {edges[b]:.4g} to {edges[b + 1]:.4g} | {len(members)} | {np.ptp(r):.4g} | {d.min():.4g} | "
                     f"{d.max():.4g} | {np.ptp(d):.4g} |")

    lines += seed_groups.summary_lines(rows)
    for title, state in (("Failed runs", "failed"), ("Trained, not evaluated (empty metric columns)", "trained"),
                         ("Unfinished (no result and no error)", "unfinished"),
                         ("Damaged (a result file truncated or not JSON; no numbers used)", "damaged"),
                         ("Foreign (someone else's files; no numbers used)", "foreign")):
        listed = [r for r in rows if r["status"] == state]
        if listed:
            lines += ["", f"## {title}", ""] + [
                f"- {r['run']}" + (f": {r['error']}" if r["error"] else "") for r in listed]
    if notes:
        lines += ["", "## Figures not drawn", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ writing
def write_tables(rows, columns, root):
    """results.csv and results.json in `root`, each written atomically. Returns their paths."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if row.get(c) is None else row[c] for c in columns] for row in rows])
    csv_path, json_path = os.path.join(root, RESULTS_CSV), os.path.join(root, RESULTS_JSON)
    io_utils.write_text_atomic(csv_path, buffer.getvalue())
    io_utils.write_json_atomic(json_path, {
        "columns": columns, "rows": [{c: row.get(c) for c in columns} for row in rows],
        "metrics": {key: dataclasses.asdict(m) for key, m in METRICS.items()},
        "seed_groups": seed_groups.records(rows),
        "column_rule": "see the docstring of evaluation/aggregate.py"})
    return [csv_path, json_path]


def aggregate(root, figures_dir=None, num_bins=8):
    """Reads every run under `root`, writes tables, figures and summary.md; returns the paths written."""
    from evaluation import figures
    if num_bins < 1:
        raise ValueError(f"total_rate_bins must be at least 1 (got {num_bins})")
    rows, columns = collect(root, figures_dir)
    for row in rows:  # each damaged or foreign folder in one line; the table marks it in `status`
        if row["status"] in ("damaged", "foreign"):
            print(f"warning: {os.path.join(root, row['run'])}: {row['status']}: {row['error']}", file=sys.stderr)
    written = write_tables(rows, columns, root)
    drawn, notes = figures.draw_all(rows, figures_dir or os.path.join(root, FIGURES), num_bins)
    summary = os.path.join(root, SUMMARY)
    io_utils.write_text_atomic(summary, summarize(rows, num_bins, notes))
    from evaluation import report
    return written + drawn + [summary, report.write_report(root, rows, drawn, notes)]


# ------------------------------------------------------------------ command line
def _define_flags():
    from hvae_repr.cli import define
    define("string", "root", None, "The sweep's folder: run folders under it (at any depth).", group="aggregate")
    define("string", "out", None, "Folder of the figures (default: ROOT/figures).", group="aggregate")
    define("integer", "total_rate_bins", 8, "Equal-width bins of total rate: the best run per bin is marked "
           "in the rate plane, and the summary compares distortions within each bin.", group="aggregate")


def main(argv):
    from absl import flags
    del argv
    values = flags.FLAGS
    try:
        if not values.root:
            raise ValueError("--root is required: pass the sweep's folder")
        paths = aggregate(values.root, values.out, values.total_rate_bins)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(f"wrote {p}" for p in paths))


def run_main():
    from hvae_repr import cli
    cli.run(lambda flag_values: _define_flags(), lambda flag_values: main([]))


if __name__ == "__main__":
    run_main()
