"""Evaluates a trained run on its test set and writes eval_result.json.

    python -m evaluation.evaluate --workdir=RUN      (or: hvae-evaluate --workdir=RUN)

Measures (all per test example, nats unless a key says otherwise): per-layer
rates, distortion, negative ELBO and optionally an importance-weighted bound;
probes on every layer and on all layers concatenated; I_q(y; z_l) and
I_q(x; z_l) per layer; the bounds T2 (top layer) and T1 (data of known
entropy); reconstruction PSNR and reference-classifier accuracy; Inception-style
score and a Frechet distance of prior samples under the reference classifier.
Every stage's seconds are in result["seconds"].
"""
import dataclasses
import os
import sys
import time
from typing import Any, NamedTuple

import numpy as np
from scipy.special import logsumexp

import hvae_repr  # noqa: F401  (sets TF environment variables before TF loads)
from evaluation import bounds, image_quality, mutual_information, probes, reference_classifier
from evaluation.stats import mean_stderr
from hvae_repr import io_utils
from hvae_repr.units import nats_to_bits
from hvae_repr.trainer import library_versions

EVAL_RESULT = "eval_result.json"
LOWER_LAYER_MI_NOTE = (
    "below the top, q(z_l | x) has no closed form; the mixture components are "
    "q(z_l | z_{>l} drawn once per x_i, x_i), an approximation of q(z_l | x_i)")


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    seed: int = 0                    # posterior and prior samples
    batch_size: int = 500
    max_test: int = 0                # 0 = the whole test set
    iw_samples: int = 0              # 0 = no importance-weighted bound
    probe_samples: bool = False      # probes on samples of every layer (the top layer's always run, for T2)
    probe_seed: int = 0
    probe_test_fraction: float = 0.25
    probe_names: tuple = tuple(probes.PROBES)
    probe_jobs: int = 2              # worker processes for the probes (1 = none, -1 = one per CPU core)
    confidence: float = 0.99
    num_generated: int = 10000
    score_splits: int = 10
    classifier_dir: str = ""         # "" = $HVAE_REPR_CLASSIFIER_DIR or ~/.hvae_repr/classifiers
    classifier_epochs: int = 3
    classifier_min_steps: int = 1000
    classifier_max_train: int = 0    # 0 = the whole training split

    def __post_init__(self):
        for name in ("batch_size", "num_generated", "score_splits", "classifier_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("max_test", "iw_samples", "classifier_min_steps", "classifier_max_train"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, with 0 meaning off or all (got {getattr(self, name)})")
        for name in ("probe_test_fraction", "confidence"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must lie strictly between 0 and 1 (got {getattr(self, name)})")
        if self.probe_jobs < 1 and self.probe_jobs != -1:
            raise ValueError(f"probe_jobs must be at least 1, or -1 for one per CPU core (got {self.probe_jobs})")
        unknown = set(self.probe_names) - set(probes.PROBES)
        if unknown or not self.probe_names:
            raise ValueError(f"probe_names must list probes among {', '.join(probes.PROBES)} (got {self.probe_names})")


# Settings that do not change any number of the result (left out of the overwrite check).
NEUTRAL_SETTINGS = ("probe_jobs",)


class LoadedRun(NamedTuple):
    model: Any
    config: Any        # hvae_repr.config.TrainConfig
    dataset: Any       # hvae_repr.data.Dataset
    seconds: float


def check_finished(workdir):
    """ValueError (one line) unless `workdir` holds a run that has finished training."""
    from hvae_repr import runs
    runs.read_config(workdir)
    if not os.path.isfile(runs.path(workdir, runs.TRAIN_RESULT)):
        raise ValueError(f"{workdir} has not finished training (no {runs.TRAIN_RESULT}); finish it with "
                         f"python -m hvae_repr.train --workdir={workdir} and the run's original flags")


def load_run(workdir):
    """A finished run's model, config and data set; ValueError (one line) when the run cannot be evaluated."""
    from hvae_repr import runs
    start = time.perf_counter()
    check_finished(workdir)
    model, config = runs.load_model(workdir)
    dataset = runs.load_run_dataset(config)
    return LoadedRun(model, config, dataset, time.perf_counter() - start)


def check_overwrite(workdir, settings, overwrite=False):
    """Refuses to replace an eval_result.json computed with other settings (unless `overwrite`).

    settings: the new result's, i.e. dataclasses.asdict(EvalOptions(...)).
    """
    path = os.path.join(workdir, EVAL_RESULT)
    if overwrite or not os.path.exists(path):
        return
    fix = "pass --overwrite to replace it, or repeat its settings"
    try:
        old = io_utils.read_json(path).get("settings")
    except (OSError, ValueError, AttributeError):
        old = None
    if not isinstance(old, dict):
        raise ValueError(f"{path} exists and its settings cannot be read; {fix}")
    new = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
    diffs = [f"{k}: {old.get(k)!r} there vs {v!r} now" for k, v in new.items()
             if k not in NEUTRAL_SETTINGS and old.get(k) != v]
    if diffs:
        raise ValueError(f"{path} was computed with other settings ({'; '.join(diffs)}); {fix}")


def _mean_se(values):
    mean, stderr = mean_stderr(values)
    return {"mean": mean, "stderr": stderr}


def _seed(seed, batch_index, stream):
    import tensorflow as tf
    return tf.constant([seed * 1000 + stream, batch_index], tf.int32)


def _batch_outputs(model):
    """A tf.function giving every per-example quantity of one batch (graph mode: ~3x faster than eager).

    One sampled pass gives what model.terms(x, seed) gives (same seed, same samples)
    and the samples; one pass with the means gives model.encode's means and
    model.reconstruct's images.
    """
    import tensorflow as tf
    import tensorflow_probability as tfp
    tfd = tfp.distributions

    @tf.function(reduce_retracing=True)
    def outputs(x, seed):
        x = tf.convert_to_tensor(x, tf.float32)
        layers = model.posteriors(x, seed=seed)
        mean_layers = model.posteriors(x, use_mean=True)
        terms = model.terms_from_layers(x, layers)
        out = {"distortion": terms["distortion"], "rates": tf.stack(terms["rates"], 1),
               "recon": model.decode(mean_layers[0].z)}
        for name, post, mean_post in zip(model.latent_names, layers, mean_layers):
            out["mean/" + name] = mean_post.q.mean()
            if isinstance(post.q, tfd.OneHotCategorical):
                out["q_loc/" + name] = post.q.probs_parameter()
                out["q_scale/" + name] = tf.zeros_like(out["q_loc/" + name])
            else:
                out["q_loc/" + name] = post.q.mean()
                out["q_scale/" + name] = post.q.stddev()
            out["sample/" + name] = post.z
        return out
    return outputs


def collect(model, x, options):
    """One pass over x in batches: per-example terms, posterior parameters and samples, reconstructions.

    Returns numpy arrays: "distortion" [N], "rates" [N, L], "recon" [N, ...], and
    {layer: [N, d]} dicts "mean" (encode's top-down means), "q_loc", "q_scale"
    (q(z_l | sampled z_{>l}, x)) and "sample" (z_l drawn from it).
    """
    outputs = _batch_outputs(model)
    parts = {}
    for b, start in enumerate(range(0, len(x), options.batch_size)):
        for key, value in outputs(x[start:start + options.batch_size], _seed(options.seed, b, 0)).items():
            parts.setdefault(key, []).append(value.numpy())
    arrays = {"mean": {}, "q_loc": {}, "q_scale": {}, "sample": {}}
    for key, values in parts.items():
        kind, _, name = key.partition("/")
        if name:
            arrays[kind][name] = np.concatenate(values)
        else:
            arrays[key] = np.concatenate(values)
    return arrays


def rate_summary(model, arrays, options):
    rates, distortion = arrays["rates"], arrays["distortion"]
    total = rates.sum(1)
    result = {"rate_nats": {}, "rate_bits": {}}
    for l, name in enumerate(model.latent_names):
        nats = _mean_se(rates[:, l])
        result["rate_nats"][name] = nats
        result["rate_bits"][name] = {k: nats_to_bits(v) for k, v in nats.items()}
    result.update(total_rate_nats=_mean_se(total), distortion_nats=_mean_se(distortion),
                  neg_elbo_nats=_mean_se(distortion + total),
                  settings={"posterior_samples_per_example": 1, "seed": options.seed,
                            "rate_names": "z_L: KL[q(z_L|x)||p(z_L)]; z_l: KL[q(z_l|z_{>l},x)||p(z_l|z_{>l})] "
                                          "at the sampled layers above", "stderr": "over test examples"})
    return result


def importance_weighted_bound(model, x, options):
    import tensorflow as tf
    k = options.iw_samples
    log_weights = tf.function(lambda xb, seed: model.log_importance_weights(xb, k, seed), reduce_retracing=True)
    per_example = []
    batch = max(1, 4000 // k)  # k * batch rows per model call
    for b, start in enumerate(range(0, len(x), batch)):
        log_w = log_weights(x[start:start + batch], _seed(options.seed, b, 1)).numpy()
        per_example.append(logsumexp(log_w.astype(np.float64), axis=0) - np.log(k))
    per_example = np.concatenate(per_example)
    return {"status": "computed", "log_likelihood_lower_bound_nats": _mean_se(per_example),
            "neg_log_likelihood_upper_bound_nats": _mean_se(-per_example),
            "settings": {"num_samples": k, "seed": options.seed}}


def run_probes(model, arrays, labels, options):
    names = model.latent_names
    top = names[-1]
    reps = {}
    for kind, source in (("on_means", arrays["mean"]), ("on_samples", arrays["sample"])):
        layers = names if kind == "on_means" or options.probe_samples else [top]
        reps.update({(kind, n): source[n] for n in layers})
        if len(layers) > 1:
            reps[(kind, "concat")] = np.concatenate([source[n] for n in names], 1)
    found = probes.evaluate_probe_sets(
        reps, labels, probes=options.probe_names, test_fraction=options.probe_test_fraction,
        seed=options.probe_seed, n_jobs=options.probe_jobs)
    result = {"on_means": {}, "on_samples": {}}
    for (kind, layer), value in found.items():
        result[kind][layer] = value
    result["notes"] = ("probes are trained and scored on a stratified split of the VAE's test set; "
                       "'on_means' uses posterior means computed top-down with the means of the layers above, "
                       "'on_samples' one draw z ~ q(z|x) per image")
    return result


def mutual_informations(model, arrays, labels):
    result = {}
    for l, name in enumerate(model.latent_names):
        top = l == model.num_layers - 1
        if top and model.categorical_top:
            est = mutual_information.categorical_mutual_information(arrays["q_loc"][name], labels)
        else:
            est = mutual_information.gaussian_mutual_information(
                arrays["q_loc"][name], arrays["q_scale"][name], labels, rng=None, samples=arrays["sample"][name])
        est["component"] = "q(z_L | x_i), exact" if top else LOWER_LAYER_MI_NOTE
        result[name] = est
    return result


def check_bounds(model, arrays, result, labels, num_classes, log_prob, likelihood, options):
    """T2 and T1 from the result's rates, probes and mutual information.

    num_classes: the data set's, so that a class missing from `labels` (e.g. after
    --max_test) keeps M and gets prior 0. likelihood: the run's, by name (T1 needs a discrete one).
    """
    top = model.latent_names[-1]
    probe_result, mi_result = result["probes"], result["mutual_information"]
    prior = bounds.label_prior(labels, num_classes=num_classes)
    top_rate = result["rates"]["rate_nats"][top]
    information = {
        "mutual_information": {"value_nats": mi_result[top]["label"]["value_nats"],
                               "stderr_nats": mi_result[top]["label"]["stderr_nats"]},
        "top_rate": {"value_nats": top_rate["mean"], "stderr_nats": top_rate["stderr"]}}

    def probe_counts(section):
        return {k: v for k, v in section.items() if k != "settings"}
    t2 = bounds.check_t2(probe_counts(probe_result["on_samples"][top]), information, prior, options.confidence)
    t2["layer"] = top
    t2["probes_see"] = "one draw z_L ~ q(z_L|x) per image (covered by the theorem)"
    outside = bounds.check_t2(probe_counts(probe_result["on_means"][top]), information, prior, options.confidence)
    t2["mean_based_probes_outside_bound"] = {
        "note": "probes on the posterior mean see a deterministic function of x, which T2 does not cover; "
                "reported as the paper did, never judged as violations",
        "probes": {name: {"accuracy": p["accuracy"],
                          **{key: {"bound_accuracy": p[key]["bound_accuracy"], "slack": p[key]["slack"]}
                             for key in information}}
                   for name, p in outside["probes"].items()}}
    t1 = bounds.check_t1(arrays["distortion"], arrays["rates"].sum(1), log_prob, options.confidence,
                         likelihood=likelihood)
    return t2, t1


def prior_samples(model, n, batch_size, seed):
    import tensorflow as tf
    sample = tf.function(model.sample)
    return np.concatenate([sample(min(batch_size, n - start), _seed(seed, b, 2)).numpy()
                           for b, start in enumerate(range(0, n, batch_size))])


def evaluate(workdir, options=EvalOptions(), verbose=True, run=None):
    """Evaluates the finished run in `workdir`; returns the result dict (does not write it).

    run: load_run(workdir) when the caller has loaded it already.
    """
    seconds = {}
    if run is None:
        run = load_run(workdir)
    model, config, dataset = run.model, run.config, run.dataset
    seconds["load"] = run.seconds
    if verbose:
        print(f"[evaluate] load: {run.seconds:.1f} s", flush=True)
    clock = time.perf_counter()

    def lap(stage):
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now
        if verbose:
            print(f"[evaluate] {stage}: {seconds[stage]:.1f} s", flush=True)

    x, y = dataset.x_test, np.asarray(dataset.y_test)
    if options.max_test:
        x, y = x[:options.max_test], y[:options.max_test]
    arrays = collect(model, x, options)
    lap("encode_and_terms")
    result = {"workdir": os.path.abspath(workdir), "dataset": dataset.name, "num_test_examples": int(len(y)),
              "num_classes": int(dataset.num_classes), "latent_names": model.latent_names,
              "run_config": config.to_json(), "settings": dataclasses.asdict(options)}
    result["rates"] = rate_summary(model, arrays, options)
    if options.iw_samples > 0:
        result["importance_weighted"] = importance_weighted_bound(model, x, options)
    else:
        result["importance_weighted"] = {"status": "off", "reason": "pass --iw_samples=K (e.g. 1000) to compute it"}
    lap("importance_weighted")
    result["probes"] = run_probes(model, arrays, y, options)
    lap("probes")
    result["mutual_information"] = mutual_informations(model, arrays, y)
    lap("mutual_information")
    log_prob = dataset.log_prob(x) if dataset.log_prob is not None else None
    result["bound_t2"], result["bound_t1"] = check_bounds(
        model, arrays, result, y, dataset.num_classes, log_prob, config.likelihood, options)
    lap("bounds")
    classifier = reference_classifier.load_or_train(
        dataset, cache_dir=options.classifier_dir or None, epochs=options.classifier_epochs,
        min_steps=options.classifier_min_steps,
        max_train=options.classifier_max_train or None)
    result["reference_classifier"] = {k: v for k, v in classifier.info.items() if k != "fingerprint"}
    lap("reference_classifier")
    recon_probs, _ = classifier.predict(arrays["recon"])
    test_probs, test_features = classifier.predict(x)
    result["reconstruction"] = {
        "psnr": image_quality.psnr(x, arrays["recon"]),
        "classifier_accuracy": float(np.mean(recon_probs.argmax(1) == y)),
        "classifier_accuracy_on_originals": float(np.mean(test_probs.argmax(1) == y)),
        "settings": {"reconstruction": "mean of p(x|z1) at posterior means through every layer",
                     "num_images": int(len(y))}}
    lap("reconstruction")
    generated = prior_samples(model, options.num_generated, options.batch_size, options.seed)
    gen_probs, gen_features = classifier.predict(generated)
    splits = min(options.score_splits, options.num_generated, len(y))
    result["generation"] = {
        "inception_style_score": image_quality.inception_score(gen_probs, splits),
        "frechet_distance": {"value": image_quality.frechet_distance(gen_features, test_features),
                             "features": "penultimate layer (128 units) of the reference classifier",
                             "compared_with": f"{len(y)} test images"},
        "test_images_inception_style_score": image_quality.inception_score(test_probs, splits),
        "note": image_quality.NOT_INCEPTION_NOTE,
        "settings": {"num_samples": options.num_generated, "seed": options.seed,
                     "samples": "ancestral prior samples z ~ p(z), image = mean of p(x|z1)"}}
    lap("generation")
    result["versions"] = library_versions()
    result["seconds"] = dict(seconds, total=sum(seconds.values()))
    return result


def write_result(workdir, result, overwrite=False):
    """Writes RUN/eval_result.json atomically; refuses to replace one of other settings unless `overwrite`."""
    check_overwrite(workdir, result["settings"], overwrite)
    path = os.path.join(workdir, EVAL_RESULT)
    io_utils.write_json_atomic(path, result)
    return path


# ------------------------------------------------------------------ absl flags
_HELP = {
    "seed": "Seed of posterior and prior samples.",
    "batch_size": "Examples per model call.",
    "max_test": "Evaluate only the first N test examples (0 = all).",
    "iw_samples": "Samples per example of the importance-weighted log-likelihood bound (0 = off).",
    "probe_samples": "Also probe samples z ~ q(z|x) of every layer (the top layer's samples are always probed, for T2).",
    "probe_seed": "Seed of the probes' stratified train/test split (keep it fixed across a sweep).",
    "probe_test_fraction": "Fraction of the test set held out to score the probes.",
    "probe_jobs": "Worker processes for the probes (1 = run them in this process, -1 = one per CPU core).",
    "probe_names": "Probes to run: " + ", ".join(probes.PROBES) + ".",
    "confidence": "Confidence level of the intervals behind every `violated` flag.",
    "num_generated": "Prior samples scored by the reference classifier.",
    "score_splits": "Splits for the mean and std of the Inception-style score.",
    "classifier_dir": "Cache folder of reference classifiers ('' = $HVAE_REPR_CLASSIFIER_DIR or "
                      "~/.hvae_repr/classifiers); one subfolder per data set.",
    "classifier_epochs": "Training epochs of the reference classifier (when it is not cached).",
    "classifier_min_steps": "Train the reference classifier for at least this many steps (more epochs on small sets).",
    "classifier_max_train": "Train the reference classifier on at most N examples (0 = all).",
}


def _define_flags():
    from absl import flags
    if "iw_samples" in flags.FLAGS:
        return
    if "workdir" not in flags.FLAGS:
        flags.DEFINE_string("workdir", None, "Run folder of a trained model (holds config.json and checkpoints).")
    for field in dataclasses.fields(EvalOptions):
        if field.name in flags.FLAGS:
            continue
        define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                  str: flags.DEFINE_string, tuple: flags.DEFINE_list}[type(field.default)]
        default = list(field.default) if isinstance(field.default, tuple) else field.default
        define(field.name, default, _HELP[field.name])
    if "overwrite" not in flags.FLAGS:
        flags.DEFINE_boolean("overwrite", False, "Replace an eval_result.json computed with other settings "
                             "(by default the evaluation refuses, so a quick check cannot replace a full one).")


def main(argv):
    from absl import flags
    del argv
    values = flags.FLAGS
    try:  # bad flags, run folder or data set: one line, no traceback (later errors keep theirs)
        if not values.workdir:
            raise ValueError("--workdir is required: pass the folder of a trained run")
        options = EvalOptions(**{
            f.name: tuple(values[f.name].value) if isinstance(f.default, tuple) else values[f.name].value
            for f in dataclasses.fields(EvalOptions)})
        check_finished(values.workdir)
        check_overwrite(values.workdir, dataclasses.asdict(options), values.overwrite)
        run = load_run(values.workdir)
    except ValueError as e:  # hvae_repr.data.DataError is one
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    result = evaluate(values.workdir, options, run=run)
    path = write_result(values.workdir, result, overwrite=True)  # checked above
    print(format_summary(result))
    print(f"wrote {path}")


def format_summary(result):
    rates = result["rates"]
    lines = [f"{result['dataset']}: {result['num_test_examples']} test examples"]
    for name in result["latent_names"]:
        r = rates["rate_nats"][name]
        mi = result["mutual_information"][name]["label"]
        acc = result["probes"]["on_means"][name]["logistic_regression"]["accuracy"] \
            if "logistic_regression" in result["probes"]["on_means"][name] else float("nan")
        lines.append(f"  {name}: rate {r['mean']:.3f} +- {r['stderr']:.3f} nats, I(y;{name}) "
                     f"{mi['value_nats']:.3f} nats, logistic probe on means {acc:.3f}")
    lines.append(f"  distortion {rates['distortion_nats']['mean']:.3f} nats, negative ELBO "
                 f"{rates['neg_elbo_nats']['mean']:.3f} nats")
    lines.append(f"  T2 violated: {result['bound_t2']['violated']}; T1: {result['bound_t1']['status']}"
                 f" (violated: {result['bound_t1']['violated']})")
    lines.append(f"  PSNR {result['reconstruction']['psnr']['mean_db']:.2f} dB, classifier accuracy on "
                 f"reconstructions {result['reconstruction']['classifier_accuracy']:.3f} (on test images "
                 f"{result['reference_classifier']['test_accuracy']:.3f})")
    g = result["generation"]
    lines.append(f"  Inception-style score {g['inception_style_score']['inception_score']['mean']:.2f}, "
                 f"Frechet distance {g['frechet_distance']['value']:.2f} (reference CNN, not Inception)")
    lines.append(f"  {result['seconds']['total']:.1f} s")
    return "\n".join(lines)


def run_main():
    from absl import app
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run_main()
