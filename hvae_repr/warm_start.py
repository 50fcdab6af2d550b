"""Warm starts: a run whose weights start from another finished run's (TrainConfig.init_from), and the
refinement of a beta-conditional model at one point of the rate plane.

A refined point keeps the conditional model's architecture (its FiLM layers included) and trains it for
a few epochs with its condition fixed at the point's betas (TrainConfig.fixed_condition: the networks see
those betas and the rates are weighted by them), from the conditional model's last checkpoint, with a
fresh Adam and no warm-up. It is a run of its own, evaluated like a separately trained one.
"""
import dataclasses
import os

from hvae_repr import runs
from hvae_repr.runs import RunDir


def _model_settings(config):
    return dataclasses.asdict(config.model)


def check(config):
    """ValueError (one line) unless config.init_from holds a finished run whose model has config's settings
    (its input shape included: call it with the data set's shape set)."""
    source = RunDir(config.init_from)
    if os.path.realpath(source.path) == os.path.realpath(config.workdir):
        raise ValueError(f"--init_from={config.init_from} is the run's own --workdir; pass another finished run")
    try:
        source.require_trained()
    except ValueError as e:
        raise ValueError(f"--init_from: {e}") from None
    old = source.read_config()
    diffs = runs.settings_differences(_model_settings(old), _model_settings(config))
    if diffs:
        raise ValueError(f"--init_from={config.init_from} holds a model of other settings ({'; '.join(diffs)}), "
                         f"whose weights cannot initialise this one; repeat its model flags")


def restore(model, config, log=None):
    """Loads the newest readable checkpoint of config.init_from into `model` (the weights only); returns its path."""
    from hvae_repr.tf_env import tf
    source = RunDir(config.init_from)
    return runs.restore_newest(source.checkpoints(), lambda: tf.train.Checkpoint(model=model), source.path,
                               partial=True, log=log)


def record(config):
    """What train_result.json says about the start: the run, its epochs, its checkpoint (its last)."""
    source = RunDir(config.init_from)
    newest = source.checkpoints()
    return {"run": os.path.abspath(source.path), "run_epochs": source.read_config().epochs,
            "checkpoint": os.path.basename(newest[0]) if newest else None, "epochs_after_it": config.epochs,
            "fixed_condition": config.fixed_condition, "optimizer": "fresh Adam (not restored)"}


def refined(config, model_run, epochs, learning_rate=0.0):
    """The settings of the point config.betas refined from the conditional model in `model_run`: `epochs`
    epochs at those fixed betas, warm-started from it, without warm-up (config: the conditional model's),
    at `learning_rate` (0: the conditional model's)."""
    return dataclasses.replace(config, epochs=epochs, init_from=os.path.abspath(model_run), fixed_condition=True,
                               kl_warmup_epochs=0, learning_rate=learning_rate or config.learning_rate)
