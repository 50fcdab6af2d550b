"""Named data sets as numpy arrays: images float32 in [0, 1], labels int64.

Real data sets are read from `data_dir` in their published file formats (never
through pickle). Files are looked for in `data_dir/<set>/` and then `data_dir/`
(IDX files, named alike for MNIST and Fashion-MNIST, only in `data_dir/<set>/`).
Missing files are downloaded into `data_dir/<set>/` unless downloads are off
(`download=False` or the environment variable HVAE_REPR_OFFLINE=1); otherwise,
or when the download fails, loading stops with one line naming the files.
This module imports no TensorFlow so that it stays quick to import.
"""
import dataclasses
import gzip
import os
import tarfile
import zipfile
from typing import Callable, NamedTuple

import numpy as np

from hvae_repr import io_utils, synthetic

DEFAULT_DATA_DIR = os.path.join("~", ".hvae_repr", "data")
OFFLINE_ENV = "HVAE_REPR_OFFLINE"
DOWNLOAD_TIMEOUT_S = 10

_KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_CIFAR_DIR = "cifar-10-batches-bin"
_CIFAR_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
_CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
# Published hashes (sha256 or md5) of each download; keras.utils.get_file checks them.
_FILE_HASHES = {
    "mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    "fashion_mnist/train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "fashion_mnist/train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "fashion_mnist/t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "fashion_mnist/t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    _CIFAR_ARCHIVE: "c32a1d4ab5d03f1284b67883e8d87530",
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}


class DataError(ValueError):
    """Bad or missing data; the message is one line naming the problem and the fix."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    x_train: np.ndarray  # float32 [N, H, W, C] in [0, 1], or [N, D] flat vectors
    y_train: np.ndarray  # int64 [N], values 0..num_classes-1
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    log_prob: Callable[[np.ndarray], np.ndarray] | None = None  # exact log p_data(x) in nats (synthetic sets)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def is_binary(self) -> bool:
        """Every value is 0 or 1: only then is a Bernoulli distortion a code length."""
        return all(bool(np.all((x == 0) | (x == 1))) for x in (self.x_train, self.x_test))


# ----------------------------------------------------------------------------- files


def _downloads_enabled(download):
    if download is not None:
        return bool(download)
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("", "0", "false")


def _download(url, folder, file_name, file_hash):
    """Fetches url into folder/file_name with keras.utils.get_file, checking its published hash
    (md5 or sha256); a broken or corrupted transfer leaves nothing behind."""
    import socket

    from hvae_repr.tf_env import tf  # noqa: F401  (keras loads TensorFlow: quietly, through tf_env)

    import keras
    path = os.path.join(folder, file_name)
    os.makedirs(folder, exist_ok=True)  # get_file falls back to ~/.keras for a cache_dir it cannot write
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # get_file has no timeout of its own
    try:
        keras.utils.get_file(file_name, origin=url, file_hash=file_hash, cache_dir=os.path.dirname(folder),
                             cache_subdir=os.path.basename(folder))
    except BaseException:
        if os.path.exists(path):
            os.remove(path)
        raise
    finally:
        socket.setdefaulttimeout(previous)


def _locate(name, data_dir, download, options, urls):
    """Returns the paths of the first option (a tuple of file names) found complete in one folder.

    Folders searched: data_dir/<name>/, then data_dir/. If no option is complete, `urls`
    ({file name: URL}) are downloaded into data_dir/<name>/ when downloads are on, each checked against its
    hash in _FILE_HASHES (keyed by file name, or "<name>/<file name>" where names are shared).
    """
    folders = [os.path.join(data_dir, name), data_dir]

    def where(option):
        # MNIST and Fashion-MNIST share the IDX file names: look for those only in data_dir/<name>/.
        return folders[:1] if option == _IDX_FILES else folders

    def find():
        for folder in folders:
            for option in options:
                paths = [os.path.join(folder, f) for f in option]
                if folder in where(option) and all(os.path.isfile(p) for p in paths):
                    return paths
        return None

    paths = find()
    if paths:
        return paths
    wanted = " or ".join(f"{', '.join(option)} (in {' or '.join(where(option))})" for option in options)
    problem = f"{name}: no {wanted}"
    bases = {url.rsplit("/", 1)[0] for url in urls.values()}
    source = f"them from {bases.pop()}/" if len(urls) > 1 and len(bases) == 1 else " ".join(urls.values())
    fix = f"download {source} into {folders[0]} or pass --data_dir"
    if not _downloads_enabled(download):
        raise DataError(f"{problem} (downloads are off: {OFFLINE_ENV} or download=False); {fix}")
    try:
        for file_name, url in urls.items():
            _download(url, folders[0], file_name, _FILE_HASHES.get(f"{name}/{file_name}", _FILE_HASHES.get(file_name)))
    except Exception as e:  # get_file raises a plain Exception for URL errors, ValueError for a bad hash
        reason = " ".join(str(e).split())
        raise DataError(f"{problem}, and downloading failed ({reason}); {fix}") from None
    paths = find()
    if not paths:
        raise DataError(f"{problem} even after downloading; {fix}")
    return paths


def _read_npz(path, keys=("x_train", "y_train", "x_test", "y_test")):
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in keys if k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read as .npz without pickle ({e}); "
                        f"save plain numeric arrays with np.savez") from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing arrays {', '.join(missing)}; store {', '.join(keys)} (e.g. with np.savez)")
    return tuple(arrays[k] for k in keys)


def _read_idx(path):
    """Reads an IDX file (the MNIST format): magic 0,0,dtype,ndim, big-endian int32 dims, then data."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file; replace it with the original download")
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", count=ndim, offset=4)
    values = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if values.size != np.prod(dims):
        raise DataError(f"{path}: IDX header says {tuple(dims)} but holds {values.size} bytes; "
                        f"replace it with the original download")
    return values.reshape(dims)


