"""The spot-check table of a one-model map: its rows as data (spots.csv) and the verdicts of issue 16's
target, as pure functions over rows.

A row is one model at one spot point: betas, kind (conditional: a conditional model's grid point; refined:
a point fine-tuned from one, hvae_repr.warm_start; separate: a separately trained model), the sweep it comes
from and its recipe, epochs, seed, the test-set rates, distortion and objective D + beta_1 R(z1|z2) +
beta_2 R(z2) (nats), the pooled-MSE PSNR (dB) and the logistic probe's accuracy on z2 samples.

The verdicts compare a candidate with the reference at each point: the best known separately trained model,
the one of lowest objective among the reference rows there. Tolerances (TOLERANCES): objective within 2% or
lower; each rate within 10% or 1 nat; PSNR and the probe within 3% relative. Where 3 seed standard
deviations of a metric (the seed spread) are wider than its tolerance, they stand in for it. The spread at a
point comes from the seed runs there (rows of the same sweep differing only in the seed, at least two); at a
point without seed runs, from the seed-run points nearest in log10 betas (with a tie, the root mean square of
their standard deviations).
"""
import csv
import io
import math
import os

import numpy as np

from hvae_repr import io_utils

SPOTS = [(b1, b2) for b1 in (0.1, 1.0, 10.0) for b2 in (0.1, 1.0, 10.0)]
COLUMNS = ("beta_z1", "beta_z2", "kind", "sweep", "recipe", "epochs", "seed", "rate_nats_z1", "rate_nats_z2",
           "distortion_nats", "objective_nats", "psnr_db", "probe_z2_samples")
# results.csv column of each measured spots.csv column
RESULT_COLUMNS = {"rate_nats_z1": "rate_nats_z1", "rate_nats_z2": "rate_nats_z2",
                  "distortion_nats": "distortion_nats", "psnr_db": "reconstruction_psnr_pooled_mse_db",
                  "probe_z2_samples": "probes_on_samples_z2_logistic_regression_accuracy"}
# metric -> (relative tolerance, absolute floor, one-sided: lower than the reference always passes)
TOLERANCES = {"objective_nats": (0.02, 0.0, True), "rate_nats_z1": (0.10, 1.0, False),
              "rate_nats_z2": (0.10, 1.0, False), "psnr_db": (0.03, 0.0, False),
              "probe_z2_samples": (0.03, 0.0, False)}
SEED_SIGMAS = 3


def point_of(row):
    return (round(float(row["beta_z1"]), 6), round(float(row["beta_z2"]), 6))


def objective(distortion, rate_z1, rate_z2, beta_z1, beta_z2):
    """D + beta_1 R(z1|z2) + beta_2 R(z2), nats."""
    return distortion + beta_z1 * rate_z1 + beta_z2 * rate_z2


def recipe(config):
    """A run's training recipe in words (the settings a reference's name should carry)."""
    warmup, epochs = config["kl_warmup_epochs"], config["epochs"]
    schedule = " cosine-decayed" if config.get("lr_schedule", "constant") == "cosine" else ""
    text = (f"{epochs} epoch{'s' if epochs != 1 else ''}, Adam {config['learning_rate']:g}{schedule}, "
            f"batch {config['batch_size']}, " + (f"warm-up {warmup} epochs" if warmup else "no warm-up"))
    if config.get("init_from"):
        text += f", refined from {os.path.basename(os.path.dirname(config['init_from']))}'s conditional model"
    return text


def _number(cell):
    return float(cell) if cell not in ("", None) else math.nan


def _run_config(folder):
    """(config.json of the model behind a results.csv row's folder, its kind)."""
    point = os.path.join(folder, "point.json")
    if os.path.isfile(point):  # a conditional model's grid point
        model = os.path.normpath(os.path.join(folder, io_utils.read_json(point)["model_run"]))
        return io_utils.read_json(os.path.join(model, "config.json")), "conditional"
    config = io_utils.read_json(os.path.join(folder, "config.json"))
    return config, "refined" if config.get("fixed_condition") else "separate"


