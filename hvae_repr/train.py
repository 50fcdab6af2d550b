"""Trains a hierarchical VAE with one rate weight (beta) per latent layer.

    python -m hvae_repr.train --dataset=binary_digits --betas=1,1 --workdir=runs/example

--betas and --latent_dims are listed from z1 (next to the data) up: --betas=b1,b2
weights R(z1|z2) with b1 and R(z2) with b2. Rerunning the same command with the same
workdir resumes from the last checkpoint; a finished run is not trained again.
The flags are TrainConfig's fields (hvae_repr.config); --help lists them.
"""
import contextlib

from absl import logging

from hvae_repr import cli, io_utils, preemption
from hvae_repr.config import TrainConfig


def train(config: TrainConfig, verbose=True):
    """Trains (or resumes) the run in config.workdir; returns the train_result dict."""
    from hvae_repr import trainer  # imports TensorFlow
    return trainer.Trainer(config, verbose=verbose).run()


def define(flag_values):
    cli.define_flags(TrainConfig, flag_values)


def main(flag_values):
    logging.set_verbosity(logging.WARNING)  # keeps TensorFlow's per-checkpoint INFO lines out of the log
    from hvae_repr import trainer
    failures = (trainer.TrainingDiverged, io_utils.WriteFailed)
    with contextlib.ExitStack() as held:
        with cli.one_line_errors():  # bad input: one clear line, no traceback (errors during training keep theirs)
            run = trainer.Trainer(cli.from_flags(TrainConfig, flag_values), verbose=True)
            finished = run.prepare()  # writes nothing
            if finished is None:
                held.enter_context(run.run_dir.lock())
                finished = run.claim()
        if finished is None:
            # A SIGTERM or SIGINT: a checkpoint, one line, exit 143 or 130; a diverged run or a failed write:
            # one line, exit 1 (other errors during training keep their traceback).
            with preemption.exit_on_interrupt(), cli.one_line_errors(failures, status=1):
                run.fit()


def run_main():
    cli.run(define, main)


if __name__ == "__main__":
    run_main()
