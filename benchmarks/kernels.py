"""Section 7 of the benchmark suite: how much of each training step the convolution kernels take.

Both frameworks run their convolutions on oneDNN. If the convolution kernels alone take longer than
the time a target leaves for the whole step, no change outside them (layout, fusing, the optimizer,
threads) can meet that target. Measured with each framework's profiler over `rounds` steps:

- PyTorch: torch.profiler's self CPU time of every op whose name holds "conv" (forward, the transposed
  convolutions and convolution_backward), in the suite's process, on the peer's own step.
- TensorFlow: the TF profiler's time of every kernel whose op type holds "Conv" (Conv2D and its two
  gradients, oneDNN's fused variants), in a child process with one inter-op thread, so that kernels
  run one at a time and their times add up to the time they take of the step (with the default two
  inter-op threads kernels overlap and their sum exceeds the step).

    python -m benchmarks.kernels --cases=mnist_conv,colour_conv   (the TensorFlow part alone; prints JSON)
"""
import hvae_repr  # noqa: F401  (must come before TensorFlow: it sets TF_ENABLE_ONEDNN_OPTS)

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import CASES

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tf_conv_kernels(cases, batch_size, rounds, threads):
    """{case name: {"conv_ms", "profiled_step_ms", "by_op_ms"}} per step of this project's TF step, every
    case in one child process (one TensorFlow start-up), one case after the other."""
    command = [sys.executable, "-m", "benchmarks.kernels", f"--cases={','.join(c.name for c in cases)}",
               f"--batch_size={batch_size}", f"--rounds={rounds}", f"--threads={threads}"]
    done = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{' '.join(command)} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_conv_kernels(step, rounds):
    """{"conv_ms", "profiled_step_ms", "by_op_ms"} per step of the PyTorch peer's step (this process)."""
    from torch.profiler import ProfilerActivity, profile
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(rounds):
            step()
    wall = (time.perf_counter() - started) / rounds
    by_op = {e.key: e.self_cpu_time_total / 1e3 / rounds for e in prof.key_averages() if "conv" in e.key.lower()}
    return {"conv_ms": sum(by_op.values()), "profiled_step_ms": 1e3 * wall, "by_op_ms": by_op}


def _profile_tf_step(case, batch_size, rounds, threads):
    """The TF side, run in the child process: inter-op threads 1, intra-op `threads`."""
    from benchmarks import tf_steps
    from benchmarks.steps import make_batch
    from hvae_repr.tf_env import tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    step = tf_steps.make_train_step(case, make_batch(case, batch_size))
    for _ in range(5):
        step.run()
    space = xplane_pb2.XSpace()
    with tempfile.TemporaryDirectory(prefix="hvae-kernels-") as logdir:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        for _ in range(rounds):
            step.run()
        wall = (time.perf_counter() - started) / rounds
        tf.profiler.experimental.stop()
        with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    by_op = collections.Counter()
    for plane in space.planes:
        if "host" not in plane.name.lower():
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's threads: one event per kernel
                continue
            for event in line.events:
                op_type = names.get(event.metadata_id, "").rpartition(":")[2]  # "node name:OpType"
                if "Conv" in op_type:
                    by_op[op_type] += event.duration_ps / 1e9 / rounds
    return {"conv_ms": sum(by_op.values()), "profiled_step_ms": 1e3 * wall, "by_op_ms": dict(by_op)}


def kernels_section(context):
    """Per conv case: each framework's convolution kernels per step, the PyTorch peer's median step, and
    the time the target leaves for the whole TF step."""
    from benchmarks import steps as shared, timing
    args = context["args"]
    if context["peer"] is None:
        return {"status": "skipped: the PyTorch peer is not installed (pip install -e \".[bench]\")",
                "issue": "issue 11, targets"}
    out = {"rounds": args.rounds, "cases": {}}
    cases = [CASES[name] for name in args.cases if CASES[name].architecture == "conv"]
    tf_sides = tf_conv_kernels(cases, args.batch_size, args.rounds, args.threads) if cases else {}
    for case in cases:
        _, steps = shared.build_steps(case, context)
        torch_step = steps["torch"].run
        with timing.OtherLoad() as load:  # the TF child below would count as another process: kept outside
            torch_side = torch_conv_kernels(torch_step, args.rounds)
            torch_median = timing.summarize(timing.time_alternating({"torch": torch_step}, args.rounds, 1)["torch"],
                                            args.batch_size)["median_ms"]
        tf_side = tf_sides[case.name]
        entry = {"title": case.title, "tensorflow": tf_side, "torch": torch_side, "torch_median_ms": torch_median,
                 "target_ratio": case.target_ratio or None, **shared.contention(load)}
        if case.target_ratio:
            entry["target_step_ms"] = case.target_ratio * torch_median
            entry["tf_conv_kernels_over_target_step"] = tf_side["conv_ms"] / entry["target_step_ms"]
        out["cases"][case.name] = entry
    return out


def report_tables(results):
    """[(title, headers, rows)] of section 7 (when it ran)."""
    from benchmarks.steps import format_cores
    section = results.get("kernels")
    if not section or "cases" not in section:
        return []
    rows = []
    for e in section["cases"].values():
        target = e.get("target_step_ms")
        rows.append([e["title"], f"{e['tensorflow']['conv_ms']:.1f}", f"{e['tensorflow']['profiled_step_ms']:.1f}",
                     f"{e['torch']['conv_ms']:.1f}", f"{e['torch']['profiled_step_ms']:.1f}",
                     f"{e['torch_median_ms']:.1f}",
                     f"{target:.1f} ({e['target_ratio']} x torch median)" if target else "-",
                     f"{e['tf_conv_kernels_over_target_step']:.2f}" if target else "-",
                     format_cores(e["other_processes_cpu_cores"])])
    return [(f"Convolution kernels per training step, ms (profilers, {section['rounds']} steps; TF with one "
             "inter-op thread so that its kernels run one at a time): a TF step cannot be shorter than its "
             "convolution kernels, so a ratio above 1 in the last column means the target needs faster "
             "convolution kernels, whatever else changes",
             ["case", "TF conv kernels", "TF step (profiled)", "torch conv ops", "torch step (profiled)",
              "torch median step (unprofiled)", "target TF step", "TF conv kernels / target step",
              "others' CPU (cores)"], rows)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", required=True, help=f"comma-separated cases, of {', '.join(sorted(CASES))}")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    names = args.cases.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}: choose from {', '.join(sorted(CASES))}")
    print(json.dumps({name: _profile_tf_step(CASES[name], args.batch_size, args.rounds, args.threads)
                      for name in names}))


if __name__ == "__main__":
    main()
