"""Mutual information from samples, without a model's densities: pure functions over arrays.

- plugin_mutual_information(counts): a count matrix of two discrete variables (e.g. a categorical
  top layer's category x the class a classifier gives its decoded image), the plug-in value
  I(p_hat), its first-order bias for the number of draws and the Miller-Madow corrected value.
- knn_mutual_information(z, labels): a continuous z against a discrete label, the k-nearest-neighbour
  estimator of Ross (2014, PLoS ONE 9:e87357).

All values in nats.

Plug-in bias. With N draws, E[H(p_hat)] = H(p) - (m - 1) / (2N) + O(1/N^2) for m cells of nonzero
probability (Miller 1955). I = H(rows) + H(columns) - H(joint), so the plug-in MI is biased upward by
(m_joint - m_rows - m_columns + 1) / (2N), which is (R - 1)(C - 1) / (2N) for independent variables on
full support; the Miller-Madow value subtracts it, with m counted as the occupied cells. The same
first-order bias holds when the rows are fixed by design (every category drawn equally often): H(rows)
is then exact and the bias of H(columns | rows) is -(m_joint - m_rows) / (2N). The standard error is
the delta method's (Basharin 1959): Var = Var(L) / N with L = log p(r, c) / (p(r) p(c)); with fixed rows
only the within-row variance of L counts.

k-NN (Ross). For point i of class c (N_c points), d_i is the distance to its k-th nearest neighbour
among the points of class c, and m_i counts the points of the whole sample (i included) strictly
closer than d_i. Then I = psi(N) - <psi(N_c)> + psi(k) - <psi(m_i)>. The paper's code uses the
Mixed-KSG estimator of Gao et al. (2017) with the label as a number in a max-norm joint space; with a
discrete metric on the label (0 within a class, infinite between classes, so the numbering of the
classes cannot matter) Mixed-KSG reduces to this estimator with log in place of psi.
"""
import numpy as np
from scipy.special import digamma

from evaluation.stats import entropy

KNN_NOTE = ("k-nearest-neighbour estimate (Ross 2014): consistent, not a bound; at most ceiling_nats "
            "(every k-NN ball holds only its own class), which it reaches for separated classes. Its bias grows "
            "with the dimension of z, the k-th neighbour distance being a poor density proxy in many dimensions; "
            "stderr_nats treats the per-point terms as independent (they are not), a rough guide")


def count_matrix(rows, columns, num_rows, num_columns):
    """[num_rows, num_columns] counts of the pairs (rows[i], columns[i]) of non-negative integers."""
    rows, columns = np.asarray(rows), np.asarray(columns)
    if rows.shape != columns.shape or rows.ndim != 1:
        raise ValueError(f"rows and columns must be 1-D arrays of one shape (got {rows.shape} and {columns.shape})")
    if len(rows) and (rows.min() < 0 or rows.max() >= num_rows or columns.min() < 0 or columns.max() >= num_columns):
        raise ValueError(f"entries must lie in [0, {num_rows}) x [0, {num_columns})")
    counts = np.zeros((num_rows, num_columns), dtype=np.int64)
    np.add.at(counts, (rows, columns), 1)
    return counts


