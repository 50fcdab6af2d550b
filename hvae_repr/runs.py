"""A run's folder and everything about it: its file names, its settings, the guard that
never mixes two runs' settings, its lock, and rebuilding its model.

    config.json        the run's settings (TrainConfig, the model's nested), written first
    checkpoints/       tf.train.CheckpointManager checkpoints
    summaries/         TensorBoard
    metrics.jsonl      one line per epoch
    train_result.json  written once training has finished (its presence means "trained")
    eval_result.json   written by `python -m evaluation.evaluate`
    export/            the SavedModel (export/hvae_repr.json describes it)
    point.json         a conditional model's grid point: {"model_run": the model's run folder, "betas"}
                       (such a folder holds point.json and eval_result.json, not a model of its own)
    error.txt          why the last attempt of a sweep point failed (written by the sweep launcher)
    sweep.log          the output of the sweep launcher's processes for this point
    .lock              held while a process trains, evaluates or exports the run
"""
import contextlib
import fcntl
import json
import os

from hvae_repr import io_utils

# hvae_repr.config (and with it TensorFlow) is imported only where settings are read, so that the
# file names here serve light programs too (the aggregation).


class RunBusy(ValueError):
    """Another process holds the run's lock."""


_HELD = {}  # realpath -> [open lock file, depth]: the lock is re-entrant within one process


def settings_differences(old, new, ignore=()):
    """'key: old there vs new now' for each (dotted, nested) setting that differs, except `ignore`."""
    def flat(d, prefix=""):
        out = {}
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[prefix + k] = list(v) if isinstance(v, tuple) else v
        return out
    old, new = flat(old), flat(new)
    return [f"{k}: {_show(old.get(k))} there vs {_show(new.get(k))} now" for k in sorted(set(old) | set(new))
            if k not in ignore and k.split(".")[-1] not in ignore and old.get(k) != new.get(k)]


