"""The benchmark suite of issue 11: one command, a printed table, a JSON file and a generated page.

    python -m benchmarks.run [--sections=step,flops] [--cases=mnist_conv,colour_conv,mlp_digits]
                             [--quick] [--rounds=50] [--warmup=5] [--batch_size=256] [--threads=N]

writes benchmarks/results/<machine>.json and docs/benchmarks.md (both atomically;
--quick writes neither unless --results_dir / --docs name where). Sections:

  step                1. this project's TensorFlow training step against a PyTorch peer of the
                         same model (the paper's reference conv architecture; this project's mlp),
                         in the same process, alternating, after warm-up: min and median.
  flops               2. FLOPs of each step (flops.py), achieved GFLOP/s, and a large float32
                         matmul in each framework, the practical peak.
  epoch               3. one epoch of binarized MNIST (60,000 images) through the trainer's own loop against
                         the same step on a fixed batch: the input pipeline's overhead; the trace count.
  evaluation          4. a whole evaluation of a binarized-MNIST conv model (10,000 test images), per stage.
  mutual_information  5. the mutual-information stage for N = 1,000 .. 20,000 points: seconds, peak memory.
  grid                6. grid points per hour of a small sweep with 1 and 2 local workers, and from one
                         beta-conditional model.
  kernels             7. the convolution kernels' time per step in each framework (profilers), against
                         the time the step-ratio target leaves for the whole TF step.
(sections.py holds 3-6, kernels.py 7; epoch and evaluation need mnist.npz in --data_dir, default ../shared/data.)

A section is a function (context) -> dict; add one to SECTIONS to implement it.
PyTorch is optional (`pip install .[bench]`): without it the peer is skipped, and the suite says so.
"""
import hvae_repr  # noqa: F401  (must come before TensorFlow: it sets TF_ENABLE_ONEDNN_OPTS)

import argparse
import math
import os
import sys
import time

import numpy as np

from benchmarks import CASES, flops, kernels, sections, tf_steps, timing
from benchmarks.steps import CONDITIONAL, CONTENDED_CORES, CONTENDED_WARNING, build_steps, contention, format_cores

FRAMEWORKS = ("tensorflow", "torch")
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RESULTS_DIR = os.path.join(REPOSITORY, "benchmarks", "results")
DEFAULT_DOCS = os.path.join(REPOSITORY, "docs", "benchmarks.md")
QUICK = dict(batch_size=16, rounds=2, warmup=1, matmul_size=256, matmul_rounds=2)
FULL = dict(batch_size=256, rounds=50, warmup=5, matmul_size=2048, matmul_rounds=10)
LOSS_SCALE_TOLERANCE = 0.3  # see zero_output_distortion


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of {', '.join(SECTIONS)}")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated cases, of {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK}; writes files only where --results_dir/--docs say")
    for name, value in FULL.items():
        parser.add_argument(f"--{name}", type=int, default=None, help=f"default {value} ({QUICK[name]} with --quick)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads of each framework (intra-op; TF inter-op too); 0 = the number of cores")
    parser.add_argument("--data_dir", default="", help="folder with mnist.npz (default ../shared/data)")
    parser.add_argument("--work_dir", default="", help="keeps the sections' runs and reference classifiers between "
                                                       "calls ('' = a temporary folder)")
    parser.add_argument("--results_dir", default=None, help="where <machine>.json goes (default benchmarks/results)")
    parser.add_argument("--docs", default=None, help="the generated page (default docs/benchmarks.md)")
    parser.add_argument("--render", default="", help="write the page from a saved results JSON (of an earlier run "
                                                     "of this command) instead of measuring")
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    cases = [c for c in args.cases.split(",") if c]
    for kind, chosen, known in (("section", sections, SECTIONS), ("case", cases, CASES)):
        unknown = [c for c in chosen if c not in known]
        if unknown or not chosen:
            parser.error(f"unknown or no {kind} {','.join(unknown)}; choose from {','.join(known)}")
    args.sections, args.cases = sections, cases
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.threads < 0:
        parser.error("--threads must be 0 (one per core) or more")
    if not args.quick:
        args.results_dir = args.results_dir or DEFAULT_RESULTS_DIR
        args.docs = args.docs or DEFAULT_DOCS
    return args


