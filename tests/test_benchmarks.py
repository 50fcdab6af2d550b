"""The benchmark suite: the PyTorch peer matches the models, the FLOP count is exact, and a
--quick smoke run writes a complete result, with or without PyTorch. No timing is asserted."""
import contextlib
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import CASES, flops, run, steps, tf_steps, timing

PAPER_COUNTS = {"mnist_conv": 122_713, "colour_conv": 475_811}


def read_result(folder):
    files = [f for f in os.listdir(folder) if f.endswith(".json")]
    assert len(files) == 1, files
    with open(os.path.join(folder, files[0])) as f:
        return files[0], json.load(f)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    docs = folder / "benchmarks.md"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        results = run.main(["--quick", "--sections=step,flops,mutual_information,kernels", f"--results_dir={folder / 'results'}",
                            f"--docs={docs}"])
    return results, folder, docs, printed.getvalue()


def test_analytic_flops_equal_pytorchs_count_of_the_real_step():
    torch = pytest.importorskip("torch")
    from benchmarks import torch_peer
    from torch.utils.flop_counter import FlopCounterMode
    batch = 3
    for name, case in CASES.items():
        layers = flops.case_layers(case)
        x = steps.make_batch(case, batch)
        step = torch_peer.make_train_step(case, x)
        assert flops.torch_counted_flops(step.run) == flops.train_step_flops(layers, batch), name
        model = torch_peer.build_model(case)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch_peer.to_channels_first(x))
        assert counter.get_total_flops() == flops.forward_flops(layers, batch), name


def test_step_flops_are_three_forwards_less_the_input_gradient_of_layers_on_x():
    layers = [flops.dense("a", 10, 4, reads_data=True), flops.conv("b", 2, 3, 4, 5), flops.deconv("c", 2, 4, 5, 1)]
    forward_macs = 40 + 2 * 2 * 9 * 4 * 5 + 2 * 2 * 16 * 5 * 1
    assert flops.forward_flops(layers, 7) == 2 * 7 * forward_macs
    assert flops.train_step_flops(layers, 7) == 3 * flops.forward_flops(layers, 7) - 2 * 7 * 40


def test_conv_flop_count_rejects_a_z1_that_is_not_a_4x4_map():
    bad = dataclasses.replace(CASES["mnist_conv"], latent_dims=(100, 20))
    with pytest.raises(ValueError, match="4x4 map"):
        flops.case_layers(bad)


def test_loss_scale_check_separates_initializations_from_unit_mistakes():
    reference = 784 * math.log(2)
    assert run.loss_scale_agrees(reference * 1.2, reference)
    assert not run.loss_scale_agrees(reference / math.log(2), reference)  # bits instead of nats
    assert not run.loss_scale_agrees(reference * 256, reference)          # summed over the batch
    assert not run.loss_scale_agrees(reference / 784, reference)          # mean over pixels
    gaussian = CASES["colour_conv"]
    x = np.full((2,) + gaussian.input_shape, 0.5, np.float32)
    s = gaussian.gaussian_sigma
    expected = 3072 * (0.125 / s ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi))
    assert math.isclose(run.zero_output_distortion(gaussian, x), expected, rel_tol=1e-9)


