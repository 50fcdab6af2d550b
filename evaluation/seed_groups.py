"""Runs of a sweep that differ only in their training seed, and the statistics over those seeds.

Two run folders share a seed group when their settings are equal once the seed is left out: every
training setting that can change what is trained (TrainConfig.result_settings: all but the seed,
the folder and config.RESUMABLE_DIFFERENCES, which do not change the run) and every evaluation
setting (EvalOptions, all but its seed and evaluate.NEUTRAL_SETTINGS). A setting missing from an
older file counts as its current default. Runs whose settings cannot be read form groups of one.

add_columns puts on every row of evaluation.aggregate's table: `seed` (the training seed),
`seed_group` (an id: the run name without its seed and hash, and a hash of the shared settings),
`num_seeds` (runs in the group), and for each column of seed_columns(rows) `<column>_seed_mean`,
`<column>_seed_stderr` (sample standard deviation over seeds / sqrt(n); empty for one seed) and
`<column>_seed_n` (seeds with a value). T2 over the group: `bound_t2_violated_over_seeds`
(group_t2).
"""
import dataclasses
import hashlib
import json
import os
import re

import numpy as np

from evaluation import bounds
from evaluation.table import METRICS, TASKS, beta_vectors, column_values, is_number, metric_values, natural_key
from hvae_repr import io_utils
from hvae_repr.runs import RunDir

FIXED_COLUMNS = ("seed", "seed_group", "num_seeds")
RUN_NAME_TAIL = re.compile(r"_seed-?\d+_[0-9a-f]{8}$")


def _field_defaults(cls):
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return json.loads(json.dumps(out, default=lambda o: dataclasses.asdict(o)))


def _filled(values, defaults):
    """`values` with the keys it lacks taken from `defaults` (nested dicts filled the same way)."""
    out = dict(defaults)
    for key, value in values.items():
        out[key] = _filled(value, defaults[key]) if isinstance(value, dict) and isinstance(defaults.get(key), dict) \
            else value
    return out


def settings_without_seed(folder):
    """The run's settings with the seed (and what does not change a run) left out, as canonical JSON; None
    when the folder holds neither config.json nor an eval_result.json with its run's config."""
    from evaluation.options import NEUTRAL_SETTINGS, EvalOptions
    from hvae_repr.config import RESUMABLE_DIFFERENCES, TrainConfig

    def read(name):
        path = os.path.join(folder, name)
        try:
            return io_utils.read_json(path) if os.path.isfile(path) else None
        except (OSError, ValueError):
            return None
    config, evaluation = read(RunDir.CONFIG), read(RunDir.EVAL_RESULT) or {}
    config = config or evaluation.get("run_config")
    if not isinstance(config, dict):
        return None
    train = _filled(config, _field_defaults(TrainConfig))
    for name in ("seed", "workdir") + tuple(RESUMABLE_DIFFERENCES):
        train.pop(name, None)
    if isinstance(train.get("model"), dict):
        train["model"] = {k: v for k, v in train["model"].items() if k != "input_shape"}
    options = evaluation.get("settings")
    if isinstance(options, dict):
        options = _filled(options, _field_defaults(EvalOptions))
        for name in ("seed",) + tuple(NEUTRAL_SETTINGS):
            options.pop(name, None)
    return json.dumps({"train": train, "evaluation": options}, sort_keys=True)


def _seed_of(folder):
    for name, key in ((RunDir.CONFIG, None), (RunDir.EVAL_RESULT, "run_config")):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            try:
                value = io_utils.read_json(path)
            except (OSError, ValueError):
                continue
            value = value.get(key) if key else value
            if isinstance(value, dict) and is_number(value.get("seed")):
                return int(value["seed"])
    return None


def groups(rows):
    """{seed_group: [row indices]} in the rows' order (rows carry `seed_group`, see add_columns; a row
    without one is a group of its own)."""
    out = {}
    for i, row in enumerate(rows):
        out.setdefault(row.get("seed_group") or f"(row {i})", []).append(i)
    return out


