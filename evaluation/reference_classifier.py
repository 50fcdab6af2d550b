"""A small reference classifier per data set, trained once and cached.

It scores reconstructions (accuracy) and prior samples (Inception-style score,
Frechet distance of its penultimate features). Images get a two-block CNN,
flat vectors an MLP. The trained model is cached under
<cache_dir>/<data set name>/ (cache_dir: argument, else $HVAE_REPR_CLASSIFIER_DIR,
else ~/.hvae_repr/classifiers) with info.json holding its settings, a
fingerprint of the training data and its test accuracy; a cache whose
fingerprint or settings differ is retrained.
"""
import hashlib
import math
import os
import re
import time

import numpy as np

from hvae_repr import batching, io_utils
from hvae_repr.tf_env import tf

import keras

FEATURE_LAYER = "features"


def default_cache_dir():
    return os.environ.get("HVAE_REPR_CLASSIFIER_DIR",
                          os.path.join(os.path.expanduser("~"), ".hvae_repr", "classifiers"))


def _fingerprint(x, y):
    digest = hashlib.sha1()
    digest.update(str((x.shape, str(x.dtype))).encode())
    digest.update(np.ascontiguousarray(y).tobytes())
    digest.update(np.ascontiguousarray(x[:: max(1, len(x) // 500)]).tobytes())
    return digest.hexdigest()


def build_classifier(input_shape, num_classes):
    """Two conv blocks (32, 64 channels) for images, two dense layers for flat inputs."""
    inputs = keras.Input(shape=tuple(input_shape))
    h = inputs
    if len(input_shape) == 3:
        size = min(input_shape[:2])
        for channels in (32, 64):
            h = keras.layers.Conv2D(channels, 3, padding="same", activation="relu")(h)
            if size >= 4:
                h = keras.layers.MaxPooling2D(2)(h)
                size //= 2
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dropout(0.25)(h)
    else:
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dense(256, activation="relu")(h)
    h = keras.layers.Dense(128, activation="relu", name=FEATURE_LAYER)(h)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(keras.layers.Dropout(0.25)(h))
    return keras.Model(inputs, outputs)


class ReferenceClassifier:
    """A trained classifier: class probabilities and penultimate (128-d) features."""

    def __init__(self, model, info):
        self.model = model
        self.info = info
        both = keras.Model(model.input, [model.output, model.get_layer(FEATURE_LAYER).output])
        self._both = tf.function(lambda x: both(x, training=False), reduce_retracing=True, autograph=False)

    @property
    def test_accuracy(self):
        return self.info["test_accuracy"]

    def predict(self, x, batch_size=1000):
        """Returns (probabilities [N, M], features [N, 128]) as float64 numpy arrays."""
        x = np.asarray(x, dtype=np.float32)
        expected = tuple(self.info["input_shape"])
        if x.shape[1:] != expected:
            raise ValueError(f"classifier expects inputs of shape [N, {expected}]; got {x.shape}")
        probs, feats = batching.map_batches(lambda b, rows: self._both(x[rows]), len(x), batch_size)
        return probs.astype(np.float64), feats.astype(np.float64)

    def accuracy(self, x, labels):
        probs, _ = self.predict(x)
        return float(np.mean(np.argmax(probs, 1) == np.asarray(labels)))


def train_classifier(dataset, epochs=3, min_steps=1000, max_train=None, batch_size=128, seed=0):
    """Trains the reference classifier on dataset's training split (Adam 1e-3).

    Runs `epochs` epochs, or more when needed to reach `min_steps` steps (small
    data sets such as the 1,437 training digits need many epochs).
    """
    keras.utils.set_random_seed(seed)
    x, y = dataset.x_train, dataset.y_train
    if max_train is not None and len(x) > max_train:
        keep = np.random.default_rng(seed).permutation(len(x))[:max_train]
        x, y = x[keep], y[keep]
    model = build_classifier(dataset.input_shape, dataset.num_classes)
    epochs_run = max(epochs, math.ceil(min_steps / math.ceil(len(x) / batch_size)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    start = time.perf_counter()
    model.fit(x.astype(np.float32), y, epochs=epochs_run, batch_size=batch_size, verbose=0)
    info = {"dataset": dataset.name, "input_shape": list(dataset.input_shape),
            "num_classes": int(dataset.num_classes), "architecture":
            "conv32-pool-conv64-pool-dense128-softmax" if len(dataset.input_shape) == 3
            else "dense256-dense128-softmax",
            "settings": _settings(epochs, min_steps, max_train, batch_size, seed), "epochs_run": epochs_run,
            "num_train": int(len(x)), "train_seconds": time.perf_counter() - start,
            "fingerprint": _fingerprint(dataset.x_train, dataset.y_train),
            "keras_version": keras.__version__}
    classifier = ReferenceClassifier(model, info)
    info["test_accuracy"] = classifier.accuracy(dataset.x_test, dataset.y_test)
    info["num_test"] = int(len(dataset.y_test))
    return classifier


def _settings(epochs, min_steps, max_train, batch_size, seed):
    return {"epochs": epochs, "min_steps": min_steps, "max_train": max_train, "batch_size": batch_size,
            "seed": seed, "optimizer": "Adam(1e-3)"}


def load_or_train(dataset, cache_dir=None, epochs=3, min_steps=1000, max_train=None, seed=0):
    """The cached classifier for `dataset`, training and caching it if needed.

    The returned object's info has "cached": True when it came from the cache.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset.name).strip("_") or "dataset"
    directory = os.path.join(cache_dir or default_cache_dir(), safe)
    info_path = os.path.join(directory, "info.json")
    model_path = os.path.join(directory, "model.keras")
    settings = _settings(epochs, min_steps, max_train, 128, seed)
    if os.path.exists(info_path) and os.path.exists(model_path):
        info = io_utils.read_json(info_path)
        if (info.get("fingerprint") == _fingerprint(dataset.x_train, dataset.y_train)
                and info.get("settings") == settings):
            info.update(cached=True, path=directory)
            return ReferenceClassifier(keras.saving.load_model(model_path), info)
    classifier = train_classifier(dataset, epochs=epochs, min_steps=min_steps, max_train=max_train, seed=seed)
    with io_utils.replacing_folder(directory) as tmp:  # the model and its info.json are swapped in together
        classifier.model.save(os.path.join(tmp, "model.keras"))
        io_utils.write_json_atomic(os.path.join(tmp, "info.json"), classifier.info)
    classifier.info.update(cached=False, path=directory)
    return classifier
