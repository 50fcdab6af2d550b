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

from hvae_repr.tf_env import tf

import keras
from keras import layers

EMBEDDING_UNITS = 64


def normalized_log_betas(betas, beta_range):
    """log beta mapped to [-1, 1] over the beta range (outside the range: beyond +-1, extrapolation)."""
    low, high = (math.log(b) for b in beta_range)
    centre, half_width = (low + high) / 2, max((high - low) / 2, 1e-6)
    return (tf.math.log(tf.convert_to_tensor(betas, tf.float32)) - centre) / half_width


def sample_betas(batch, num_layers, beta_range, seed):
    """[batch, num_layers] betas, each drawn log-uniformly in beta_range (stateless, from `seed`)."""
    low, high = (math.log(b) for b in beta_range)
    return tf.exp(tf.random.stateless_uniform((batch, num_layers), seed, minval=low, maxval=high))


class BetaEmbedding(layers.Layer):
    """Normalized log betas [B, L] -> an embedding [B, EMBEDDING_UNITS] shared by every FiLM layer."""

    def __init__(self, beta_range, **kwargs):
        super().__init__(**kwargs)
        self.beta_range = tuple(beta_range)
        self.hidden = layers.Dense(EMBEDDING_UNITS, activation="relu")
        self.out = layers.Dense(EMBEDDING_UNITS, activation="relu")

    def call(self, betas):
        return self.out(self.hidden(normalized_log_betas(betas, self.beta_range)))


class FiLM(layers.Layer):
    """h -> h * (1 + gamma(e)) + delta(e), one (gamma, delta) per channel (the last axis of h)."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.affine = layers.Dense(2 * channels, kernel_initializer="zeros", bias_initializer="zeros")

    def call(self, h, embedding):
        gamma, delta = tf.split(self.affine(embedding), 2, axis=-1)
        shape = tf.concat([tf.shape(gamma)[:1], tf.ones(len(h.shape) - 2, tf.int32), [self.channels]], 0)
        return h * (1.0 + tf.reshape(gamma, shape)) + tf.reshape(delta, shape)


def channels_of(layer):
    """The number of output channels of a dense or convolutional layer."""
    return layer.units if isinstance(layer, layers.Dense) else layer.filters


class Modulated(layers.Layer):
    """A hidden layer followed by FiLM with the betas' embedding: call(x, embedding)."""

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer
        self.film = FiLM(channels_of(layer))

    def call(self, x, embedding):
        return self.film(self.layer(x), embedding)


def modulated(layer, conditional):
    """`layer` wrapped in Modulated when the model is conditional and the layer is hidden (ReLU), else
    `layer` itself (call either with `apply`)."""
    hidden = getattr(layer, "activation", None) is keras.activations.relu
    if conditional and hidden:
        return Modulated(layer, name=f"{layer.name}_film")
    return layer


def apply(layer, x, embedding):
    """layer(x), with the betas' embedding for a Modulated layer."""
    return layer(x, embedding) if isinstance(layer, Modulated) else layer(x)
