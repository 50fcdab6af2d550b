"""Every bad input of the three programs (train, evaluate, export) ends in one line `error: ...`,
exit status 2 and no traceback, before any heavy work; the settings helpers round-trip."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import run_in_process

from evaluation import advise, evaluate, target
from hvae_repr import cli, export, train
from hvae_repr.runs import RunDir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = {"train": (train.define, train.main), "evaluate": (evaluate.define, evaluate.main),
            "export": (export.define, export.main), "target": (target.define, target.main),
            "advise": (advise.define, advise.main)}


def _copy_run(tiny_run, dest, *names):
    os.makedirs(dest)
    for name in names:
        (shutil.copytree if os.path.isdir(os.path.join(tiny_run, name)) else shutil.copy)(
            os.path.join(tiny_run, name), os.path.join(dest, name))
    return str(dest)


def _places(tiny_run, tmp_path):
    """Folders and files that bad inputs point at, made once per test."""
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    places = {"file": str(tmp_path / "a_file"), "mine": str(tmp_path / "mine"), "empty": str(tmp_path / "empty"),
              "run": tiny_run,
              "unfinished": _copy_run(tiny_run, tmp_path / "unfinished", "config.json", "checkpoints"),
              "no_checkpoint": _copy_run(tiny_run, tmp_path / "no_checkpoint", "config.json", "train_result.json"),
              "no_data": _copy_run(tiny_run, tmp_path / "no_data", "config.json", "train_result.json", "checkpoints"),
              "corrupt_config": _copy_run(tiny_run, tmp_path / "corrupt", "train_result.json")}
    os.makedirs(places["empty"])
    with open(os.path.join(places["no_data"], "config.json")) as f:
        config = json.load(f)
    config.update(dataset="mnist", data_dir=str(tmp_path / "empty"))  # downloads are off in the tests
    with open(os.path.join(places["no_data"], "config.json"), "w") as f:
        json.dump(config, f)
    (tmp_path / "corrupt" / "config.json").write_text("{not json")
    quick = _copy_run(tiny_run, tmp_path / "quick", "config.json", "train_result.json", "checkpoints")
    evaluate.write_result(quick, {"settings": {**evaluate.resolved(evaluate.EvalOptions(max_test=100),
                                                                    RunDir(quick).read_config()).__dict__}})
    places["evaluated_quickly"] = quick
    return places


TINY = ["--dataset=digits", "--latent_dims=8,4", "--hidden_units=64", "--epochs=2", "--batch_size=64",
        "--kl_warmup_epochs=0", "--seed=0"]
CASES = [
    # (program, argv with {place} fields, parts of the one-line error)
    ("train", ["--workdir={file}"], ["is a file, not a run folder"]),
    ("train", ["--workdir={mine}"], ["not empty but holds no config.json"]),
    ("train", ["--workdir={run}", *TINY, "--betas=2,1"], ["holds a run with other settings", "betas: 1,1 there vs 2,1 now"]),
    ("train", ["--workdir={empty}", "--betas=1,1,1"], ["--betas has 3 values but --latent_dims has 2 layers"]),
    ("train", ["--workdir={empty}", "--betas=one,two"], ["--betas must be a comma-separated list of float"]),
    ("train", ["--workdir={empty}", "--architecture=resnet"], ["architecture", "mlp", "conv", "see --help"]),
    ("train", ["--workdir={empty}", "--nonsense=1"], ["nonsense"]),
    ("train", ["--workdir={empty}", "--epochs=0"], ["--epochs must be at least 1"]),
    ("train", ["--workdir={empty}", "--gaussian_sigma=-1"], ["--gaussian_sigma must be positive"]),
    ("train", ["--workdir={empty}", "--dataset=imagenet"], ["unknown dataset 'imagenet'", "npz:PATH"]),
    ("train", ["--workdir={empty}", "--dataset=mnist", "--data_dir={empty}"], ["mnist", "downloads are off"]),
    ("train", ["--workdir={empty}", "--dataset=npz:{file}"], ["cannot read as .npz"]),
    ("train", ["--workdir={empty}", "--batch_size=5000"], ["--batch_size=5000 exceeds the 1437 training examples"]),
    ("train", ["--workdir={empty}", "--architecture=conv"], ["conv architecture needs 28x28xC or 32x32xC"]),
    ("evaluate", [], ["--workdir is required"]),
    ("evaluate", ["--workdir={file}"], ["is a file, not a run folder"]),
    ("evaluate", ["--workdir={empty}"], ["not a run folder"]),
    ("evaluate", ["--workdir={unfinished}"], ["has not finished training", "python -m hvae_repr.train --workdir="]),
    ("evaluate", ["--workdir={no_checkpoint}"], ["has no checkpoint yet"]),
    ("evaluate", ["--workdir={corrupt_config}"], ["config.json cannot be read"]),
    ("evaluate", ["--workdir={no_data}"], ["mnist", "downloads are off"]),
    ("evaluate", ["--workdir={run}", "--probe_jobs=0"], ["--probe_jobs must be at least 1"]),
    ("evaluate", ["--workdir={run}", "--confidence=2"], ["--confidence must lie strictly between 0 and 1"]),
    ("evaluate", ["--workdir={run}", "--probe_names=tree"], ["--probe_names must list probes among"]),
    ("evaluate", ["--workdir={evaluated_quickly}"], ["was computed with other settings", "max_test: 100 there vs 0 now",
                                                     "--overwrite"]),
    ("train", [*TINY, "--target_rates=-3,1"], ["the target of z1 must be a finite rate >= 0"]),
    ("train", [*TINY, "--target_rates=5,nan"], ["the target of z2 must be a finite rate >= 0"]),
    ("train", [*TINY, "--target_rates=5"], ["--target_rates has 1 values but --latent_dims has 2 layers"]),
    ("target", ["--rates=1,1"], ["--workdir is required"]),
    ("target", ["--workdir={run}", "--rates=1,1"], ["holds a model trained at fixed betas"]),
    ("advise", [], ["--root is required"]),
    ("advise", ["--root={empty}"], ["holds no finished run"]),
    ("export", [], ["--workdir is required"]),
    ("export", ["--workdir={file}"], ["is a file, not a run folder"]),
    ("export", ["--workdir={empty}"], ["not a run folder"]),
    ("export", ["--workdir={no_checkpoint}"], ["has no checkpoint yet"]),
]


@pytest.mark.parametrize("program,argv,parts", CASES, ids=[f"{c[0]}:{' '.join(c[1])}" for c in CASES])
def test_bad_input_is_one_line_exit_2_and_no_traceback(program, argv, parts, tiny_run, tmp_path, capsys):
    places = _places(tiny_run, tmp_path)
    define, main = PROGRAMS[program]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # any other exception (a traceback) fails the test
        run_in_process(define, main, [program] + [a.format(**places) for a in argv])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    for part in parts:
        assert part.format(**places) in err, err
    assert os.listdir(places["empty"]) == []  # refused before anything was written


@pytest.mark.slow
def test_a_real_process_prints_only_the_error_line(tmp_path):
    # A fresh process imports TensorFlow on the way: its start-up lines (cuInit, oneDNN) stay quiet.
    (tmp_path / "a_file").write_text("x")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    # The program loads TensorFlow without the Keras extras (hvae_repr.tf_env): at exit, none of them is loaded.
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('loaded:', sorted(m for m in ('tensorflow', 'IPython', 'matplotlib', "
            "'sklearn') if m in sys.modules)))\n"
            f"sys.argv = ['hvae-train', '--workdir={tmp_path / 'a_file'}']\n"
            "from hvae_repr import train\ntrain.run_main()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert proc.stdout.strip() == "loaded: ['tensorflow']", proc.stdout
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'a_file'} is a file, not a run folder; "
                                                f"pass a folder as --workdir"], proc.stderr


def test_a_run_in_use_by_another_process_is_refused_and_a_dead_holder_releases_it(tiny_run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"), RunDir(tiny_run).file(RunDir.LOCK)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit):
            run_in_process(export.define, export.main, ["export", f"--workdir={tiny_run}"])
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "in use by another process" in err and "\n" not in err
    finally:
        holder.kill()
        holder.wait()
    with RunDir(tiny_run).lock():  # the operating system released the dead process's lock
        pass


def test_settings_build_from_flat_names_and_back_to_flags():
    from hvae_repr.config import TrainConfig
    config = cli.build(TrainConfig, dataset="digits", latent_dims=(8, 4), betas=(0.5, 2.0), likelihood="gaussian")
    assert config.model.latent_dims == (8, 4) and config.betas == (0.5, 2.0)
    assert cli.to_argv(config)[:2] == ["--dataset=digits", "--likelihood=gaussian"]
    with pytest.raises(ValueError, match="unknown settings colour"):
        cli.build(TrainConfig, colour="red")


def _help(define, main, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(define, main, ["program", "--epochs=3", "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_lists_each_programs_own_flags_with_defaults_grouped(capsys):
    from evaluation.evaluate import EvaluateCommand
    from hvae_repr.config import TrainConfig
    from launch import point, sweep

    def names(cls, prefix=""):
        return [prefix + name for name, _ in cli._flat_fields(cls)]
    expected = {  # program: (its flags, its headings in order)
        "train": (train, names(TrainConfig), ["data", "model", "training"]),
        "evaluate": (evaluate, names(EvaluateCommand), ["run", "evaluation"]),
        "export": (export, ["workdir"], ["run"]),
        "sweep": (sweep, names(sweep.SweepCommand) + [f"{kind}_{l}" for kind in ("betas", "target_rates")
                                                             for l in range(1, 10)],
                  ["sweep", "data", "model", "training", "evaluation"]),
        "point": (point, names(point.PointCommand), ["point", "data", "model", "training", "evaluation"])}
    for program, (module, flag_names, headings) in expected.items():
        text = _help(module.define, module.main, capsys)
        listed = [line.split()[0].split("=")[0][2:] for line in text.splitlines() if line.startswith("  --")]
        assert sorted(listed) == sorted(flag_names) and len(set(listed)) == len(listed), program  # each once
        assert [line[:-1] for line in text.splitlines() if line and not line.startswith(" ")
                and line.endswith(":")] == headings, text
        assert "--helpfull" in text.splitlines()[-1]
    text = _help(train.define, train.main, capsys)
    assert "  --epochs=300  Training epochs." in text and "  --architecture=mlp  Networks. One of: mlp, conv." in text
    assert "  --conditional_betas=false  " in text and "  --beta_range=0.1,10.0  " in text
    assert "python -m hvae_repr.train" not in text  # in process no docstring is passed: flags only


@pytest.mark.parametrize("module", ["hvae_repr.train", "evaluation.aggregate"])
def test_help_of_a_real_program_shows_its_usage_and_not_absls_or_tensorflows_flags(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2].strip().startswith(f"python -m {module}")  # the docstring's title and usage first
    flags_listed = [line.split("=")[0].strip() for line in lines if line.startswith("  --")]
    assert flags_listed and not [f for f in flags_listed if f[2:] in ("logtostderr", "alsologtostderr", "verbosity",
                                                                       "helpfull", "only_check_args")]
    assert ("  --root=''  The sweep's folder" if module == "evaluation.aggregate" else "  --epochs=300") in proc.stdout
