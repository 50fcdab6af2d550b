"""ROOT/report.html: a sweep on one self-contained page (evaluation.aggregate writes it beside
summary.md). Every figure is inlined as a base64 PNG and the style sheet is inline, so the file opens
in a browser from disk, with no server and nothing fetched:

    the points by status; the best point per metric (the paper's three tasks marked), with the
    reconstructions and prior samples of each task's best run (RUN/figures/, python -m evaluation.evaluate);
    bound violations (T2, T1); the points without results and why; the sweep's figures; the table of
    the main columns (results.csv holds them all).
"""
import base64
import html
import os
import time

import numpy as np

from evaluation import aggregate
from hvae_repr import io_utils

REPORT = "report.html"
RUN_PICTURES = ("reconstructions", "prior_samples")  # of each task's best run, when it has RUN/figures/
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; }
.flag { color: #b00; font-weight: bold; }
.table-box { overflow-x: auto; max-height: 40em; }
"""


def _e(value):
    return html.escape(str(value), quote=True)


def _number(value):
    return f"{value:.4g}" if np.isfinite(value) else "-"


def _cell(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="number">{_e(_number(value))}</td>'
    return f"<td>{'' if value is None else _e(value)}</td>"


def _table(header, rows):
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def inline_png(path, caption, width=None):
    """A <figure> holding the PNG at `path` as a data: URI (no file is referenced)."""
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    size = f' style="width:{width}"' if width else ""
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}"{size}>'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _betas(row):
    return ", ".join(f"{c[5:]}={_number(row[c])}" for c in sorted(
        (c for c in row if c.startswith("beta_z") and row[c] is not None), key=aggregate.natural_key))


def _best_section(rows, root):
    tasks = {metric: task for task, metric in aggregate.TASKS.items()}
    lines, pictures = [], []
    for key, metric in aggregate.METRICS.items():
        values, column = aggregate.metric_values(rows, metric)
        i = aggregate.best_index(values, metric.higher_is_better)
        if i is None:
            lines.append((tasks.get(key, ""), metric.axis_label(), "no values", "", "", ""))
            continue
        row = rows[i]
        lines.append((tasks.get(key, ""), metric.axis_label(), float(values[i]),
                      "highest" if metric.higher_is_better else "lowest", row["run"], _betas(row)))
        if key in tasks:
            for name in RUN_PICTURES:
                path = os.path.join(root, row["run"], "figures", f"{name}.png")
                if os.path.isfile(path):
                    pictures.append(inline_png(path, f"{tasks[key]}: {row['run']} ({_betas(row)}), "
                                                     f"{name.replace('_', ' ')}", width="28em"))
    out = ["<h2>Best point per metric</h2>",
           "<p>The paper's three tasks are marked; each expects its own best point (\"no one VAE fits all\").</p>",
           _table(("task", "metric", "best", "", "run", "betas"), lines)]
    if pictures:
        out += ["<h3>The tasks' best runs</h3>", "<div>" + "".join(pictures) + "</div>"]
    return out


def _bounds_section(rows):
    out = ["<h2>Bound checks</h2>", "<ul>"]
    for column, name in (("bound_t2_violated", "T2 (sample-based probes on z_L against f^-1 of I_q(y; z_L) and of "
                                              "R(z_L))"),
                         ("bound_t1_violated", "T1 (E[D] >= H - E[total rate], where H is known)")):
        flags = aggregate.column_values(rows, column)
        flagged = [rows[i]["run"] for i in np.flatnonzero(flags == 1)]
        checked = int(np.isfinite(flags).sum())
        text = f"{name}: flagged violated in {len(flagged)} of {checked} checked runs" + (
            ": " + ", ".join(flagged) if flagged else "")
        out.append(f'<li><span class="{"flag" if flagged else ""}">{_e(text)}</span></li>')
    return out + ["</ul>"]


def _attention_section(rows):
    listed = [r for r in rows if r["status"] != "evaluated"]
    if not listed:
        return ["<h2>Points without an evaluation</h2>", "<p>None: every point is evaluated.</p>"]
    return ["<h2>Points without an evaluation</h2>",
            _table(("run", "status", "error (first line of error.txt)"),
                   [(r["run"], r["status"], r.get("error") or "") for r in listed])]


def _main_columns(rows):
    """The fixed columns, betas, rates and terms, the registry's metrics and the bound flags."""
    columns = aggregate.columns_of(rows)
    metrics = set()
    for metric in aggregate.METRICS.values():
        metrics |= {c.format(top=r.get("top_layer")) for c in metric.columns for r in rows}
    wanted = [c for c in columns if c in ("run", "status") or c.startswith(("beta_z", "rate_nats_z"))
              or c in ("total_rate_nats", "distortion_nats", "neg_elbo_nats", "bound_t2_violated",
                       "bound_t1_violated") or c in metrics]
    return wanted + (["error"] if any(r.get("error") for r in rows) else [])


def build_report(rows, root, figure_paths=(), notes=()):
    """The page's HTML text."""
    statuses = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    columns = _main_columns(rows)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Sweep report: {_e(os.path.basename(os.path.abspath(root)))}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>Sweep report: {_e(os.path.abspath(root))}</h1>",
             f"<p>{len(rows)} points: " + ", ".join(f"{n} {_e(s)}" for s, n in sorted(statuses.items()))
             + f". Rates and distortion in nats per test example. Written {_e(time.strftime('%Y-%m-%d %H:%M'))} "
               "by python -m evaluation.aggregate; results.csv holds every column, summary.md the same findings "
               "as text.</p>"]
    parts += _best_section(rows, root)
    parts += _bounds_section(rows)
    parts += _attention_section(rows)
    pngs = [p for p in figure_paths if p.endswith(".png") and os.path.isfile(p)]
    parts.append("<h2>Figures</h2>")
    parts.append("<div>" + "".join(inline_png(p, os.path.basename(p)) for p in pngs) + "</div>" if pngs
                 else "<p>No figures were drawn.</p>")
    if notes:
        parts += ["<p>Not drawn:</p><ul>"] + [f"<li>{_e(n)}</li>" for n in notes] + ["</ul>"]
    parts += ["<h2>Table</h2>", '<div class="table-box">',
              _table(columns, [[row.get(c) for c in columns] for row in rows]), "</div>", "</body></html>"]
    return "\n".join(parts) + "\n"


def write_report(root, rows, figure_paths=(), notes=()):
    """Writes ROOT/report.html atomically; returns its path."""
    path = os.path.join(root, REPORT)
    io_utils.write_text_atomic(path, build_report(rows, root, figure_paths, notes))
    return path
