"""The evaluation's stages. Each takes one typed input (EvalInput: the run, its test set and
one pass of the model over it) plus the sections it declares it needs, and returns its own
section of eval_result.json. The metric modules they call are pure functions over arrays.
"""
import dataclasses
from typing import Any

import numpy as np
from scipy.special import logsumexp

from evaluation import (bounds, image_quality, information_estimators, model_figures, mutual_information,
                        probes, reference_classifier)
from hvae_repr import batching, likelihoods, passes, seeds
from hvae_repr.passes import mean_stderr

LOWER_LAYER_MI_NOTE = (
    "below the top, q(z_l | x) has no closed form; the mixture estimate's components are "
    "q(z_l | z_{>l} drawn once per x_i, x_i), an approximation of q(z_l | x_i); the lower bound "
    "needs only samples z_l ~ q(z_l | x) and uses the true marginal")
# Below this test accuracy the reference classifier's scores of samples and reconstructions are doubtful.
CLASSIFIER_ACCURACY_WARNING = 0.9


@dataclasses.dataclass
class EvalInput:
    """What every stage may read. What does not depend on the betas (the reference classifier, its
    predictions of the test images and their feature statistics, the probes' split, the label prior) is
    made on first use and kept in `shared`, which the points of a conditional model's grid share."""
    model: Any            # hvae_repr.model.HierarchicalVAE with the run's weights
    config: Any           # hvae_repr.config.TrainConfig
    dataset: Any          # hvae_repr.data.Dataset
    x: np.ndarray         # the evaluated test images (the first --max_test, or all)
    labels: np.ndarray
    arrays: passes.PassArrays  # one pass of the model over x, at `betas`
    options: Any          # evaluation.evaluate.EvalOptions, its seed and betas resolved
    seed: int
    betas: tuple          # the evaluated point (a conditional model's input; an ordinary model's own)
    shared: dict = dataclasses.field(default_factory=dict)
    folder: str = ""      # the run folder the result goes to (figures/ is written there)

    @property
    def latent_names(self):
        return self.arrays.latent_names

    def _shared(self, key, make):
        if key not in self.shared:
            self.shared[key] = make()
        return self.shared[key]

    @property
    def classifier(self):
        o = self.options
        return self._shared("classifier", lambda: reference_classifier.load_or_train(
            self.dataset, cache_dir=o.classifier_dir or None, epochs=o.classifier_epochs,
            min_steps=o.classifier_min_steps, max_train=o.classifier_max_train or None))

    @property
    def probe_split(self):
        """The probes' (train, test) split, used by every probe and by the mutual information's lower bound."""
        o = self.options
        fraction = o.probe_test_fraction or probes.PROTOCOLS[o.probe_protocol].test_fraction
        return self._shared("probe_split", lambda: probes.split_indices(self.labels, fraction, o.probe_seed))

    @property
    def label_prior(self):
        """Class frequencies of the evaluated labels over the data set's classes (a missing class gets 0)."""
        return self._shared("label_prior", lambda: bounds.label_prior(self.labels,
                                                                      num_classes=self.dataset.num_classes))

    @property
    def test_predictions(self):
        """The reference classifier's (probabilities, features) of the test images."""
        return self._shared("test_predictions", lambda: self.classifier.predict(self.x))

    @property
    def test_feature_statistics(self):
        """The (mean, covariance) of the test images' classifier features (the Frechet distance's reference)."""
        return self._shared("test_feature_statistics",
                            lambda: image_quality.feature_statistics(self.test_predictions[1]))


def rates(inp):
    return passes.rate_summary(inp.arrays, inp.seed, inp.options.batch_size)


