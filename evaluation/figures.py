"""PNG figures of a sweep's table (rows of evaluation.aggregate), drawn with matplotlib's Agg canvas.

    rate_plane.png              x = R(z_L), y = summed rate of the layers below; one panel per metric
    heatmap_<metric>.png        the metric over the (beta_1, beta_2) grid
    metrics_vs_total_rate.png   each metric against total rate with its frontier
    t2_probe_accuracy.png       sample-based probe accuracy on z_L against R(z_L), T2's bound f^-1(R) over it
    t1_distortion.png           distortion against total rate, T1's line D = H - R where H is known

Every metric, its label and its direction come from evaluation.table.METRICS. No pyplot: each figure is a
matplotlib.figure.Figure on a FigureCanvasAgg, so no display is needed and no global state is kept.
Each file is written atomically (a temporary file, then os.replace).
"""
import os

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evaluation import bounds, seed_groups
from evaluation import table  # the helpers shared with evaluation.aggregate
from evaluation.table import METRICS, column_values, metric_values
from evaluation.stats import entropy
from hvae_repr import io_utils

ANNOTATE_MAX_CELLS = 100  # heatmaps with at most this many cells print each cell's value


def save_figure(fig, path, dpi=110):
    """Writes `fig` as a PNG to `path` atomically."""
    io_utils.write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi), mode="wb", suffix=".png")
    return path


