"""Linear and non-linear probes: how well a representation predicts the label.

Two protocols (PROTOCOLS), each with the probes named in PROBES (logistic
regression, linear SVM, RBF SVM, 5-nearest neighbours):
- "paper": the paper's public code. Features as given (posterior means), no
  scaling, scikit-learn defaults (LogisticRegression(), LinearSVC(), SVC(),
  KNeighborsClassifier(n_neighbors=5)), 80/20 split; logistic regression is
  averaged over 5 splits (seeds seed..seed+4), the other probes use the first.
- "standardized": this project's earlier protocol. StandardScaler, then L2
  logistic regression with C chosen by 3-fold CV, linear SVM (C = 1), RBF SVM
  trained on at most 5,000 points, 5-NN; one 75/25 split.
Every split is stratified and depends only on the labels and a seed, so every
model of a sweep is probed on the same points (the paper's code reshuffled the
split per model). Non-convergence is counted per probe, not printed as warnings.

Default: "paper". A VAE's prior N(0, I) already sets the scale of its latents:
an active dimension's posterior means spread over about 1, while a collapsed
(dead) dimension's means sit near a constant with tiny input-dependent wiggles.
Without scaling, a probe with default regularization treats those wiggles as
the near-nothing they are, so probe accuracy falls to chance as a layer's rate
goes to 0, as the paper reports. Standardizing divides each dead dimension by
its tiny spread and turns the wiggles into unit-variance features: on binarized
MNIST a layer with R(z2) = 0.00 nats scored 0.390 with the standardized
logistic probe on its means (0.114, chance, on its samples). The paper protocol
also reproduces the paper's numbers. Use "standardized" for features without a
unit-scale prior (other encoders, pixels), or to ask what the best-tuned linear
read-out of every dimension, however faint, can reach.
"""
import dataclasses
import importlib
import time
import warnings
from typing import Optional

import numpy as np

# scikit-learn is imported where a probe runs, not here: the sweep launcher reads PROTOCOLS and PROBES
# (evaluation.options) without it (1-2 s per process).
PROBES = ("logistic_regression", "linear_svm", "rbf_svm", "knn5")


@dataclasses.dataclass(frozen=True)
class Probe:
    estimator: str                   # a scikit-learn classifier as "module.Class" under sklearn
    params: dict = dataclasses.field(default_factory=dict)
    seeded: bool = False             # random_state = the split's seed
    train_cap: Optional[int] = None  # at most this many training points (a stratified subsample)
    num_splits: int = 1              # splits from seeds seed..seed+num_splits-1, accuracies averaged

    def make(self, seed):
        """An unfitted classifier for the split with this seed."""
        module, name = self.estimator.rsplit(".", 1)
        make = getattr(importlib.import_module(f"sklearn.{module}"), name)
        return make(**self.params, **({"random_state": seed} if self.seeded else {}))


@dataclasses.dataclass(frozen=True)
class Protocol:
    description: str
    standardize: bool                # StandardScaler fitted on the train part before the classifier
    test_fraction: float
    probes: dict                     # name (one of PROBES) -> Probe


PROTOCOLS = {
    "paper": Protocol(
        description="the paper's: features as given, no scaling, scikit-learn default classifiers, 80/20 split, "
                    "logistic regression averaged over 5 splits",
        standardize=False, test_fraction=0.2,
        probes={"logistic_regression": Probe("linear_model.LogisticRegression", num_splits=5),
                "linear_svm": Probe("svm.LinearSVC", seeded=True),
                "rbf_svm": Probe("svm.SVC", seeded=True),
                "knn5": Probe("neighbors.KNeighborsClassifier", dict(n_neighbors=5))}),
    "standardized": Protocol(
        description="StandardScaler, then L2 logistic regression with C by 3-fold CV, linear SVM, RBF SVM on at "
                    "most 5,000 training points, 5-NN; one 75/25 split",
        standardize=True, test_fraction=0.25,
        probes={"logistic_regression": Probe("linear_model.LogisticRegressionCV", dict(
                    Cs=tuple(float(c) for c in np.logspace(-4, 2, 7)), cv=3, max_iter=300, tol=1e-3,
                    l1_ratios=(0.0,), scoring="accuracy", use_legacy_attributes=False)),
                "linear_svm": Probe("svm.LinearSVC", dict(C=1.0, dual=False, max_iter=2000), seeded=True),
                # The RBF SVM is cubic-ish in its training size; the cap keeps 10k points fast.
                "rbf_svm": Probe("svm.SVC", dict(C=1.0, kernel="rbf", gamma="scale"), seeded=True,
                                 train_cap=5000),
                "knn5": Probe("neighbors.KNeighborsClassifier", dict(n_neighbors=5))}),
}
DEFAULT_PROTOCOL = "paper"


def _check(representation, labels, protocol):
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
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown probe protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
    return z, y


def split_indices(labels, test_fraction=0.25, seed=0):
    """Stratified train/test indices that depend only on `labels` and `seed`."""
    from sklearn.model_selection import train_test_split
    y = np.asarray(labels)
    train, test = train_test_split(
        np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def _cap(train_idx, labels, cap, seed):
    if cap is None or len(train_idx) <= cap:
        return train_idx
    from sklearn.model_selection import train_test_split
    kept, _ = train_test_split(
        train_idx, train_size=cap, stratify=labels[train_idx], random_state=seed)
    return np.sort(kept)


def _json_params(estimator):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in estimator.get_params().items()
            if isinstance(v, (bool, int, float, str, tuple, type(None)))}