def rows_from_sweep(root, points=SPOTS, name=None):
    """The spots.csv rows of an aggregated sweep (ROOT/results.csv, evaluated rows at `points`), with the
    seed, epochs and recipe from each run's config.json (a grid point's: its conditional model's)."""
    with open(os.path.join(root, "results.csv")) as f:
        table = [r for r in csv.DictReader(f) if r["status"] == "evaluated"]
    rows = []
    for r in table:
        if point_of(r) not in points:
            continue
        config, kind = _run_config(os.path.join(root, r["run"]))
        row = {"beta_z1": float(r["beta_z1"]), "beta_z2": float(r["beta_z2"]), "kind": kind,
               "sweep": name or root, "recipe": recipe(config), "epochs": int(config["epochs"]),
               "seed": int(config["seed"])}
        row.update({key: _number(r.get(column)) for key, column in RESULT_COLUMNS.items()})
        row["objective_nats"] = objective(row["distortion_nats"], row["rate_nats_z1"], row["rate_nats_z2"],
                                          row["beta_z1"], row["beta_z2"])
        rows.append(row)
    return sorted(rows, key=lambda row: point_of(row) + (row["seed"],))


def rows_of_sweeps(sweeps, kept=()):
    """The spots.csv rows of each sweep: from its results.csv when its folder is here, else its rows among
    `kept` (a spots.csv written earlier, read_csv), by the sweep's name. A sweep with neither is an error
    that says how to mend it."""
    rows = []
    for sweep in sweeps:
        if os.path.isfile(os.path.join(sweep, "results.csv")):
            rows += rows_from_sweep(sweep)
            continue
        earlier = [r for r in kept if r["sweep"] == sweep]
        if not earlier:
            raise ValueError(f"{sweep} has no results.csv (aggregate it: python -m evaluation.aggregate "
                             f"--root={sweep}) and no rows in the spots.csv files given; pass the one that holds them")
        rows += earlier
    return rows


def write_csv(path, rows):
    """spots.csv: one row per point and model, COLUMNS in order (written atomically)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(row[k], float) and math.isnan(row[k]) else row[k]) for k in COLUMNS})
    io_utils.write_text_atomic(path, out.getvalue())


def read_csv(path):
    """The rows of a spots.csv, as write_csv was given them (numbers as numbers, epochs and seed as ints)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    numeric = set(COLUMNS) - {"kind", "sweep", "recipe"}
    rows = [{k: (_number(v) if k in numeric else v) for k, v in row.items()} for row in rows]
    for row in rows:
        row.update({k: int(row[k]) for k in ("epochs", "seed") if math.isfinite(row.get(k, math.nan))})
    return rows


def references(rows, sweeps):
    """{point: the row of lowest objective among the rows of `sweeps` at that point} (the best known model)."""
    best = {}
    for row in rows:
        if row["sweep"] in sweeps and math.isfinite(row["objective_nats"]):
            point = point_of(row)
            if point not in best or row["objective_nats"] < best[point]["objective_nats"]:
                best[point] = row
    return best


def seed_spreads(rows, sweeps):
    """{point: {metric: standard deviation over seeds (ddof 1)}} from the rows of `sweeps` (the seed runs:
    each sweep's rows at a point differ only in the seed). ValueError when one sweep mixes recipes."""
    groups = {}
    for row in rows:
        if row["sweep"] in sweeps:
            groups.setdefault((row["sweep"], point_of(row)), []).append(row)
    spreads = {}
    for (sweep, point), group in sorted(groups.items()):
        if len({r["recipe"] for r in group}) > 1:
            raise ValueError(f"the seed runs of {sweep} at betas {point} differ in more than the seed "
                             f"({'; '.join(sorted({r['recipe'] for r in group}))}); give seed sweeps of one recipe")
        seeds = {int(r["seed"]) for r in group}
        if len(seeds) < 2 or len(seeds) < len(group):
            continue  # one seed (or one seed twice) says nothing about the spread
        if point in spreads:
            raise ValueError(f"two seed sweeps cover betas {point}; give one")
        spreads[point] = {m: float(np.std([r[m] for r in group], ddof=1)) for m in TOLERANCES}
    return spreads