def load_peer():
    """(torch_peer module, None) or (None, why it is skipped)."""
    try:
        import torch  # noqa: F401
        from benchmarks import torch_peer
    except ImportError as error:
        return None, f"PyTorch cannot be imported ({error}); pip install '.[bench]' to time the peer"
    return torch_peer, None


def set_threads(threads, peer):
    """The same thread count in both frameworks, before either runs an op; returns what is in force."""
    in_force = {"tensorflow": tf_steps.set_threads(threads)}
    if peer is not None:
        import torch
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # PyTorch already ran parallel work in this process; keep its setting
            pass
        in_force["torch"] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    return in_force


def zero_output_distortion(case, x):
    """Mean distortion (nats) of a decoder that outputs 0 (logit 0, or mean 0) on the batch x.

    An untrained model's loss is close to it: its outputs are small and its rates are
    near 0. The loss-scale check allows LOSS_SCALE_TOLERANCE around it, which the two
    frameworks' different initializations stay within (measured 1-22% above it over
    seeds here, the mlp's higher because its 48 latent dims add rate to a 64-pixel D),
    while the usual mistakes leave it: bits for nats (x1.44), a sum over the batch
    (x B), a mean over pixels (/ H*W*C), a missing 1/sigma^2.
    """
    if case.likelihood == "bernoulli":
        return case.input_size * math.log(2.0)
    s = case.gaussian_sigma
    squares = np.sum(x.astype(np.float64) ** 2, axis=(1, 2, 3)).mean()
    return float(squares / (2 * s * s) + case.input_size * (math.log(s) + 0.5 * math.log(2 * math.pi)))


def loss_scale_agrees(initial_loss, zero_output_distortion_nats):
    return abs(initial_loss / zero_output_distortion_nats - 1) <= LOSS_SCALE_TOLERANCE


# ------------------------------------------------------------------------- section 1
def step_section(context):
    args = context["args"]
    out = {"batch_size": args.batch_size, "rounds": args.rounds, "warmup_steps": args.warmup, "cases": {}}
    for name in args.cases:
        case = CASES[name]
        x, steps = build_steps(case, context)
        # The first call is the untrained model's loss (before its update) and the first warm-up step.
        initial = {fw: step.run() for fw, step in steps.items()}
        with timing.OtherLoad() as load:
            samples = timing.time_alternating({fw: step.run for fw, step in steps.items()}, args.rounds, args.warmup)
        conditional = timing.summarize(samples.pop(CONDITIONAL), args.batch_size)
        initial.pop(CONDITIONAL)
        parameters_conditional = steps[CONDITIONAL].num_parameters
        entry = {
            "title": case.title,
            "parameters": {fw: step.num_parameters for fw, step in steps.items() if fw != CONDITIONAL},
            "paper_parameters": case.reference_parameters or None,
            "initial_loss_nats": initial,
            "zero_output_distortion_nats": zero_output_distortion(case, x),
            "timing": {fw: timing.summarize(s, args.batch_size) for fw, s in samples.items()},
            "target_ratio": case.target_ratio or None,
            # The same model made beta-conditional (FiLM in every network, betas drawn per example), timed in
            # the same alternation: the extra cost of training one model for every beta.
            "conditional_tensorflow": dict(conditional, parameters=parameters_conditional),
        }
        entry["conditional_over_unconditional_median"] = (
            conditional["median_ms"] / entry["timing"]["tensorflow"]["median_ms"])
        entry.update(contention(load))
        entry["parameters_agree"] = len(set(entry["parameters"].values())) == 1 and (
            not case.reference_parameters or entry["parameters"]["tensorflow"] == case.reference_parameters)
        entry["loss_scale_agrees"] = all(loss_scale_agrees(v, entry["zero_output_distortion_nats"])
                                         for v in initial.values())
        if "torch" in samples:
            t = entry["timing"]
            entry["ratio_tf_over_torch_median"] = t["tensorflow"]["median_ms"] / t["torch"]["median_ms"]
            entry["ratio_tf_over_torch_min"] = t["tensorflow"]["min_ms"] / t["torch"]["min_ms"]
            if case.target_ratio:
                entry["meets_target"] = entry["ratio_tf_over_torch_median"] <= case.target_ratio
        out["cases"][name] = entry
    return out