def plugin_mutual_information(counts, rows_fixed=False):
    """Plug-in mutual information of a count matrix, its bias and the Miller-Madow corrected value.

    rows_fixed: the row totals were set by design (every row drawn a set number of times), not sampled;
    changes only the standard error. Returns the matrix too (as a list of lists).
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.min(initial=0) < 0 or not np.all(np.isfinite(counts)):
        raise ValueError("counts must be a 2-D matrix of non-negative counts")
    n = float(counts.sum())
    if n <= 0:
        raise ValueError("the count matrix is empty: draw at least one pair")
    p = counts / n
    p_rows, p_columns = p.sum(1), p.sum(0)
    h_rows, h_columns, h_joint = entropy(p_rows), entropy(p_columns), entropy(p.ravel())
    value = max(h_rows + h_columns - h_joint, 0.0)  # exactly >= 0; the max removes rounding below 0
    occupied = {"joint": int(np.count_nonzero(counts)), "rows": int(np.count_nonzero(p_rows)),
                "columns": int(np.count_nonzero(p_columns))}
    bias = (occupied["joint"] - occupied["rows"] - occupied["columns"] + 1) / (2 * n)
    nz = p > 0
    log_ratio = np.zeros_like(p)
    log_ratio[nz] = np.log(p[nz] / np.outer(p_rows, p_columns)[nz])
    if rows_fixed:  # within-row variance of L, weighted by the rows' shares
        row_mean = np.sum(p * log_ratio, 1) / np.where(p_rows > 0, p_rows, 1)
        variance = np.sum(p * (log_ratio - row_mean[:, None]) ** 2)
    else:
        variance = np.sum(p * log_ratio ** 2) - value ** 2
    return {"plugin_nats": float(value), "stderr_nats": float(np.sqrt(max(variance, 0.0) / n)),
            "bias_nats": float(bias), "miller_madow_nats": float(value - bias),
            "row_entropy_nats": float(h_rows), "column_entropy_nats": float(h_columns),
            "ceiling_nats": float(min(h_rows, h_columns)), "num_draws": int(n), "occupied_cells": occupied,
            "counts": counts.tolist(),
            "settings": {"estimator": "plug-in I(p_hat) of the count matrix; Miller-Madow correction",
                         "rows_fixed": bool(rows_fixed),
                         "bias": "first-order upward bias of the plug-in value, (m_joint - m_rows - m_columns + 1)"
                                 " / (2N) with m the occupied cells; miller_madow_nats = plugin_nats - bias_nats",
                         "stderr": "delta method" + (" for rows fixed by design" if rows_fixed else "")}}


def knn_mutual_information(z, labels, k=5, chunk_size=500):
    """Ross's k-NN estimate of I(z; label) for continuous z [N, d] and discrete labels [N], in nats.

    k: neighbours (within a class of fewer than k + 1 points, that class's size minus 1; points alone
    in their class are left out, as they carry no neighbour). Euclidean distances, computed by
    matrix products in chunks of `chunk_size` rows (O(chunk_size * N) memory; a k-d tree is slower in
    the dimensions of a VAE's layers). Duplicate points (distance 0 to the k-th neighbour) make the
    estimator undefined for them; `ties` counts them.
    """
    z = np.asarray(z, dtype=np.float64)
    z = z.reshape(len(z), -1)
    labels = np.asarray(labels)
    if labels.shape != (len(z),):
        raise ValueError(f"labels must hold one label per row of z (got {labels.shape} for {len(z)} rows)")
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    if not np.all(np.isfinite(z)):
        raise ValueError("z holds NaN or inf")
    _, inverse, class_sizes = np.unique(labels, return_inverse=True, return_counts=True)
    keep = class_sizes[inverse] > 1
    if keep.sum() < 2:
        raise ValueError("knn_mutual_information needs at least one class with two or more points")
    order = np.argsort(inverse[keep], kind="stable")  # each class's points side by side
    z, inverse = z[keep][order], inverse[keep][order]
    n = len(z)
    starts = np.searchsorted(inverse, np.arange(len(class_sizes) + 1))  # class c holds starts[c]:starts[c + 1]
    sizes = class_sizes[inverse]
    k_used = np.minimum(k, sizes - 1)
    squared_norms = np.sum(z ** 2, 1)
    radius, inside = np.empty(n), np.empty(n, dtype=np.int64)
    for first in range(0, n, chunk_size):
        rows = np.arange(first, min(first + chunk_size, n))
        # squared distances of these rows to every point; each point's own distance set to exactly 0
        d2 = np.maximum(squared_norms[rows, None] + squared_norms[None, :] - 2 * z[rows] @ z.T, 0.0)
        d2[np.arange(len(rows)), rows] = 0.0
        for c in np.unique(inverse[rows]):
            which = np.flatnonzero(inverse[rows] == c)
            kc = k_used[rows[which[0]]]
            same = d2[which, starts[c]:starts[c + 1]]
            radius[rows[which]] = np.partition(same, kc, axis=1)[:, kc]  # index 0 is the point itself
        # the points strictly closer than the k-th neighbour, the point itself included
        inside[rows] = np.maximum(np.sum(d2 < radius[rows, None], 1), 1)
    terms = digamma(n) - digamma(sizes) + digamma(k_used) - digamma(inside)
    ceiling = float(digamma(n) - np.mean(digamma(sizes)))
    return {"value_nats": float(np.mean(terms)), "stderr_nats": float(np.std(terms, ddof=1) / np.sqrt(n)),
            "ceiling_nats": ceiling, "num_points": int(n), "dimension": int(z.shape[1]),
            "ties": int(np.sum(radius == 0)), "left_out_single_points": int(np.sum(~keep)),
            "settings": {"estimator": "k-NN, Ross (2014)", "k": int(k), "distance": "Euclidean",
                         "note": KNN_NOTE}}
