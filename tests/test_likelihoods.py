"""Each likelihood p(x | z1) is a normalized distribution over the data."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from hvae_repr.config import ModelConfig
from hvae_repr.likelihoods import LIKELIHOODS

RNG = np.random.default_rng(0)


def make_likelihood(name, event_ndims, **settings):
    return LIKELIHOODS[name](event_ndims, ModelConfig(likelihood=name, **{"gaussian_sigma": 0.1, **settings}))


def test_bernoulli_sums_to_one_over_all_binary_images():
    lik = make_likelihood("bernoulli", event_ndims=3)
    params = tf.constant(RNG.normal(size=(1, 2, 2, 1, 1)), tf.float32)
    images = np.array(list(itertools.product([0.0, 1.0], repeat=4)), np.float32).reshape(16, 2, 2, 1)
    log_p = lik.distribution(tf.repeat(params, 16, axis=0)).log_prob(lik.event(images))
    assert np.isclose(np.exp(log_p.numpy()).sum(), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["gaussian", "gaussian_learned_sigma"])
def test_gaussians_integrate_to_one(name):
    lik = make_likelihood(name, event_ndims=1, gaussian_sigma=0.2)
    grid = np.linspace(-3, 4, 20001, dtype=np.float32)
    params = tf.fill((len(grid), 1, 1), 0.4)
    density = np.exp(lik.distribution(params).log_prob(grid[:, None]).numpy())
    assert np.isclose(np.trapezoid(density, grid), 1.0, atol=1e-4)


def test_learned_sigma_is_one_trainable_scale():
    lik = make_likelihood("gaussian_learned_sigma", event_ndims=1, gaussian_sigma=0.3)
    assert len(lik.trainable_variables) == 1
    assert np.isclose(float(lik.scale()), 0.3, rtol=1e-5)


def test_discretized_logistic_mixture_sums_to_one_over_256_levels():
    lik = make_likelihood("discretized_logistic_mixture", event_ndims=1, num_mixtures=3)
    params = tf.constant(RNG.normal(size=(1, 2, 9)) * 2, tf.float32)  # 2 values, 3 params x 3 components
    levels = np.arange(256, dtype=np.float32)
    values = np.stack([levels, levels[::-1]], axis=1) / 255.0            # [256, 2] in [0, 1]
    dist = lik.distribution(tf.repeat(params, 256, axis=0))
    per_value = tf.exp(dist.distribution.log_prob(lik.event(values))).numpy()  # [256, 2]
    np.testing.assert_allclose(per_value.sum(0), 1.0, atol=1e-4)
    mean = lik.mean(params).numpy()
    assert mean.shape == (1, 2) and np.all((mean >= 0) & (mean <= 1))


def test_discretized_logistic_mixture_mean_is_the_exact_mean_over_the_levels():
    # Wide components (large raw scale) put mass in the folded tails, where the clipped location is
    # far from the mean; the exact mean must equal the direct sum over the 256 levels.
    lik = make_likelihood("discretized_logistic_mixture", event_ndims=1, num_mixtures=2)
    logits, loc, raw_scale = RNG.normal(size=(3, 4, 2)), RNG.uniform(-1.2, 1.2, (4, 2)), RNG.uniform(-1, 4, (4, 2))
    params = tf.constant(np.concatenate([logits[0], loc, raw_scale], -1)[None], tf.float32)  # [1, 4 values, 6]
    levels = np.arange(256, dtype=np.float32)
    dist = lik.distribution(tf.repeat(params, 256, axis=0)).distribution
    probs = tf.exp(dist.log_prob(np.repeat(levels[:, None], 4, 1))).numpy()  # [256 levels, 4 values]
    direct = (probs * levels[:, None]).sum(0) / probs.sum(0) / 255.0
    np.testing.assert_allclose(lik.mean(params).numpy()[0], direct, atol=2e-5)
    assert lik.discrete and LIKELIHOODS["discretized_logistic_mixture"].params_per_value(ModelConfig(num_mixtures=2)) == 6
