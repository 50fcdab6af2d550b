"""One pass of a model over a set of examples, and the summary of its rates.

The trainer's test-set result and the evaluation both come from `dataset_pass` +
`rate_summary` with the same seeds (hvae_repr.seeds, stream "test_pass"), so
train_result.json and eval_result.json report the same rates for the same seed and batch size.
"""
import dataclasses
import weakref

import numpy as np

from hvae_repr import batching, objective, seeds, units
from hvae_repr.tf_env import tf

import tensorflow_probability as tfp

_FUNCTIONS = weakref.WeakKeyDictionary()  # model -> {key: its tf.function}


def cached_function(model, key, make):
    """The tf.function `make()` made once per model and key, so that calls at many beta points (a grid's
    test passes, its prior samples) trace it once instead of once each (tracing took most of a small
    model's grid evaluation, benchmarks/grid_eval.py)."""
    functions = _FUNCTIONS.setdefault(model, {})
    if key not in functions:
        functions[key] = make()
    return functions[key]


@dataclasses.dataclass
class LayerArrays:
    """One latent layer over the examples, numpy arrays [N, d_l]."""
    family: str            # "gaussian" or "categorical"
    mean: np.ndarray       # posterior mean, computed top-down with the means of the layers above (encode's)
    q_loc: np.ndarray      # q(z_l | sampled z_{>l}, x): mean (gaussian) or class probabilities (categorical)
    q_scale: np.ndarray    # its standard deviation (zeros for categorical)
    sample: np.ndarray     # z_l drawn from it (the value handed to the layer below)


@dataclasses.dataclass
class PassArrays:
    latent_names: list     # z1 first
    distortion: np.ndarray  # [N] -log p(x | z1), nats
    rates: np.ndarray       # [N, L] per-layer rates, nats, z1 first
    kl_per_dim_mean: list   # per layer [d_l]: mean KL of each dimension over the examples
    layers: dict = None     # {name: LayerArrays} (with views=True)
    recon: np.ndarray = None  # [N, *input_shape] mean of p(x | z1) at the posterior means (with views=True)


def _batch_function(model, views):
    """A tf.function giving every per-example quantity of one batch at one beta point (graph mode: ~3x
    faster than eager), the betas an input: traced once per model (cached_function), however many points
    it serves. Each point uses the same seed, so its numbers do not depend on which other points share the
    pass."""
    tfd = tfp.distributions

    @tf.function(reduce_retracing=True, autograph=False)
    def one_point(x, seed, betas):
        features = model.bottom_up_features(x, betas)  # deterministic: shared by the sampled and mean passes
        layers = model.posteriors(x, seed=seed, betas=betas, features=features)
        terms = model.terms_from_layers(x, layers, betas)
        out = {"distortion": terms["distortion"], "rates": tf.stack(terms["rates"], 1),
               "kl_per_dim": terms["kl_per_dim"]}
        if views:
            mean_layers = model.posteriors(x, use_mean=True, betas=betas, features=features)
            out["recon"] = model.decode(mean_layers[0].z, betas)
            out["layers"] = []
            for post, mean_post in zip(layers, mean_layers):
                categorical = isinstance(post.q, tfd.OneHotCategorical)
                loc = post.q.probs_parameter() if categorical else post.q.mean()
                out["layers"].append({"mean": mean_post.q.mean(), "q_loc": loc,
                                      "q_scale": tf.zeros_like(loc) if categorical else post.q.stddev(),
                                      "sample": post.z})
        return out
    return one_point


def dataset_pass(model, x, seed, batch_size=batching.DEFAULT_BATCH_SIZE, views=True, betas=None):
    """Runs `model` over `x` in batches with one posterior sample per example (seeded per batch).

    views: also the posterior means, parameters and samples of every layer and the reconstructions.
    betas: the betas to evaluate a beta-conditional model at (one per layer); ignored by other models.
    """
    return dataset_passes(model, x, seed, [betas], batch_size, views)[0]


def dataset_passes(model, x, seed, betas_points, batch_size=batching.DEFAULT_BATCH_SIZE, views=True):
    """dataset_pass at several beta points of a conditional model in one pass over x (a list of PassArrays)."""
    one_point = cached_function(model, ("dataset_pass", views), lambda: _batch_function(model, views))
    points = [tf.constant(b if b is not None else (1.0,) * model.num_layers, tf.float32) for b in betas_points]

    def batch(b, rows):
        x_batch, batch_seed = tf.convert_to_tensor(x[rows], tf.float32), seeds.derive(seed, "test_pass", b)
        return [one_point(x_batch, batch_seed, point) for point in points]
    joined = batching.map_batches(batch, len(x), batch_size)
    return [_arrays(model, point) for point in joined]