def _figure(num_panels, panel_size=(4.6, 3.8), max_columns=4):
    columns = min(num_panels, max_columns)
    rows = -(-num_panels // columns)
    fig = Figure(figsize=(panel_size[0] * columns, panel_size[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[num_panels:]:
        ax.set_visible(False)
    return fig, axes[:num_panels]


def _cmap(metric):
    """Bright = better for every metric."""
    return colormaps["viridis" if metric.higher_is_better else "viridis_r"]


def _colorbar_label(metric):
    return metric.axis_label() + ("" if metric.higher_is_better else ", lower is better")


def _metrics_with_values(rows):
    found = []
    for key, metric in METRICS.items():
        v, column = metric_values(rows, metric)
        if column is not None:
            found.append((key, metric, v, column))
    return found


def _rate_axis_labels(rows):
    layers = {r.get("num_layers") for r in rows if r.get("num_layers")}
    if layers == {2}:
        return "R(z2) (nats)", "R(z1 | z2) (nats)"
    return "R(z_L), top layer (nats)", "summed rate of the layers below z_L (nats)"


def seed_error_bars(ax, rows, x, y, **style):
    """At the mean of each group of two or more seeds (evaluation.seed_groups), error bars of the standard
    error over seeds of x and y; returns the number of groups drawn."""
    x_stats = {tuple(m): (mean, se) for m, mean, se, _ in seed_groups.group_statistics(rows, x)}
    bars = [(x_stats[tuple(m)], (mean, se)) for m, mean, se, _ in seed_groups.group_statistics(rows, y)
            if tuple(m) in x_stats]
    if bars:
        (xm, xe), (ym, ye) = (np.array(a, float).T for a in zip(*bars))
        ax.errorbar(xm, ym, xerr=xe, yerr=ye, fmt="none", ecolor=style.pop("ecolor", "k"), elinewidth=1.0,
                    capsize=2.5, zorder=6, label="mean +- s.e. over seeds", **style)
    return len(bars)


# ------------------------------------------------------------------ the rate plane
def rate_plane(rows, path, num_bins=8):
    """One panel per metric over the rate plane; returns `path`, or None when no run has two layers
    with known rates (with one layer the plane degenerates to the total-rate axis) or no metric.

    Dashed diagonals are iso-total-rate lines at the edges of `num_bins` equal-width bins of total rate
    (table.total_rate_bins, from the smallest to the largest total rate); in each band between two
    diagonals the best run for the panel's metric is ringed in red ("best at each total rate"). The
    orange line joins the runs whose betas are all equal, in increasing beta; the black star marks all betas = 1.
    """
    x, y = table.rate_plane_coordinates(rows)
    has_plane = np.array([(r.get("num_layers") or 0) >= 2 for r in rows]) & np.isfinite(x) & np.isfinite(y)
    panels = _metrics_with_values(rows)
    if not has_plane.any() or not panels:
        return None
    total = x + y
    edges = table.total_rate_bins(np.where(has_plane, total, np.nan), num_bins)
    path_rows = [i for i in table.equal_beta_path(rows) if has_plane[i]]
    ones = [i for i in table.all_betas_one(rows) if has_plane[i]]
    xlabel, ylabel = _rate_axis_labels(rows)
    fig, axes = _figure(len(panels))
    limit_x, limit_y = 1.05 * np.nanmax(x[has_plane]) + 1e-9, 1.05 * np.nanmax(y[has_plane]) + 1e-9
    for ax, (key, metric, v, column) in zip(axes, panels):
        valued = has_plane & np.isfinite(v)
        ax.set_xlim(0, limit_x)
        ax.set_ylim(0, limit_y)
        for e in edges:
            ax.plot([0, e], [e, 0], ls="--", lw=0.6, color="0.6", zorder=0)
        if (has_plane & ~valued).any():
            ax.scatter(x[has_plane & ~valued], y[has_plane & ~valued], marker="x", s=18, color="0.6", label="no value")
        points = ax.scatter(x[valued], y[valued], c=v[valued], cmap=_cmap(metric), s=36, zorder=2)
        fig.colorbar(points, ax=ax, label=_colorbar_label(metric))
        if len(path_rows) > 1:
            ax.plot(x[path_rows], y[path_rows], "-", color="tab:orange", lw=1.4, zorder=3, label="all betas equal")
        if ones:
            ax.scatter(x[ones], y[ones], marker="*", s=220, facecolors="none", edgecolors="k", lw=1.2, zorder=4,
                       label="all betas = 1")
        best = table.best_per_bin(total, np.where(valued, v, np.nan), metric.higher_is_better, edges)
        ax.scatter(x[best], y[best], s=130, facecolors="none", edgecolors="red", lw=1.5, zorder=5,
                   label="best per total-rate band")
        seed_error_bars(ax, rows, np.where(has_plane, x, np.nan), np.where(has_plane, y, np.nan))
        ax.set_title(metric.label, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=8)
    fig.suptitle("Rate plane (dashed: iso-total-rate lines at the band edges)")
    return save_figure(fig, path)


# ------------------------------------------------------------------ heatmaps over (beta_1, beta_2)
def _beta_ticks(values):
    step = max(1, int(np.ceil(len(values) / 11)))
    positions = np.arange(0, len(values), step)
    return positions, [f"{values[p]:.3g}" for p in positions]


def heatmaps(rows, out_dir):
    """heatmap_<metric>.png per metric over the (beta_1, beta_2) grid; returns the paths.

    Runs with more than two layers are grouped by the betas of z3 and above (one file per group,
    named ..._z3-<beta>...). A cell holding several runs (e.g. seeds) shows their mean and is outlined.
    """
    b1, b2 = column_values(rows, "beta_z1"), column_values(rows, "beta_z2")
    two = np.isfinite(b1) & np.isfinite(b2)
    if not two.any():
        return []
    groups = {}
    for i in np.flatnonzero(two):
        upper = table.beta_vectors([rows[i]])[0][2:]
        groups.setdefault(tuple(upper), []).append(i)
    paths = []
    for upper, members in sorted(groups.items()):
        members = np.array(members)
        u1, u2 = np.unique(b1[members]), np.unique(b2[members])
        col, row = np.searchsorted(u1, b1[members]), np.searchsorted(u2, b2[members])
        suffix = "".join(f"_z{l + 3}-{b:g}" for l, b in enumerate(upper))
        for key, metric, v, column in _metrics_with_values([rows[i] for i in members]):
            sums, counts = np.zeros((len(u2), len(u1))), np.zeros((len(u2), len(u1)))
            ok = np.isfinite(v)
            np.add.at(sums, (row[ok], col[ok]), v[ok])
            np.add.at(counts, (row[ok], col[ok]), 1)
            grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            spread = seed_spread(rows, members, row, col, v, grid.shape)
            fig, axes = _figure(2 if np.isfinite(spread).any() else 1, panel_size=(6.2, 5.0))
            panels = [(axes[0], grid, _cmap(metric), _colorbar_label(metric))]
            if len(axes) > 1:
                panels.append((axes[1], spread, colormaps["magma"], "standard error over seeds"))
            for ax, values, cmap, label in panels:
                image = ax.imshow(np.ma.masked_invalid(values), origin="lower", cmap=cmap.with_extremes(bad="0.85"),
                                  aspect="auto")
                fig.colorbar(image, ax=ax, label=label)
                if values.size <= ANNOTATE_MAX_CELLS:
                    for (r, c), value in np.ndenumerate(values):
                        if np.isfinite(value):
                            ax.text(c, r, f"{value:.3g}", ha="center", va="center", fontsize=7, color="w")
                for r, c in zip(*np.nonzero(counts > 1)):
                    ax.add_patch(_cell_outline(r, c))
                ax.set_xticks(*_beta_ticks(u1))
                ax.set_yticks(*_beta_ticks(u2))
                ax.set_xlabel("beta_1 (weight of R(z1 | z2))")
                ax.set_ylabel("beta_2 (weight of R(z2" + (" | z3)" if upper else ")") + ")")
            ax = axes[0]
            title = metric.label + (f" at {', '.join(f'beta_{l + 3}={b:g}' for l, b in enumerate(upper))}"
                                    if upper else "")
            ax.set_title(title + ("; outlined cells: mean of several runs" if (counts > 1).any() else ""),
                         fontsize=10)
            if len(axes) > 1:
                axes[1].set_title("its standard error over the seeds of each cell (grey: one seed, or runs "
                                  "that differ in more than the seed)", fontsize=8)
            paths.append(save_figure(fig, os.path.join(out_dir, f"heatmap_{key}{suffix}.png")))
    return paths


def seed_spread(rows, members, row, col, v, shape):
    """Per heatmap cell, the standard error over seeds of `v` where the cell's runs form one seed group of
    two or more seeds with values; NaN elsewhere. members: the heatmap's rows (indices into `rows`); row,
    col and v: one entry per member."""
    spread = np.full(shape, np.nan)
    for r, c in {(int(a), int(b)) for a, b in zip(row, col)}:
        cell = np.flatnonzero((row == r) & (col == c))
        if len(cell) > 1 and len({rows[members[i]].get("seed_group") for i in cell}) == 1:
            _, stderr, _ = seed_groups.mean_stderr_n(v[cell])
            spread[r, c] = np.nan if stderr is None else stderr
    return spread


def _cell_outline(r, c):
    from matplotlib.patches import Rectangle
    return Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="k", lw=1.2)


# ------------------------------------------------------------------ metrics against total rate
def metrics_vs_total_rate(rows, path):
    """Each metric against total rate with its frontier (table.frontier: upper for higher-is-better);
    None when no run has a metric."""
    total = column_values(rows, "total_rate_nats")
    panels = _metrics_with_values(rows)
    if not panels:
        return None
    fig, axes = _figure(len(panels))
    for ax, (key, metric, v, column) in zip(axes, panels):
        ok = np.isfinite(total) & np.isfinite(v)
        ax.scatter(total[ok], v[ok], s=18, color="C0", alpha=0.7, label="runs")
        edge = table.frontier(total, v, metric.higher_is_better)
        ax.step(total[edge], v[edge], where="post", color="C3", lw=1.4,
                label=("upper" if metric.higher_is_better else "lower") + " frontier")
        ax.scatter(total[edge], v[edge], s=30, color="C3", zorder=3)
        seed_error_bars(ax, rows, total, v)
        ax.set_xlabel("total rate (nats)")
        ax.set_ylabel(metric.axis_label())
        ax.set_title(metric.label, fontsize=10)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


# ------------------------------------------------------------------ T2
def t2_bound_curve(prior, max_rate, num=200):
    """(R, f^{-1}(R)) on [0, max_rate]: T2's bound on the accuracy of a classifier that sees z_L."""
    rates = np.linspace(0.0, max_rate, num)
    return rates, np.asarray(bounds.fano_inverse(rates, prior))


def label_prior(row):
    """The label prior the run's T2 check used (bound_t2_label_prior_0, _1, ...), or None."""
    prior = []
    while row.get(f"bound_t2_label_prior_{len(prior)}") is not None:
        prior.append(row[f"bound_t2_label_prior_{len(prior)}"])
    return np.array(prior) if prior else None


def _sample_probe_names(rows):
    names = set()
    for row in rows:
        start = f"probes_on_samples_{row.get('top_layer')}_"
        names |= {c[len(start):-len("_accuracy")] for c in row if c.startswith(start) and c.endswith("_accuracy")
                  and row[c] is not None}
    return sorted(names)


def t2_probe_accuracy(rows, path):
    """Sample-based probe accuracy on z_L (filled) and the registry's mean-based one (hollow, not covered
    by T2) against R(z_L), with f^{-1}(R(z_L)) for each distinct label prior. None when no run has probes."""
    names = _sample_probe_names(rows)
    if not names:
        return None
    rate = column_values(rows, "rate_nats_{top}")
    fig, (ax,) = _figure(1, panel_size=(7.0, 5.0))
    markers = "osD^v<>p"
    for n, name in enumerate(names):
        accuracy = column_values(rows, f"probes_on_samples_{{top}}_{name}_accuracy")
        ok = np.isfinite(rate) & np.isfinite(accuracy)
        ax.scatter(rate[ok], accuracy[ok], marker=markers[n % len(markers)], s=26, alpha=0.8,
                   label=f"{name} on z_L samples")
    means = METRICS["probe_means_top"]
    accuracy, _ = metric_values(rows, means)
    ok = np.isfinite(rate) & np.isfinite(accuracy)
    if ok.any():
        ax.scatter(rate[ok], accuracy[ok], marker="o", s=26, facecolors="none", edgecolors="0.4",
                   label=f"{means.label} (outside T2)")
    seed_error_bars(ax, rows, rate, metric_values(rows, METRICS["probe_samples_top"])[0])
    priors = {}
    for row in rows:
        prior = label_prior(row)
        if prior is not None:
            priors.setdefault(tuple(np.round(prior, 6)), (prior, row.get("dataset")))
    max_rate = 1.05 * np.nanmax(rate) if np.isfinite(rate).any() else 1.0
    for prior, dataset in priors.values():
        r, bound = t2_bound_curve(prior, max(max_rate, 1e-6))
        ax.plot(r, bound, color="k", lw=1.5,
                label="T2: f^-1(R(z_L))" + (f", {dataset}, H(y)={entropy(prior):.3g}" if len(priors) > 1 else ""))
    ax.set_xlabel("R(z_L) (nats)")
    ax.set_ylabel("probe accuracy on z_L")
    ax.set_title("T2: top-layer probe accuracy and its bound"
                 + ("" if priors else " (no label prior: bound not drawn)"), fontsize=10)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


# ------------------------------------------------------------------ T1
def t1_distortion(rows, path):
    """Distortion against total rate, with D = H - R for each distinct known data entropy H."""
    total, distortion = column_values(rows, "total_rate_nats"), column_values(rows, "distortion_nats")
    ok = np.isfinite(total) & np.isfinite(distortion)
    fig, (ax,) = _figure(1, panel_size=(7.0, 5.0))
    ax.scatter(total[ok], distortion[ok], s=22, color="C0", label="runs")
    entropies = np.unique(np.round(column_values(rows, "bound_t1_data_entropy_nats"), 6))
    entropies = entropies[np.isfinite(entropies)]
    r = np.linspace(0.0, 1.05 * np.nanmax(total[ok]) if ok.any() else 1.0, 100)
    for h in entropies:
        ax.plot(r, h - r, color="k", lw=1.4, label=f"T1: D = H - R, H = {h:.4g} nats")
    ax.set_xlabel("total rate (nats)")
    ax.set_ylabel("distortion (nats)")
    ax.set_title("T1: distortion against total rate" + ("" if len(entropies) else
                                                         " (data entropy unknown: no T1 line)"), fontsize=10)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def draw_all(rows, out_dir, num_bins=8):
    """Every figure into `out_dir`: (paths written, notes on the figures not drawn and why)."""
    def at(name):
        return os.path.join(out_dir, name)
    drawn = {  # why a figure is missing: what it drew
        "rate plane: no run has two or more layers with known rates (with one layer R(z_L) is the total rate, "
        "so the plane degenerates to metrics_vs_total_rate.png)": [rate_plane(rows, at("rate_plane.png"), num_bins)],
        "heatmaps: no run has betas for both z1 and z2": heatmaps(rows, out_dir),
        "metrics against total rate: no run has a value of any metric":
            [metrics_vs_total_rate(rows, at("metrics_vs_total_rate.png"))],
        "T2 figure: no run has probes on samples of its top layer (none is evaluated)":
            [t2_probe_accuracy(rows, at("t2_probe_accuracy.png"))],
        "(always drawn)": [t1_distortion(rows, at("t1_distortion.png"))],
    }
    paths = [p for group in drawn.values() for p in group if p]
    return paths, [why for why, group in drawn.items() if not any(group)]
