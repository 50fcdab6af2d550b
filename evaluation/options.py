"""The settings of an evaluation (python -m evaluation.evaluate's flags, and a sweep's --eval_ flags), with
no TensorFlow: the sweep launcher builds its points' command lines from them without loading it."""
import dataclasses
from typing import ClassVar

from evaluation import probes
from hvae_repr.batching import DEFAULT_BATCH_SIZE
from hvae_repr.cli import setting


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    help_group: ClassVar[str] = "evaluation"
    betas: tuple = setting((), "The betas to evaluate a beta-conditional model at, z1 first (empty = the run's "
                               "--betas); a model trained at fixed betas is evaluated at those.", item=float)
    seed: int = setting(-1, "Seed of posterior and prior samples (-1 = the run's training seed, so that the "
                            "rates equal train_result.json's).")
    batch_size: int = setting(DEFAULT_BATCH_SIZE, "Examples per model call (the rates' samples depend on it, "
                                                  "like the seed).")
    max_test: int = setting(0, "Evaluate only the first N test examples (0 = all).")
    iw_samples: int = setting(0, "Samples per example of the importance-weighted log-likelihood bound (0 = off).")
    layers: str = setting("all", "Layers that get probes and mutual information: all (and all side by side), or "
                                 "only the top layer (what T2 needs; cheaper, for grids).", ("all", "top"))
    probe_samples: bool = setting(False, "Also probe samples z ~ q(z|x) of every layer (the top layer's samples "
                                         "are always probed, for T2).")
    probe_protocol: str = setting(probes.DEFAULT_PROTOCOL, "How the probes see the features. " + "; ".join(
        f"{name}: {p.description}" for name, p in probes.PROTOCOLS.items()), probes.PROTOCOLS)
    probe_seed: int = setting(0, "Seed of the probes' stratified train/test split (keep it fixed across a sweep).")
    probe_test_fraction: float = setting(0.0, "Fraction of the test set held out to score the probes (0 = the "
                                              "protocol's: 0.2 for paper, 0.25 for standardized).")
    probe_names: tuple = setting(tuple(probes.PROBES), "Probes to run: " + ", ".join(probes.PROBES) + ".", item=str)
    probe_jobs: int = setting(2, "Worker processes for the probes (1 = run them in this process, -1 = one per "
                                 "CPU core).")
    confidence: float = setting(0.99, "Confidence level of the intervals behind every `violated` flag.")
    num_generated: int = setting(10000, "Prior samples scored by the reference classifier.")
    score_splits: int = setting(10, "Splits for the mean and std of the Inception-style score.")
    classifier_dir: str = setting("", "Cache folder of reference classifiers ('' = $HVAE_REPR_CLASSIFIER_DIR or "
                                      "~/.hvae_repr/classifiers); one subfolder per data set.")
    classifier_epochs: int = setting(3, "Training epochs of the reference classifier (when it is not cached).")
    classifier_min_steps: int = setting(1000, "Train the reference classifier for at least this many steps "
                                              "(more epochs on small sets).")
    classifier_max_train: int = setting(0, "Train the reference classifier on at most N examples (0 = all).")
    figures: bool = setting(True, "Draw RUN/figures/: reconstructions, prior samples, and for each layer samples "
                                  "with only that layer drawn anew (image data only; evaluation/model_figures.py).")
    generative_draws: int = setting(10000, "Prior draws of z_L for I_p(z_L; y_hat), each decoded and labelled by "
                                           "the reference classifier; a categorical top divides them equally among "
                                           "its categories, rounded up (0 = off).")
    knn_k: int = setting(5, "Neighbours of the k-NN estimates: I_p(z_L; y_hat) of a Gaussian top, and I_q(y; z_l) "
                            "from posterior samples of every measured layer (0 = no k-NN estimates).")
    cluster_max_train: int = setting(0, "Categorical top: map each category to its majority label on at most N "
                                        "training images for the clustering accuracy (0 = all).")

    def __post_init__(self):
        for name in ("batch_size", "num_generated", "score_splits", "classifier_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("max_test", "iw_samples", "classifier_min_steps", "classifier_max_train", "generative_draws",
                     "knn_k", "cluster_max_train"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, with 0 meaning off or all (got {getattr(self, name)})")
        if not 0 < self.confidence < 1:
            raise ValueError(f"--confidence must lie strictly between 0 and 1 (got {self.confidence})")
        if not 0 <= self.probe_test_fraction < 1:
            raise ValueError(f"--probe_test_fraction must lie in [0, 1), 0 meaning the protocol's "
                             f"(got {self.probe_test_fraction})")
        if self.probe_jobs < 1 and self.probe_jobs != -1:
            raise ValueError(f"--probe_jobs must be at least 1, or -1 for one per CPU core (got {self.probe_jobs})")
        unknown = set(self.probe_names) - set(probes.PROBES)
        if unknown or not self.probe_names:
            raise ValueError(f"--probe_names must list probes among {', '.join(probes.PROBES)} "
                             f"(got {','.join(self.probe_names)})")


# Settings that change no number of the result (left out of the overwrite check).
NEUTRAL_SETTINGS = ("probe_jobs", "figures")
# Points of a beta-conditional model evaluated per test-set pass by evaluation.grid (the first chunk of a
# grid spread over a Ray cluster is this many points).
POINTS_PER_PASS = 4
