"""A trained encoder as a feature extractor, read from a run's SavedModel (workdir/export/).

    enc = load_encoder("runs/my_run")              # a run folder or its export/ folder
    enc.encode(x)["z2"].mean                        # posterior means (and .std) per layer
    enc.features(x, layers=("z1", "z2"))            # 2-D array, layers concatenated in the order given
    HVAEFeatures("runs/my_run", layers=("z2",))     # scikit-learn transformer
    HVAEEncoderLayer("runs/my_run")                 # frozen Keras layer

x: float32 (float64 is cast) in [0, 1], shaped (n, *input_shape) or flat (n, prod(input_shape)).
Nothing here imports the model code: only the SavedModel and export/hvae_repr.json are read.
"""
import functools
import math
import os
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import _check_feature_names_in, check_non_negative, validate_data

from hvae_repr import batching, io_utils
from hvae_repr.runs import RunDir
from hvae_repr.tf_env import tf

import keras

EXPORT, META = RunDir.EXPORT, RunDir.EXPORT_META

DEFAULT_BATCH_SIZE = 512
KINDS = ("mean", "sample")


class Posterior(NamedTuple):
    mean: np.ndarray   # [n, d_l]
    std: np.ndarray    # [n, d_l]


def find_export(path):
    """The export folder for `path`, a run folder, an export folder or a conditional model's grid point
    (whose point.json names the model's run); ValueError if it is none of these."""
    path = os.fspath(path)
    point = RunDir(path).read_point()
    if point is not None:
        return find_export(point["model_run"])
    for candidate in (path, os.path.join(path, EXPORT)):
        if os.path.isfile(os.path.join(candidate, META)) and os.path.isfile(os.path.join(candidate, "saved_model.pb")):
            return candidate
    if RunDir(path).has_config:
        raise ValueError(f"run folder {path} has no {EXPORT}/ yet; write it with: python -m hvae_repr.export "
                         f"--workdir={path}")
    raise ValueError(f"{path} is neither a run folder nor an export folder (no {META} there or in {EXPORT}/); "
                     f"pass a training run's --workdir or its {EXPORT}/ folder")


@functools.lru_cache(maxsize=4)
def _load_saved_model(export_dir, stamp):
    del stamp  # part of the cache key only: a re-export gets a new file, hence a new stamp
    return tf.saved_model.load(export_dir)


def load_encoder(path, betas=None):
    """Loads the trained encoder of a run folder, an export folder or a grid point (see `Encoder`)."""
    return Encoder(path, betas)


