"""Tests for hvae_repr.data and hvae_repr.synthetic: every file format on tiny files written here."""
import gzip
import io
import itertools
import os
import pathlib
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import entropy_estimate
import scipy.io

from hvae_repr import data, synthetic
from hvae_repr.data import DataError, Dataset, load_dataset, validate_dataset

REAL_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Downloads are off and any attempt to open a URL beyond this machine's loopback fails the test."""
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    urlopen = urllib.request.urlopen

    def loopback_only(url, *args, **kwargs):
        full = getattr(url, "full_url", url)
        if not full.startswith("http://127.0.0.1:"):
            raise AssertionError(f"tests must not touch the network ({full})")
        return urlopen(url, *args, **kwargs)
    monkeypatch.setattr(urllib.request, "urlopen", loopback_only)


def _uint8_images(rng, n, shape):
    return rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8)


def _mnist_arrays(seed=0, num_train=6, num_test=4):
    rng = np.random.default_rng(seed)
    return (_uint8_images(rng, num_train, (28, 28)), rng.integers(0, 10, num_train, dtype=np.uint8),
            _uint8_images(rng, num_test, (28, 28)), rng.integers(0, 10, num_test, dtype=np.uint8))


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_idx_set(folder, arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(data._IDX_FILES, arrays):
        _write_idx(folder / name, array)


def _assert_images(ds, arrays):
    x_train, y_train, x_test, y_test = arrays
    for x, y, raw_x, raw_y in ((ds.x_train, ds.y_train, x_train, y_train), (ds.x_test, ds.y_test, x_test, y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        expected = raw_x / 255.0
        np.testing.assert_allclose(x, expected.reshape(x.shape), atol=1e-6)
        np.testing.assert_array_equal(y, raw_y)


def _one_line_error(fn, *args, **kwargs):
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------ digits


def test_digits_shapes_ranges_and_split():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape == (360, 8, 8, 1)
    assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    # Stratified: each class keeps about 20% of its examples in the test split.
    counts = np.bincount(ds.y_test, minlength=10) / (np.bincount(ds.y_test, minlength=10) + np.bincount(ds.y_train))
    assert np.all(np.abs(counts - 0.2) < 0.02)
    again = load_dataset("digits")
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    np.testing.assert_array_equal(ds.y_train, again.y_train)


# ------------------------------------------------------------------ MNIST-like


def test_the_digits_split_is_kept_in_the_data_folder_and_read_back_unchanged(tmp_path):
    made = load_dataset("digits", str(tmp_path))
    [kept] = os.listdir(tmp_path)
    assert kept.startswith("digits_split-sklearn") and kept.endswith(".npz")
    again = load_dataset("digits", str(tmp_path))
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(made, name), getattr(again, name))
        assert getattr(made, name).dtype == getattr(again, name).dtype
    (tmp_path / kept).write_bytes(b"damaged")  # made again, not an error
    np.testing.assert_array_equal(load_dataset("digits", str(tmp_path)).x_train, made.x_train)
    assert os.path.getsize(tmp_path / kept) > 1000


def test_a_data_folder_that_cannot_be_written_still_gives_the_digits(tmp_path, monkeypatch):
    from hvae_repr import io_utils

    def refuse(path, **arrays):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(io_utils, "write_npz_atomic", refuse)
    ds = load_dataset("binary_digits", str(tmp_path))
    assert ds.x_train.shape == (1437, 8, 8, 1) and os.listdir(tmp_path) == []


def test_mnist_keras_npz(tmp_path):
    arrays = _mnist_arrays()
    np.savez(tmp_path / "mnist.npz", **dict(zip(["x_train", "y_train", "x_test", "y_test"], arrays)))
    ds = load_dataset("mnist", str(tmp_path))
    assert ds.x_train.shape == (6, 28, 28, 1) and ds.num_classes == 10
    _assert_images(ds, arrays)


def test_mnist_idx_gz_in_subfolder(tmp_path):
    arrays = _mnist_arrays(seed=1)
    _write_idx_set(tmp_path / "mnist", arrays)
    _assert_images(load_dataset("mnist", str(tmp_path)), arrays)


def test_fashion_mnist_idx_and_npz(tmp_path):
    arrays = _mnist_arrays(seed=2)
    _write_idx_set(tmp_path / "idx" / "fashion_mnist", arrays)
    _assert_images(load_dataset("fashion_mnist", str(tmp_path / "idx")), arrays)
    (tmp_path / "npz").mkdir()
    np.savez(tmp_path / "npz" / "fashion_mnist.npz", **dict(zip(["x_train", "y_train", "x_test", "y_test"], arrays)))
    _assert_images(load_dataset("fashion_mnist", str(tmp_path / "npz")), arrays)


def test_binary_mnist_thresholds_at_half(tmp_path):
    arrays = _mnist_arrays(seed=3)
    _write_idx_set(tmp_path / "mnist", arrays)  # binary_mnist reads MNIST's files
    ds = load_dataset("binary_mnist", str(tmp_path))
    assert ds.name == "binary_mnist"
    assert set(np.unique(ds.x_train)) <= {0.0, 1.0}
    np.testing.assert_array_equal(ds.x_train[..., 0], (arrays[0] / 255.0 > 0.5).astype(np.float32))
    np.testing.assert_array_equal(ds.x_test[..., 0], (arrays[2] >= 128).astype(np.float32))


def test_idx_files_of_one_set_are_never_read_as_the_other(tmp_path):
    # MNIST and Fashion-MNIST share the IDX names, so loose IDX files in data_dir/ belong to neither.
    _write_idx_set(tmp_path, _mnist_arrays())
    for name in ("mnist", "fashion_mnist"):
        message = _one_line_error(load_dataset, name, str(tmp_path))
        assert f"(in {tmp_path / name})" in message and message.startswith(f"{name}: no ")


def test_bad_idx_file_is_reported(tmp_path):
    _write_idx_set(tmp_path / "mnist", _mnist_arrays())
    with gzip.open(tmp_path / "mnist" / data._IDX_FILES[0], "wb") as f:
        f.write(b"\x00\x00\x0d\x03not an image file")
    assert "not an unsigned-byte IDX file" in _one_line_error(load_dataset, "mnist", str(tmp_path))


# ---------------------------------------------------------------------- CIFAR-10


def _cifar_batches(seed=0, per_batch=3):
    """{file name: (images HWC, labels, record bytes)} for the five train batches and the test batch."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name in data._CIFAR_BATCHES:
        images = _uint8_images(rng, per_batch, (32, 32, 3))
        labels = rng.integers(0, 10, per_batch, dtype=np.uint8)
        records = np.concatenate([labels[:, None], images.transpose(0, 3, 1, 2).reshape(per_batch, -1)], axis=1)
        batches[name] = (images, labels, records.tobytes())
    return batches


def _assert_cifar(ds, batches):
    train = [batches[n] for n in data._CIFAR_BATCHES[:5]]
    _assert_images(ds, (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]),
                        *batches["test_batch.bin"][:2]))
    assert ds.input_shape == (32, 32, 3)


def test_cifar10_binary_batches(tmp_path):
    batches = _cifar_batches()
    folder = tmp_path / "cifar10" / data._CIFAR_DIR
    folder.mkdir(parents=True)
    for name, (_, _, raw) in batches.items():
        (folder / name).write_bytes(raw)
    _assert_cifar(load_dataset("cifar10", str(tmp_path)), batches)


def test_cifar10_tar_gz_archive(tmp_path):
    batches = _cifar_batches(seed=1)
    with tarfile.open(tmp_path / data._CIFAR_ARCHIVE, "w:gz") as tar:
        for name, (_, _, raw) in batches.items():
            info = tarfile.TarInfo(f"{data._CIFAR_DIR}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    _assert_cifar(load_dataset("cifar10", str(tmp_path)), batches)


def test_cifar10_truncated_batch(tmp_path):
    folder = tmp_path / data._CIFAR_DIR
    folder.mkdir()
    for name, (_, _, raw) in _cifar_batches().items():
        (folder / name).write_bytes(raw[:-1] if name == "test_batch.bin" else raw)
    assert "3073-byte CIFAR-10 records" in _one_line_error(load_dataset, "cifar10", str(tmp_path))


# -------------------------------------------------------------------------- SVHN


def test_svhn_mat_files_map_label_10_to_0(tmp_path):
    rng = np.random.default_rng(0)
    expected = []
    for file_name, n in zip(data._SVHN_FILES, (5, 3)):
        images = _uint8_images(rng, n, (32, 32, 3))
        digits = np.arange(n) % 10
        labels = np.where(digits == 0, 10, digits).astype(np.float64)[:, None]  # as in the real files
        scipy.io.savemat(tmp_path / file_name, {"X": images.transpose(1, 2, 3, 0), "y": labels})
        expected += [images, digits]
    ds = load_dataset("svhn", str(tmp_path))
    _assert_images(ds, expected)
    assert ds.y_train[0] == 0


# ------------------------------------------------------------------------- npz:PATH


def test_npz_path_uint8_rank3_gets_channel_axis(tmp_path):
    arrays = _mnist_arrays(seed=4)
    path = tmp_path / "mine.npz"
    np.savez(path, **dict(zip(["x_train", "y_train", "x_test", "y_test"], arrays)))
    ds = load_dataset(f"npz:{path}")
    assert ds.input_shape == (28, 28, 1)
    assert ds.num_classes == 1 + max(arrays[1].max(), arrays[3].max())
    _assert_images(ds, arrays)


def test_npz_path_flat_floats_kept(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.random((7, 5)), rng.random((2, 5))
    path = tmp_path / "flat.npz"
    np.savez(path, x_train=x_train, y_train=np.array([0, 1, 2, 0, 1, 2, 0]), x_test=x_test, y_test=np.array([1, 2]))
    ds = load_dataset(f"npz:{path}")
    assert ds.input_shape == (5,) and ds.num_classes == 3
    np.testing.assert_allclose(ds.x_train, x_train.astype(np.float32))


def test_npz_path_problems(tmp_path):
    assert "no file" in _one_line_error(load_dataset, f"npz:{tmp_path / 'absent.npz'}")
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((2, 3)), y_train=np.zeros(2, np.int64))
    assert "missing arrays x_test, y_test" in _one_line_error(load_dataset, f"npz:{path}")
    np.savez(path, x_train=np.zeros((2, 3), np.int32), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((1, 3)), y_test=np.zeros(1, np.int64))
    assert "dtype int32" in _one_line_error(load_dataset, f"npz:{path}")
    np.savez(path, x_train=np.array([{"a": 1}, None]), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((1, 3)), y_test=np.zeros(1, np.int64))
    assert "without pickle" in _one_line_error(load_dataset, f"npz:{path}")


# ------------------------------------------------------ missing files and downloads


@pytest.mark.parametrize("name, files", [
    ("mnist", ["mnist.npz", "train-images-idx3-ubyte.gz", "https://"]),
    ("binary_mnist", ["mnist.npz", "t10k-labels-idx1-ubyte.gz"]),
    ("fashion_mnist", ["train-images-idx3-ubyte.gz", "fashion-mnist/"]),
    ("cifar10", ["cifar-10-batches-bin/data_batch_1.bin", "cifar-10-binary.tar.gz"]),
    ("svhn", ["train_32x32.mat", "test_32x32.mat"]),
])
def test_offline_failure_names_files_and_folder(tmp_path, name, files):
    message = _one_line_error(load_dataset, name, str(tmp_path))
    for text in files + [str(tmp_path), "--data_dir", "downloads are off"]:
        assert text in message


def test_download_false_overrides_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(data.OFFLINE_ENV)
    assert "downloads are off" in _one_line_error(load_dataset, "svhn", str(tmp_path), download=False)


@pytest.fixture
def local_server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving tmp_path/served/, standing in for the data set hosts."""
    import functools
    import http.server
    import threading
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(data, "_KERAS_URL", f"http://127.0.0.1:{server.server_port}/")
    yield served
    server.shutdown()


def _serve_mnist(served, monkeypatch, published_hash=None):
    import hashlib
    arrays = _mnist_arrays(seed=5)
    np.savez(served / "mnist.npz", **dict(zip(["x_train", "y_train", "x_test", "y_test"], arrays)))
    sha256 = hashlib.sha256((served / "mnist.npz").read_bytes()).hexdigest()
    monkeypatch.setitem(data._FILE_HASHES, "mnist.npz", published_hash or sha256)
    return arrays


def test_download_fetches_into_set_folder_and_checks_the_hash(tmp_path, local_server, monkeypatch):
    arrays = _serve_mnist(local_server, monkeypatch)
    ds = load_dataset("mnist", str(tmp_path / "data"), download=True)
    _assert_images(ds, arrays)
    assert sorted(os.listdir(tmp_path / "data" / "mnist")) == ["mnist.npz"]


def test_download_with_the_wrong_hash_is_one_line_and_leaves_nothing(tmp_path, local_server, monkeypatch):
    _serve_mnist(local_server, monkeypatch, published_hash="0" * 64)
    message = _one_line_error(load_dataset, "mnist", str(tmp_path / "data"), download=True)
    assert "downloading failed" in message and "mnist.npz" in message
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]


def test_failed_download_is_one_line_and_leaves_nothing(tmp_path, local_server):
    # Nothing is served: the host answers 404.
    message = _one_line_error(load_dataset, "mnist", str(tmp_path / "data"), download=True)
    assert "downloading failed" in message and "404" in message
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]


