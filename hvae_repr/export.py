"""Exports a run's model as a TensorFlow SavedModel in workdir/export/.

    python -m hvae_repr.export --workdir=RUN     # (re-)export an existing run

The SavedModel needs neither this package nor the run folder: load it with plain
`tf.saved_model.load(path)`. Its signatures (x: float32 [None, *input_shape] in [0, 1],
seed: int32 [2], the two numbers of a stateless seed):

    encode(x)               -> {"z1_mean", "z1_std", ..., "zL_mean", "zL_std"}  float32 [None, d_l]
    sample_latents(x, seed) -> {"z1", ..., "zL"}   one posterior sample per layer
    reconstruct(x)          -> {"x_mean"}          mean of p(x | z1) at the posterior means
    decode(z1)              -> {"x_mean"}          mean of p(x | z1)
    sample(n, seed)         -> {"x_mean"}          n ancestral draws from the prior, as the mean of p(x | z1)

x outside [0, 1] (or NaN) fails inside the SavedModel with the message "x must be float32 in [0, 1]".
export/hvae_repr.json describes the model (latent names and sizes, input shape, likelihood, betas, ...).
"""
import os
import shutil
import sys
import tempfile

from hvae_repr import __version__, io_utils, runs

EXPORT = "export"
META = "hvae_repr.json"
FORMAT_VERSION = 1
SIGNATURES = ("encode", "sample_latents", "reconstruct", "decode", "sample")
RANGE_MESSAGE = "x must be float32 in [0, 1]; scale images to [0, 1] (e.g. x / 255)"


def _module(model):
    """A tf.Module whose tf.functions (fixed input signatures) become the SavedModel's signatures."""
    import tensorflow as tf

    x_spec = tf.TensorSpec((None,) + tuple(model.model_config.input_shape), tf.float32, name="x")
    seed_spec = tf.TensorSpec((2,), tf.int32, name="seed")
    z1_spec = tf.TensorSpec((None, model.model_config.latent_dims[0]), tf.float32, name="z1")

    def checked(x):
        tf.debugging.assert_greater_equal(x, 0.0, message=RANGE_MESSAGE)  # NaN fails too
        tf.debugging.assert_less_equal(x, 1.0, message=RANGE_MESSAGE)
        return x

    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[x_spec])
    def encode(x):
        out = {}
        for name, (mean, std) in model.encode(checked(x)).items():
            out[f"{name}_mean"], out[f"{name}_std"] = mean, std
        return out

    @tf.function(input_signature=[x_spec, seed_spec])
    def sample_latents(x, seed):
        return model.sample_latents(checked(x), seed)

    @tf.function(input_signature=[x_spec])
    def reconstruct(x):
        return {"x_mean": model.reconstruct(checked(x))}

    @tf.function(input_signature=[z1_spec])
    def decode(z1):
        return {"x_mean": model.decode(z1)}

    @tf.function(input_signature=[tf.TensorSpec((), tf.int32, name="n"), seed_spec])
    def sample(n, seed):
        return {"x_mean": model.sample(n, seed)}

    functions = dict(encode=encode, sample_latents=sample_latents, reconstruct=reconstruct,
                     decode=decode, sample=sample)
    for name, fn in functions.items():
        setattr(module, name, fn)
    return module, functions


def metadata(model, config, workdir):
    import tensorflow as tf
    mc = model.model_config
    checkpoint = tf.train.latest_checkpoint(runs.path(workdir, runs.CHECKPOINTS))
    return {
        "format_version": FORMAT_VERSION,
        "latent_names": list(model.latent_names),
        "latent_dims": list(mc.latent_dims),
        "input_shape": list(mc.input_shape),
        "likelihood": mc.likelihood,
        "top_latent": mc.top_latent,
        "architecture": mc.architecture,
        "inference": mc.inference,
        "betas": list(config.betas),
        "dataset": config.dataset,
        "run": os.path.abspath(workdir),
        "checkpoint": os.path.basename(checkpoint) if checkpoint else None,
        "signatures": list(SIGNATURES),
        "hvae_repr_version": __version__,
    }


def export_model(model, workdir, config=None):
    """Writes workdir/export/ for `model` (the run's TrainConfig is read from workdir unless given).

    Atomic: built in a temporary folder next to export/, then renamed over it; a failure leaves
    the old export (or none), never half of one. Returns the export folder.
    """
    import tensorflow as tf

    config = config or runs.read_config(workdir)
    target = runs.path(workdir, EXPORT)
    tmp = tempfile.mkdtemp(dir=workdir, prefix=".export-tmp-")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; give export/ the usual permissions
    old = None
    try:
        module, functions = _module(model)
        tf.saved_model.save(module, tmp, signatures=functions)
        io_utils.write_json_atomic(os.path.join(tmp, META), metadata(model, config, workdir))
        if os.path.exists(target):
            old = tempfile.mkdtemp(dir=workdir, prefix=".export-old-")
            os.replace(target, os.path.join(old, EXPORT))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(target):  # put the previous export back
            os.replace(os.path.join(old, EXPORT), target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target


def export_run(workdir):
    """Restores the run's latest checkpoint and (re-)writes its export/. Returns the export folder."""
    model, config = runs.load_model(workdir)
    return export_model(model, workdir, config)


def cli(workdir):
    """The command line's work; returns the exit status (2 with one line on stderr for bad input)."""
    try:
        if not workdir:
            raise ValueError("pass --workdir=RUN, the folder of a training run")
        target = export_run(workdir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {workdir} to {target}")
    return 0


def main(argv):
    import logging
    from absl import flags
    del argv
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # tf.saved_model.save is chatty at INFO
    sys.exit(cli(flags.FLAGS.workdir))


def run_main():
    from absl import app, flags
    # Defined here, not at import: hvae_repr.train defines its own --workdir in the same global FLAGS.
    flags.DEFINE_string("workdir", "", "Run folder to (re-)export; writes RUN/export/ (built beside the old one, then swapped in).")
    app.run(main)


if __name__ == "__main__":
    run_main()