class Encoder:
    """The SavedModel of a run with numpy in, numpy out, input checks and batching."""

    def __init__(self, path, betas=None):
        """betas: the point (one beta per layer, z1 first) at which to use a beta-conditional model; by
        default a grid point's own, else the run's --betas. A model trained at fixed betas takes none."""
        self.export_dir = find_export(path)
        pb = os.path.join(self.export_dir, "saved_model.pb")
        try:
            self.meta = io_utils.read_json(os.path.join(self.export_dir, META))
            self.saved_model = _load_saved_model(os.path.abspath(self.export_dir), os.stat(pb).st_mtime_ns)
        except Exception as e:  # truncated or foreign files fail in json, protobuf or TF, each its own way
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            raise ValueError(f"the SavedModel in {self.export_dir} is damaged ({reason}); write it again with: "
                             f"python -m hvae_repr.export --workdir=RUN (RUN: the run folder it belongs to)") from None
        self.input_shape = tuple(self.meta["input_shape"])
        self.latent_names = tuple(self.meta["latent_names"])
        self.latent_dims = dict(zip(self.latent_names, self.meta["latent_dims"]))
        self.conditional = bool(self.meta.get("conditional"))
        point = RunDir(os.fspath(path)).read_point()
        chosen = tuple(betas or (point["betas"] if point else ()) or self.meta["betas"])
        if len(chosen) != len(self.latent_names):
            raise ValueError(f"betas has {len(chosen)} values for {len(self.latent_names)} layers; give one per layer, "
                             f"z1 first")
        if not self.conditional and chosen != tuple(self.meta["betas"]):
            raise ValueError(f"this encoder was trained at betas {tuple(self.meta['betas'])} and is not "
                             f"beta-conditional; leave betas out")
        self.betas = tuple(float(b) for b in chosen)
        # The betas go into every call of a conditional model's signatures, and nowhere else.
        self._betas_input = (tf.constant(self.betas, tf.float32),) if self.conditional else ()

    def __repr__(self):
        dims = ", ".join(f"{n}: {d}" for n, d in self.latent_dims.items())
        betas = f", betas {self.betas}" if self.conditional else ""
        return f"Encoder({self.export_dir!r}, input_shape={self.input_shape}, latents {{{dims}}}{betas})"

    # ------------------------------------------------------------- checks
    def check_input(self, x):
        """x as float32 [n, *input_shape]; ValueError (one line) for a wrong dtype, shape or range."""
        x = np.asarray(x)
        if x.dtype.kind in "uib":
            raise ValueError(f"x has dtype {x.dtype}; scale it to float32 in [0, 1] first, "
                             f"e.g. x.astype('float32') / 255 for 8-bit images")
        if x.dtype.kind != "f":
            raise ValueError(f"x has dtype {x.dtype}; pass a float32 array with values in [0, 1]")
        flat = math.prod(self.input_shape)
        if x.ndim >= 1 and x.shape[1:] == self.input_shape:
            pass
        elif x.ndim == 2 and x.shape[1] == flat:
            x = x.reshape((-1,) + self.input_shape)
        else:
            raise ValueError(f"x has shape {x.shape}; this encoder expects (n, {', '.join(map(str, self.input_shape))})"
                             f" or flat (n, {flat})")
        x = x.astype(np.float32, copy=False)
        if x.size and not np.all(np.isfinite(x)):
            raise ValueError("x contains NaN or inf; the encoder expects finite values in [0, 1]")
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise ValueError(f"x has values in [{x.min():g}, {x.max():g}]; the encoder expects [0, 1], "
                             f"scale images first, e.g. x / 255")
        return x

    def check_layers(self, layers):
        """Layer names as a tuple: None -> the top layer, "z2" -> ("z2",)."""
        if layers is None:
            return (self.latent_names[-1],)
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        unknown = [l for l in layers if l not in self.latent_dims]
        if not layers:
            raise ValueError(f"layers is empty; name at least one of {', '.join(self.latent_names)}")
        if unknown:
            raise ValueError(f"unknown layers {list(unknown)}; this model has {', '.join(self.latent_names)}")
        return layers

    # ------------------------------------------------------------- views
    def _batched(self, fn, x, batch_size):
        """fn(batch, index) -> dict of tensors on batches of x, every key joined."""
        return batching.map_batches(lambda i, rows: fn(x[rows], i), len(x), int(batch_size or DEFAULT_BATCH_SIZE))

    def encode(self, x, batch_size=DEFAULT_BATCH_SIZE):
        """{layer: Posterior(mean, std)} with numpy arrays [n, d_l], every layer z1 ... zL."""
        out = self._batched(lambda b, i: self.saved_model.encode(b, *self._betas_input), self.check_input(x),
                            batch_size)
        return {n: Posterior(out[f"{n}_mean"], out[f"{n}_std"]) for n in self.latent_names}

    def sample_latents(self, x, seed=0, batch_size=DEFAULT_BATCH_SIZE):
        """{layer: one posterior sample [n, d_l]}; the same seed and batch_size give the same draws."""
        return self._batched(lambda b, i: self.saved_model.sample_latents(b, _seed(seed, i), *self._betas_input),
                             self.check_input(x), batch_size)

    def features(self, x, layers=None, kind="mean", seed=0, batch_size=DEFAULT_BATCH_SIZE):
        """2-D float32 array [n, sum of d_l]: posterior means (kind="mean") or samples (kind="sample")
        of `layers` (default: the top layer), concatenated in the order given."""
        layers = self.check_layers(layers)
        if kind == "mean":
            values = {n: p.mean for n, p in self.encode(x, batch_size).items()}
        elif kind == "sample":
            values = self.sample_latents(x, seed, batch_size)
        else:
            raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        return np.concatenate([values[n] for n in layers], axis=1)

    def reconstruct(self, x, batch_size=DEFAULT_BATCH_SIZE):
        """Mean of p(x | z1) at the posterior means, shaped like the model's input."""
        return self._batched(lambda b, i: self.saved_model.reconstruct(b, *self._betas_input), self.check_input(x),
                             batch_size)["x_mean"]

    def decode(self, z1):
        return self.saved_model.decode(np.asarray(z1, np.float32), *self._betas_input)["x_mean"].numpy()

    def sample(self, n, seed=0):
        """n draws from the prior, as the mean of p(x | z1)."""
        return self.saved_model.sample(tf.constant(n, tf.int32), _seed(seed, 0), *self._betas_input)["x_mean"].numpy()


def _seed(seed, index):
    return tf.constant([seed, index], tf.int32)


