"""Small file helpers: atomic writes, so that a crash never leaves half a file or folder."""
import contextlib
import json
import os
import shutil
import tempfile


def write_atomic(path, write, mode="w", suffix=""):
    """write(f) into a temporary file in `path`'s folder, then an atomic rename onto `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; results get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path, text):
    """Writes `text` to `path` via a temporary file in the same folder and an atomic rename."""
    write_atomic(path, lambda f: f.write(text))


class WriteFailed(OSError):
    """A file could not be written (a full or read-only disk, a quota); the message names the file, the
    cause and what was kept."""


@contextlib.contextmanager
def reported_write(path, kept, other_errors=()):
    """Turns an OSError (and `other_errors`, e.g. TensorFlow's OpError) inside the block into one
    WriteFailed line: `cannot write PATH (cause); KEPT`."""
    try:
        yield
    except WriteFailed:
        raise
    except (OSError,) + tuple(other_errors) as e:
        cause = getattr(e, "strerror", None) or getattr(e, "message", None) or str(e) or type(e).__name__
        cause = " ".join(str(cause).split())[:300]
        raise WriteFailed(f"cannot write {path} ({cause}); {kept}") from None


def write_json_atomic(path, obj):
    """Writes `obj` as JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npz_atomic(path, **arrays):
    """Writes numpy arrays to `path` (.npz) atomically."""
    import numpy as np
    write_atomic(path, lambda f: np.savez(f, **arrays), mode="wb", suffix=".npz")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def append_jsonl(path, obj):
    """Appends one JSON line and flushes it to disk."""
    with open(path, "a") as f:
        f.write(json.dumps(obj, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def replacing_folder(target):
    """Yields a new empty folder beside `target`; when the block succeeds it takes target's place
    (the old one, if any, is moved aside and deleted), when it fails it is deleted and target is
    left as it was. So `target` is never half-written; between the two renames it is briefly absent.
    """
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(target)}-new-")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result gets the usual permissions
    old = None
    try:
        yield tmp
        if os.path.exists(target):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(target)}-old-")
            os.replace(target, os.path.join(old, "previous"))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(target):  # put the previous folder back
            os.replace(os.path.join(old, "previous"), target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