# ------------------------------------------------------------------------- section 2
def flops_section(context):
    args, results = context["args"], context["results"]
    matmuls = {"tensorflow": timing.tf_matmul}
    if context["peer"] is not None:
        matmuls["torch"] = timing.torch_matmul
    with timing.OtherLoad() as load:
        peak = timing.matmul_peak(matmuls, args.matmul_size, args.matmul_rounds)
    step_results = results["sections"].get("step", {}).get("cases", {})
    out = {"method": "analytic: conv/deconv/dense MACs x 2, forward + weight and input gradients (flops.py)",
           "matmul_peak": peak, "matmul_peak_load": contention(load), "cases": {}}
    for name in args.cases:
        case = CASES[name]
        layers = flops.case_layers(case)
        entry = {"forward_flops": flops.forward_flops(layers, args.batch_size),
                 "train_step_flops": flops.train_step_flops(layers, args.batch_size)}
        timed = step_results.get(name, {}).get("timing", {})
        entry["achieved_gflops_median"] = {fw: entry["train_step_flops"] / (t["median_ms"] / 1000) / 1e9
                                           for fw, t in timed.items()}
        entry["fraction_of_matmul_peak"] = {fw: g / peak[fw]["gflops_best"]
                                            for fw, g in entry["achieved_gflops_median"].items()}
        out["cases"][name] = entry
    out["cross_check"] = flop_cross_check(CASES[args.cases[0]], context)
    return out


def flop_cross_check(case, context):
    """The analytic count of one case against PyTorch's FLOP counter and TensorFlow's profiler."""
    batch = context["args"].batch_size
    layers = flops.case_layers(case)
    _, steps = build_steps(case, context)
    check = {"case": case.name, "analytic_train_step_flops": flops.train_step_flops(layers, batch)}
    if "torch" in steps:
        check["torch_flop_counter"] = flops.torch_counted_flops(steps["torch"].run)
    profile = flops.tf_profiler_flops(steps["tensorflow"].graph())
    dense = [layer for layer in layers if layer.kind == "dense"]
    check["tf_profiler"] = {
        "total_float_ops": profile["total"],
        "by_op": profile["by_op"],
        "MatMul_vs_analytic_dense_train_step": [profile["by_op"].get("MatMul", 0),
                                                flops.train_step_flops(dense, batch)],
        "Conv2D_vs_analytic_conv_forward": [profile["by_op"].get("Conv2D", 0),
                                            flops.forward_flops([l for l in layers if l.kind != "dense"], batch)
                                            + flops.tf_subpixel_conv2d_flops(case, batch)],
    }
    return check


SECTIONS = {"step": step_section, "flops": flops_section, **sections.SECTIONS, "kernels": kernels.kernels_section}