def test_unknown_name_lists_known_ones():
    message = _one_line_error(load_dataset, "imagenet")
    for name in list(data.DATASETS) + ["npz:PATH"]:
        assert name in message


# -------------------------------------------------------------------- validation


def _good(**changes):
    rng = np.random.default_rng(0)
    fields = dict(name="toy", x_train=rng.random((6, 4, 4, 1), dtype=np.float32), y_train=np.arange(6) % 3,
                  x_test=rng.random((3, 4, 4, 1), dtype=np.float32), y_test=np.arange(3), num_classes=3)
    fields.update(changes)
    return Dataset(**fields)


def _with_value(value):
    x = np.zeros((6, 4, 4, 1), np.float32)
    x[2, 1, 1, 0] = value
    return x


@pytest.mark.parametrize("changes, expected", [
    (dict(x_train=_with_value(np.nan)), "NaN or infinite"),
    (dict(x_test=np.full((3, 4, 4, 1), np.inf, np.float32)), "NaN or infinite"),
    (dict(x_train=np.zeros((6, 4, 4, 1, 1), np.float32)), "expected images [N, H, W, C] or flat vectors [N, D]"),
    (dict(x_train=np.zeros((6,), np.float32)), "expected images [N, H, W, C] or flat vectors [N, D]"),
    (dict(x_test=np.zeros((3, 5, 5, 1), np.float32)), "both splits need the same example shape"),
    (dict(y_train=np.arange(5)), "expected one label per image"),
    (dict(y_test=np.zeros((3, 1), np.int64)), "expected one label per image"),
    (dict(y_train=np.arange(6) / 2), "labels must be integers"),
    (dict(y_test=np.array([0, -1, 2])), "labels must lie in 0..2"),
    (dict(y_test=np.array([0, 1, 3])), "labels must lie in 0..2"),
    (dict(x_train=_with_value(1.5)), "images must be values in [0, 1]"),
    (dict(x_test=-np.ones((3, 4, 4, 1), np.float32)), "values in [-1, -1]"),
    (dict(x_train=np.zeros((0, 4, 4, 1), np.float32), y_train=np.zeros(0, np.int64)), "is empty"),
    (dict(x_train=np.zeros((6, 4, 4, 1), np.uint8)), "dtype uint8"),
])
def test_validate_rejects_bad_data(changes, expected):
    message = _one_line_error(validate_dataset, _good(**changes))
    assert expected in message and message.startswith("toy: ")