def test_alternating_timer_warms_up_then_takes_turns():
    calls = []
    functions = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    samples = timing.time_alternating(functions, rounds=3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert [len(s) for s in samples.values()] == [3, 3]
    summary = timing.summarize([0.004, 0.002, 0.010], examples_per_call=8)
    assert summary["min_ms"] == pytest.approx(2.0) and summary["median_ms"] == pytest.approx(4.0)
    assert summary["examples_per_s_median"] == pytest.approx(2000.0)
    with pytest.raises(ValueError, match="rounds"):
        timing.time_alternating(functions, rounds=0)


def test_other_processes_cpu_use_is_measured():
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 2: pass"])
    try:
        time.sleep(0.3)
        with timing.OtherLoad() as load:
            time.sleep(1.0)
    finally:
        spinner.wait()
    assert load.cores > 0.5  # the spinning child, whatever else runs


def test_machine_is_described_and_named_for_a_file():
    description = timing.machine_description()
    assert description["cores"] >= 1 and description["cpu_model"]
    assert description["libraries"]["tensorflow"]
    assert description["environment"]["TF_ENABLE_ONEDNN_OPTS"] == os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    name = timing.machine_name({"cpu_model": "Intel(R) Xeon(R) Gold 6/148 CPU @ 2.40GHz", "cores": 4})
    assert name == "intel-r-xeon-r-gold-6-148-cpu-2-40ghz_4-cores"


@pytest.mark.slow
def test_smoke_run_writes_every_case_section_and_the_page(smoke):
    results, folder, docs, printed = smoke
    file_name, saved = read_result(folder / "results")
    assert file_name == saved["machine"]["name"] + ".json"
    assert saved["settings"]["quick"] and saved["settings"]["batch_size"] == 16
    frameworks = {"tensorflow", "torch"} if saved["peer"]["available"] else {"tensorflow"}
    step = saved["sections"]["step"]["cases"]
    assert set(step) == set(CASES)
    for name, entry in step.items():
        assert set(entry["timing"]) == frameworks
        for summary in entry["timing"].values():
            assert summary["calls_timed"] == 2
            assert 0 < summary["min_ms"] <= summary["median_ms"]
        # The paper's counts (its models, built by both frameworks; the mlp is this project's, with none).
        assert CASES[name].reference_parameters == PAPER_COUNTS.get(name, 0)
        assert entry["parameters"]["tensorflow"] == CASES[name].reference_parameters or name == "mlp_digits"
        assert entry["parameters_agree"] and entry["loss_scale_agrees"], (name, entry["initial_loss_nats"], entry["zero_output_distortion_nats"])
        conditional = entry["conditional_tensorflow"]
        assert conditional["parameters"] > entry["parameters"]["tensorflow"] and conditional["calls_timed"] == 2
        assert entry["conditional_over_unconditional_median"] == pytest.approx(
            conditional["median_ms"] / entry["timing"]["tensorflow"]["median_ms"])
        assert entry["contended"] == (entry["other_processes_cpu_cores"] > steps.CONTENDED_CORES)
        assert ("warning" in entry) == entry["contended"]
        if "torch" in frameworks:
            assert entry["parameters"]["torch"] == entry["parameters"]["tensorflow"]
            assert entry["ratio_tf_over_torch_median"] == pytest.approx(
                entry["timing"]["tensorflow"]["median_ms"] / entry["timing"]["torch"]["median_ms"])
    fl = saved["sections"]["flops"]
    assert set(fl["matmul_peak"]) == frameworks
    for name, entry in fl["cases"].items():
        assert entry["train_step_flops"] == flops.train_step_flops(flops.case_layers(CASES[name]), 16)
        assert set(entry["achieved_gflops_median"]) == frameworks
    check = fl["cross_check"]["tf_profiler"]
    matmul, conv = check["MatMul_vs_analytic_dense_train_step"], check["Conv2D_vs_analytic_conv_forward"]
    assert matmul[0] == matmul[1] and conv[0] == conv[1]
    if "torch" in frameworks:
        assert fl["cross_check"]["torch_flop_counter"] == fl["cross_check"]["analytic_train_step_flops"]
    mi = saved["sections"]["mutual_information"]["sizes"]
    assert set(mi) == {"500", "1000"} and all(v["seconds"] > 0 and v["peak_mib"] > 0 for v in mi.values())
    kernels = saved["sections"]["kernels"]
    if "torch" in frameworks:  # both conv cases: each framework's conv kernels found, and less than its step
        assert set(kernels["cases"]) == {"mnist_conv", "colour_conv"}
        for entry in kernels["cases"].values():
            for side in ("tensorflow", "torch"):
                assert 0 < entry[side]["conv_ms"] < entry[side]["profiled_step_ms"], (side, entry[side])
                assert all("onv" in op for op in entry[side]["by_op_ms"])
            assert entry["tf_conv_kernels_over_target_step"] == pytest.approx(
                entry["tensorflow"]["conv_ms"] / (entry["target_ratio"] * entry["torch_median_ms"]))
    else:
        assert kernels["status"].startswith("skipped")
    page = docs.read_text()
    assert "Mutual-information stage" in page and ("Convolution kernels per training step" in page) == (
        "torch" in frameworks)
    assert page.startswith("<!-- Generated by benchmarks/run.py") and saved["command"] in page
    assert saved["machine"]["cpu_model"] in page
    assert "TF/torch median" in printed and "GFLOP/s" in printed


@pytest.mark.slow
def test_suite_runs_without_pytorch_and_says_the_peer_was_skipped(tmp_path, monkeypatch, capsys):
    from hvae_repr import trainer  # noqa: F401  (Keras and scikit-learn probe for torch on import: import them first)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    # The sections that use PyTorch (the others never import it, and cost minutes on a slow CPU).
    results = run.main(["--quick", "--cases=mlp_digits", "--sections=step,flops,kernels", f"--results_dir={tmp_path}"])
    assert "PyTorch peer skipped" in capsys.readouterr().out
    _, saved = read_result(tmp_path)
    assert saved["peer"]["available"] is False and saved["peer"]["status"].startswith("skipped")
    entry = saved["sections"]["step"]["cases"]["mlp_digits"]
    assert set(entry["timing"]) == {"tensorflow"} and "ratio_tf_over_torch_median" not in entry
    assert set(saved["sections"]["flops"]["matmul_peak"]) == {"tensorflow"}
    assert saved["sections"]["kernels"]["status"].startswith("skipped")
    assert results["sections"]["step"]["cases"]["mlp_digits"]["timing"]["tensorflow"]["calls_timed"] == 2


def test_unknown_section_or_case_is_refused():
    for flag in ("--sections=steps", "--cases=mnist", "--rounds=0", "--threads=-1"):
        with pytest.raises(SystemExit):
            run.parse_args([flag])


def test_sections_3_to_6_are_reported_as_tables():
    from benchmarks import sections
    fabricated = {
        "epoch": {"dataset": "binary_mnist", "images": 60000, "batch_size": 256, "timed_epoch": 2, "epoch_seconds": 7.0,
                  "steps_per_epoch": 234, "loop_ms_per_step": 29.9, "fixed_batch_ms_per_step_median": 29.0,
                  "pipeline_overhead_fraction": 29.9 / 29.0 - 1, "traces": 1},
        "evaluation": {"test_images": 10000, "seconds_per_stage": {"probes": 12.0, "total": 30.0}, "wall_seconds": 31.0,
                       "target_seconds": 60, "reference_classifier_seconds_before": 50.0},
        "mutual_information": {"dimensions": 20, "target": "t", "sizes": {"1000": {"seconds": 0.1, "peak_mib": 20.0}}},
        "grid": {"sweep": "python -m launch.sweep ...", "runs": {"1 worker": {"points": 4, "seconds": 120.0,
                                                                             "points_per_hour": 120.0}}},
        "skipped": {"status": "skipped: no mnist.npz", "issue": "issue 11, part 3"}}
    tables = {title.split()[0]: rows for title, _, rows in sections.report_tables(fabricated)}
    assert tables["Epoch"][0][4] == "3.1%" and tables["Epoch"][0][6] == 1
    assert tables["Evaluation"][-1] == ["wall, whole call", "31.0"]
    assert tables["Mutual-information"] == [["1,000", "0.10", "20"]]
    assert tables["Grid"] == [["1 worker", 4, "120", "120"]]


def test_target_rate_cost_benchmark_times_both_kinds_in_turns(tmp_path, capsys):
    from benchmarks import target_rates
    out = target_rates.main(["--dataset=binary_digits", "--architecture=mlp", "--pairs=1", "--target_rates=3,1",
                             f"--out={tmp_path / 'cost.json'}"])
    saved = json.loads((tmp_path / "cost.json").read_text())
    assert saved["ratios"] == out["ratios"] and len(out["ratios"]) == 1
    assert all(s[0] > 0 for s in out["train_seconds"].values())
    assert out["median_ratio"] == out["train_seconds"]["targeted"][0] / out["train_seconds"]["fixed"][0]
    assert "targeted / fixed train_seconds: median" in capsys.readouterr().out