def _read_cifar_batch(data, where):
    """Decodes CIFAR-10 binary records: 1 label byte + 3072 image bytes (channels, rows, columns)."""
    records = np.frombuffer(data, np.uint8)
    if records.size % 3073:
        raise DataError(f"{where}: size {records.size} is not a multiple of 3073-byte CIFAR-10 records")
    records = records.reshape(-1, 3073)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, records[:, 0]


# --------------------------------------------------------------------- conversion


def _to_unit_float(x, where):
    """uint8 0..255 -> /255; bool -> 0/1; floats kept; [N, H, W] gets a channel axis."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = np.divide(x, 255, dtype=np.float32)
    elif x.dtype == np.bool_ or np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    else:
        raise DataError(f"{where} has dtype {x.dtype}; store images as uint8 0..255 or floats in [0, 1]")
    return x[..., None] if x.ndim == 3 else x


def _to_labels(y):
    """Integer labels become int64; anything else is left for validate_dataset to reject."""
    y = np.asarray(y)
    return y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y


def _image_dataset(name, x_train, y_train, x_test, y_test, num_classes=10, where=None):
    where = where or name
    return Dataset(name=name,
                   x_train=_to_unit_float(x_train, f"{where} x_train"), y_train=_to_labels(y_train),
                   x_test=_to_unit_float(x_test, f"{where} x_test"), y_test=_to_labels(y_test),
                   num_classes=num_classes)


# ------------------------------------------------------------------------ loaders


def _load_digits(data_dir, download):
    """scikit-learn's 8x8 digits, split 80/20 stratified with seed 0. The split is kept in
    DATA_DIR/digits_split-sklearn<version>.npz after its first load: importing scikit-learn's data sets
    and model selection is 1.2 s of every training process's start (a sweep starts one per point),
    reading the file a few milliseconds. A folder that cannot be written is left alone."""
    del download  # shipped inside scikit-learn
    from importlib import metadata
    cache = os.path.join(data_dir, f"digits_split-sklearn{metadata.version('scikit-learn')}.npz")
    if os.path.isfile(cache):
        try:
            with np.load(cache) as f:
                return _image_dataset("digits", *(f[k] for k in ("x_train", "y_train", "x_test", "y_test")))
        except (OSError, ValueError, KeyError):
            pass  # damaged: made again below
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, random_state=0, stratify=digits.target)
    try:
        io_utils.write_npz_atomic(cache, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    except OSError:
        pass  # a read-only data folder: the split is made again next time
    return _image_dataset("digits", x_train, y_train, x_test, y_test)


def _mnist_like_arrays(name, data_dir, download, urls):
    """Reads the Keras-style <name>.npz, or else the four IDX .gz files."""
    npz, idx = (f"{name}.npz",), _IDX_FILES
    paths = _locate(name, data_dir, download, (npz, idx), urls)
    if len(paths) == 1:
        return _read_npz(paths[0])
    return tuple(_read_idx(p) for p in paths)  # same order as the npz keys


def _load_mnist(data_dir, download):
    urls = {"mnist.npz": _KERAS_URL + "mnist.npz"}
    return _image_dataset("mnist", *_mnist_like_arrays("mnist", data_dir, download, urls))


def _load_fashion_mnist(data_dir, download):
    urls = {f: _KERAS_URL + "fashion-mnist/" + f for f in _IDX_FILES}
    return _image_dataset("fashion_mnist", *_mnist_like_arrays("fashion_mnist", data_dir, download, urls))


def _load_cifar10(data_dir, download):
    batches = tuple(f"{_CIFAR_DIR}/{b}" for b in _CIFAR_BATCHES)
    urls = {_CIFAR_ARCHIVE: "https://www.cs.toronto.edu/~kriz/" + _CIFAR_ARCHIVE}
    paths = _locate("cifar10", data_dir, download, (batches, (_CIFAR_ARCHIVE,)), urls)
    if len(paths) == 1:  # read the batches straight out of the archive, in one pass
        contents = {}
        with tarfile.open(paths[0], "r:gz") as tar:
            for member in tar:
                if os.path.basename(member.name) in _CIFAR_BATCHES:
                    contents[os.path.basename(member.name)] = tar.extractfile(member).read()
        missing = [b for b in _CIFAR_BATCHES if b not in contents]
        if missing:
            raise DataError(f"{paths[0]}: archive lacks {', '.join(missing)}; replace it with the original download")
        decoded = [_read_cifar_batch(contents[b], f"{paths[0]}:{b}") for b in _CIFAR_BATCHES]
    else:
        decoded = []
        for path in paths:
            with open(path, "rb") as f:
                decoded.append(_read_cifar_batch(f.read(), path))
    x_train = np.concatenate([images for images, _ in decoded[:5]])
    y_train = np.concatenate([labels for _, labels in decoded[:5]])
    x_test, y_test = decoded[5]
    return _image_dataset("cifar10", x_train, y_train, x_test, y_test)


def _read_svhn(path):
    from scipy.io import loadmat  # scipy comes with scikit-learn
    try:
        mat = loadmat(path, variable_names=("X", "y"))
        images, labels = mat["X"], mat["y"]
    except (OSError, ValueError, KeyError, NotImplementedError) as e:
        raise DataError(f"{path}: cannot read SVHN arrays X and y ({e}); "
                        f"replace it with the original MATLAB file") from None
    labels = labels.ravel().astype(np.int64)
    labels[labels == 10] = 0  # SVHN stores the digit 0 as label 10
    return images.transpose(3, 0, 1, 2), labels  # X is [32, 32, 3, N]


def _load_svhn(data_dir, download):
    urls = {f: "http://ufldl.stanford.edu/housenumbers/" + f for f in _SVHN_FILES}
    train_path, test_path = _locate("svhn", data_dir, download, (_SVHN_FILES,), urls)
    return _image_dataset("svhn", *_read_svhn(train_path), *_read_svhn(test_path))


def _load_synthetic(data_dir, download):
    del data_dir, download  # generated
    source = synthetic.make_synthetic()
    x_train, y_train = source.sample(5000, np.random.default_rng([0, 1]))
    x_test, y_test = source.sample(1000, np.random.default_rng([0, 2]))
    return Dataset("synthetic", x_train, y_train, x_test, y_test,
                   num_classes=source.num_classes, log_prob=source.log_prob)


def _load_npz(path):
    """A user's own arrays: x_train, y_train, x_test, y_test in one .npz file."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise DataError(f"npz: no file {path}; save x_train, y_train, x_test, y_test there with np.savez")
    x_train, y_train, x_test, y_test = _read_npz(path)
    labels = [np.asarray(y) for y in (y_train, y_test)]
    # Non-integer labels get num_classes 0 here; validate_dataset then names the real problem.
    num_classes = 0
    if all(np.issubdtype(y.dtype, np.integer) for y in labels):
        num_classes = 1 + int(max((y.max() for y in labels if y.size), default=-1))
    return _image_dataset(f"npz:{path}", x_train, y_train, x_test, y_test, num_classes, where=path)


