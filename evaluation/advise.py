"""Which rates to aim for, for a task: the best measured points of a sweep and what the paper's bounds say.

    python -m evaluation.advise --root=SWEEP_OR_CONDITIONAL_RUN --task=classification [--accuracy=0.9]
    python -m evaluation.advise --root=... --task=reconstruction [--distortion=60]
    python -m evaluation.advise --root=... --task=generation

ROOT is a sweep's folder (its evaluated runs, or a conditional sweep's point folders; read as
evaluation.aggregate reads them) or a conditional model's run folder (its sweep's points beside it).
- classification: the points with the best logistic probe on z_L samples; T2 turned around: no classifier
  of z_L reaches --accuracy below R(z_L) = f(accuracy) (Fano's f, evaluation.bounds.minimum_information),
  since E[R(z_L)] >= I(y; z_L) >= f(accuracy).
- reconstruction: the points with the best PSNR; T1 turned around: E[D] <= --distortion needs a total rate
  of at least H[p_data] - distortion, where the data entropy is known (synthetic data), and the measured
  points that reach that distortion with the least total rate.
- generation: the points with the best sample score, and each one's distance from beta = 1 (the ELBO, whose
  optimum models p(x)): max over layers of |log10 beta|.
Every number is read from the runs' eval_result.json (nats per test example).
"""
import dataclasses
import math
import os

import numpy as np

from evaluation import aggregate, bounds
from hvae_repr import cli, io_utils
from hvae_repr.cli import setting
from hvae_repr.runs import RunDir

TASK_METRICS = {"classification": "probe_samples_top", "reconstruction": "psnr", "generation": "sample_score"}


@dataclasses.dataclass(frozen=True)
class AdviseCommand:
    root: str = setting("", "A sweep's folder, or a beta-conditional model's run folder.")
    task: str = setting("classification", "What the representation is for.", tuple(TASK_METRICS))
    accuracy: float = setting(0.9, "classification: the accuracy wanted of a classifier of z_L (0 = skip T2).")
    distortion: float = setting(0.0, "reconstruction: the distortion wanted, nats per example (0 = skip T1).")
    top: int = setting(3, "How many of the best points to list.")
    out: str = setting("", "Also write the advice as JSON to this file.")


def sweep_root(root):
    """The folder whose run folders are the points: a conditional model's run folder gives its sweep's."""
    run = RunDir(root)
    if run.has_config and run.read_config().model.conditional_betas:
        return os.path.dirname(os.path.abspath(root))
    return root


def _point(row):
    layers = [f"z{l + 1}" for l in range(row.get("num_layers") or 0)]
    return {"run": row["run"], "betas": {l: row.get(f"beta_{l}") for l in layers},
            "rates_nats": {l: row.get(f"rate_nats_{l}") for l in layers},
            "total_rate_nats": row.get("total_rate_nats"), "distortion_nats": row.get("distortion_nats")}


def _label_prior(rows):
    for row in rows:
        prior = [row[k] for k in sorted((k for k in row if k.startswith("bound_t2_label_prior_")),
                                        key=aggregate.natural_key)]
        if prior:
            return np.asarray(prior, np.float64)
    return None


