"""load_encoder, the scikit-learn transformer, the Keras layer, their errors, and the README example."""
import os
import pickle
import re
import shutil

import numpy as np
import pytest

from hvae_repr import export
from hvae_repr.runs import RunDir
from hvae_repr.data import load_dataset
from hvae_repr.features import HVAEEncoderLayer, HVAEFeatures, load_encoder

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
README_SECTION = "Use a trained encoder"


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    if not os.path.isdir(RunDir(tiny_run).file(RunDir.EXPORT)):
        export.export_run(tiny_run)
    return tiny_run


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return ds.x_train[:300], ds.y_train[:300], ds.x_test[:100], ds.y_test[:100]


def test_load_encoder_from_run_or_export_folder(run_dir, digits):
    x = digits[2][:20]
    enc = load_encoder(run_dir)
    assert enc.latent_names == ("z1", "z2")
    codes = enc.encode(x)
    assert set(codes) == {"z1", "z2"}
    assert codes["z2"].mean.shape == codes["z2"].std.shape == (20, enc.latent_dims["z2"])
    assert np.all(codes["z1"].std > 0)
    same = load_encoder(os.path.join(run_dir, "export")).encode(x)
    np.testing.assert_array_equal(same["z1"].mean, codes["z1"].mean)

    top = enc.features(x)  # default: the top layer's means
    np.testing.assert_array_equal(top, codes["z2"].mean)
    both = enc.features(x, layers=("z2", "z1"))
    np.testing.assert_array_equal(both, np.concatenate([codes["z2"].mean, codes["z1"].mean], axis=1))
    np.testing.assert_allclose(enc.features(x.reshape(20, -1), batch_size=7), top, atol=1e-6)

    a = enc.features(x, layers=("z1", "z2"), kind="sample", seed=1)
    assert a.shape == (20, sum(enc.latent_dims.values()))
    np.testing.assert_array_equal(a, enc.features(x, layers=("z1", "z2"), kind="sample", seed=1))
    assert not np.allclose(a, enc.features(x, layers=("z1", "z2"), kind="sample", seed=2))


def test_transformer_in_pipeline_with_logistic_regression(run_dir, digits):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    x_train, y_train, x_test, y_test = digits
    pipe = make_pipeline(HVAEFeatures(run_dir, layers=("z1", "z2")), LogisticRegression(max_iter=500))
    pipe.fit(x_train.reshape(len(x_train), -1), y_train)  # flat rows, as scikit-learn users pass them
    assert pipe[0].transform(x_test).shape == (len(x_test), 12)  # image-shaped rows too
    assert pipe.predict(x_test).shape == (len(x_test),)
    assert pipe.score(x_test, y_test) > 0.2  # 10 classes; a 2-epoch encoder is far above chance
    assert list(pipe[0].get_feature_names_out()[:2]) == ["z1_0", "z1_1"]


def test_transformer_clone_get_params_pickle(run_dir, digits):
    from sklearn.base import clone
    x = digits[2][:10]
    t = HVAEFeatures(run_dir, layers=("z1",), kind="sample", seed=3, batch_size=4)
    params = t.get_params()
    assert params == {"path": run_dir, "layers": ("z1",), "kind": "sample", "seed": 3, "batch_size": 4, "betas": None}
    assert clone(t).get_params() == params
    fitted = t.fit(x)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).transform(x), fitted.transform(x))


def test_transformer_in_grid_search(run_dir, digits):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    x_train, y_train = digits[0][:200], digits[1][:200]
    pipe = Pipeline([("hvae", HVAEFeatures(run_dir)), ("clf", LogisticRegression(max_iter=300))])
    search = GridSearchCV(pipe, {"hvae__layers": [("z1",), ("z2",)]}, cv=2).fit(x_train, y_train)
    assert search.best_params_["hvae__layers"] in [("z1",), ("z2",)]


def test_keras_layer_in_a_small_model(run_dir, digits):
    import keras
    x_train, y_train, x_test, _ = digits
    layer = HVAEEncoderLayer(run_dir, layers=("z1", "z2"))
    inputs = keras.Input(shape=(64,))  # flat inputs are reshaped to the model's 8x8x1
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(layer(inputs)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x_train[:128].reshape(128, -1), y_train[:128], epochs=1, verbose=0)
    assert model.predict(x_test[:5].reshape(5, -1), verbose=0).shape == (5, 10)
    assert layer.trainable_weights == [] and not layer.trainable
    assert len(model.trainable_weights) == 2  # only the Dense layer trains
    np.testing.assert_allclose(layer(x_test[:5]).numpy(),
                               load_encoder(run_dir).features(x_test[:5], layers=("z1", "z2")), atol=1e-6)
    with pytest.raises(ValueError, match="cannot be fine-tuned"):
        HVAEEncoderLayer(run_dir, trainable=True)


def _one_line_error(fn, *match):
    with pytest.raises(ValueError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for m in match:
        assert m in message, message


def test_clear_errors(run_dir, digits, tmp_path):
    x = digits[2][:4]
    _one_line_error(lambda: load_encoder(tmp_path), "neither a run folder nor an export folder")
    no_export = tmp_path / "run"
    no_export.mkdir()
    shutil.copy(RunDir(run_dir).file(RunDir.CONFIG), no_export / RunDir.CONFIG)
    _one_line_error(lambda: load_encoder(no_export), "python -m hvae_repr.export")

    enc = load_encoder(run_dir)
    _one_line_error(lambda: enc.features(x.reshape(4, 8, 8)), "shape (4, 8, 8)", "(n, 8, 8, 1)", "(n, 64)")
    _one_line_error(lambda: enc.features((x * 255).astype(np.uint8)), "uint8", "float32", "/ 255")
    _one_line_error(lambda: enc.features(x * 255), "[0, 1]")
    _one_line_error(lambda: enc.features(x, layers=("z3",)), "z3", "z1, z2")
    _one_line_error(lambda: enc.features(x, kind="median"), "median")
    _one_line_error(lambda: HVAEFeatures(run_dir).fit(x[:, :4]), "shape")


def test_readme_example_runs(run_dir):
    """Runs the first python block of README.md's "Use a trained encoder" section on the tiny run."""
    text = open(README).read() if os.path.isfile(README) else ""
    heading = re.search(rf"^#+ {README_SECTION}\s*$", text, flags=re.M)
    if heading is None:
        pytest.skip(f"README has no '{README_SECTION}' section yet")
    default_run = re.search(r'^run_dir = "(.*)"$', text[heading.end():], flags=re.M)
    from hvae_repr.config import TrainConfig
    assert default_run and default_run.group(1) == TrainConfig().workdir, "the README's run_dir is not the main job's"
    block = re.search(r"```python\n(.*?)```", text[heading.end():], flags=re.S)
    assert block, f"README's '{README_SECTION}' section has no python example"
    code, n = re.subn(r"^run_dir = .*$", f"run_dir = {run_dir!r}", block.group(1), flags=re.M)
    assert n == 1, "the README example must set run_dir = \"...\" on one line"
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
