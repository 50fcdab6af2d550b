"""TrainConfig: every setting of a training run (the flags of `python -m hvae_repr.train`)."""
import dataclasses
import math
import os


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    dataset: str = "digits"
    data_dir: str = ""
    architecture: str = "mlp"
    inference: str = "hvae"
    likelihood: str = "bernoulli"
    latent_dims: tuple = ()          # z1 first; () = the architecture's default
    betas: tuple = ()                # z1 first; () = 1 for every layer
    epochs: int = 300
    batch_size: int = 256
    learning_rate: float = 3e-4
    seed: int = 0
    workdir: str = ""                # "" = runs/<dataset>_<architecture>_<inference>_betas<...>_seed<seed>
    kl_warmup_epochs: int = 30
    channels: int = 16
    hidden_units: int = 256
    gaussian_sigma: float = 0.1
    num_mixtures: int = 5
    top_latent: str = "gaussian"
    gumbel_temperature: float = 1.0
    gumbel_min_temperature: float = 0.5
    gumbel_anneal_rate: float = 1e-4  # per step: tau = max(min, tau0 * exp(-rate * step))
    checkpoint_every_secs: float = 30.0  # also saved after the last epoch
    threads: int = 0                  # 0 = TensorFlow's default

    def __post_init__(self):
        dims = tuple(int(d) for d in self.latent_dims) or self.default_latent_dims()
        betas = tuple(float(b) for b in self.betas) or (1.0,) * len(dims)
        object.__setattr__(self, "latent_dims", dims)
        object.__setattr__(self, "betas", betas)
        if len(betas) != len(dims):
            raise ValueError(f"--betas has {len(betas)} values but --latent_dims has {len(dims)} layers; "
                             f"give one beta per layer, z1 first")
        if min(betas) < 0 or not all(math.isfinite(b) for b in betas):
            raise ValueError(f"--betas must be finite and non-negative (got {betas})")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1 (got {getattr(self, name)})")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning_rate must be positive (got {self.learning_rate})")
        if not self.workdir:
            name = self.dataset.replace(os.sep, "_").replace(":", "_")
            tag = "-".join(f"{b:g}" for b in betas)
            object.__setattr__(self, "workdir", os.path.join(
                "runs", f"{name}_{self.architecture}_{self.inference}_betas{tag}_seed{self.seed}"))

    def default_latent_dims(self):
        # conv: z1 is the reference model's 4x4xchannels map, z2 has the paper's 20 dimensions.
        return (16 * self.channels, 20) if self.architecture == "conv" else (32, 16)

    def model_config(self, input_shape):
        from hvae_repr.model import ModelConfig
        return ModelConfig(input_shape=tuple(input_shape), latent_dims=self.latent_dims,
                           architecture=self.architecture, inference=self.inference, likelihood=self.likelihood,
                           channels=self.channels, hidden_units=self.hidden_units,
                           gaussian_sigma=self.gaussian_sigma, num_mixtures=self.num_mixtures,
                           top_latent=self.top_latent)

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# Settings that may differ when a run is resumed: they do not change what is trained.
RESUMABLE_DIFFERENCES = ("data_dir", "threads", "checkpoint_every_secs")
