"""Likelihoods p(x | z1): decoder outputs -> TFP distributions over the data.

Every likelihood takes the decoder's raw output of shape [B, *input_shape, P] and returns a
distribution whose event shape is the input shape, so `log_prob` gives one number per
example (nats). The likelihood owns its output head: `params_per_value(config)` says how
many decoder outputs (P) it needs per data value. Adding a likelihood takes one class, named
with `choice=` after its entry in hvae_repr.choices.LIKELIHOODS (its description and whether
it is discrete).
"""
from hvae_repr import choices
from hvae_repr.tf_env import tf

import keras
import tensorflow_probability as tfp

tfd = tfp.distributions


class Likelihood(keras.layers.Layer):
    """Base class. `event(x)` maps data in [0, 1] to the distribution's support."""

    # Set for each subclass from hvae_repr.choices.LIKELIHOODS[choice]: its description and whether
    # log_prob is a probability mass (D a code length, which T1 compares with the data's entropy).
    choice, description, discrete = "", "", False

    def __init_subclass__(cls, choice="", **kwargs):
        super().__init_subclass__(**kwargs)
        cls.choice = choice
        cls.description, cls.discrete = choices.LIKELIHOODS[choice]

    def __init__(self, event_ndims, config, **kwargs):
        super().__init__(**kwargs)
        self.event_ndims = event_ndims
        self.built = True

    @classmethod
    def params_per_value(cls, config):
        return 1

    def event(self, x):
        return x

    def distribution(self, params):
        raise NotImplementedError

    def mean(self, params):
        """Mean of p(x | z1) in data space, shape [B, *input_shape]."""
        raise NotImplementedError

    def _independent(self, dist):
        return tfd.Independent(dist, reinterpreted_batch_ndims=self.event_ndims)


class Bernoulli(Likelihood, choice="bernoulli"):
    # float dtype so that grey values in [0, 1] get the cross-entropy log-likelihood.
    def distribution(self, params):
        return self._independent(tfd.Bernoulli(logits=params[..., 0], dtype=tf.float32))

    def mean(self, params):
        return tf.sigmoid(params[..., 0])


class Gaussian(Likelihood, choice="gaussian"):
    """Gaussian with a fixed standard deviation `sigma` (in data units)."""

    def __init__(self, event_ndims, config, **kwargs):
        super().__init__(event_ndims, config, **kwargs)
        if not config.gaussian_sigma > 0:
            raise ValueError("gaussian_sigma is 0, which stands for the data set's default; TrainConfig sets it, "
                             "or set ModelConfig(gaussian_sigma=...) yourself")
        self.sigma = float(config.gaussian_sigma)

    def scale(self):
        return tf.constant(self.sigma, tf.float32)

    def distribution(self, params):
        return self._independent(tfd.Normal(loc=params[..., 0], scale=self.scale()))

    def mean(self, params):
        return params[..., 0]


class GaussianLearnedSigma(Gaussian, choice="gaussian_learned_sigma"):
    """Gaussian with one learned standard deviation shared by all pixels."""

    def __init__(self, event_ndims, config, **kwargs):
        super().__init__(event_ndims, config, **kwargs)
        self.log_sigma = self.add_weight(
            shape=(), name="log_sigma", trainable=True,
            initializer=keras.initializers.Constant(float(tf.math.log(self.sigma))))

    def scale(self):
        return tf.exp(tf.convert_to_tensor(self.log_sigma))


class DiscretizedLogisticMixture(Likelihood, choice="discretized_logistic_mixture"):
    """Per-value mixture of K logistics discretized to the 256 levels of 8-bit data.

    Built from TFP pieces: QuantizedDistribution puts the mass of the bin
    (y - 0.5, y + 0.5] on each integer y, with the tails folded into 0 and 255,
    so the 256 probabilities sum to one exactly.
    """

    LEVELS = 256
    _MEAN_CHUNK = 16  # levels summed at once by `mean` (bounds its memory)

    def __init__(self, event_ndims, config, **kwargs):
        super().__init__(event_ndims, config, **kwargs)
        self.num_mixtures = int(config.num_mixtures)

    @classmethod
    def params_per_value(cls, config):
        return 3 * config.num_mixtures

    def event(self, x):
        return tf.round(x * 255.0)

    def _split(self, params):
        logits, loc, raw_scale = tf.split(params, 3, axis=-1)
        loc = 127.5 * (1.0 + loc)                      # pixel units, 0 maps to mid-grey
        scale = 32.0 * tf.nn.softplus(raw_scale) + 0.05  # pixel units
        return logits, loc, scale

    def distribution(self, params):
        logits, loc, scale = self._split(params)
        # QuantizedDistribution's bin for y is (y - 1, y]; shift by 0.5 to centre it.
        levels = tfd.QuantizedDistribution(
            tfd.Logistic(loc=loc - 0.5, scale=scale), low=0.0, high=255.0)
        mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=logits), levels)
        return self._independent(mixture)

    def mean(self, params):
        """Exact mean over the 256 levels, in [0, 1]: E[y] = sum_{k=1}^{255} P(y >= k), and for one
        component P(y >= k) = sigmoid((loc - k + 0.5) / scale) (its bins are (k - 0.5, k + 0.5])."""
        logits, loc, scale = self._split(params)
        weights = tf.nn.softmax(logits, axis=-1)
        total = tf.zeros_like(loc)
        for first in range(1, self.LEVELS, self._MEAN_CHUNK):
            k = tf.range(first, min(first + self._MEAN_CHUNK, self.LEVELS), dtype=loc.dtype)
            total += tf.reduce_sum(tf.sigmoid((loc[..., None] - k + 0.5) / scale[..., None]), axis=-1)
        return tf.reduce_sum(weights * total, axis=-1) / 255.0


LIKELIHOODS = {cls.choice: cls for cls in (Bernoulli, Gaussian, GaussianLearnedSigma, DiscretizedLogisticMixture)}
choices.check_implemented(choices.LIKELIHOODS, LIKELIHOODS, "hvae_repr.likelihoods")


def make_likelihood(config):
    """The likelihood layer of a ModelConfig."""
    return LIKELIHOODS[config.likelihood](len(config.input_shape), config, name="likelihood")