# ------------------------------------------------------------------------- output
def report_tables(results):
    """[(title, headers, rows)] for the terminal and for the page."""
    tables = []
    step = results["sections"].get("step")
    if step and "cases" in step:
        rows = []
        for entry in step["cases"].values():
            t = entry["timing"]
            tf, torch = t["tensorflow"], t.get("torch")
            ratio = entry.get("ratio_tf_over_torch_median")
            rows.append([entry["title"], _count(entry["parameters"]),
                         _loss(entry), f"{tf['min_ms']:.1f}", f"{tf['median_ms']:.1f}",
                         f"{tf['examples_per_s_median']:.0f}",
                         f"{torch['min_ms']:.1f}" if torch else "skipped",
                         f"{torch['median_ms']:.1f}" if torch else "skipped",
                         f"{torch['examples_per_s_median']:.0f}" if torch else "skipped",
                         f"{ratio:.2f}" if ratio is not None else "-",
                         _target(entry), format_cores(entry["other_processes_cpu_cores"])])
        tables.append((f"Training step, batch {step['batch_size']}: ms per step, min and median of {step['rounds']} "
                       f"alternating rounds after {step['warmup_steps']} warm-up steps",
                       ["case", "parameters (TF / torch)", "initial loss, nats (TF / torch / zero output)",
                        "TF min", "TF median", "TF ex/s", "torch min", "torch median", "torch ex/s",
                        "TF/torch median", "target", "others' CPU (cores)"], rows))
        tables.append(("The extra cost of a beta-conditional model (FiLM in every network, betas drawn per example): "
                       "its TF step timed in the same alternation",
                       ["case", "parameters", "TF median ms", "conditional TF median ms", "conditional / plain"],
                       [[e["title"], f"{e['parameters']['tensorflow']:,} / {e['conditional_tensorflow']['parameters']:,}",
                         f"{e['timing']['tensorflow']['median_ms']:.1f}",
                         f"{e['conditional_tensorflow']['median_ms']:.1f}",
                         f"{e['conditional_over_unconditional_median']:.2f}"] for e in step["cases"].values()]))
    fl = results["sections"].get("flops")
    if fl and "cases" in fl:
        rows = []
        for name, entry in fl["cases"].items():
            achieved, fraction = entry["achieved_gflops_median"], entry["fraction_of_matmul_peak"]
            rows.append([CASES[name].title, f"{entry['train_step_flops'] / 1e9:.3f}"] +
                        [f"{achieved[fw]:.1f} ({100 * fraction[fw]:.0f}%)" if fw in achieved else "-"
                         for fw in FRAMEWORKS])
        peak = fl["matmul_peak"]
        peaks = ", ".join(f"{fw} {p['gflops_best']:.1f} (median {p['gflops_median']:.1f})" for fw, p in peak.items())
        n = next(iter(peak.values()))["n"]
        tables.append((f"Achieved GFLOP/s at the median step (% of the same framework's matmul peak); "
                       f"peak = float32 {n}x{n} matmul, best of its runs: {peaks} GFLOP/s "
                       f"(others' CPU {format_cores(fl['matmul_peak_load']['other_processes_cpu_cores'])} cores)",
                       ["case", "GFLOP per step", "TF GFLOP/s", "torch GFLOP/s"], rows))
    tables += sections.report_tables(results["sections"]) + kernels.report_tables(results["sections"])
    return tables


def _count(parameters):
    return " / ".join(f"{parameters[fw]:,}" for fw in FRAMEWORKS if fw in parameters)


def _loss(entry):
    values = [f"{entry['initial_loss_nats'][fw]:.1f}" for fw in FRAMEWORKS if fw in entry["initial_loss_nats"]]
    return " / ".join(values + [f"{entry['zero_output_distortion_nats']:.1f}"])


def _target(entry):
    if not entry.get("target_ratio"):
        return "-"
    if "meets_target" not in entry:
        return f"<= {entry['target_ratio']}"
    verdict = "met" if entry["meets_target"] else "not met"
    return f"<= {entry['target_ratio']}: {verdict}{' (contended)' if entry['contended'] else ''}"


def format_text(headers, rows):
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    line = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)  # noqa: E731
                               for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def format_markdown(headers, rows):
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] +
                     ["| " + " | ".join(str(v) for v in r) + " |" for r in rows])


