"""One pass of a model over a data set (hvae_repr.passes) gives what the model's own calls give."""
import numpy as np

from hvae_repr import passes, seeds
from hvae_repr.runs import RunDir
from hvae_repr.trainer import runs_dataset


def test_pass_equals_the_models_own_calls_with_the_same_seeds(tiny_run):
    model, config = RunDir(tiny_run).load_model()
    x = runs_dataset(config).x_test[:120]
    arrays = passes.dataset_pass(model, x, seed=3, batch_size=50)
    assert arrays.latent_names == ["z1", "z2"] and arrays.rates.shape == (120, 2)
    for b, start in enumerate(range(0, len(x), 50)):
        xb, rows = x[start:start + 50], slice(start, start + 50)
        seed = seeds.derive(3, "test_pass", b)
        terms = model.terms(xb, seed)
        np.testing.assert_allclose(arrays.distortion[rows], terms["distortion"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(arrays.rates[rows], np.stack(terms["rates"], 1), rtol=1e-5, atol=1e-5)
        samples = model.sample_latents(xb, seed)
        for name, (mean, _) in model.encode(xb).items():
            np.testing.assert_allclose(arrays.layers[name].mean[rows], mean, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(arrays.layers[name].sample[rows], samples[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(arrays.recon[rows], model.reconstruct(xb), rtol=1e-5, atol=1e-6)
    # Without views: the same terms, nothing else.
    terms_only = passes.dataset_pass(model, x, seed=3, batch_size=50, views=False)
    np.testing.assert_array_equal(terms_only.rates, arrays.rates)
    assert terms_only.layers is None and terms_only.recon is None


def test_rate_summary_means_bits_and_active_units():
    arrays = passes.PassArrays(latent_names=["z1", "z2"], distortion=np.array([10.0, 12.0, 14.0]),
                               rates=np.array([[1.0, 0.5], [2.0, 0.5], [3.0, 0.5]]),
                               kl_per_dim_mean=[np.array([1.99, 0.005, 0.005]), np.array([0.5])])
    summary = passes.rate_summary(arrays, seed=0)
    assert summary["rate_nats"]["z1"] == {"mean": 2.0, "stderr": np.std([1, 2, 3], ddof=1) / np.sqrt(3)}
    assert summary["rate_nats"]["z2"]["stderr"] == 0.0
    assert np.isclose(summary["rate_bits"]["z1"]["mean"], 2.0 / np.log(2))
    assert summary["total_rate_nats"]["mean"] == 2.5 and summary["neg_elbo_nats"]["mean"] == 14.5
    assert summary["active_units"] == {"z1": 1, "z2": 1}
