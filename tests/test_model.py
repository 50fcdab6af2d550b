"""The model's factors: shapes, the chain rule of the rates, the ladder merge, the reference architecture."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from hvae_repr.config import ModelConfig
from hvae_repr.likelihoods import LIKELIHOODS
from hvae_repr.model import HierarchicalVAE, gaussian, ladder_merge

tfd = tfp.distributions
SEED = tf.constant([3, 4], tf.int32)


def make(input_shape=(8, 8, 1), **kwargs):
    keras.utils.set_random_seed(0)
    return HierarchicalVAE(ModelConfig(input_shape=input_shape, hidden_units=kwargs.pop("hidden_units", 32),
                                       gaussian_sigma=kwargs.pop("gaussian_sigma", 0.1), **kwargs)).build_all()


def test_reference_conv_architecture_has_the_papers_parameter_count():
    model = make((28, 28, 1), architecture="conv", latent_dims=(256, 20), channels=16)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 122_713
    # z1 is a 4x4x16 map, flattened.
    assert model.encode(tf.zeros((2, 28, 28, 1)))["z1"][0].shape == (2, 256)


def _layer(layer, x, kind, filters, kernel=None, strides=None, padding=None, activation=None, shape=None):
    """Checks one layer of the reference model (its kind, size, kernel, stride, padding, activation and
    output shape on input x) and returns its output."""
    # A subclass counts (networks.SubpixelConv2DTranspose is a Conv2DTranspose with a faster forward pass).
    assert kind in [cls.__name__ for cls in type(layer).__mro__], (layer.name, type(layer).__name__, kind)
    assert (layer.filters if kind.startswith("Conv") else layer.units) == filters, layer.name
    if kernel is not None:
        assert tuple(layer.kernel_size) == (kernel, kernel) and tuple(layer.strides) == (strides, strides), layer.name
        assert layer.padding == padding, layer.name
    assert layer.activation.__name__ == activation, (layer.name, layer.activation.__name__)
    out = layer(x)
    assert tuple(out.shape[1:]) == shape, (layer.name, out.shape)
    return out


def test_reference_conv_architecture_layer_by_layer():
    # The paper's reference model for 28x28x1, c = 16, k = 20 (shared/paper-notes.md): "down" = 4x4 conv,
    # stride 2, padding 1 (Keras "same" on even sizes); "mid" = 4x4 conv, stride 1, padding 0 (7 -> 4);
    # "up"/"up-mid" the matching transposed convolutions; ReLU after every layer but the output heads.
    model = make((28, 28, 1), architecture="conv", latent_dims=(256, 20), channels=16)
    x = tf.zeros((2, 28, 28, 1))
    # q(z2 | x): down, down, mid, flatten, two dense heads to k.
    h = x
    for layer, (kind, f, k, st, pad, shape) in zip(model.bottom_up_z2.steps, [
            ("Conv2D", 16, 4, 2, "same", (14, 14, 16)), ("Conv2D", 16, 4, 2, "same", (7, 7, 16)),
            ("Conv2D", 16, 4, 1, "valid", (4, 4, 16))]):
        h = _layer(layer, h, kind, f, k, st, pad, "relu", shape)
    h = model.bottom_up_z2.steps[3](h)
    assert type(model.bottom_up_z2.steps[3]).__name__ == "Flatten" and h.shape[1:] == (256,)
    assert len(model.bottom_up_z2.steps) == 4
    heads = model.posterior_z2.heads
    _layer(heads.loc_head, h, "Dense", 20, activation="linear", shape=(20,))
    _layer(heads.scale_head, h, "Dense", 20, activation="linear", shape=(20,))  # softplus in GaussianHeads
    assert not model.posterior_z2.conditioned
    # q(z1 | z2, x): x branch down, down; z2 branch dense(k -> 16c), reshape 4x4xc, up-mid; concat; mid;
    # two 3x3 stride-1 conv heads.
    d = x
    for layer, shape in zip(model.bottom_up_z1.steps, [(14, 14, 16), (7, 7, 16)]):
        d = _layer(layer, d, "Conv2D", 16, 4, 2, "same", "relu", shape)
    assert len(model.bottom_up_z1.steps) == 2
    post = model.posterior_z1
    z = _layer(post.z_dense, tf.zeros((2, 20)), "Dense", 256, activation="relu", shape=(256,))
    z = _layer(post.z_up, tf.reshape(z, (2, 4, 4, 16)), "Conv2DTranspose", 16, 4, 1, "valid", "relu", (7, 7, 16))
    h = _layer(post.mid, tf.concat([d, z], -1), "Conv2D", 16, 4, 1, "valid", "relu", (4, 4, 16))
    _layer(post.heads.loc_head, h, "Conv2D", 16, 3, 1, "same", "linear", (4, 4, 16))
    _layer(post.heads.scale_head, h, "Conv2D", 16, 3, 1, "same", "linear", (4, 4, 16))
    # p(z1 | z2): dense(k -> 8c), two dense heads to 16c.
    prior = model.prior_z1.steps
    h = _layer(prior[0], tf.zeros((2, 20)), "Dense", 128, activation="relu", shape=(128,))
    _layer(prior[1].loc_head, h, "Dense", 256, activation="linear", shape=(256,))
    _layer(prior[1].scale_head, h, "Dense", 256, activation="linear", shape=(256,))
    # p(x | z1): up-mid, up, up (logits, no activation).
    dec = model.decoder.steps
    h = dec[0](tf.zeros((2, 256)))
    assert h.shape[1:] == (4, 4, 16)
    h = _layer(dec[1], h, "Conv2DTranspose", 16, 4, 1, "valid", "relu", (7, 7, 16))
    h = _layer(dec[2], h, "Conv2DTranspose", 16, 4, 2, "same", "relu", (14, 14, 16))
    h = _layer(dec[3], h, "Conv2DTranspose", 1, 4, 2, "same", "linear", (28, 28, 1))
    assert len(dec) == 5 and dec[4](h).shape[1:] == (28, 28, 1, 1)


SHAPE_CASES = [
    # (input_shape, architecture, latent_dims)
    ((8, 8, 1), "mlp", (6,)), ((8, 8, 1), "mlp", (6, 4)), ((12,), "mlp", (6, 5, 3)),
    ((28, 28, 1), "conv", (32,)), ((28, 28, 1), "conv", (32, 5)), ((32, 32, 3), "conv", (32, 6, 3)),
]


# Every network, layer count and inference variant, each likelihood on several of them.
@pytest.mark.parametrize("case,likelihood,inference,conditional", [
    (case, list(LIKELIHOODS)[i % len(LIKELIHOODS)], inference, conditional)
    for i, case in enumerate(SHAPE_CASES) for inference in ("hvae", "ladder") for conditional in (False, True)])
def test_batch_and_event_shapes(case, likelihood, inference, conditional):
    input_shape, architecture, dims = case
    model = make(input_shape, architecture=architecture, latent_dims=dims, likelihood=likelihood,
                 inference=inference, channels=2, num_mixtures=2, conditional_betas=conditional)
    x = tf.random.stateless_uniform((3,) + input_shape, seed=[1, 2])
    betas = tf.constant([[0.5] * len(dims), [1.0] * len(dims), [4.0] * len(dims)])  # per example (ignored if
    layers = model.posteriors(x, seed=SEED, betas=betas)                          # the model is not conditional)
    assert len(layers) == len(dims)
    for post, d in zip(layers, dims):
        for dist in (post.q, post.p):
            assert dist.batch_shape == (3,) and dist.event_shape == (d,)
        assert post.z.shape == (3, d)
    px = model.likelihood_distribution(layers[0].z, betas)
    assert px.batch_shape == (3,) and px.event_shape == input_shape
    terms = model.terms(x, SEED, betas=betas)
    assert terms["distortion"].shape == (3,)
    assert [r.shape for r in terms["rates"]] == [(3,)] * len(dims)
    assert [k.shape for k in terms["kl_per_dim"]] == [(3, d) for d in dims]
    assert np.all(np.isfinite(terms["distortion"].numpy()))
    assert model.reconstruct(x, betas).shape == (3,) + input_shape
    assert model.sample(2, SEED, betas[0]).shape == (2,) + input_shape
    assert model.log_importance_weights(x, 4, SEED, betas).shape == (4, 3)
    if conditional:
        with pytest.raises(ValueError, match="beta-conditional: pass betas"):
            model.terms(x, SEED)
        film = [v for v in model.trainable_variables if "film" in v.path or "beta_embedding" in v.path]
        assert film, "no FiLM or embedding weights"


def test_categorical_top_layer():
    model = make(latent_dims=(6, 5), top_latent="categorical")
    x = tf.random.stateless_uniform((4, 8, 8, 1), seed=[1, 2])
    relaxed = model.posteriors(x, seed=SEED, temperature=tf.constant(0.5))[-1].z.numpy()
    hard = model.posteriors(x, seed=SEED)[-1].z.numpy()
    assert np.allclose(relaxed.sum(-1), 1.0, atol=1e-5) and not np.all(np.isin(relaxed, [0.0, 1.0]))
    assert np.all(np.isin(hard, [0.0, 1.0])) and np.all(hard.sum(-1) == 1)
    probs = model.encode(x)["z2"][0].numpy()
    rate = model.terms(x, SEED)["rates"][-1].numpy()
    # KL[Cat(p) || uniform over K] = sum p log p + log K
    expected = np.sum(probs * np.log(probs), -1) + np.log(5)
    np.testing.assert_allclose(rate, expected, rtol=1e-4, atol=1e-5)


def _monte_carlo_rates(model, x, num_samples):
    """Per-sample log q - log p of every layer, and the analytic rates, on num_samples draws per example."""
    x_rep = tf.tile(x, [num_samples, 1, 1, 1])
    layers = model.posteriors(x_rep, seed=SEED)
    log_ratio = np.stack([(post.q.log_prob(post.z) - post.p.log_prob(post.z)).numpy() for post in layers])
    analytic = np.stack([tfd.kl_divergence(post.q, post.p).numpy() for post in layers])
    return log_ratio, analytic


@pytest.mark.parametrize("inference", ["hvae", "ladder"])
def test_layer_rates_are_analytic_kls_and_sum_to_the_joint_kl(inference):
    model = make(latent_dims=(5, 4, 3), inference=inference)
    x = tf.random.stateless_uniform((2, 8, 8, 1), seed=[5, 6])
    log_ratio, analytic = _monte_carlo_rates(model, x, num_samples=4000)   # [L, S*B]
    # Each layer: E[log q(z_l|..) - log p(z_l|..)] equals the mean analytic KL given the layers above.
    for l in range(3):
        diff = log_ratio[l] - analytic[l]
        assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size) + 1e-3, f"layer z{l + 1}"
    # Chain rule: the per-layer rates, on draws of their own, add up to KL[q(z_1..z_L|x) || p(z_1..z_L)],
    # estimated by Monte Carlo from the joint log-density ratio log q(z|x) - log p(z).
    joint_mc = log_ratio.sum(0)
    total = model.terms(tf.tile(x, [4000, 1, 1, 1]), tf.constant([9, 9], tf.int32))["rates"]
    total = np.sum([r.numpy() for r in total], axis=0)
    stderr = np.hypot(joint_mc.std() / np.sqrt(joint_mc.size), total.std() / np.sqrt(total.size))
    assert abs(joint_mc.mean() - total.mean()) < 4 * stderr + 1e-3


def test_ladder_merge_matches_the_precision_weighted_formula():
    rng = np.random.default_rng(0)
    mu_hat, mu_p = rng.normal(size=(2, 5)).astype(np.float32)
    s_hat, s_p = rng.uniform(0.2, 2.0, size=(2, 5)).astype(np.float32)
    merged = ladder_merge(gaussian(mu_hat, s_hat), gaussian(mu_p, s_p)).distribution
    var = s_hat ** 2 * s_p ** 2 / (s_hat ** 2 + s_p ** 2)
    mean = (mu_hat * s_p ** 2 + mu_p * s_hat ** 2) / (s_hat ** 2 + s_p ** 2)
    np.testing.assert_allclose(merged.loc.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(merged.scale.numpy() ** 2, var, rtol=1e-5)


def test_importance_weights_bound_the_elbo():
    model = make(latent_dims=(5, 3))
    x = tf.random.stateless_uniform((4, 8, 8, 1), seed=[7, 8])
    k = 2000
    log_w = model.log_importance_weights(x, k, SEED).numpy().astype(np.float64)  # [k, 4]
    terms = model.terms(tf.tile(x, [k, 1, 1, 1]), tf.constant([5, 6], tf.int32))
    neg_elbo = (terms["distortion"] + tf.add_n(terms["rates"])).numpy().astype(np.float64).reshape(k, 4)
    # -E[log w] is the negative ELBO: two Monte Carlo estimates on draws of their own agree within their errors
    # (the rates are analytic KLs, log w uses the sampled log-density ratio, so their variances differ).
    stderr = np.hypot(log_w.std(0) / np.sqrt(k), neg_elbo.std(0) / np.sqrt(k))
    assert np.all(np.abs(-log_w.mean(0) - neg_elbo.mean(0)) < 4 * stderr)
    # The importance-weighted bound log (1/k) sum_k w_k is tighter than the ELBO E[log w] by Jensen, beyond noise.
    iw = np.log(np.mean(np.exp(log_w - log_w.max(0)), 0)) + log_w.max(0)
    assert np.all(iw - log_w.mean(0) > 4 * log_w.std(0) / np.sqrt(k))


@pytest.mark.parametrize("kwargs,message", [
    (dict(latent_dims=(4, 0)), "one positive size per layer"),
    (dict(architecture="resnet"), "unknown architecture 'resnet'"),
    (dict(inference="bottom_up"), "unknown inference"),
    (dict(likelihood="poisson"), "unknown likelihood"),
    (dict(top_latent="categorical", latent_dims=(4, 1)), "at least 2 categories"),
    (dict(architecture="conv", latent_dims=(30, 5)), "conv architecture needs 28x28xC or 32x32xC"),
])
def test_bad_model_settings_are_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_conv_z1_size_must_be_a_4x4_map():
    with pytest.raises(ValueError, match="multiple of 16"):
        make((28, 28, 1), architecture="conv", latent_dims=(30, 5))


def test_checkpoint_holds_every_variable(tmp_path):
    model = make(latent_dims=(5, 4, 3), likelihood="gaussian_learned_sigma")
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.startswith("model/")]
    assert len(saved) == len(model.variables) > 0


def test_the_papers_ladder_variant_shares_the_bottom_up_trunk():
    hvae = make((28, 28, 1), architecture="conv", latent_dims=(256, 20), channels=16)
    ladder = make((28, 28, 1), architecture="conv", latent_dims=(256, 20), channels=16, inference="ladder")
    assert hvae.bottom_up_input == [-1, -1] and ladder.bottom_up_input == [-1, 0]  # z2 reads z1's trunk
    assert [type(s).__name__ for s in ladder.bottom_up_z2.steps] == ["Conv2D", "Flatten"]  # only its own mid conv
    count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)  # noqa: E731
    assert count(ladder) < count(hvae)
