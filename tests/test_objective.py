"""The HIT objective: D + sum_l beta_l R_l, one beta per layer listed from z1 up."""
import numpy as np
import pytest
import tensorflow as tf

from hvae_repr import objective
from hvae_repr.config import ModelConfig
from hvae_repr.model import HierarchicalVAE

SEED = tf.constant([1, 2], tf.int32)


@pytest.fixture(scope="module")
def terms():
    model = HierarchicalVAE(ModelConfig(input_shape=(8, 8, 1), latent_dims=(6, 4), hidden_units=32)).build_all()
    x = tf.random.stateless_uniform((16, 8, 8, 1), seed=[3, 4])
    return model.terms(x, SEED)


def test_all_betas_one_is_the_negative_elbo(terms):
    loss = objective.hit_loss(terms["distortion"], terms["rates"], [1.0, 1.0])
    neg_elbo = tf.reduce_mean(terms["distortion"] + terms["rates"][0] + terms["rates"][1])
    assert np.isclose(float(loss), float(neg_elbo), rtol=1e-6)
    summary = objective.summarize(terms, [1.0, 1.0])
    assert np.isclose(float(summary["neg_elbo"]), float(neg_elbo), rtol=1e-6)


@pytest.mark.parametrize("layer", [0, 1])
def test_changing_one_beta_changes_only_that_layers_term(layer, terms):
    base = float(objective.hit_loss(terms["distortion"], terms["rates"], [1.0, 1.0]))
    betas = [1.0, 1.0]
    betas[layer] = 3.5
    changed = float(objective.hit_loss(terms["distortion"], terms["rates"], betas))
    assert np.isclose(changed - base, 2.5 * float(tf.reduce_mean(terms["rates"][layer])), rtol=1e-5)


def test_summary_reports_every_layer_and_active_units(terms):
    summary = objective.summarize(terms, [1.0, 1.0])
    for l, d in ((1, 6), (2, 4)):
        assert summary[f"kl_per_dim_z{l}"].shape == (d,)
        active = int(np.sum(summary[f"kl_per_dim_z{l}"].numpy() > objective.ACTIVE_UNIT_THRESHOLD_NATS))
        assert int(summary[f"active_units_z{l}"]) == active
        assert np.isclose(float(summary[f"rate_z{l}"]), float(tf.reduce_sum(summary[f"kl_per_dim_z{l}"])), rtol=1e-5)
    assert np.isclose(float(summary["total_rate"]), float(summary["rate_z1"] + summary["rate_z2"]), rtol=1e-6)


def test_one_beta_per_layer_is_required(terms):
    with pytest.raises(ValueError, match="got 3 betas for 2 latent layers"):
        objective.hit_loss(terms["distortion"], terms["rates"], [1.0, 1.0, 1.0])


def test_bits_conversion():
    from hvae_repr.units import nats_to_bits
    assert np.isclose(nats_to_bits(np.log(2.0)), 1.0)
    np.testing.assert_allclose(nats_to_bits(np.log([2.0, 8.0])), [1.0, 3.0])