def spread_at(point, spreads):
    """The seed spread that stands for `point` (module docstring); None without seed runs."""
    if not spreads:
        return None
    if point in spreads:
        return spreads[point]
    distance = {p: math.dist(np.log10(p), np.log10(point)) for p in spreads}
    nearest = [p for p in spreads if math.isclose(distance[p], min(distance.values()), rel_tol=1e-9)]
    return {m: float(np.sqrt(np.mean([spreads[p][m] ** 2 for p in nearest]))) for m in TOLERANCES}


def check(metric, candidate, reference, spread=None):
    """One metric's verdict: {candidate, reference, tolerance, seed_tolerance, used, ok, below} (below: lower
    than the reference by more than the tolerance used)."""
    relative, floor, one_sided = TOLERANCES[metric]
    tolerance = max(relative * abs(reference), floor)
    seed_tolerance = SEED_SIGMAS * spread if spread is not None else None
    used = max(tolerance, seed_tolerance) if seed_tolerance is not None else tolerance
    difference = candidate - reference
    ok = (difference <= used) if one_sided else (abs(difference) <= used)
    return {"candidate": candidate, "reference": reference, "tolerance": tolerance,
            "seed_tolerance": seed_tolerance, "used": used, "ok": bool(ok and math.isfinite(difference)),
            "below": bool(difference < -used)}


def verdicts(candidates, best, spreads=None):
    """{point: {"reference": its row, "metrics": {metric: check(...)}, "ok": all of them}} for each
    candidate row with a reference at its point (`best`: references(...); `spreads`: seed_spreads(...))."""
    out = {}
    for row in candidates:
        point = point_of(row)
        if point not in best:
            continue
        spread = spread_at(point, spreads or {})
        metrics = {m: check(m, row[m], best[point][m], spread[m] if spread else None) for m in TOLERANCES}
        out[point] = {"reference": best[point], "metrics": metrics, "ok": all(c["ok"] for c in metrics.values())}
    return out


def verdict_lines(candidate_name, found):
    """Markdown lines: each point's verdicts, the reference named, and a line of totals."""
    labels = {"objective_nats": "objective nats", "rate_nats_z1": "R(z1\\|z2) nats", "rate_nats_z2": "R(z2) nats",
              "psnr_db": "PSNR dB", "probe_z2_samples": "probe on z2 samples"}
    lines = ["| betas (z1, z2) | reference | " + " | ".join(f"{labels[m]}: candidate / reference (tolerance)"
                                                          for m in TOLERANCES) + " |",
             "|" + "---|" * (len(TOLERANCES) + 2)]
    for point, v in sorted(found.items()):
        ref = v["reference"]
        cells = []
        for m, c in v["metrics"].items():
            seed = " from seeds" if c["seed_tolerance"] is not None and c["seed_tolerance"] > c["tolerance"] else ""
            verdict = ("ok, lower" if c["below"] else "ok") if c["ok"] else "**off**"
            cells.append(f"{c['candidate']:.3g} / {c['reference']:.3g} (±{c['used']:.2g}{seed}) {verdict}")
        lines.append(f"| ({point[0]:g}, {point[1]:g}) | `{ref['sweep']}` seed {int(ref['seed'])} ({ref['recipe']}) | "
                     + " | ".join(cells) + " |")
    passed = {m: sum(v["metrics"][m]["ok"] for v in found.values()) for m in TOLERANCES}
    everything = sum(v["ok"] for v in found.values())
    better = [p for p, v in sorted(found.items()) if v["metrics"]["objective_nats"]["below"]]
    below = (f" Its objective is lower than the reference's by more than the tolerance at {len(better)} of them ("
             + ", ".join(f"({p[0]:g}, {p[1]:g})" for p in better) + "): there the reference is not the best known "
             "model, so rates and PSNR that differ from it do not show an error of the candidate." if better else "")
    return lines + ["", f"`{candidate_name}` meets the target at {everything} of {len(found)} points ("
                    + ", ".join(f"{labels[m]} {passed[m]}" for m in TOLERANCES) + ")." + below, ""]

