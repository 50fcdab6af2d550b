"""Numbers over a sweep's table (the rows of evaluation.aggregate, one {column: value} per run folder):
the registry of the metrics that the summary and the figures use, a column's values, the rate-plane
coordinates, frontiers, total-rate bins and the paths through beta space. Shared by
evaluation.aggregate and evaluation.figures, which import it (and not each other at import time).
"""
import dataclasses
import math
import re

import numpy as np


@dataclasses.dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    higher_is_better: bool
    # Candidate column names, "{top}" standing for the run's top layer (z2 in a two-layer model).
    # The first candidate with a value in any row is used for the whole table (later ones are older
    # names of the same number), so one table never mixes two estimators.
    columns: tuple

    def axis_label(self):
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS = {
    "psnr": Metric("PSNR, pooled MSE", "dB", True, ("reconstruction_psnr_pooled_mse_db",)),
    "reconstruction_accuracy": Metric("classifier accuracy on reconstructions", "", True,
                                      ("reconstruction_classifier_accuracy",)),
    "probe_samples_top": Metric("logistic probe on z_L samples", "accuracy", True,
                                ("probes_on_samples_{top}_logistic_regression_accuracy",)),
    "probe_means_top": Metric("logistic probe on z_L means", "accuracy", True,
                              ("probes_on_means_{top}_logistic_regression_accuracy",)),
    "label_information_top": Metric("I_q(y; z_L)", "nats", True,
                                    ("mutual_information_{top}_label_mixture_estimate_nats",
                                     "mutual_information_{top}_label_value_nats")),
    "label_information_knn_top": Metric("I_q(y; z_L), k-NN or plug-in of samples", "nats", True,
                                        ("mutual_information_{top}_label_from_samples_value_nats",)),
    "generative_information": Metric("I_p(z_L; y_hat), generated class", "nats", True,
                                     ("generative_information_value_nats",)),
    "clustering_accuracy": Metric("clustering accuracy of a categorical z_L", "accuracy", True,
                                  ("clustering_accuracy",)),
    "sample_score": Metric("Inception-style score", "", True,
                           ("generation_inception_style_score_inception_score_mean",)),
    "frechet_distance": Metric("Frechet distance", "", False, ("generation_frechet_distance_value",)),
    "neg_elbo": Metric("negative ELBO", "nats", False, ("neg_elbo_nats",)),
}
# The three tasks of the paper's "no one VAE fits all".
TASKS = {"reconstruction": "psnr", "representation": "probe_samples_top", "generation": "sample_score"}



def natural_key(text):
    """Sort key in which digit runs compare as numbers: z2 < z10, run_9 < run_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]




def is_number(value):
    return isinstance(value, (bool, int, float))




def column_values(rows, column):
    """Float array of `column` ("{top}" filled in per row); NaN where a row has no number."""
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        value = row.get(column.format(top=row.get("top_layer")))
        if is_number(value) and math.isfinite(value):
            out[i] = float(value)
    return out


def metric_values(rows, metric):
    """(values, column) of a registry metric: its first candidate column with any value, else (NaNs, None)."""
    for column in metric.columns:
        v = column_values(rows, column)
        if np.isfinite(v).any():
            return v, column
    return np.full(len(rows), np.nan), None


def rate_plane_coordinates(rows):
    """(R(z_L), summed rate of the layers below z_L) per row, nats; NaN where unknown."""
    top = column_values(rows, "rate_nats_{top}")
    return top, column_values(rows, "total_rate_nats") - top


def best_index(v, higher_is_better):
    """Index of the best finite value (the first one on ties), or None."""
    if not np.isfinite(v).any():
        return None
    return int(np.nanargmax(v) if higher_is_better else np.nanargmin(v))


def frontier(x, y, higher_is_better=True):
    """Indices, in increasing x, of the frontier: points whose y beats every point with x' <= x.

    For higher_is_better this is the upper frontier, the best y reachable with at most rate x (the
    running maximum as x grows); otherwise the lower one (running minimum). Points with a NaN are skipped.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    sign = 1.0 if higher_is_better else -1.0
    ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    order = ok[np.lexsort((-sign * y[ok], x[ok]))]  # by x, then the best y first
    kept, best = [], -np.inf
    for i in order:
        if sign * y[i] > best:
            kept.append(int(i))
            best = sign * y[i]
    return kept


def total_rate_bins(total, num_bins):
    """Edges of `num_bins` equal-width bins from the smallest to the largest finite total rate."""
    finite = np.asarray(total, float)[np.isfinite(total)]
    if len(finite) == 0:
        return np.array([])
    low, high = finite.min(), finite.max()
    if high == low:
        high = low + 1.0
    return np.linspace(low, high, num_bins + 1)


def bin_members(total, edges):
    """Row indices per bin (the last bin includes its upper edge); rows with a NaN total are in none."""
    total = np.asarray(total, float)
    if len(edges) < 2:
        return []
    which = np.clip(np.searchsorted(edges, total, side="right") - 1, 0, len(edges) - 2)
    return [np.flatnonzero(np.isfinite(total) & (which == b)) for b in range(len(edges) - 1)]


def best_per_bin(total, v, higher_is_better, edges):
    """The best row of each total-rate bin that holds a finite value (indices, in bin order)."""
    sign = 1.0 if higher_is_better else -1.0
    best = []
    for members in bin_members(total, edges):
        members = members[np.isfinite(v[members])]
        if len(members):
            best.append(int(members[np.argmax(sign * v[members])]))
    return best


def beta_vectors(rows):
    """Each row's betas from z1 up (empty where unknown)."""
    return [[row[c] for c in sorted((c for c in row if c.startswith("beta_z") and row[c] is not None),
                                    key=natural_key)] for row in rows]


def equal_beta_path(rows):
    """Rows whose betas are all equal (at least two layers), in increasing beta."""
    path = [(b[0], i) for i, b in enumerate(beta_vectors(rows)) if len(b) > 1 and np.allclose(b, b[0], rtol=1e-6)]
    return [i for _, i in sorted(path)]


def all_betas_one(rows):
    """Rows whose betas are all 1 (the ELBO)."""
    return [i for i, b in enumerate(beta_vectors(rows)) if b and np.allclose(b, 1.0, rtol=1e-6)]
