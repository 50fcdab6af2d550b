"""Likelihoods p(x | z1): decoder outputs -> TFP distributions over the data.

Every likelihood takes the decoder's raw output of shape [B, *input_shape, P]
(P = `params_per_value`) and returns a distribution whose event shape is the
input shape, so `log_prob` gives one number per example (nats).
"""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned_sigma",
               "discretized_logistic_mixture")


class Likelihood(keras.layers.Layer):
    """Base class. `event(x)` maps data in [0, 1] to the distribution's support."""

    params_per_value = 1

    def __init__(self, event_ndims, **kwargs):
        super().__init__(**kwargs)
        self.event_ndims = event_ndims
        self.built = True

    def event(self, x):
        return x

    def distribution(self, params):
        raise NotImplementedError

    def mean(self, params):
        """Mean of p(x | z1) in data space, shape [B, *input_shape]."""
        raise NotImplementedError

    def _independent(self, dist):
        return tfd.Independent(dist, reinterpreted_batch_ndims=self.event_ndims)


class Bernoulli(Likelihood):
    # float dtype so that grey values in [0, 1] get the cross-entropy log-likelihood.
    def distribution(self, params):
        return self._independent(tfd.Bernoulli(logits=params[..., 0], dtype=tf.float32))

    def mean(self, params):
        return tf.sigmoid(params[..., 0])


class Gaussian(Likelihood):
    """Gaussian with a fixed standard deviation `sigma` (in data units)."""

    def __init__(self, event_ndims, sigma, **kwargs):
        super().__init__(event_ndims, **kwargs)
        self.sigma = float(sigma)

    def scale(self):
        return tf.constant(self.sigma, tf.float32)

    def distribution(self, params):
        return self._independent(tfd.Normal(loc=params[..., 0], scale=self.scale()))

    def mean(self, params):
        return params[..., 0]


class GaussianLearnedSigma(Gaussian):
    """Gaussian with one learned standard deviation shared by all pixels."""

    def __init__(self, event_ndims, sigma, **kwargs):
        super().__init__(event_ndims, sigma, **kwargs)
        self.log_sigma = self.add_weight(
            shape=(), name="log_sigma", trainable=True,
            initializer=keras.initializers.Constant(float(tf.math.log(sigma))))

    def scale(self):
        return tf.exp(tf.convert_to_tensor(self.log_sigma))


class DiscretizedLogisticMixture(Likelihood):
    """Per-value mixture of K logistics discretized to the 256 levels of 8-bit data.

    Built from TFP pieces: QuantizedDistribution puts the mass of the bin
    (y - 0.5, y + 0.5] on each integer y, with the tails folded into 0 and 255,
    so the 256 probabilities sum to one exactly.
    """

    def __init__(self, event_ndims, num_mixtures, **kwargs):
        super().__init__(event_ndims, **kwargs)
        self.num_mixtures = int(num_mixtures)
        self.params_per_value = 3 * self.num_mixtures

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
        logits, loc, _ = self._split(params)
        weights = tf.nn.softmax(logits, axis=-1)
        # Approximates each component's mean by its clipped location.
        return tf.reduce_sum(weights * tf.clip_by_value(loc, 0.0, 255.0), axis=-1) / 255.0


def make_likelihood(name, event_ndims, gaussian_sigma=0.1, num_mixtures=5):
    if name == "bernoulli":
        return Bernoulli(event_ndims, name="likelihood")
    if name == "gaussian":
        return Gaussian(event_ndims, gaussian_sigma, name="likelihood")
    if name == "gaussian_learned_sigma":
        return GaussianLearnedSigma(event_ndims, gaussian_sigma, name="likelihood")
    if name == "discretized_logistic_mixture":
        return DiscretizedLogisticMixture(event_ndims, num_mixtures, name="likelihood")
    raise ValueError(f"unknown likelihood {name!r}; use one of {', '.join(LIKELIHOODS)}")
