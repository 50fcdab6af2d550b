"""A run's folder: its config, its checkpoints, and rebuilding its model.

    workdir/config.json        every flag ("flags") and the model's settings ("model")
    workdir/checkpoints/       tf.train.CheckpointManager checkpoints
    workdir/summaries/         TensorBoard
    workdir/metrics.jsonl      one line per epoch
    workdir/train_result.json  written once training has finished
    workdir/eval_result.json   written by `python -m evaluation.evaluate`
    workdir/export/            the SavedModel
"""
import os

from hvae_repr import io_utils
from hvae_repr.config import RESUMABLE_DIFFERENCES, TrainConfig

CONFIG = "config.json"
TRAIN_RESULT = "train_result.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
SUMMARIES = "summaries"


def path(workdir, name):
    return os.path.join(workdir, name)


def read_config(workdir) -> TrainConfig:
    file = path(workdir, CONFIG)
    if not os.path.isfile(file):
        raise ValueError(f"{workdir} is not a run folder (no {CONFIG}); pass the --workdir of a training run")
    return TrainConfig.from_json(io_utils.read_json(file)["flags"])


def check_same_run(workdir, config: TrainConfig):
    """Refuses to reuse a workdir whose run was trained with other settings (never overwrite a run)."""
    if not os.path.isfile(path(workdir, CONFIG)):
        if os.path.isdir(workdir) and os.listdir(workdir):
            raise ValueError(f"{workdir} exists and is not empty but holds no {CONFIG}; pick a new --workdir")
        return
    old = read_config(workdir).to_json()
    new = config.to_json()
    diffs = [f"{k}: {_show(old.get(k))} there vs {_show(new[k])} now" for k in new
             if k not in RESUMABLE_DIFFERENCES and old.get(k) != new[k] and k != "workdir"]
    if diffs:
        raise ValueError(f"{workdir} holds a run with other settings ({'; '.join(diffs)}); "
                         f"pick a new --workdir or repeat the original flags to resume")


def _show(value):
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in value)
    return repr(value)


def load_run_dataset(config: TrainConfig):
    from hvae_repr import data
    return data.load_dataset(config.dataset, config.data_dir or None, likelihood=config.likelihood)


def build_model(model_config):
    from hvae_repr.model import HierarchicalVAE
    return HierarchicalVAE(model_config).build_all()


def make_checkpoint(model, **extra):
    import tensorflow as tf
    return tf.train.Checkpoint(model=model, **extra)


def load_model(workdir):
    """Rebuilds a run's model and restores its latest checkpoint. Returns (model, TrainConfig)."""
    import tensorflow as tf
    from hvae_repr.model import ModelConfig
    config = read_config(workdir)
    model = build_model(ModelConfig(**io_utils.read_json(path(workdir, CONFIG))["model"]))
    latest = tf.train.latest_checkpoint(path(workdir, CHECKPOINTS))
    if latest is None:
        raise ValueError(f"{workdir} has no checkpoint yet; train it first with python -m hvae_repr.train "
                         f"--workdir={workdir}")
    make_checkpoint(model).restore(latest).expect_partial().assert_existing_objects_matched()
    return model, config