def importance_weighted(inp):
    k = inp.options.iw_samples
    if k == 0:
        return {"status": "off", "reason": "pass --iw_samples=K (e.g. 1000) to compute it"}
    from hvae_repr.tf_env import tf
    log_weights = tf.function(lambda xb, seed: inp.model.log_importance_weights(xb, k, seed, betas=inp.betas),
                              reduce_retracing=True, autograph=False)
    per_example = batching.map_batches(  # k * batch rows per model call
        lambda b, rows: logsumexp(log_weights(inp.x[rows], seeds.derive(inp.seed, "importance_weights", b)).numpy()
                                  .astype(np.float64), axis=0) - np.log(k),
        len(inp.x), max(1, 4000 // k))
    return {"status": "computed", "log_likelihood_lower_bound_nats": mean_stderr(per_example),
            "neg_log_likelihood_upper_bound_nats": mean_stderr(-per_example),
            "settings": {"num_samples": k, "seed": inp.seed}}


def _measured_layers(inp):
    return list(inp.latent_names) if inp.options.layers == "all" else [inp.latent_names[-1]]


def probe_results(inp):
    names, top, o = _measured_layers(inp), inp.latent_names[-1], inp.options
    reps = {}
    for kind, source in (("on_means", "mean"), ("on_samples", "sample")):
        layers = names if kind == "on_means" or o.probe_samples else [top]
        reps.update({(kind, n): getattr(inp.arrays.layers[n], source) for n in layers})
        if len(layers) > 1:
            reps[(kind, "concat")] = np.concatenate([getattr(inp.arrays.layers[n], source) for n in names], 1)
    found = probes.evaluate_probe_sets(reps, inp.labels, probes=o.probe_names,
                                       test_fraction=o.probe_test_fraction or None, seed=o.probe_seed,
                                       n_jobs=o.probe_jobs, protocol=o.probe_protocol)
    result = {"on_means": {}, "on_samples": {}}
    for (kind, layer), value in found.items():
        result[kind][layer] = value
    result["notes"] = ("probes are trained and scored on a stratified split of the VAE's test set; "
                       "'on_means' uses posterior means computed top-down with the means of the layers above, "
                       "'on_samples' one draw z ~ q(z|x) per image")
    return result


def mutual_informations(inp):
    """Per layer: I_q(y; z_l) as an interval (Barber-Agakov lower bound, mixture estimate, saturation)
    and the mixture estimate of I_q(x; z_l) with its ceiling ln N."""
    result = {}
    for name in _measured_layers(inp):
        layer, top = inp.arrays.layers[name], name == inp.latent_names[-1]
        if layer.family == "categorical":
            mixture = mutual_information.categorical_mutual_information(layer.q_loc, inp.labels)
        else:
            mixture = mutual_information.gaussian_mutual_information(
                layer.q_loc, layer.q_scale, inp.labels, rng=None, samples=layer.sample)
        label = mutual_information.label_information_interval(mixture, layer.sample, inp.labels, inp.label_prior,
                                                              inp.probe_split)
        result[name] = {"label": label, "input": mixture["input"],
                        "component": "q(z_L | x_i), exact" if top else LOWER_LAYER_MI_NOTE}
        if inp.options.knn_k:
            result[name]["label_from_samples"] = label_from_samples(layer, inp.labels, inp.dataset.num_classes,
                                                                    inp.options.knn_k)
    return result


def label_from_samples(layer, labels, num_classes, k):
    """A second estimate of I_q(y; z_l) from the pairs (z ~ q(z_l|x), y), one per test image: the k-NN
    estimator for a Gaussian layer; for a categorical one (whose samples tie) the plug-in information of
    the (sampled category, label) count matrix with its Miller-Madow correction."""
    if layer.family == "categorical":
        counts = information_estimators.count_matrix(layer.sample.argmax(1), labels, layer.sample.shape[1],
                                                     num_classes)
        found = information_estimators.plugin_mutual_information(counts)
        return {"value_nats": found["miller_madow_nats"], "stderr_nats": found["stderr_nats"],
                "estimator": "plug-in of the (sampled category, label) counts, Miller-Madow corrected",
                "plugin": found}
    found = information_estimators.knn_mutual_information(layer.sample, labels, k)
    return {**found, "estimator": found["settings"]["estimator"]}


def bound_t2(inp, rates, probes, mutual_information):
    """T2 for the top layer: sample-based probes judged against f^{-1} of I_q(y; z_L)'s upper end (the
    mixture estimate) and of E[R(z_L)] (an upper bound on I_q(y; z_L)), so that a flagged violation is
    real; f^{-1} of the lower end is reported, never judged. Mean-based probes are reported beside."""
    top = inp.latent_names[-1]
    label, top_rate = mutual_information[top]["label"], rates["rate_nats"][top]
    information = {
        "mutual_information_mixture": {"value_nats": label["mixture_estimate_nats"],
                                       "stderr_nats": label["mixture_estimate_stderr_nats"], "judged": True},
        "mutual_information_lower_bound": {"value_nats": label["lower_bound_nats"],
                                           "stderr_nats": label["lower_bound_stderr_nats"], "judged": False},
        "top_rate": {"value_nats": top_rate["mean"], "stderr_nats": top_rate["stderr"], "judged": True}}

    def counts(section):
        return {k: v for k, v in section.items() if k != "settings"}
    confidence = inp.options.confidence
    t2 = bounds.check_t2(counts(probes["on_samples"][top]), information, inp.label_prior, confidence)
    t2["layer"] = top
    t2["probes_see"] = "one draw z_L ~ q(z_L|x) per image (covered by the theorem)"
    t2["mutual_information_saturated"] = label["saturated"]
    outside = bounds.check_t2(counts(probes["on_means"][top]), information, inp.label_prior, confidence)
    t2["mean_based_probes_outside_bound"] = {
        "note": "probes on the posterior mean see a deterministic function of x, which T2 does not cover; "
                "reported as the paper did, never judged as violations",
        "probes": {name: {"accuracy": p["accuracy"],
                          **{key: {"bound_accuracy": p[key]["bound_accuracy"], "slack": p[key]["slack"]}
                             for key in information}}
                   for name, p in outside["probes"].items()}}
    return t2


def bound_t1(inp):
    log_prob = inp.dataset.log_prob(inp.x) if inp.dataset.log_prob is not None else None
    likelihood = inp.config.model.likelihood
    return bounds.check_t1(inp.arrays.distortion, inp.arrays.rates.sum(1), log_prob, inp.options.confidence,
                           likelihood=likelihood, discrete=likelihoods.LIKELIHOODS[likelihood].discrete)


def reference_classifier_info(inp):
    return {k: v for k, v in inp.classifier.info.items() if k != "fingerprint"}


def _classifier_trust(inp):
    """The reference classifier's test accuracy, beside every number it scores, and a warning when low."""
    accuracy = inp.classifier.test_accuracy
    out = {"reference_classifier_test_accuracy": accuracy}
    if accuracy < CLASSIFIER_ACCURACY_WARNING:
        out["warning"] = (f"the reference classifier reaches only {accuracy:.1%} on the test images (below "
                          f"{CLASSIFIER_ACCURACY_WARNING:.0%}): its scores of these images are doubtful; train "
                          f"it longer (--classifier_epochs, --classifier_min_steps)")
    return out


def reconstruction(inp):
    recon_probs, _ = inp.classifier.predict(inp.arrays.recon)
    test_probs, _ = inp.test_predictions
    return {
        "psnr": image_quality.psnr(inp.x, inp.arrays.recon),
        "classifier_accuracy": float(np.mean(recon_probs.argmax(1) == inp.labels)),
        "classifier_accuracy_on_originals": float(np.mean(test_probs.argmax(1) == inp.labels)),
        **_classifier_trust(inp),
        "settings": {"reconstruction": "mean of p(x|z1) at posterior means through every layer",
                     "num_images": int(len(inp.labels))}}


def figures(inp):
    """RUN/figures/: reconstructions, prior samples and what each layer encodes (evaluation.model_figures)."""
    if not inp.options.figures:
        return {"status": "off", "reason": "pass --figures to draw them"}
    return model_figures.write_figures(inp.model, inp.x, inp.seed, inp.betas, inp.folder)


def prior_samples(model, n, batch_size, seed, betas=None):
    from hvae_repr.tf_env import tf
    # The betas are an input of one traced function per model (not constants of a new one per call).
    sample = passes.cached_function(model, ("prior_samples", betas is None), lambda: tf.function(
        (lambda count, seed, b: model.sample(count, seed)) if betas is None else
        (lambda count, seed, b: model.sample(count, seed, betas=b)), autograph=False))
    b = tf.constant(betas if betas is not None else (), tf.float32)
    return batching.map_batches(lambda i, rows: sample(rows.stop - rows.start, seeds.derive(seed, "prior_samples", i),
                                                       b), n, batch_size)


def generation(inp):
    o = inp.options
    generated = prior_samples(inp.model, o.num_generated, o.batch_size, inp.seed, inp.betas)
    gen_probs, gen_features = inp.classifier.predict(generated)
    test_probs, _ = inp.test_predictions
    splits = min(o.score_splits, o.num_generated, len(inp.labels))
    return {
        "inception_style_score": image_quality.inception_score(gen_probs, splits),
        "frechet_distance": {"value": image_quality.frechet_distance(gen_features, inp.test_feature_statistics),
                             "features": "penultimate layer (128 units) of the reference classifier",
                             "compared_with": f"{len(inp.labels)} test images"},
        "test_images_inception_style_score": image_quality.inception_score(test_probs, splits),
        "note": image_quality.NOT_INCEPTION_NOTE,
        **_classifier_trust(inp),
        "settings": {"num_samples": o.num_generated, "seed": inp.seed,
                     "samples": "ancestral prior samples z ~ p(z), image = mean of p(x|z1)"}}


def generative_information(inp):
    """I_p(z_L; y_hat): z_L drawn from its prior, z_{<L} from p(z_l | z_{>l}), the image the mean of
    p(x | z1), y_hat the reference classifier's class of it. A categorical top draws every category
    equally often and gets the plug-in information of the (category, y_hat) counts with its bias; a
    Gaussian top gets the k-NN estimate over N prior draws."""
    from hvae_repr.tf_env import tf
    o, model = inp.options, inp.model
    if not o.generative_draws:
        return {"status": "off", "reason": "pass --generative_draws=N (e.g. 10000) to compute it"}
    categorical, d = model.categorical_top, model.model_config.latent_dims[-1]
    if not categorical and not o.knn_k:
        return {"status": "off", "reason": "a Gaussian top needs the k-NN estimator: pass --knn_k=K (e.g. 5)"}
    if categorical:
        per_category = -(-o.generative_draws // d)
        categories = np.repeat(np.arange(d), per_category)
        z_top = np.eye(d, dtype=np.float32)[categories]
    else:
        z_top = np.random.default_rng([inp.seed, 17]).standard_normal((o.generative_draws, d)).astype(np.float32)
    below = tf.function(lambda z, seed: model.sample(tf.shape(z)[0], seed, betas=inp.betas, top=z),
                        reduce_retracing=True, autograph=False)
    images = batching.map_batches(
        lambda b, rows: below(tf.convert_to_tensor(z_top[rows]), seeds.derive(inp.seed, "generative_information", b)),
        len(z_top), o.batch_size)
    probs, _ = inp.classifier.predict(images)
    predicted = probs.argmax(1)
    num_classes = inp.dataset.num_classes
    result = {"status": "computed", "layer": inp.latent_names[-1],
              "predicted_class_frequencies": (np.bincount(predicted, minlength=num_classes) / len(predicted)).tolist()}
    if categorical:
        found = information_estimators.plugin_mutual_information(
            information_estimators.count_matrix(categories, predicted, d, num_classes), rows_fixed=True)
        estimator_settings = found.pop("settings")
        result.update(found, value_nats=found["miller_madow_nats"],
                      estimator="plug-in of the (category, predicted class) counts, Miller-Madow corrected "
                                "(value_nats = plugin_nats - bias_nats)",
                      counts_axes="rows: category of z_L; columns: predicted class")
    else:
        found = information_estimators.knn_mutual_information(z_top, predicted, o.knn_k)
        result.update(value_nats=found["value_nats"], stderr_nats=found["stderr_nats"],
                      ceiling_nats=found["ceiling_nats"], estimator=found["settings"]["estimator"], knn=found)
    result.update(_classifier_trust(inp))
    result["settings"] = {"estimator": estimator_settings if categorical else result["knn"]["settings"],
                          "num_draws": int(len(z_top)), "seed": inp.seed, "k": o.knn_k if not categorical else None,
                          "draws_per_category": int(per_category) if categorical else None,
                          "images": "z_L ~ p(z_L) (each category equally often when categorical), z_{<L} ~ "
                                    "p(z_l | z_{>l}), image = mean of p(x | z1); y_hat = argmax of the reference "
                                    "classifier"}
    return result


def _top_categories(model, x, batch_size, betas):
    """The mode of q(z_L | x) of a categorical top (the category each image is assigned to)."""
    from hvae_repr.tf_env import tf
    mode = tf.function(lambda xb: tf.argmax(model.posteriors(xb, use_mean=True, betas=betas)[-1].z, axis=-1),
                       reduce_retracing=True, autograph=False)
    return batching.map_batches(lambda b, rows: mode(tf.convert_to_tensor(x[rows], tf.float32)), len(x), batch_size)


def clustering(inp):
    """A categorical top layer as a clustering: each category mapped to the majority label of the training
    images assigned to it (the mode of q(z_L | x)), the mapping scored on the test images."""
    if not inp.model.categorical_top:
        return {"status": "not applicable", "reason": "the top layer is Gaussian (clustering needs "
                                                      "--top_latent=categorical)"}
    o, d, num_classes = inp.options, inp.model.model_config.latent_dims[-1], inp.dataset.num_classes
    x_train, y_train = inp.dataset.x_train, np.asarray(inp.dataset.y_train)
    if o.cluster_max_train:
        x_train, y_train = x_train[:o.cluster_max_train], y_train[:o.cluster_max_train]
    train_counts = information_estimators.count_matrix(_top_categories(inp.model, x_train, o.batch_size, inp.betas),
                                                       y_train, d, num_classes)
    used = train_counts.sum(1) > 0
    mapping = np.where(used, train_counts.argmax(1), -1)  # a category no training image uses maps to no label
    test_categories = inp.arrays.layers[inp.latent_names[-1]].mean.argmax(1)
    test_counts = information_estimators.count_matrix(test_categories, inp.labels, d, num_classes)
    return {"status": "computed", "accuracy": float(np.mean(mapping[test_categories] == inp.labels)),
            "train_accuracy": float(train_counts.max(1).sum() / train_counts.sum()),
            "majority_class_rate": float(inp.label_prior.max()),
            "categories_used": int(used.sum()), "num_categories": int(d),
            "category_to_label": mapping.tolist(), "test_counts": test_counts.tolist(),
            "counts_axes": "rows: category (mode of q(z_L|x)); columns: true label",
            "settings": {"num_train": int(len(y_train)), "num_test": int(len(inp.labels)),
                         "assignment": "mode of q(z_L | x)",
                         "mapping": "each category to the majority label of its training images; a category "
                                    "without training images maps to none (its test images count as wrong)"}}
