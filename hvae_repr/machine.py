"""Which CPU a measurement ran on (no TensorFlow): its model, cores and the instruction sets that decide
which kernels oneDNN and MKL can use. Speeds differ 3-4x between this project's machines, so every
timing record names its CPU (benchmarks.timing, launch.sweep's sweep_*.json)."""
import os
import platform
import re

INSTRUCTION_SETS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo():
    """(model name, set of CPU flags) from /proc/cpuinfo; falls back to `platform` elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or platform.machine(), set()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    return (model.group(1).strip() if model else platform.machine()), set(flags.group(1).split() if flags else ())


def usable_cores():
    """The cores this process may run on: its affinity mask (taskset, a batch scheduler's cpuset), which
    os.cpu_count() ignores, so that threads are not planned for cores it cannot use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def cpu_description():
    """{"cpu_model", "cores" (usable by this process), "instruction_sets"}."""
    model, flags = _cpuinfo()
    return {"cpu_model": model, "cores": usable_cores(),
            "instruction_sets": [s for s in INSTRUCTION_SETS if s in flags]}


def cpu_words(description):
    """'AMD EPYC, 2 cores, with AVX-512' (or 'without AVX-512')."""
    avx512 = "avx512f" in description.get("instruction_sets", ())
    return (f"{description['cpu_model']}, {description['cores']} cores, "
            f"{'with' if avx512 else 'without'} AVX-512")
