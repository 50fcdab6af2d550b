"""Every setting of a run, named once: the model (ModelConfig) nested in the training run
(TrainConfig). The flags of `python -m hvae_repr.train` (and the sweep launcher) are made
from these dataclasses (hvae_repr.cli); allowed values come from hvae_repr.choices, which names every
choice once without TensorFlow (so the launcher and the command lines load no TensorFlow to check them).
Layers are listed from z1 (next to the data) up.
"""
import dataclasses
import hashlib
import json
import math
import os
from typing import ClassVar

from hvae_repr import choices, data, rate_targets
from hvae_repr.cli import nested, setting


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    help_group: ClassVar[str] = "model"  # the heading of its flags in --help
    architecture: str = setting("mlp", "Networks. " + choices.describe(choices.ARCHITECTURES), choices.ARCHITECTURES)
    inference: str = setting("hvae", "Top-down inference. " + choices.describe(choices.INFERENCES), choices.INFERENCES)
    likelihood: str = setting("bernoulli", "p(x|z1). " + choices.describe(choices.LIKELIHOODS), choices.LIKELIHOODS)
    latent_dims: tuple = setting((), "Size of each latent layer, z1 first; the number of entries is the number "
                                     "of layers. Default: the architecture's (mlp 32,16; conv 16*channels,20).",
                                 item=int)
    top_latent: str = setting("gaussian", "Family of the top layer. " + choices.describe(choices.TOP_LATENTS),
                              choices.TOP_LATENTS)
    channels: int = setting(16, "conv: channels of every conv layer (c in the paper).")
    hidden_units: int = setting(256, "Units of the hidden dense layers.")
    gaussian_sigma: float = setting(0.0, "Standard deviation of the gaussian likelihood in data units (the "
                                         "initial value for gaussian_learned_sigma); 0 = the data set's default "
                                         "(the paper's 0.71 for cifar10 and svhn, else 0.03). D scales as "
                                         "1/(2 sigma^2), so sigma^2 rescales every beta.")
    num_mixtures: int = setting(5, "Components of discretized_logistic_mixture.")
    conditional_betas: bool = setting(False, "One model for every beta: each training example draws its own "
                                             "betas, log-uniformly in --beta_range, and every network sees them "
                                             "(FiLM of its hidden layers); evaluate it at any betas "
                                             "(python -m evaluation.evaluate --betas=...).")
    film_placement: str = setting("after_activation", "Where FiLM modulates a conditional model's hidden layers: "
                                                      "their output, or their pre-activation (the betas then also "
                                                      "gate which units pass the ReLU).", choices.FILM_PLACEMENTS)
    beta_range: tuple = setting((0.1, 10.0), "LOW,HIGH: the betas a conditional model is trained for (the paper's "
                                             "grid spans 0.1,10), and the range --target_rates keeps its betas in.",
                                item=float)
    beta_tilt: float = setting(0.0, "How a conditional model draws its training betas in --beta_range: 0 = "
                                    "log-uniformly; a != 0 = density proportional to exp(a u) over the normalized "
                                    "log beta u in [-1, 1] (a > 0 draws high betas exp(2 a) times as often as low).")
    input_shape: tuple = ()  # from the data set; not a flag

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        for name, registry in (("architecture", choices.ARCHITECTURES), ("inference", choices.INFERENCES),
                               ("likelihood", choices.LIKELIHOODS), ("top_latent", choices.TOP_LATENTS),
                               ("film_placement", choices.FILM_PLACEMENTS)):
            if getattr(self, name) not in registry:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; use one of {', '.join(registry)}")
        if self.film_placement != MODEL_DEFAULTS["film_placement"] and not self.conditional_betas:
            raise ValueError(f"--film_placement={self.film_placement} places the FiLM of a beta-conditional model; "
                             "add --conditional_betas (an ordinary model has none)")
        object.__setattr__(self, "beta_tilt", float(self.beta_tilt))
        if self.beta_tilt and not (self.conditional_betas and math.isfinite(self.beta_tilt)):
            raise ValueError(f"--beta_tilt={self.beta_tilt:g} tilts how a beta-conditional model draws its training "
                             "betas; it must be finite and needs --conditional_betas (an ordinary model trains at "
                             "--betas)")
        dims = tuple(int(d) for d in self.latent_dims) or choices.ARCHITECTURES[self.architecture].default_latent_dims(self)
        object.__setattr__(self, "latent_dims", dims)
        if min(dims) < 1:
            raise ValueError(f"--latent_dims must list one positive size per layer, z1 first (got {dims})")
        for name in ("channels", "hidden_units", "num_mixtures"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1 (got {getattr(self, name)})")
        if not (math.isfinite(self.gaussian_sigma) and self.gaussian_sigma >= 0):
            raise ValueError(f"--gaussian_sigma must be positive, or 0 for the data set's default "
                             f"(got {self.gaussian_sigma})")
        object.__setattr__(self, "beta_range", tuple(float(b) for b in self.beta_range))
        low_high = self.beta_range
        if len(low_high) != 2 or not (0 < low_high[0] <= low_high[1] < math.inf):
            raise ValueError(f"--beta_range must be LOW,HIGH with 0 < LOW <= HIGH (got {low_high})")
        if self.top_latent == "categorical" and dims[-1] < 2:
            raise ValueError("a categorical top layer needs at least 2 categories; raise the last --latent_dims entry")

    @property
    def num_layers(self):
        return len(self.latent_dims)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    help_group: ClassVar[str] = "training"
    dataset: str = setting("binary_digits", "Data set: " + ", ".join(data.DATASETS) +
                           ", or npz:PATH (arrays x_train, y_train, x_test, y_test). binary_digits (the "
                           "default) needs no download.", group="data")
    data_dir: str = setting("", "Folder with the data set's files ('' = ~/.hvae_repr/data).", group="data")
    model: ModelConfig = nested(ModelConfig)
    betas: tuple = setting((), "Rate weight of each layer, z1 first: --betas=b1,b2 weights R(z1|z2) with b1 and "
                               "R(z2) with b2. Default: 1 for every layer (the ELBO). A conditional model "
                               "(--conditional_betas) trains for every beta and reports its test set at these.",
                           item=float)
    target_rates: tuple = setting((), "Train to these rates instead of fixed betas: nats per example, z1 first, "
                                      "- for a layer whose beta stays at its --betas value (e.g. 40,-). Each "
                                      "targeted beta starts at its --betas value and is adapted during training "
                                      "by dual ascent on log beta (hvae_repr.rate_targets), inside --beta_range.",
                                  item=str)
    target_dual_step: float = setting(0.003, "--target_rates: step of the dual ascent on log beta per training "
                                             "step, per unit of log((rate average + 1) / (target + 1)): a time "
                                             "constant of about 1/step = 330 steps.")
    target_rate_decay: float = setting(0.99, "--target_rates: decay of the moving average of each layer's batch "
                                             "rate (0.99: about the last 100 steps).")
    epochs: int = setting(300, "Training epochs.")
    batch_size: int = setting(256, "Training batch size (the last partial batch of an epoch is dropped).")
    learning_rate: float = setting(3e-4, "Adam learning rate (with --lr_schedule=cosine: the first step's).")
    lr_schedule: str = setting("constant", "Learning rate over training: constant (the paper's), or cosine: "
                                           "from --learning_rate down to 0 at the last step of --epochs "
                                           "(cosine decay; Loshchilov & Hutter 2017).", ("constant", "cosine"))
    seed: int = setting(0, "Seed of every random choice: weights, shuffling, samples.")
    workdir: str = setting("", "Run folder ('' = runs/<name derived from every setting>). The same command "
                               "with the same workdir resumes.")
    kl_warmup_epochs: int = setting(-1, "Epochs over which every beta rises linearly from 0 (0 = off; -1 = the "
                                        "paper's: off for hvae, the first fifth of the epochs for ladder; the "
                                        "first fifth for a beta-conditional model and with --target_rates too; "
                                        "off for a run with --init_from).")
    gumbel_temperature: float = setting(1.0, "Categorical top layer: initial Gumbel-softmax temperature.")
    gumbel_min_temperature: float = setting(0.4, "Categorical top layer: lowest Gumbel-softmax temperature.")
    gumbel_anneal_rate: float = setting(0.007, "Temperature max(min, initial * exp(-rate * t)), t counted in "
                                               "--gumbel_anneal_every units (the paper: 0.007 per epoch).")
    gumbel_anneal_every: str = setting("epoch", "Unit of t in the temperature schedule.", ("epoch", "step"))
    max_bad_steps: int = setting(20, "Steps whose loss or gradient is NaN or inf are skipped; this many in a "
                                     "row stop training with an error.")
    checkpoint_every_secs: float = setting(30.0, "Seconds between checkpoints (taken at the end of an epoch, "
                                                 "and always after the last one).")
    images_every_epochs: int = setting(5, "Write reconstructions of test images and prior samples to TensorBoard "
                                          "every this many epochs, and after the last (0 = never).")
    export: bool = setting(True, "Write RUN/export/, the SavedModel of the encoder and decoder that "
                                 "hvae_repr.features reads, when training ends (--noexport leaves it out, e.g. "
                                 "for a grid nobody extracts features from; python -m hvae_repr.export "
                                 "--workdir=RUN writes it later).")
    threads: int = setting(0, "CPU threads for TensorFlow (0 = its default).")
    log_every: int = setting(0, "Print a compact line every this many epochs, and after the first and the last "
                                "(0 = about 20 lines per run); metrics.jsonl gets every epoch, a terminal a live "
                                "line too.")
    strategy: str = setting("default", "Data-parallel training (hvae_repr.distribution): default: one device; "
                                       "mirrored: one replica per local GPU (or per --cpu_replicas logical CPU); "
                                       "multi_worker: one replica per process (or machine) named in TF_CONFIG. "
                                       "--batch_size stays the global batch.",
                            ("default", "mirrored", "multi_worker"))
    cpu_replicas: int = setting(0, "mirrored on a machine without GPUs: split the CPU into this many logical "
                                   "devices, one replica each (0 = one per GPU, or one CPU replica).")
    init_from: str = setting("", "Folder of a finished run whose last checkpoint initialises the weights (the "
                                 "same model settings; a fresh optimizer); '' = random initial weights.")
    fixed_condition: bool = setting(False, "A beta-conditional model trains at --betas only (its networks see "
                                           "them, its rates are weighted by them): the refinement of a point, "
                                           "with --init_from its conditional model (hvae_repr.warm_start).")
    balance_betas: bool = setting(False, "A beta-conditional model divides each example's objective by the "
                                         "running mean objective at its betas (hvae_repr.loss_balance), so that "
                                         "every beta counts alike in the gradient, not by its objective's size.")
    test_every_epochs: int = setting(0, "Every this many epochs, also pass over the test set and add its rates, "
                                        "distortion and objective (at --betas) to metrics.jsonl (key test) and "
                                        "TensorBoard (0 = never).")

    def __post_init__(self):
        dataset_info = data.dataset_info(self.dataset)
        model = self.model
        if not model.gaussian_sigma:
            model = dataclasses.replace(model, gaussian_sigma=dataset_info.gaussian_sigma)
        object.__setattr__(self, "model", model)
        betas = tuple(float(b) for b in self.betas) or (1.0,) * model.num_layers
        object.__setattr__(self, "betas", betas)
        if len(betas) != model.num_layers:
            raise ValueError(f"--betas has {len(betas)} values but --latent_dims has {model.num_layers} layers; "
                             f"give one beta per layer, z1 first")
        if min(betas) < 0 or not all(math.isfinite(b) for b in betas):
            raise ValueError(f"--betas must be finite and non-negative (got {betas})")
        object.__setattr__(self, "target_rates", rate_targets.parse_targets(self.target_rates, model.num_layers))
        if self.target_rates:
            rate_targets.check_config(self)
        if self.log_every < 0:
            raise ValueError(f"--log_every must be at least 1, or 0 for about 20 lines per run (got {self.log_every})")
        for name in ("epochs", "batch_size", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1 (got {getattr(self, name)})")
        if self.cpu_replicas < 0 or (self.cpu_replicas and self.strategy != "mirrored"):
            raise ValueError(f"--cpu_replicas={self.cpu_replicas} needs --strategy=mirrored and must be positive "
                             f"(or 0 for none)")
        if self.cpu_replicas and self.batch_size % self.cpu_replicas:
            raise ValueError(f"--batch_size={self.batch_size} does not divide into {self.cpu_replicas} replicas "
                             f"(--cpu_replicas); use a multiple of {self.cpu_replicas}")
        if self.test_every_epochs < 0:
            raise ValueError(f"--test_every_epochs must be >= 0, 0 meaning never (got {self.test_every_epochs})")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning_rate must be positive (got {self.learning_rate})")
        if self.fixed_condition and not model.conditional_betas:
            raise ValueError("--fixed_condition fixes the betas a beta-conditional model sees; it needs "
                             "--conditional_betas (a model trained at fixed betas is trained at --betas anyway)")
        if self.balance_betas and not (model.conditional_betas and choices.LIKELIHOODS[model.likelihood].discrete):
            raise ValueError("--balance_betas weighs a beta-conditional model's examples by their objective, which "
                             "must be a positive number of nats: it needs --conditional_betas and a discrete "
                             f"likelihood ({', '.join(n for n, l in choices.LIKELIHOODS.items() if l.discrete)}; "
                             f"the {model.likelihood} likelihood's distortion is a density)")
        if self.init_from:
            object.__setattr__(self, "init_from", os.path.abspath(self.init_from))
        if self.kl_warmup_epochs < 0:
            # A conditional model without warm-up loses its top layer at every beta in its second epoch
            # (measured on binarized MNIST, docs/results/conditional.md), so it warms up like the ladder.
            # Target rates too: the betas adapt only after the warm-up, once the model has learned enough that
            # its rates answer to them (without it, they chase the untrained model's low rates and overshoot).
            # A warm-started run starts from trained weights: no warm-up.
            warm = (model.inference == "ladder" or model.conditional_betas or bool(self.target_rates)) \
                and not self.init_from
            object.__setattr__(self, "kl_warmup_epochs", round(0.2 * self.epochs) if warm else 0)
        if not 0 < self.gumbel_min_temperature <= self.gumbel_temperature:
            raise ValueError("--gumbel_min_temperature must be positive and at most --gumbel_temperature")
        if not self.workdir:
            object.__setattr__(self, "workdir", os.path.join("runs", self.run_name()))

    def with_input_shape(self, input_shape):
        return dataclasses.replace(self, model=dataclasses.replace(self.model, input_shape=input_shape))

    def result_settings(self):
        """Every setting that can change what is trained (all but where files live and how fast)."""
        values = dataclasses.asdict(self)
        for name in RESUMABLE_DIFFERENCES + ("workdir",):
            values.pop(name)
        values["model"].pop("input_shape")  # follows from the data set
        for name, switch in LATER_SETTINGS.items():
            if not getattr(self, switch):
                values.pop(name)
        for name in LATER_MODEL_SETTINGS:
            if getattr(self.model, name) == MODEL_DEFAULTS[name]:
                values["model"].pop(name)
        for name in LATER_TRAIN_SETTINGS:
            if getattr(self, name) == TRAIN_DEFAULTS[name]:
                values.pop(name)
        return values

    def run_name(self):
        """A folder name derived from every setting that can differ between runs: the main ones in
        words, all of them (these included) in a hash, so that no two different runs share a name."""
        m = self.model
        words = [self.dataset.replace(os.sep, "_").replace(":", "_"), m.architecture, m.inference, m.likelihood,
                 "z" + "-".join(map(str, m.latent_dims)), m.top_latent,
                 "betas" + "-".join(f"{b:g}" for b in self.betas), f"seed{self.seed}"]
        if self.target_rates:
            words.insert(-1, "rates" + "-".join(t.replace(rate_targets.FIXED, "x") for t in self.target_rates))
        digest = hashlib.sha1(json.dumps(self.result_settings(), sort_keys=True).encode()).hexdigest()[:8]
        return "_".join(words + [digest])

    def to_json(self):
        """The settings as JSON values (tuples as lists), as config.json holds them."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, values):
        values = dict(values)
        model = values.pop("model", None)
        if not isinstance(model, dict):
            raise ValueError("config.json is not a settings file of this hvae_repr version (no 'model' section); "
                             "train the run again with this version")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(model=ModelConfig(**model), **{k: v for k, v in values.items() if k in known})


# Settings added after runs had been named from the hash of every setting, each with the setting that switches
# its feature on: while that is off (at its default) they change nothing and are left out of the settings (and
# the name's hash), so that the runs (and sweeps) named before keep their names.
LATER_SETTINGS = {"target_rates": "target_rates", "target_dual_step": "target_rates",
                  "target_rate_decay": "target_rates", "init_from": "init_from", "fixed_condition": "fixed_condition",
                  "balance_betas": "balance_betas"}

# Model settings added later: in the hash only when they differ from their default, so that the runs
# named before keep their names.
LATER_MODEL_SETTINGS = ("film_placement", "beta_tilt")
MODEL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
# The same for training settings.
LATER_TRAIN_SETTINGS = ("lr_schedule",)
TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

# Settings that may differ when a run is resumed: they do not change what is trained. The strategy and
# replica count change how each step is computed, not what: the loss, metrics and gradients are
# per-example means over the same global batch; only the order of the reductions and each replica's
# sampling noise differ (hvae_repr.distribution), as a different thread count changes summation order.
RESUMABLE_DIFFERENCES = ("data_dir", "threads", "checkpoint_every_secs", "images_every_epochs", "max_bad_steps",
                         "log_every", "strategy", "cpu_replicas", "test_every_epochs", "export")