def test_validate_mentions_bernoulli_likelihood():
    message = _one_line_error(validate_dataset, _good(x_train=_with_value(2.0)), likelihood="bernoulli")
    assert "Bernoulli likelihood" in message


def test_validate_accepts_good_data_and_flat_vectors():
    validate_dataset(_good())
    validate_dataset(_good(x_train=np.zeros((6, 16), np.float32), x_test=np.ones((3, 16), np.float32)),
                     likelihood="bernoulli")


def test_load_dataset_validates(tmp_path):
    path = tmp_path / "nan.npz"
    np.savez(path, x_train=np.full((2, 3), np.nan), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((1, 3)), y_test=np.zeros(1, np.int64))
    assert "NaN" in _one_line_error(load_dataset, f"npz:{path}")


# --------------------------------------------------------------------- synthetic


def test_synthetic_dataset_is_binary_labelled_and_reproducible():
    ds = load_dataset("synthetic")
    assert ds.x_train.shape == (5000, 8, 8, 1) and ds.x_test.shape == (1000, 8, 8, 1)
    assert set(np.unique(ds.x_train)) == {0.0, 1.0} and ds.num_classes == 10
    assert set(np.unique(ds.y_test)) == set(range(10))
    again = load_dataset("synthetic")
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    log_p = ds.log_prob(ds.x_test)
    assert log_p.shape == (1000,) and np.all(np.isfinite(log_p)) and np.all(log_p < 0)
    entropy, stderr = entropy_estimate(ds.log_prob, ds.x_test)
    # Between the pixel noise alone (64 * H_b(0.1)) and that plus the log number of components.
    pixel_entropy = 64 * -(0.1 * np.log(0.1) + 0.9 * np.log(0.9))
    assert pixel_entropy - 4 * stderr < entropy < pixel_entropy + np.log(30) + 4 * stderr


