"""Every choice of the model, named once with what the settings and flags need to know about it, and no
TensorFlow: the configs (hvae_repr.config), the command lines and the sweep launcher check and describe
settings from here without loading TensorFlow (seconds per process), while the modules that implement a
choice (hvae_repr.networks, hvae_repr.likelihoods, hvae_repr.conditioning) look their code up by the same
names and check at import that they implement exactly these.
"""
from typing import Callable, NamedTuple


class Choice(NamedTuple):
    description: str


class Architecture(NamedTuple):
    description: str
    default_latent_dims: Callable  # ModelConfig -> sizes, z1 first


class Likelihood(NamedTuple):
    description: str
    # True when log_prob is a probability mass (so D is a code length and T1 compares it with the data's
    # discrete entropy); False for a density.
    discrete: bool


ARCHITECTURES = {
    "mlp": Architecture("dense layers for any input (images are flattened)", lambda config: (32, 16)),
    # conv: z1 is the reference model's 4x4xchannels map, z2 has the paper's 20 dimensions.
    "conv": Architecture("the paper's reference conv model for 28x28xC or 32x32xC images",
                         lambda config: (16 * config.channels, 20)),
}
INFERENCES = {
    "hvae": Choice("q(z_l|z_{l+1},x) from features of x joined with the sampled layer above"),
    "ladder": Choice("the paper's ladder variant: a bottom-up estimate from a trunk shared by all layers, merged "
                     "with the prior by precision weighting"),
}
TOP_LATENTS = {
    "gaussian": Choice("diagonal Gaussian"),
    "categorical": Choice("categorical with (last --latent_dims entry) categories, Gumbel-softmax relaxed in "
                          "training, hard one-hot at evaluation"),
}
LIKELIHOODS = {
    "bernoulli": Likelihood("binary data (on grey values its D is a cross-entropy, not a code length)", True),
    "gaussian": Likelihood("fixed --gaussian_sigma (a density: D can be negative)", False),
    "gaussian_learned_sigma": Likelihood("one learned sigma, starting at --gaussian_sigma", False),
    "discretized_logistic_mixture": Likelihood("8-bit images, --num_mixtures logistics per value", True),
}
# Where FiLM acts on a conditional model's hidden layer: on its output (after the ReLU), or on its
# pre-activation, so that the betas also choose which units pass the ReLU (as the gated pre-activations of
# Multi-Rate VAE, Bae et al. 2023, do).
FILM_PLACEMENTS = {
    "after_activation": Choice("FiLM of the hidden layer's output"),
    "before_activation": Choice("FiLM of its pre-activation (the betas then also gate which units pass the ReLU)"),
}


def describe(registry):
    """'name: description; ...' of a registry, for a flag's help."""
    return "; ".join(f"{name}: {entry.description}" for name, entry in registry.items())


def check_implemented(registry, implemented, what):
    """Raises at import when a module implements other names than the registry lists."""
    if set(registry) != set(implemented):
        raise RuntimeError(f"{what} implements {sorted(implemented)} but hvae_repr.choices lists {sorted(registry)}")
