"""export/: a SavedModel that plain TensorFlow loads, equal to the in-memory model, written atomically."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import run_in_process

from hvae_repr import export
from hvae_repr.runs import RunDir

ATOL = 1e-5  # SavedModel vs in-memory model, same weights and ops (observed difference: 0 to 6e-8)

FRESH_PROCESS = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    export_dir, data = sys.argv[1], sys.argv[2]
    probe = np.load(data)
    saved = tf.saved_model.load(export_dir)
    x, seed = tf.constant(probe["x"]), tf.constant([3, 4])
    out = {f"encode/{k}": v.numpy() for k, v in saved.encode(x).items()}
    out.update({f"sample_latents/{k}": v.numpy() for k, v in saved.sample_latents(x, seed).items()})
    out["reconstruct"] = saved.reconstruct(x)["x_mean"].numpy()
    out["decode"] = saved.decode(tf.constant(probe["z1"]))["x_mean"].numpy()
    out["sample"] = saved.sample(tf.constant(3), seed)["x_mean"].numpy()
    out["signatures"] = np.array(sorted(saved.signatures))
    try:
        saved.encode(x * 2.0 + 0.5)
        out["range_error"] = np.array("")
    except tf.errors.InvalidArgumentError as e:
        out["range_error"] = np.array(e.message)
    assert "hvae_repr" not in sys.modules, "the fresh process imported hvae_repr"
    np.savez(data, **out)
""")


@pytest.fixture(scope="module")
def exported(tiny_run):
    """The run's export (written now unless training already wrote it) and the run's restored model."""
    run = RunDir(tiny_run)
    if not os.path.isdir(run.file(run.EXPORT)):
        export.export_run(tiny_run)
    model, _ = run.load_model()
    return model, run.file(run.EXPORT)


def test_export_layout_and_metadata(exported, tiny_run):
    model, path = exported
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    with open(os.path.join(path, RunDir.EXPORT_META)) as f:
        meta = json.load(f)
    assert meta["latent_names"] == ["z1", "z2"]
    assert meta["latent_dims"] == list(model.model_config.latent_dims)
    assert meta["input_shape"] == [8, 8, 1]
    assert meta["likelihood"] == "bernoulli" and meta["dataset"] == "digits" and meta["betas"] == [1.0, 1.0]
    assert not [n for n in os.listdir(tiny_run) if n.startswith(".export-")]


@pytest.mark.slow
def test_fresh_process_without_hvae_repr_matches_in_memory_model(exported, tmp_path):
    import tensorflow as tf
    model, path = exported
    x = np.random.default_rng(0).uniform(size=(6, 8, 8, 1)).astype(np.float32)
    z1 = np.random.default_rng(1).normal(size=(2, model.model_config.latent_dims[0])).astype(np.float32)
    data = str(tmp_path / "probe.npz")
    np.savez(data, x=x, z1=z1)
    script = tmp_path / "load.py"
    script.write_text(FRESH_PROCESS)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(script), path, data], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(data)

    assert sorted(got["signatures"]) == sorted(export.SIGNATURES)
    seed = tf.constant([3, 4])
    for name, (mean, std) in model.encode(x).items():
        np.testing.assert_allclose(got[f"encode/{name}_mean"], mean.numpy(), atol=ATOL)
        np.testing.assert_allclose(got[f"encode/{name}_std"], std.numpy(), atol=ATOL)
    for name, z in model.sample_latents(x, seed).items():
        np.testing.assert_allclose(got[f"sample_latents/{name}"], z.numpy(), atol=ATOL)
    np.testing.assert_allclose(got["reconstruct"], model.reconstruct(x).numpy(), atol=ATOL)
    np.testing.assert_allclose(got["decode"], model.decode(z1).numpy(), atol=ATOL)
    np.testing.assert_allclose(got["sample"], model.sample(3, seed).numpy(), atol=ATOL)
    assert "x must be float32 in [0, 1]" in str(got["range_error"])


def test_reexport_replaces_export_and_a_failed_export_keeps_the_old_one(exported, tiny_run, monkeypatch, capsys):
    import tensorflow as tf
    _, path = exported
    run_in_process(export.define, export.main, ["hvae-export", f"--workdir={tiny_run}"])
    assert "exported" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    before = os.stat(os.path.join(path, "saved_model.pb")).st_mtime_ns

    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_run(tiny_run)
    assert os.stat(os.path.join(path, "saved_model.pb")).st_mtime_ns == before
    assert not [n for n in os.listdir(tiny_run) if n.startswith(".export-")]