def _arrays(model, joined):
    names = model.latent_names
    arrays = PassArrays(latent_names=names, distortion=joined["distortion"], rates=joined["rates"],
                        kl_per_dim_mean=[k.mean(0) for k in joined["kl_per_dim"]])
    if "recon" in joined:  # views
        arrays.recon = joined["recon"]
        arrays.layers = {name: LayerArrays(family="categorical" if (name == names[-1] and model.categorical_top)
                                           else "gaussian", **layer)
                         for name, layer in zip(names, joined["layers"])}
    return arrays


def mean_stderr(values):
    """{"mean", "stderr"} of per-example values; stderr is the standard error of the mean."""
    mean, stderr = units.mean_stderr(values)
    return {"mean": mean, "stderr": stderr}


def non_finite(arrays):
    """{what: number of examples} for each of the pass's arrays that is NaN or infinite somewhere (a
    diverged model): "distortion", "rate of z1", ..., and with views "mean of z1", ..., "reconstruction"."""
    def count(values):
        values = np.asarray(values, np.float64).reshape(len(values), -1)
        return int(np.sum(~np.all(np.isfinite(values), axis=1)))
    found = {"distortion": count(arrays.distortion)}
    found.update({f"rate of {n}": count(arrays.rates[:, l]) for l, n in enumerate(arrays.latent_names)})
    for name, layer in (arrays.layers or {}).items():
        found.update({f"{part} of {name}": count(getattr(layer, part)) for part in ("mean", "q_loc", "q_scale", "sample")})
    if arrays.recon is not None:
        found["reconstruction"] = count(arrays.recon)
    return {k: v for k, v in found.items() if v}


def non_finite_message(found, num_examples, most=4):
    parts = [f"{what} on {n} of {num_examples}" for what, n in found.items()]
    more = f" (and {len(parts) - most} more arrays)" if len(parts) > most else ""
    return ", ".join(parts[:most]) + more


def check_finite(arrays, where):
    """ValueError (one line) when the pass over the test set gave a NaN or infinite number anywhere."""
    found = non_finite(arrays)
    if found:
        raise ValueError(f"{where}: the model gives a NaN or infinite {non_finite_message(found, len(arrays.distortion))} "
                         f"test examples (it diverged in training, see its train_result.json); it cannot be "
                         f"evaluated: retrain it, e.g. with a lower --learning_rate")


def rate_summary(arrays, seed, batch_size=batching.DEFAULT_BATCH_SIZE):
    """Mean (with standard error over examples) of each layer's rate, the total rate, distortion and
    negative ELBO, in nats and bits, and each layer's active units. When a term is NaN or infinite on some
    example, "non_finite" counts those examples per term and "warning" says so (the means are then not
    finite either)."""
    total = arrays.rates.sum(1)
    rate_nats = {n: mean_stderr(arrays.rates[:, l]) for l, n in enumerate(arrays.latent_names)}
    total_nats = mean_stderr(total)
    summary = {
        "rate_nats": rate_nats,
        "rate_bits": {n: {k: units.nats_to_bits(v) for k, v in r.items()} for n, r in rate_nats.items()},
        "total_rate_nats": total_nats,
        "total_rate_bits": {k: units.nats_to_bits(v) for k, v in total_nats.items()},
        "distortion_nats": mean_stderr(arrays.distortion),
        "neg_elbo_nats": mean_stderr(arrays.distortion + total),
        "active_units": {n: int(objective.count_active_units(k))
                         for n, k in zip(arrays.latent_names, arrays.kl_per_dim_mean)},
        "settings": {"posterior_samples_per_example": 1, "seed": seed, "batch_size": batch_size,
                     "num_examples": int(len(total)), "stderr": "standard error of the mean over examples",
                     "rates": "z_L: KL[q(z_L|x)||p(z_L)]; z_l: KL[q(z_l|z_{>l},x)||p(z_l|z_{>l})] at one "
                              "draw of the layers above",
                     "active_unit": f"a dimension whose mean KL exceeds {objective.ACTIVE_UNIT_THRESHOLD_NATS} nats"},
    }
    terms = PassArrays(latent_names=arrays.latent_names, distortion=arrays.distortion, rates=arrays.rates,
                       kl_per_dim_mean=arrays.kl_per_dim_mean)
    found = non_finite(terms)
    if found:
        summary["non_finite"] = {"distortion_nats": found.get("distortion", 0),
                                 "rate_nats": {n: found.get(f"rate of {n}", 0) for n in arrays.latent_names}}
        summary["warning"] = (f"NaN or infinite {non_finite_message(found, len(total))} test examples: these "
                              f"means are not finite (the model diverged); retrain, e.g. with a lower --learning_rate")
    return summary
