"""What the benchmark's sections share: a case's fixed input batch, its training steps in both frameworks
(built once per run), and the flag that says a timing was disturbed by other processes."""
import numpy as np

from benchmarks import tf_steps

CONDITIONAL = "tensorflow_conditional"  # the TF step of the same model made beta-conditional
CONTENDED_CORES = 0.1  # other processes' CPU use during a timing above which its result is flagged
CONTENDED_WARNING = ("other processes used the CPU during this timing: PyTorch's OpenMP threads slow down far "
                     "more than TensorFlow's under contention (see benchmarks/timing.py), so the TF/torch ratio "
                     "is not trustworthy; rerun on an idle machine")


def make_batch(case, batch_size, seed=0):
    """A fixed input batch [B, H, W, C]: random bits (Bernoulli cases) or uniform values in [0, 1]."""
    x = np.random.default_rng(seed).random((batch_size,) + case.input_shape, dtype=np.float32)
    return x.round() if case.likelihood == "bernoulli" else x


def build_steps(case, context):
    """The TensorFlow step and, when PyTorch is there, the peer's step, on one shared batch (cached)."""
    if case.name not in context["steps"]:
        x = make_batch(case, context["args"].batch_size)
        steps = {"tensorflow": tf_steps.make_train_step(case, x, threads=context["args"].threads),
                 CONDITIONAL: tf_steps.make_train_step(case, x, threads=context["args"].threads, conditional=True)}
        if context["peer"] is not None:
            steps["torch"] = context["peer"].make_train_step(case, x)
        context["steps"][case.name] = (x, steps)
    return context["steps"][case.name]


def contention(load):
    """Other processes' CPU use during a timing, and the flag that says its result cannot be trusted."""
    flag = {"other_processes_cpu_cores": load.cores,
            "contended": load.cores is not None and load.cores > CONTENDED_CORES}
    if flag["contended"]:
        flag["warning"] = CONTENDED_WARNING
    return flag


def format_cores(value):
    return "n/a" if value is None else f"{value:.2f}"
