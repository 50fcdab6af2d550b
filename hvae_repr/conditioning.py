"""Beta-conditional models: one network for every point of the rate plane.

Loss-conditional training (Dosovitskiy & Djolonga, "You Only Train Once", ICLR 2020), per layer:
each training example draws its own betas (beta_1, ..., beta_L), independently per layer and
log-uniformly in the model's beta range, its rates are weighted by them, and every network of the
model (inference and generative) sees them through feature-wise affine modulation (FiLM, Perez et
al. 2018) of its hidden layers: h -> h * (1 + gamma(e)) + delta(e), with e a small network's
embedding of the normalized log betas and (gamma, delta) one dense layer per hidden layer, started
at zero so that a new conditional model computes what the unconditional one does.
"""
import math

from hvae_repr import choices
from hvae_repr.tf_env import tf

import keras
from keras import layers

EMBEDDING_UNITS = 64


def normalized_log_betas(betas, beta_range):
    """log beta mapped to [-1, 1] over the beta range (outside the range: beyond +-1, extrapolation)."""
    low, high = (math.log(b) for b in beta_range)
    centre, half_width = (low + high) / 2, max((high - low) / 2, 1e-6)
    return (tf.math.log(tf.convert_to_tensor(betas, tf.float32)) - centre) / half_width


def sample_betas(batch, num_layers, beta_range, seed, tilt=0.0):
    """[batch, num_layers] betas drawn independently in beta_range (stateless, from `seed`): log-uniformly, or
    with `tilt` a != 0 with density proportional to exp(a u) over the normalized log beta u in [-1, 1] (a > 0
    draws high betas more often: the density at the range's top is exp(2 a) times that at its bottom)."""
    low, high = (math.log(b) for b in beta_range)
    if not tilt:  # the log-uniform draw, kept in its own form so that untilted runs draw what they always drew
        return tf.exp(tf.random.stateless_uniform((batch, num_layers), seed, minval=low, maxval=high))
    # the inverse of the tilted density's CDF, (exp(a (u + 1)) - 1) / (exp(2 a) - 1), at a uniform draw
    fraction = tf.math.log1p(tf.random.stateless_uniform((batch, num_layers), seed) * math.expm1(2.0 * tilt)) \
        / (2.0 * tilt)
    return tf.exp(low + (high - low) * fraction)


def training_betas(batch, num_layers, beta_range, seed, fixed=None, tilt=0.0):
    """The betas [batch, num_layers] of a training batch: drawn (sample_betas), or `fixed` ([L]) for every
    example (TrainConfig.fixed_condition: a conditional model refined at one point)."""
    if fixed is not None:
        return tf.broadcast_to(tf.constant(fixed, tf.float32)[None], (batch, num_layers))
    return sample_betas(batch, num_layers, beta_range, seed, tilt)


class Sites:
    """The FiLM sites of one model: each hidden layer registers its channel count and gets an index."""

    def __init__(self, placement="after_activation"):
        if placement not in choices.FILM_PLACEMENTS:  # ModelConfig.film_placement
            raise ValueError(f"unknown FiLM placement {placement!r}; use one of "
                             f"{', '.join(choices.FILM_PLACEMENTS)}")
        self.placement = placement
        self.channels = []

    def add(self, channels):
        self.channels.append(int(channels))
        return len(self.channels) - 1


class BetaEmbedding(layers.Layer):
    """Normalized log betas [B, L] -> the FiLM parameters of every site: a list, one [B, 2 C] per site.

    One dense layer makes every site's parameters and one split hands them out, so the embedding has a
    single consumer: the gradients of its many sites then meet in a concatenation, whose result does not
    depend on the order of additions (summing 3 or more contributions in a traced-dependent order would
    make training differ in the last bits between runs)."""

    def __init__(self, beta_range, sites, **kwargs):
        super().__init__(**kwargs)
        self.beta_range = tuple(beta_range)
        self.sizes = [2 * c for c in sites.channels]
        self.hidden = layers.Dense(EMBEDDING_UNITS, activation="relu", name="hidden")
        self.out = layers.Dense(EMBEDDING_UNITS, activation="relu", name="out")
        # Zeros: a new conditional model computes what the unconditional one does.
        self.film = layers.Dense(sum(self.sizes), kernel_initializer="zeros", bias_initializer="zeros", name="film")

    def call(self, betas):
        embedding = self.out(self.hidden(normalized_log_betas(betas, self.beta_range)))
        return tf.split(self.film(embedding), self.sizes, axis=-1)


def film(h, params):
    """h -> h * (1 + gamma) + delta, with params = [gamma, delta] per channel (the last axis of h)."""
    gamma, delta = tf.split(params, 2, axis=-1)
    shape = tf.concat([tf.shape(gamma)[:1], tf.ones(len(h.shape) - 2, tf.int32), tf.shape(gamma)[1:]], 0)
    return h * (1.0 + tf.reshape(gamma, shape)) + tf.reshape(delta, shape)


def channels_of(layer):
    """The number of output channels of a dense or convolutional layer."""
    return layer.units if isinstance(layer, layers.Dense) else layer.filters


class Modulated(layers.Layer):
    """A hidden layer with FiLM of its site's parameters, on its output or (sites.placement
    before_activation) on its pre-activation: call(x, film_params)."""

    def __init__(self, layer, sites, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer
        self.site = sites.add(channels_of(layer))
        self.activation = None
        if sites.placement == "before_activation":  # the layer computes its pre-activation; FiLM, then ReLU
            self.activation, layer.activation = layer.activation, keras.activations.linear

    def call(self, x, film_params):
        h = film(self.layer(x), film_params[self.site])
        return h if self.activation is None else self.activation(h)


def modulated(layer, sites):
    """`layer` wrapped in Modulated when the model is conditional (`sites` is its Sites) and the layer is
    hidden (ReLU), else `layer` itself (call either with `apply`)."""
    hidden = getattr(layer, "activation", None) is keras.activations.relu
    if sites is not None and hidden:
        return Modulated(layer, sites, name=f"film_{len(sites.channels)}")
    return layer


def apply(layer, x, film_params):
    """layer(x), with the FiLM parameters for a Modulated layer."""
    return layer(x, film_params) if isinstance(layer, Modulated) else layer(x)