class HVAEFeatures(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: images (or flat rows) -> latent features of a trained run.

    path: a run folder or its export/. layers: layer names, concatenated in order (default: the
    top layer). kind: "mean" (posterior means) or "sample" (one seeded posterior sample).
    The encoder is trained already, so the transformer is stateless (scikit-learn's requires_fit=False):
    transform works without fit, and fit learns nothing but checks the input and records
    n_features_in_ (and feature_names_in_ for a DataFrame). Input goes through scikit-learn's
    validate_data first (its errors for sparse, complex, NaN/inf, empty or negative input), then the
    encoder's own checks (shape, values in [0, 1]). The SavedModel is loaded on first use and cached
    per process, never pickled, so the transformer clones and pickles cheaply.
    """

    def __init__(self, path, layers=None, kind="mean", seed=0, batch_size=DEFAULT_BATCH_SIZE, betas=None):
        self.path = path
        self.layers = layers
        self.kind = kind
        self.seed = seed
        self.batch_size = batch_size
        self.betas = betas

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.positive_only = True  # values in [0, 1]
        tags.transformer_tags.preserves_dtype = ["float32"]  # the features are float32 whatever comes in
        return tags

    def _encoder(self):
        encoder = load_encoder(self.path, self.betas)
        encoder.check_layers(self.layers)
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; use one of {', '.join(KINDS)}")
        return encoder

    def _validated(self, X, reset):
        """X after scikit-learn's checks (float32 or float64, in its own shape); reset: record n_features_in_
        and feature_names_in_ (fit), else check X against them."""
        shape = getattr(X, "shape", ())
        if len(shape) > 2:  # image-shaped rows: scikit-learn counts features on flat rows
            X = np.reshape(X, (len(X), -1))
        X = validate_data(self, X, reset=reset, dtype=(np.float32, np.float64))
        check_non_negative(X, type(self).__name__)
        return X.reshape(shape) if len(shape) > 2 else X  # the shape the encoder's errors name

    def fit(self, X, y=None):
        self._encoder().check_input(self._validated(X, reset=True))
        return self

    def transform(self, X):
        return self._encoder().features(self._validated(X, reset=False), self.layers, self.kind, self.seed,
                                        self.batch_size)

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns, "<layer>_<index>" (z2_0, z2_1, ...); input_features, if given, is
        checked against the input's feature names as scikit-learn does, and does not change the names."""
        _check_feature_names_in(self, input_features, generate_names=False)  # scikit-learn's own check and errors
        encoder = self._encoder()
        return np.asarray([f"{n}_{i}" for n in encoder.check_layers(self.layers)
                           for i in range(encoder.latent_dims[n])], dtype=object)


@keras.saving.register_keras_serializable(package="hvae_repr")
class HVAEEncoderLayer(keras.layers.Layer):
    """Keras layer: x (float32 in [0, 1], image-shaped or flat) -> latent features [batch, sum of d_l].

    Frozen: the SavedModel's weights are not Keras weights, so the layer has no trainable
    weights and fine-tuning the encoder is not supported (train a new run instead).
    kind="sample" draws a fresh posterior sample at every call (seeded by `seed`).
    """

    def __init__(self, path, layers=None, kind="mean", seed=0, trainable=False, betas=None, **kwargs):
        if trainable:
            raise ValueError("HVAEEncoderLayer cannot be fine-tuned (the SavedModel's weights are frozen); "
                             "leave trainable=False")
        super().__init__(trainable=False, **kwargs)
        self._encoder = load_encoder(path, betas)
        self.source = os.fspath(path)  # Layer.path is Keras's own
        self.layer_names = self._encoder.check_layers(layers)
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        self.kind = kind
        self.seed = seed
        self.units = sum(self._encoder.latent_dims[n] for n in self.layer_names)
        if kind == "sample":
            self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x):
        x = tf.reshape(tf.cast(x, tf.float32), (-1,) + self._encoder.input_shape)
        model = self._encoder.saved_model
        if self.kind == "mean":
            out = model.encode(x, *self._encoder._betas_input)
            parts = [out[f"{n}_mean"] for n in self.layer_names]
        else:
            out = model.sample_latents(x, tf.cast(self.seed_generator.next(), tf.int32), *self._encoder._betas_input)
            parts = [out[n] for n in self.layer_names]
        return tf.concat(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(path=self.source, layers=list(self.layer_names), kind=self.kind, seed=self.seed,
                      betas=list(self._encoder.betas) if self._encoder.conditional else None)
        return config