def mean_stderr_n(values):
    """(mean, standard error over seeds, n) of the finite values; stderr None for fewer than two."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return None, None, 0
    return float(v.mean()), (float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None), int(len(v))


def group_statistics(rows, v):
    """[(member indices, mean, stderr, n)] of the values `v` (one per row) for every group of two or more
    seeds with a value."""
    out = []
    for members in groups(rows).values():
        mean, stderr, n = mean_stderr_n(v[members])
        if n > 1:
            out.append((members, mean, stderr, n))
    return out


def seed_columns(rows):
    """The columns that get seed statistics on every row: rates, distortion, negative ELBO, each registry
    metric's column, and the T2 flag (its mean: the fraction of seeds flagged)."""
    layers = sorted({c[len("rate_nats_"):] for r in rows for c in r if c.startswith("rate_nats_z")}, key=natural_key)
    columns = [f"rate_nats_{l}" for l in layers] + ["total_rate_nats", "distortion_nats", "neg_elbo_nats"]
    for metric in METRICS.values():
        _, column = metric_values(rows, metric)
        if column and "{top}" not in column:
            columns.append(column)
        elif column:  # one column per top layer the rows have
            columns += sorted({column.format(top=r.get("top_layer")) for r in rows if r.get("top_layer")})
    return list(dict.fromkeys(columns + ["bound_t2_violated"]))


def add_columns(root, rows):
    """Adds the seed columns (module docstring) to each row of evaluation.aggregate's table, in place."""
    keys = []
    for row in rows:
        folder = os.path.join(root, row["run"])
        row["seed"] = _seed_of(folder)
        settings = settings_without_seed(folder)
        betas = {c: row[c] for c in row if c.startswith("beta_z")}  # also where a file lacks them
        keys.append(f"{settings}|{json.dumps(betas, sort_keys=True)}" if settings else f"unreadable:{row['run']}")
    for row, key in zip(rows, keys):
        stem = RUN_NAME_TAIL.sub("", os.path.basename(os.path.normpath(row["run"])))
        stem = stem if stem != os.path.basename(os.path.normpath(row["run"])) else "group"
        row["seed_group"] = f"{stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    found = groups(rows)
    for members in found.values():
        for i in members:
            rows[i]["num_seeds"] = len(members)
    for column in seed_columns(rows):
        v = column_values(rows, column)
        for members in found.values():
            mean, stderr, n = mean_stderr_n(v[members])
            for i in members:
                rows[i].update({f"{column}_seed_mean": mean, f"{column}_seed_stderr": stderr, f"{column}_seed_n": n})
    group_t2(rows)


def records(rows):
    """One record per seed group for results.json: its runs and seeds, and every numeric column's mean,
    standard error over seeds and number of seeds with a value."""
    out = []
    numeric = sorted({c for r in rows for c, value in r.items() if is_number(value)} - set(FIXED_COLUMNS),
                     key=natural_key)
    for group, members in groups(rows).items():
        stats = {c: mean_stderr_n(column_values([rows[i] for i in members], c)) for c in numeric}
        stats = {c: s for c, s in stats.items() if s[2]}
        out.append({"seed_group": group, "runs": [rows[i]["run"] for i in members],
                    "seeds": [rows[i].get("seed") for i in members], "num_seeds": len(members),
                    "mean": {c: s[0] for c, s in stats.items()}, "stderr": {c: s[1] for c, s in stats.items()},
                    "n": {c: s[2] for c, s in stats.items()}})
    return out


def group_t2(rows, confidence=0.99):
    """T2 over each group of two or more evaluated seeds, as `bound_t2_violated_over_seeds` (1/0) on its rows.

    f^{-1} is concave, so if every seed obeys acc_s <= f^{-1}(I_s), the mean accuracy obeys
    mean acc <= f^{-1}(mean I) (Jensen). Judged like one run (evaluation.bounds.check_t2) with the mean
    accuracy of each sample-based probe on z_L as the count of one seed's test split (the seeds share
    the split; pooling their counts would pretend to more test points than there are), against the mean
    over seeds of E[R(z_L)] and of the mixture estimate, each with the standard error of a mean of
    independent estimates."""
    for members in groups(rows).values():
        members = [i for i in members if rows[i].get("status") == "evaluated"]
        if len(members) < 2:
            continue
        group = [rows[i] for i in members]
        prior = []
        while group[0].get(f"bound_t2_label_prior_{len(prior)}") is not None:
            prior.append(group[0][f"bound_t2_label_prior_{len(prior)}"])
        top = group[0].get("top_layer")
        start = f"probes_on_samples_{top}_"
        names = sorted({c[len(start):-len("_num_test")] for c in group[0] if c.startswith(start)
                        and c.endswith("_num_test")})
        probes = {}
        for name in names:
            accuracy = column_values(group, f"{start}{name}_accuracy")
            n = column_values(group, f"{start}{name}_num_test")
            if np.isfinite(accuracy).all() and np.isfinite(n).all():
                probes[name] = {"num_correct": int(round(accuracy.mean() * n.min())), "num_test": int(n.min())}
        information = {}
        for key, value_column, stderr_column in (
                ("top_rate", f"rates_rate_nats_{top}_mean", f"rates_rate_nats_{top}_stderr"),
                ("mutual_information_mixture", f"mutual_information_{top}_label_mixture_estimate_nats",
                 f"mutual_information_{top}_label_mixture_estimate_stderr_nats")):
            value, stderr = column_values(group, value_column), column_values(group, stderr_column)
            if np.isfinite(value).all():
                se = np.where(np.isfinite(stderr), stderr, 0.0)
                information[key] = {"value_nats": float(value.mean()),
                                    "stderr_nats": float(np.sqrt(np.sum(se ** 2)) / len(value)), "judged": True}
        if not (prior and probes and information):
            continue
        violated = bounds.check_t2(probes, information, np.array(prior), confidence)["violated"]
        for i in members:
            rows[i]["bound_t2_violated_over_seeds"] = int(violated)