def _show(value):
    if isinstance(value, list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return repr(value)


class RunDir:
    CONFIG = "config.json"
    TRAIN_RESULT = "train_result.json"
    EVAL_RESULT = "eval_result.json"
    METRICS = "metrics.jsonl"
    CHECKPOINTS = "checkpoints"
    SUMMARIES = "summaries"
    EXPORT = "export"
    EXPORT_META = "hvae_repr.json"  # inside export/
    ERROR = "error.txt"
    POINT = "point.json"
    LOG = "sweep.log"
    LOCK = ".lock"
    BOOKKEEPING = (ERROR, LOG, LOCK)  # files that may precede config.json in a run's folder

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"RunDir({self.path!r})"

    def file(self, name):
        return os.path.join(self.path, name)

    # ------------------------------------------------------------- state
    def check_folder(self):
        """ValueError (one line) when the path exists but is not a folder."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"{self.path} is a file, not a run folder; pass a folder as --workdir")

    @property
    def has_config(self):
        return os.path.isfile(self.file(self.CONFIG))

    @property
    def is_trained(self):
        return os.path.isfile(self.file(self.TRAIN_RESULT))

    @property
    def is_evaluated(self):
        return os.path.isfile(self.file(self.EVAL_RESULT))

    RESULTS = (TRAIN_RESULT, EVAL_RESULT)

    def damaged(self, name):
        """Why the file `name` cannot be read as a JSON object (truncated, not JSON), or None when it is
        readable or absent."""
        try:
            value = io_utils.read_json(self.file(name))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            return f"{name} is damaged ({' '.join(str(e).split())[:120]})"
        return None if isinstance(value, dict) else f"{name} is damaged (it holds no JSON object)"

    def read_point(self):
        """A grid point's {"model_run": absolute path, "betas": (z1 first)}, or None for any other folder."""
        if not os.path.isfile(self.file(self.POINT)):
            return None
        point = io_utils.read_json(self.file(self.POINT))
        return {"model_run": os.path.normpath(os.path.join(self.path, point["model_run"])),
                "betas": tuple(point["betas"])}

    def write_point(self, model_run, betas):
        """Marks this folder as a grid point of the conditional model in `model_run` (kept relative)."""
        os.makedirs(self.path, exist_ok=True)
        io_utils.write_json_atomic(self.file(self.POINT), {
            "model_run": os.path.relpath(os.path.abspath(model_run), os.path.abspath(self.path)),
            "betas": list(betas)})

    def read_config(self):
        """The run's TrainConfig."""
        from hvae_repr.config import TrainConfig
        self.check_folder()
        if not self.has_config:
            raise ValueError(f"{self.path} is not a run folder (no {self.CONFIG}); pass the --workdir of a "
                             f"training run")
        try:
            values = io_utils.read_json(self.file(self.CONFIG))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{self.file(self.CONFIG)} cannot be read ({e}); restore it or retrain in a new "
                             f"--workdir") from None
        return TrainConfig.from_json(values)

    def require_trained(self):
        """ValueError (one line) unless the folder holds a run that has finished training."""
        self.read_config()
        if not self.is_trained:
            raise ValueError(f"{self.path} has not finished training (no {self.TRAIN_RESULT}); finish it with "
                             f"python -m hvae_repr.train --workdir={self.path} and the run's original flags")

    def check_can_train(self, config):
        """Refuses a folder that holds something else, or a run with other settings (never overwrite a run)."""
        self.check_folder()
        if not self.has_config:
            if os.path.isdir(self.path) and [n for n in os.listdir(self.path) if n not in self.BOOKKEEPING]:
                raise ValueError(f"{self.path} exists and is not empty but holds no {self.CONFIG}; "
                                 f"pick a new --workdir")
            return
        old = self.read_config()
        diffs = settings_differences(old.result_settings(), config.result_settings())
        if diffs:
            raise ValueError(f"{self.path} holds a run with other settings ({'; '.join(diffs)}); "
                             f"pick a new --workdir or repeat the original flags to resume")

    def write_config(self, config):
        io_utils.write_json_atomic(self.file(self.CONFIG), config.to_json())

    def refuse_other_result(self, name, settings, neutral=(), overwrite=False):
        """Refuses to replace result file `name` that was computed with other settings, unless `overwrite`."""
        path = self.file(name)
        if overwrite or not os.path.exists(path):
            return
        fix = "pass --overwrite to replace it, or repeat its settings"
        try:
            old = io_utils.read_json(path).get("settings")
        except (OSError, ValueError, AttributeError):
            old = None
        if not isinstance(old, dict):
            raise ValueError(f"{path} exists and its settings cannot be read; {fix}")
        new = json.loads(json.dumps(settings))  # tuples as lists, as they were stored
        diffs = settings_differences(old, new, ignore=neutral)
        if diffs:
            raise ValueError(f"{path} was computed with other settings ({'; '.join(diffs)}); {fix}")

    # ------------------------------------------------------------- model
    def checkpoints(self):
        """Checkpoint prefixes, newest first."""
        import tensorflow as tf
        state = tf.train.get_checkpoint_state(self.file(self.CHECKPOINTS))
        if state is None:
            return []
        return [os.path.join(self.file(self.CHECKPOINTS), os.path.basename(p))
                for p in reversed(state.all_model_checkpoint_paths)]

    def load_model(self):
        """Rebuilds the run's model and restores its newest readable checkpoint. Returns (model, TrainConfig)."""
        from hvae_repr.model import HierarchicalVAE
        from hvae_repr.tf_env import tf
        config = self.read_config()
        model = HierarchicalVAE(config.model).build_all()
        restore_newest(self.checkpoints(), lambda: tf.train.Checkpoint(model=model), self.path,
                       partial=True)
        return model, config

    def replacing(self, name):
        """io_utils.replacing_folder for the run's folder `name` (e.g. export/)."""
        return io_utils.replacing_folder(self.file(name))

    # ------------------------------------------------------------- lock
    @contextlib.contextmanager
    def lock(self):
        """Holds the run's lock (an flock on RUN/.lock: the operating system releases it when the
        process dies, so a killed process never blocks a run). RunBusy if another process holds it.
        Re-entrant within a process. (flock does not work across machines on every network file system.)"""
        self.check_folder()
        os.makedirs(self.path, exist_ok=True)
        key = os.path.realpath(self.path)
        if key in _HELD:
            _HELD[key][1] += 1
        else:
            f = open(self.file(self.LOCK), "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                raise RunBusy(f"{self.path} is in use by another process (it holds {self.LOCK}); "
                              f"wait for it to finish") from None
            _HELD[key] = [f, 1]
        try:
            yield self
        finally:
            _HELD[key][1] -= 1
            if not _HELD[key][1]:
                f = _HELD.pop(key)[0]
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()


def restore_newest(paths, make_checkpoint, where, partial=False, log=None):
    """Restores the newest readable checkpoint of `paths` (newest first) into make_checkpoint();
    an unreadable one (truncated, corrupt) is reported through `log` and the next is tried.
    Returns the path restored. ValueError when none is readable."""
    if not paths:
        raise ValueError(f"{where} has no checkpoint yet; train it first with python -m hvae_repr.train "
                         f"--workdir={where}")
    problems = []
    for path in paths:
        checkpoint = make_checkpoint()
        try:
            status = checkpoint.restore(path)
            if partial:
                status.expect_partial().assert_existing_objects_matched()
            else:
                status.assert_consumed()
            return path
        except Exception as e:  # truncated files raise OpError, IndexError, ValueError, ... depending on where

            reason = " ".join(str(e).split())[:200]
            problems.append(f"{os.path.basename(path)}: {reason}")
            if log is not None:
                log(f"warning: checkpoint {path} is unreadable ({reason}); trying the previous one")
    raise ValueError(f"{where}: no readable checkpoint ({'; '.join(problems)}); delete {where} to train again")
