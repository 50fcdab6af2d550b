"""One way to run a function over an array in batches and put the pieces back together."""
import numpy as np

# Examples per model call of a pass over a data set (hvae_repr.passes; --eval_batch_size).
DEFAULT_BATCH_SIZE = 500


def batches(n, batch_size):
    """(index, slice) of consecutive batches covering range(n); one empty batch when n is 0."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (got {batch_size})")
    return [(b, slice(start, min(start + batch_size, n))) for b, start in enumerate(range(0, max(n, 1), batch_size))]


def map_batches(fn, n, batch_size):
    """fn(index, rows) for each batch (rows: a slice of range(n)), its results joined along the first axis.

    fn may return an array (or tensor), or a dict, list or tuple of them (nested), joined key by key."""
    parts = [_to_numpy(fn(b, rows)) for b, rows in batches(n, batch_size)]
    return _join(parts)


def _to_numpy(value):
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _join(parts):
    first = parts[0]
    if isinstance(first, dict):
        return {k: _join([p[k] for p in parts]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_join([p[i] for p in parts]) for i in range(len(first)))
    return np.concatenate(parts)
