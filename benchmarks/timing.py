"""Timing harness, the matmul peak, and the description of the machine.

Steps of the two frameworks are timed in the same process, alternating one step of
each in rounds (TF, torch, TF, torch, ...), after warm-up steps that are not timed:
load from other processes and frequency changes then hit both alike. Every step is
timed on its own (it returns its loss as a Python float, so it has finished) and the
summary keeps the minimum (the least disturbed step) and the median (the typical one).

Load does not hit both alike, though: PyTorch's OpenMP threads wait for each other
at every parallel op, so when another process takes one of the cores its steps slow
down many times over (measured here: 0.5-2.2 s instead of 43 ms for the MNIST peer
with 2 threads), while TensorFlow's thread pool rebalances. `OtherLoad` therefore
measures the CPU that other processes used during a timing, and results flag it.
"""
import importlib.metadata
import os
import platform
import re
import statistics
import sys
import time

from hvae_repr import machine

LIBRARIES = ("tensorflow", "tensorflow-probability", "keras", "numpy", "torch")
ENVIRONMENT = ("TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")


def time_alternating(steps, rounds, warmup=3):
    """Times `steps` ({name: callable}) one call each per round, in turn, after `warmup` untimed
    calls of each. Returns {name: [seconds per call]}."""
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be >= 1 and warmup >= 0 (got {rounds}, {warmup})")
    for step in steps.values():
        for _ in range(warmup):
            step()
    samples = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            samples[name].append(time.perf_counter() - started)
    return samples


def summarize(seconds, examples_per_call):
    """min and median of repeated timings, in ms per call and examples per second."""
    best, median = min(seconds), statistics.median(seconds)
    return {"calls_timed": len(seconds), "min_ms": 1000 * best, "median_ms": 1000 * median,
            "examples_per_s_median": examples_per_call / median, "examples_per_s_best": examples_per_call / best}


def tf_matmul(n):
    """One n x n float32 matmul in TensorFlow (eager ops on the CPU finish before returning)."""
    from hvae_repr.tf_env import tf
    a, b = tf.random.normal((n, n), seed=1), tf.random.normal((n, n), seed=2)
    return lambda: float(tf.linalg.matmul(a, b)[0, 0])


def torch_matmul(n):
    import torch
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(n, n, generator=generator), torch.randn(n, n, generator=generator)
    return lambda: float(torch.mm(a, b)[0, 0])


def matmul_peak(matmuls, n, rounds, warmup=1):
    """The practical peak: GFLOP/s of a large float32 matmul (2 n^3 FLOPs) in each framework,
    timed alternating like the steps. `matmuls`: {framework: factory taking n}."""
    samples = time_alternating({name: make(n) for name, make in matmuls.items()}, rounds, warmup)
    flops = 2 * n ** 3
    return {name: {"n": n, "calls_timed": len(s), "gflops_best": flops / min(s) / 1e9,
                   "gflops_median": flops / statistics.median(s) / 1e9} for name, s in samples.items()}


class OtherLoad:
    """CPU used by other processes while the block runs, in cores (0 = they left the CPU alone).

    From /proc/stat (all busy time, steal included) less this process's own CPU time;
    None where /proc/stat does not exist.
    """

    def __enter__(self):
        self._start = (time.perf_counter(), _busy_seconds(), _own_seconds())
        return self

    def __exit__(self, *exc):
        wall, busy, own = (b - a if None not in (a, b) else None for a, b in zip(
            self._start, (time.perf_counter(), _busy_seconds(), _own_seconds())))
        self.cores = None if busy is None or wall <= 0 else max(0.0, (busy - own) / wall)
        return False


def _busy_seconds():
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    t = os.times()
    return t.user + t.system


def library_versions():
    versions = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_description():
    """CPU model, cores, instruction sets, library versions and the settings that change kernels."""
    return {
        **machine.cpu_description(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "environment": {name: os.environ.get(name) for name in ENVIRONMENT},
    }


def machine_name(description):
    """A file name for the machine: the CPU model, sanitized, and the core count."""
    model = re.sub(r"[^a-z0-9]+", "-", description["cpu_model"].lower()).strip("-") or "unknown-cpu"
    return f"{model}_{description['cores']}-cores"


def load_average():
    """The 1-minute load average (processes wanting a CPU), or None where the OS does not tell."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
