"""Each likelihood p(x | z1) is a normalized distribution over the data."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from hvae_repr.likelihoods import make_likelihood

RNG = np.random.default_rng(0)


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