def _all_binary_images(shape):
    num_pixels = int(np.prod(shape))
    return np.array(list(itertools.product([0.0, 1.0], repeat=num_pixels)), np.float32).reshape((-1,) + shape)


@pytest.mark.parametrize("source", [
    synthetic.make_synthetic(image_shape=(2, 2, 1), num_classes=2, num_styles=2, seed=3),
    synthetic.SyntheticSource(weights=np.array([[0.5, 0.1], [0.3, 0.1]]),
                              probs=np.random.default_rng(7).uniform(0.05, 0.95, (2, 2, 5)), image_shape=(5,)),
])
def test_synthetic_exact_entropy_matches_sampling(source):
    images = _all_binary_images(source.image_shape)
    log_p = source.log_prob(images)
    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, rtol=1e-12)
    exact_entropy = -np.sum(np.exp(log_p) * log_p)

    x, y = source.sample(20000, np.random.default_rng(0))
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (20000,) + source.image_shape
    estimate, stderr = entropy_estimate(source.log_prob, x)
    assert abs(estimate - exact_entropy) < 4 * stderr
    # Sample frequencies of every image and of every class agree with p(x) and the class weights.
    index = (x.reshape(len(x), -1) @ (2 ** np.arange(source.num_pixels)[::-1])).astype(int)
    frequencies = np.bincount(index, minlength=len(images)) / len(x)
    np.testing.assert_allclose(frequencies, np.exp(log_p), atol=0.015)
    np.testing.assert_allclose(np.bincount(y) / len(y), source.weights.sum(axis=1), atol=0.015)


def test_synthetic_source_rejects_bad_parameters():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        synthetic.SyntheticSource(weights=np.ones((1, 1)), probs=np.zeros((1, 1, 4)), image_shape=(2, 2))
    with pytest.raises(ValueError, match="sum to 1"):
        synthetic.SyntheticSource(weights=np.ones((1, 2)), probs=np.full((1, 2, 4), 0.5), image_shape=(2, 2))
    source = synthetic.make_synthetic(image_shape=(2, 2, 1), num_classes=2, num_styles=1)
    with pytest.raises(ValueError, match="binary"):
        source.log_prob(np.full((1, 2, 2, 1), 0.5))


# -------------------------------------------------------------------- real MNIST


@pytest.mark.skipif(not REAL_MNIST.is_file(), reason=f"real MNIST not found at {REAL_MNIST}")
def test_real_mnist_npz():
    ds = load_dataset("binary_mnist", str(REAL_MNIST.parent))
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