def describe(results):
    m, s = results["machine"], results["settings"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    env = ", ".join(f"{k}={v}" for k, v in m["environment"].items() if v is not None)
    threads = "; ".join(f"{fw} {t['intra_op']} intra-op / {t['inter_op']} inter-op"
                        for fw, t in s["threads_in_force"].items())
    return [f"Machine: {m['cpu_model']}, {m['cores']} cores; instruction sets: {' '.join(m['instruction_sets'])}",
            f"Libraries: {libs}",
            f"Environment: {env or '(none set)'}",
            f"Threads: {threads}",
            f"PyTorch peer: {results['peer']['status']}",
            f"Other processes' CPU use during each timing is measured (cores; above {CONTENDED_CORES} the "
            f"result is flagged 'contended')"]


def contention_warnings(results):
    step = results["sections"].get("step", {}).get("cases", {})
    contended = [name for name, entry in step.items() if entry.get("contended")]
    if results["sections"].get("flops", {}).get("matmul_peak_load", {}).get("contended"):
        contended.append("matmul peak")
    return [f"WARNING: {', '.join(contended)}: {CONTENDED_WARNING}."] if contended else []


def print_report(results):
    print("\n".join(describe(results)))
    for title, headers, rows in report_tables(results):
        print(f"\n{title}\n{format_text(headers, rows)}")
    for line in contention_warnings(results):
        print(f"\n{line}")
    cross = results["sections"].get("flops", {}).get("cross_check")
    if cross:
        print(f"\n{describe_cross_check(cross)}")
    for name, section in results["sections"].items():
        if section.get("status"):
            print(f"\nsection {name}: {section['status']} ({section['issue']})")


def describe_cross_check(cross):
    tf = cross["tf_profiler"]
    matmul, dense = tf["MatMul_vs_analytic_dense_train_step"]
    conv, conv_forward = tf["Conv2D_vs_analytic_conv_forward"]
    torch = cross.get("torch_flop_counter")
    return (f"FLOP count cross-check ({cross['case']}): analytic {cross['analytic_train_step_flops']:,} per step"
            + (f", PyTorch's FlopCounterMode on the peer's step {torch:,}" if torch is not None else "")
            + f"; TensorFlow's profiler on the traced step: MatMul {matmul:,} (analytic dense layers {dense:,}), "
            f"Conv2D {conv:,} (analytic conv forward, with the sub-pixel output layer's Conv2D, "
            f"{conv_forward:,}); see benchmarks/flops.py.")


def render_markdown(results):
    quick = " (--quick smoke run: not a measurement)" if results["settings"]["quick"] else ""
    lines = ["<!-- Generated by benchmarks/run.py; do not edit by hand: rerun the command below. -->",
             "# Benchmarks", "", "```", results["command"], "```", "", f"Run {results['started']}{quick}.", ""]
    lines += [f"- {line}" for line in describe(results)]
    for title, headers, rows in report_tables(results):
        lines += ["", f"**{title}**", "", format_markdown(headers, rows)]
    lines += [f"\n{line}" for line in contention_warnings(results)]
    cross = results["sections"].get("flops", {}).get("cross_check")
    if cross:
        lines += ["", describe_cross_check(cross)]
    pending = [f"{name} ({section['issue']})" for name, section in results["sections"].items() if section.get("status")]
    if pending:
        lines += ["", "Not measured yet: " + "; ".join(pending) + "."]
    lines += ["", "What was tried to make the training step faster, and what each change gained: "
              "[benchmarks_changes.md](benchmarks_changes.md) (a log kept by hand)."]
    return "\n".join(lines) + "\n"


def write_outputs(results, args):
    from hvae_repr import io_utils
    written = []
    if args.results_dir:
        path = os.path.join(args.results_dir, results["machine"]["name"] + ".json")
        io_utils.write_json_atomic(path, results)
        written.append(path)
    if args.docs:
        io_utils.write_text_atomic(args.docs, render_markdown(results))
        written.append(args.docs)
    print("\nwrote " + ", ".join(written) if written else "\n--quick: no files written (name --results_dir / --docs)")
    return written


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.render:
        import json
        from hvae_repr import io_utils
        with open(args.render) as f:
            results = json.load(f)
        io_utils.write_text_atomic(args.docs or DEFAULT_DOCS, render_markdown(results))
        print(f"wrote {args.docs or DEFAULT_DOCS} from {args.render}")
        return results
    machine = timing.machine_description()
    machine["name"] = timing.machine_name(machine)
    args.threads = args.threads or machine["cores"]
    peer, why_not = load_peer()
    load_before = timing.load_average()
    results = {
        "command": " ".join(["python -m benchmarks.run"] + argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "units": "ms per step, examples per second, FLOPs, GFLOP/s; losses in nats per example",
        "machine": machine,
        "peer": {"available": peer is not None,
                 "status": "timed (benchmarks/torch_peer.py)" if peer is not None else f"skipped: {why_not}"},
        "settings": {"quick": args.quick, "batch_size": args.batch_size, "rounds": args.rounds,
                     "warmup_steps": args.warmup, "threads_requested": args.threads,
                     "threads_in_force": set_threads(args.threads, peer), "cases": args.cases,
                     "sections": args.sections},
        "sections": {},
    }
    if peer is None:
        print(f"PyTorch peer skipped: {why_not}", flush=True)
    context = {"args": args, "peer": peer, "results": results, "steps": {}}
    for name in args.sections:
        print(f"running section {name} ...", flush=True)
        started = time.perf_counter()
        results["sections"][name] = SECTIONS[name](context)
        results["sections"][name]["section_seconds"] = time.perf_counter() - started
    results["settings"]["load_average_1min"] = {"before": load_before, "after": timing.load_average()}
    print()
    print_report(results)
    write_outputs(results, args)
    return results


if __name__ == "__main__":
    main()