def _point(row):
    return "(" + ", ".join(f"{b:g}" for b in beta_vectors([row])[0]) + ")"


def summary_lines(rows):
    """summary.md's section on findings across seeds (empty when no group has two or more seeds)."""
    found = groups(rows)
    multi = [m for m in found.values() if len(m) > 1]
    if not multi:
        return []
    seeds = sorted({rows[i]["seed"] for m in multi for i in m if rows[i].get("seed") is not None})
    common = sorted(set.intersection(*({rows[i].get("seed") for i in m} for m in multi)) - {None})
    lines = ["", "## Across seeds", "",
             f"{len(multi)} of {len(found)} settings have more than one training seed (seeds "
             f"{', '.join(map(str, seeds))}); their mean, standard error over seeds and number of seeds are in the "
             "columns `<column>_seed_mean`, `_seed_stderr`, `_seed_n`. Points are written (beta_1, beta_2, ...); "
             "the best point per seed is taken over the settings with several seeds, for the seeds all of them "
             "have" + (f" ({', '.join(map(str, common))})" if common != seeds else "") + ".", ""]
    for task, key in TASKS.items():
        metric = METRICS[key]
        v, column = metric_values(rows, metric)
        if column is None:
            continue
        pick = np.nanargmax if metric.higher_is_better else np.nanargmin
        in_multi = {i for m in multi for i in m}  # the runs of settings with several seeds
        per_seed = {}
        for s in common:
            members = [i for i in sorted(in_multi) if rows[i].get("seed") == s and np.isfinite(v[i])]
            if members:
                per_seed[s] = members[int(pick(v[members]))]
        means = {g: mean_stderr_n(v[m]) for g, m in found.items() if len(m) > 1}
        valued = [g for g in means if means[g][2]]
        best = valued[int(pick([means[g][0] for g in valued]))] if valued else None
        same = len({rows[i]["seed_group"] for i in per_seed.values()}) == 1
        stderrs = [s for _, s, n in means.values() if n > 1 and s is not None]
        group_means = [m for m, _, n in means.values() if n > 1]
        text = (f"- {task} ({metric.label}, `{column}`): best point per seed: "
                + "; ".join(f"seed {s}: {_point(rows[i])} {v[i]:.4g}" for s, i in per_seed.items())
                + f". {'The same point for every seed' if same else 'The best point differs between seeds'}.")
        if best is not None:
            m, se, n = means[best]
            text += (f" Best by the mean over seeds: {_point(rows[found[best][0]])} {m:.4g}"
                     + (f" +- {se:.2g} (n = {n})" if se is not None else "") + ".")
        if stderrs and len(group_means) > 1:
            text += (f" Median standard error over seeds {np.median(stderrs):.3g}, against a range of "
                     f"{np.ptp(group_means):.3g} of the means over points.")
        lines.append(text)
    per_seed_t2 = []
    for s in seeds:
        flags = column_values([r for r in rows if r.get("seed") == s], "bound_t2_violated")
        per_seed_t2.append(f"seed {s}: {int(np.nansum(flags))} of {int(np.isfinite(flags).sum())} flagged")
    over = column_values([rows[m[0]] for m in multi], "bound_t2_violated_over_seeds")
    lines.append("- T2 per seed: " + "; ".join(per_seed_t2) + f". Over the seeds of each group (mean accuracy "
                 f"against f^-1 of the mean information, evaluation/seed_groups.py): {int(np.nansum(over))} of "
                 f"{int(np.isfinite(over).sum())} groups flagged.")
    return lines