def advise(command):
    """The advice as a dict; ValueError (one line) for bad input."""
    if not command.root:
        raise ValueError("--root is required: a sweep's folder or a conditional model's run folder")
    if not 0 <= command.accuracy <= 1:
        raise ValueError(f"--accuracy must lie in [0, 1], 0 to skip the bound (got {command.accuracy})")
    if command.distortion < 0 or command.top < 1:
        raise ValueError("--distortion must be >= 0 and --top at least 1")
    rows, _ = aggregate.collect(sweep_root(command.root))
    rows = [r for r in rows if r["status"] == "evaluated"]
    if not rows:
        raise ValueError(f"{command.root} holds no evaluated point (eval_result.json); evaluate the runs first")
    metric = aggregate.METRICS[TASK_METRICS[command.task]]
    values, column = aggregate.metric_values(rows, metric)
    order = [i for i in np.argsort(-values if metric.higher_is_better else values) if np.isfinite(values[i])]
    best = [dict(_point(rows[i]), metric=float(values[i])) for i in order[:command.top]]
    out = {"root": command.root, "task": command.task, "metric": metric.label, "metric_column": column,
           "num_points": len(rows), "best": best, "bounds": {}, "notes": []}
    top_rates = aggregate.column_values(rows, "rate_nats_{top}")
    if command.task == "classification" and command.accuracy > 0:
        prior = _label_prior(rows)
        if prior is None:
            out["notes"].append("no label prior in the results (bound_t2); T2 gives no number")
        else:
            minimum = float(bounds.minimum_information(command.accuracy, prior))
            enough = np.flatnonzero(top_rates >= minimum)
            reaching = [i for i in range(len(rows)) if values[i] >= command.accuracy]
            out["bounds"]["t2"] = {
                "accuracy": command.accuracy, "minimum_top_rate_nats": minimum,
                "meaning": f"below R(z_L) = {minimum:.3f} nats no classifier of z_L can reach "
                           f"{command.accuracy:.0%} (T2: E[R(z_L)] >= I(y; z_L) >= f(accuracy))",
                "points_above_minimum": len(enough), "points_reaching_accuracy": len(reaching),
                "least_top_rate_reaching_accuracy_nats": float(np.nanmin(top_rates[reaching])) if reaching else None}
    if command.task == "reconstruction" and command.distortion > 0:
        entropy = aggregate.column_values(rows, "bound_t1_data_entropy_nats")
        distortion = aggregate.column_values(rows, "distortion_nats")
        total = aggregate.column_values(rows, "total_rate_nats")
        reaching = [i for i in range(len(rows)) if distortion[i] <= command.distortion]
        t1 = {"distortion_nats": command.distortion,
              "least_total_rate_reaching_it_nats": float(np.nanmin(total[reaching])) if reaching else None,
              "points_reaching_it": len(reaching)}
        if np.isfinite(entropy).any():
            h = float(np.nanmean(entropy))
            t1.update(data_entropy_nats=h, minimum_total_rate_nats=max(h - command.distortion, 0.0),
                      meaning=f"E[D] <= {command.distortion:g} nats needs a total rate of at least "
                              f"{max(h - command.distortion, 0.0):.3f} nats (T1: E[D] >= H[p_data] - E[R])")
        else:
            t1.update(data_entropy_nats=None, minimum_total_rate_nats=None,
                      meaning="the data entropy is unknown for this data set, so T1 gives no minimum rate; the "
                              "measured points are the guide")
        out["bounds"]["t1"] = t1
    if command.task == "generation":
        for point in best:
            point["distance_from_beta_1"] = max(abs(math.log10(b)) for b in point["betas"].values() if b)
        out["notes"].append("beta = 1 for every layer is the ELBO, the one setting whose optimum is a "
                            "maximum-likelihood model of p(x); distance_from_beta_1 = max over layers of |log10 beta|")
    return out


def format_advice(advice):
    lines = [f"{advice['task']}: best {len(advice['best'])} of {advice['num_points']} points by {advice['metric']}"]
    for p in advice["best"]:
        names = sorted(p["betas"], key=aggregate.natural_key, reverse=True)
        rates = ", ".join(f"R({n})={p['rates_nats'][n]:.2f}" for n in names)
        betas = ", ".join(f"beta_{n[1:]}={p['betas'][n]:.3g}" for n in names)
        extra = f", distance from beta = 1: {p['distance_from_beta_1']:.2f}" if "distance_from_beta_1" in p else ""
        lines.append(f"  {p['metric']:.4g}: {rates} nats, D={p['distortion_nats']:.2f}; {betas}{extra} ({p['run']})")
    t2 = advice["bounds"].get("t2")
    if t2:
        lines.append(f"T2: {t2['meaning']}; {t2['points_above_minimum']} of {advice['num_points']} points lie above "
                     f"it, {t2['points_reaching_accuracy']} reach {t2['accuracy']:.0%}"
                     + (f" (the least R(z_L) among them {t2['least_top_rate_reaching_accuracy_nats']:.2f} nats)"
                        if t2["least_top_rate_reaching_accuracy_nats"] is not None else ""))
    t1 = advice["bounds"].get("t1")
    if t1:
        least = t1["least_total_rate_reaching_it_nats"]
        lines.append(f"T1: {t1['meaning']}; measured: {t1['points_reaching_it']} points reach D <= "
                     f"{t1['distortion_nats']:g}" + (f", the least total rate among them {least:.2f} nats"
                                                     if least is not None else ""))
    lines += [f"note: {n}" for n in advice["notes"]]
    lines.append("train to a point's rates: python -m hvae_repr.train --target_rates=R1,R2,... (z1 first)")
    return "\n".join(lines)


def define(flag_values):
    cli.define_flags(AdviseCommand, flag_values)


def main(flag_values):
    with cli.one_line_errors():
        command = cli.from_flags(AdviseCommand, flag_values)
        advice = advise(command)
        if command.out:
            io_utils.write_json_atomic(command.out, advice)
    print(format_advice(advice))


def run_main():
    cli.run(define, main)


if __name__ == "__main__":
    run_main()