class DatasetInfo(NamedTuple):
    load: Callable            # (data_dir, download) -> Dataset
    description: str
    gaussian_sigma: float = 0.03  # default sigma of a gaussian likelihood (the paper's code: 0.03; 0.71 for colour)


def _binarized(load, name):
    """A data set thresholded at 0.5: fixed, not randomly binarized, so it is deterministic."""
    def load_binary(data_dir, download):
        ds = load(data_dir, download)
        return dataclasses.replace(ds, name=name, x_train=(ds.x_train > 0.5).astype(np.float32),
                                   x_test=(ds.x_test > 0.5).astype(np.float32))
    return load_binary


DATASETS = {
    "binary_digits": DatasetInfo(_binarized(_load_digits, "binary_digits"),
                                 "scikit-learn's 8x8 digits thresholded at 0.5 (offline, the default)"),
    "digits": DatasetInfo(_load_digits, "scikit-learn's 8x8 digits, 17 grey levels (offline)"),
    "mnist": DatasetInfo(_load_mnist, "MNIST, 28x28 grey"),
    "binary_mnist": DatasetInfo(_binarized(_load_mnist, "binary_mnist"), "MNIST thresholded at 0.5"),
    "fashion_mnist": DatasetInfo(_load_fashion_mnist, "Fashion-MNIST, 28x28 grey"),
    "cifar10": DatasetInfo(_load_cifar10, "CIFAR-10, 32x32 colour", gaussian_sigma=0.71),
    "svhn": DatasetInfo(_load_svhn, "SVHN, 32x32 colour", gaussian_sigma=0.71),
    "synthetic": DatasetInfo(_load_synthetic, "8x8 binary images with an exact log p(x) (offline)"),
}
_NPZ = DatasetInfo(None, "your own arrays in an .npz file")


