"""One grid point of a sweep: train (or resume) one run and evaluate it, under the run's lock.

    python -m launch.point <training flags> --workdir=RUN [--noevaluate] [--eval_<evaluation flag>=...]

The sweep launcher (launch.sweep) runs this once per point, in a process of its own. A point that
fails leaves RUN/error.txt (the one-line error first, then the traceback) and a later success removes
it. A damaged result file (truncated, not JSON) is kept as NAME.damaged and made again. Exit status:
0 done, 10 finished already, 11 in use by another process, 1 failed, 143 / 130 stopped by SIGTERM /
SIGINT (its checkpoint written; running it again resumes).
"""
import dataclasses
import os
import sys
import traceback
from typing import ClassVar

from absl import logging

from evaluation.options import EvalOptions
from hvae_repr import cli, io_utils, preemption
from hvae_repr.cli import nested, setting
from hvae_repr.config import TrainConfig
from hvae_repr.runs import RunBusy, RunDir

EXIT_DONE, EXIT_FAILED, EXIT_FINISHED, EXIT_BUSY = 0, 1, 10, 11


@dataclasses.dataclass(frozen=True)
class PointCommand:
    help_group: ClassVar[str] = "point"
    evaluate: bool = setting(True, "Evaluate the run after training (python -m evaluation.evaluate's work).")
    train: TrainConfig = nested(TrainConfig)
    eval: EvalOptions = nested(EvalOptions, prefix="eval_")


def is_finished(run, evaluate):
    """Trained (and evaluated), with readable result files (a damaged one is redone, set_aside_damaged)."""
    return (run.is_trained and (run.is_evaluated or not evaluate)
            and not any(run.damaged(name) for name in run.RESULTS))


def set_aside_damaged(run, log=print):
    """Renames each damaged result file (truncated, not JSON) to NAME.damaged, so that it is made again
    (from the checkpoints, or by evaluating again) and nothing is lost."""
    for name in run.RESULTS:
        problem = run.damaged(name)
        if problem:
            os.replace(run.file(name), run.file(name + ".damaged"))
            log(f"{problem}: kept as {name}.damaged; making it again")


def run_point(command, verbose=True):
    """Trains and evaluates the point's run; returns an exit status (see the module docstring)."""
    run = RunDir(command.train.workdir)
    try:
        with run.lock():
            set_aside_damaged(run)
            if is_finished(run, command.evaluate):
                return EXIT_FINISHED
            run.check_can_train(command.train)  # a folder that is not this run's fails before TensorFlow loads
            from hvae_repr import trainer  # TensorFlow: loaded only when there is work to do
            trainer.Trainer(command.train, verbose=verbose).run()
            if command.evaluate and not run.is_evaluated:
                from evaluation import evaluate as ev
                ev.write_result(run.path, ev.evaluate(run.path, command.eval, verbose=verbose))
            if os.path.exists(run.file(run.ERROR)):
                os.remove(run.file(run.ERROR))
            return EXIT_DONE
    except RunBusy:
        return EXIT_BUSY
    except Exception as e:  # the point fails, the sweep goes on: the error is kept in the run's folder
        line = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {line}", file=sys.stderr, flush=True)
        record_failure(run, line, traceback.format_exc())
        return EXIT_FAILED


def record_failure(run, line, details=""):
    """RUN/error.txt: one line saying what went wrong, then details (the aggregation shows the first line).
    A folder that is gone (deleted during the sweep) or cannot be written gets none; the caller reports it."""
    try:
        io_utils.write_text_atomic(run.file(run.ERROR), f"{line}\n{details}")
    except OSError:
        pass


def define(flag_values):
    cli.define_flags(PointCommand, flag_values)


def main(flag_values):
    logging.set_verbosity(logging.WARNING)
    with cli.one_line_errors():
        command = cli.from_flags(PointCommand, flag_values)
    with preemption.exit_on_interrupt():  # a SIGTERM or SIGINT: a checkpoint, one line, exit 143 or 130
        status = run_point(command)
    print({EXIT_DONE: "done", EXIT_FINISHED: "finished already", EXIT_BUSY: "in use by another process",
           EXIT_FAILED: f"failed: see {RunDir(command.train.workdir).file(RunDir.ERROR)}"}[status], flush=True)
    sys.exit(status)


def run_main():
    cli.run(define, main)


if __name__ == "__main__":
    run_main()