def _fit_predict(protocol, probe, z, y, fit_idx, test_idx, seed):
    """(predictions on test_idx, ConvergenceWarnings counted, fitted classifier or None)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    if len(np.unique(y[fit_idx])) < 2:  # one class to learn from: predict it
        return np.full(len(test_idx), y[fit_idx][0]), 0, None
    classifier = probe.make(seed)
    model = make_pipeline(StandardScaler(), classifier) if protocol.standardize else classifier
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(z[fit_idx], y[fit_idx])
    num_warnings = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model.predict(z[test_idx]), num_warnings, classifier


def evaluate_probes(representation, labels, probes=PROBES, test_fraction=None, seed=0, protocol=DEFAULT_PROTOCOL):
    """Trains each probe of the protocol on a split's train part and scores it on its test part.

    test_fraction: None for the protocol's own (0.2 paper, 0.25 standardized).
    Returns {probe_name: entry, "settings": {...}}; each entry has
    "protocol"; "accuracy" (a fraction in [0, 1]: the mean over the probe's
    splits, "split_seeds", with "accuracy_per_split" and
    "accuracy_std_over_splits", the sample std (ddof 1), None for one split);
    "num_correct", "num_test", "num_train" of the FIRST split (seed `seed`, the
    same for every probe), for a binomial interval; "train_cap";
    "hyperparameters" (the classifier's get_params, plus "chosen_C" when C is
    cross-validated); "convergence_warnings" (scikit-learn ConvergenceWarnings,
    summed over splits) and "converged"; "seconds".
    A probe whose training labels have one class only scores by predicting it.
    """
    z, y = _check(representation, labels, protocol)
    spec = PROTOCOLS[protocol]
    fraction = spec.test_fraction if test_fraction is None else float(test_fraction)
    first_train, first_test = split_indices(y, fraction, seed)
    result = {"settings": {
        "protocol": protocol, "protocol_description": spec.description, "standardize": spec.standardize,
        "split": "stratified, indices depend only on labels and seed (probe with several splits: seed, seed+1, ...)",
        "split_seed": int(seed), "test_fraction": fraction,
        "num_points": int(len(y)), "num_features": int(z.shape[1]),
        "num_train_split": int(len(first_train)), "num_test": int(len(first_test))}}
    for name in probes:
        if name not in spec.probes:
            raise ValueError(f"unknown probe {name!r}: choose from {', '.join(spec.probes)}")
        probe = spec.probes[name]
        start = time.perf_counter()
        seeds = [seed + k for k in range(probe.num_splits)]
        accuracies, num_warnings = [], 0
        for k, split_seed in enumerate(seeds):
            train_idx, test_idx = (first_train, first_test) if k == 0 else split_indices(y, fraction, split_seed)
            fit_idx = _cap(train_idx, y, probe.train_cap, split_seed)
            predictions, warned, classifier = _fit_predict(spec, probe, z, y, fit_idx, test_idx, split_seed)
            num_warnings += warned
            correct = int(np.sum(predictions == y[test_idx]))
            accuracies.append(correct / len(test_idx))
            if k == 0:
                first = {"num_correct": correct, "num_test": int(len(test_idx)), "num_train": int(len(fit_idx)),
                         "hyperparameters": {} if classifier is None else _json_params(classifier)}
                if classifier is not None and hasattr(classifier, "C_"):
                    first["hyperparameters"]["chosen_C"] = float(np.ravel(classifier.C_)[0])
        result[name] = {
            "protocol": protocol, "accuracy": float(np.mean(accuracies)),
            "accuracy_per_split": accuracies, "split_seeds": [int(s) for s in seeds],
            "accuracy_std_over_splits": float(np.std(accuracies, ddof=1)) if len(seeds) > 1 else None,
            **first, "train_cap": probe.train_cap,
            "convergence_warnings": int(num_warnings), "converged": num_warnings == 0,
            "seconds": time.perf_counter() - start}
    return result


def evaluate_probe_sets(representations, labels, probes=PROBES, test_fraction=None, seed=0, n_jobs=1,
                        protocol=DEFAULT_PROTOCOL):
    """evaluate_probes for each entry of {key: representation [N, d]}, on the same splits.

    With n_jobs > 1 the (representation, probe) pairs run in that many worker
    processes (each with one BLAS thread, which is also faster per probe here).
    """
    tasks = [(key, name) for key in representations for name in probes]
    # Largest representations first, so the slowest jobs do not start last.
    tasks.sort(key=lambda t: -np.shape(representations[t[0]])[-1])
    args = [(representations[key], labels, (name,), test_fraction, seed, protocol) for key, name in tasks]
    if n_jobs == 1:
        outputs = [evaluate_probes(*a) for a in args]
    else:
        from joblib import Parallel, delayed
        outputs = Parallel(n_jobs=n_jobs)(delayed(evaluate_probes)(*a) for a in args)
    results = {key: {} for key in representations}
    for (key, name), out in zip(tasks, outputs):
        results[key]["settings"] = out["settings"]
        results[key][name] = out[name]
    return {key: {name: results[key][name] for name in ("settings",) + tuple(probes)} for key in representations}