def dataset_info(name):
    """The registry entry of a data set name ("npz:PATH" included); DataError for an unknown name."""
    if name.startswith("npz:"):
        return _NPZ
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} or npz:PATH")
    return DATASETS[name]


def load_dataset(name: str, data_dir: str | None = None, download: bool | None = None,
                 likelihood: str | None = None) -> Dataset:
    """Loads a named data set (see DATASETS, or "npz:PATH") and validates it (for `likelihood`, if given).

    download: None follows the environment (off when HVAE_REPR_OFFLINE=1); True/False force it.
    """
    data_dir = os.path.expanduser(data_dir or DEFAULT_DATA_DIR)
    info = dataset_info(name)
    ds = _load_npz(name[len("npz:"):]) if info is _NPZ else info.load(data_dir, download)
    validate_dataset(ds, likelihood)
    return ds


# --------------------------------------------------------------------- validation


def _check_split(ds, split, likelihood):
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    where = f"{ds.name}: x_{split}"
    if x.ndim not in (2, 4):
        raise DataError(f"{where} has shape {x.shape}; expected images [N, H, W, C] or flat vectors [N, D]")
    if len(x) == 0 or x.size == 0:
        raise DataError(f"{where} is empty (shape {x.shape}); every split needs at least one example")
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{where} has dtype {x.dtype}; expected float32 values in [0, 1]")
    bad = np.count_nonzero(~np.isfinite(x))
    if bad:
        raise DataError(f"{where} holds {bad} NaN or infinite values; remove or repair those examples")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        need = "the Bernoulli likelihood needs" if likelihood == "bernoulli" else "images must be"
        raise DataError(f"{where} has values in [{low:g}, {high:g}]; {need} values in [0, 1], rescale the data")
    where = f"{ds.name}: y_{split}"
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{where} has shape {y.shape} for {len(x)} images; "
                        f"expected one label per image, shape [{len(x)}]")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where} has dtype {y.dtype}; labels must be integers 0..num_classes-1")
    if y.min() < 0 or y.max() >= ds.num_classes:
        raise DataError(f"{where} has labels in [{y.min()}, {y.max()}]; "
                        f"labels must lie in 0..{ds.num_classes - 1} (num_classes={ds.num_classes})")


def validate_dataset(ds: Dataset, likelihood: str | None = None) -> None:
    """Raises DataError (one line) on NaN/inf, wrong rank or shape, bad labels, values outside [0, 1], empty splits."""
    for split in ("train", "test"):
        _check_split(ds, split, likelihood)
    if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        raise DataError(f"{ds.name}: x_train examples have shape {ds.x_train.shape[1:]} but x_test examples "
                        f"{ds.x_test.shape[1:]}; both splits need the same example shape")
