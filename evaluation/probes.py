"""Linear and non-linear probes: how well a representation predicts the label.

Every probe is a scikit-learn Pipeline of StandardScaler and a classifier. The
probe's train/test split is stratified and depends only on the labels and a
seed, so every model of a sweep (same data set, same seed) is probed on the
same split; the paper's public code reshuffled it per model.
"""
import time

import numpy as np
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

LOGISTIC_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))

# name -> (classifier factory, its hyper-parameters for the result, training-set cap).
# The RBF SVM is cubic-ish in its training size; the cap keeps 10k points fast.
PROBES = {
    "logistic_regression": (
        lambda seed: LogisticRegressionCV(
            Cs=LOGISTIC_CS, cv=3, max_iter=300, tol=1e-3, l1_ratios=(0.0,),
            scoring="accuracy", use_legacy_attributes=False),
        {"regularization": "L2, C chosen by 3-fold CV on the probe's train split",
         "Cs": LOGISTIC_CS, "max_iter": 300, "tol": 1e-3},
        None),
    "linear_svm": (
        lambda seed: LinearSVC(C=1.0, dual=False, max_iter=2000, random_state=seed),
        {"C": 1.0, "loss": "squared_hinge", "multiclass": "one-vs-rest"},
        None),
    "rbf_svm": (
        lambda seed: SVC(C=1.0, kernel="rbf", gamma="scale", random_state=seed),
        {"C": 1.0, "gamma": "scale (1 / (n_features * X.var()))", "multiclass": "one-vs-one"},
        5000),
    "knn5": (
        lambda seed: KNeighborsClassifier(n_neighbors=5),
        {"n_neighbors": 5, "metric": "euclidean (after standardization)"},
        None),
}


def _check(representation, labels):
    z = np.asarray(representation, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or y.ndim != 1 or len(z) != len(y):
        raise ValueError(
            f"probes need representation [N, d] and labels [N]; got {z.shape} and {y.shape}: "
            "flatten the representation and pass one label per row")
    if not np.all(np.isfinite(z)):
        raise ValueError("representation has NaN or inf values: check the encoder's output")
    return z, y


def split_indices(labels, test_fraction=0.25, seed=0):
    """Stratified train/test indices that depend only on `labels` and `seed`."""
    y = np.asarray(labels)
    train, test = train_test_split(
        np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def _cap(train_idx, labels, cap, seed):
    if cap is None or len(train_idx) <= cap:
        return train_idx
    kept, _ = train_test_split(
        train_idx, train_size=cap, stratify=labels[train_idx], random_state=seed)
    return np.sort(kept)


def evaluate_probes(representation, labels, probes=tuple(PROBES), test_fraction=0.25, seed=0):
    """Trains each probe on the split's train part and scores it on its test part.

    Returns {probe_name: {"accuracy", "num_correct", "num_test", "num_train",
    "hyperparameters", "seconds"}, "settings": {...}}. Accuracy is a fraction in [0, 1].
    A probe whose labels have one class only scores by predicting that class.
    """
    z, y = _check(representation, labels)
    train_idx, test_idx = split_indices(y, test_fraction, seed)
    result = {"settings": {
        "pipeline": "StandardScaler -> classifier",
        "split": "stratified, indices depend only on labels and seed",
        "split_seed": int(seed), "test_fraction": float(test_fraction),
        "num_points": int(len(y)), "num_features": int(z.shape[1]),
        "num_train_split": int(len(train_idx)), "num_test": int(len(test_idx))}}
    for name in probes:
        if name not in PROBES:
            raise ValueError(f"unknown probe {name!r}: choose from {sorted(PROBES)}")
        factory, hyper, cap = PROBES[name]
        fit_idx = _cap(train_idx, y, cap, seed)
        start = time.perf_counter()
        if len(np.unique(y[fit_idx])) < 2:
            predictions = np.full(len(test_idx), y[fit_idx][0])
        else:
            pipeline = make_pipeline(StandardScaler(), factory(seed))
            pipeline.fit(z[fit_idx], y[fit_idx])
            predictions = pipeline.predict(z[test_idx])
        correct = int(np.sum(predictions == y[test_idx]))
        entry = {
            "accuracy": correct / len(test_idx), "num_correct": correct,
            "num_test": int(len(test_idx)), "num_train": int(len(fit_idx)),
            "train_cap": cap, "hyperparameters": dict(hyper),
            "seconds": time.perf_counter() - start}
        if name == "logistic_regression" and len(np.unique(y[fit_idx])) >= 2:
            entry["hyperparameters"]["chosen_C"] = float(np.ravel(pipeline[-1].C_)[0])
        result[name] = entry
    return result


def evaluate_probe_sets(representations, labels, probes=tuple(PROBES), test_fraction=0.25, seed=0, n_jobs=1):
    """evaluate_probes for each entry of {key: representation [N, d]}, on the same split.

    With n_jobs > 1 the (representation, probe) pairs run in that many worker
    processes (each with one BLAS thread, which is also faster per probe here).
    """
    tasks = [(key, name) for key in representations for name in probes]
    # Largest representations first, so the slowest jobs do not start last.
    tasks.sort(key=lambda t: -np.shape(representations[t[0]])[-1])
    args = [(representations[key], labels, (name,), test_fraction, seed) for key, name in tasks]
    if n_jobs == 1:
        outputs = [evaluate_probes(*a) for a in args]
    else:
        outputs = Parallel(n_jobs=n_jobs)(delayed(evaluate_probes)(*a) for a in args)
    results = {key: {} for key in representations}
    for (key, name), out in zip(tasks, outputs):
        results[key]["settings"] = out["settings"]
        results[key][name] = out[name]
    return {key: {name: results[key][name] for name in ("settings",) + tuple(probes)} for key in representations}
