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

from hvae_repr import __version__, cli, io_utils
from hvae_repr.runs import RunDir

FORMAT_VERSION = 2
SIGNATURES = ("encode", "sample_latents", "reconstruct", "decode", "sample")
RANGE_MESSAGE = "x must be float32 in [0, 1]; scale images to [0, 1] (e.g. x / 255)"


def _module(model):
    """A tf.Module whose tf.functions (fixed input signatures) become the SavedModel's signatures.
    A beta-conditional model's signatures take one more input, `betas` (float32 [L], z1 first)."""
    from hvae_repr.tf_env import tf

    x_spec = tf.TensorSpec((None,) + tuple(model.model_config.input_shape), tf.float32, name="x")
    seed_spec = tf.TensorSpec((2,), tf.int32, name="seed")
    z1_spec = tf.TensorSpec((None, model.model_config.latent_dims[0]), tf.float32, name="z1")
    betas_spec = tf.TensorSpec((model.num_layers,), tf.float32, name="betas")

    def checked(x):
        tf.debugging.assert_greater_equal(x, 0.0, message=RANGE_MESSAGE)  # NaN fails too
        tf.debugging.assert_less_equal(x, 1.0, message=RANGE_MESSAGE)
        return x

    def signature(fn, *specs):
        """fn(*inputs, betas) as a tf.function of the inputs, plus betas for a conditional model."""
        if model.conditional:
            return tf.function(lambda *inputs: fn(*inputs[:-1], inputs[-1]), input_signature=[*specs, betas_spec],
                               autograph=False)
        return tf.function(lambda *inputs: fn(*inputs, None), input_signature=list(specs), autograph=False)

    def encode(x, betas):
        out = {}
        for name, (mean, std) in model.encode(checked(x), betas).items():
            out[f"{name}_mean"], out[f"{name}_std"] = mean, std
        return out

    functions = {
        "encode": signature(encode, x_spec),
        "sample_latents": signature(lambda x, seed, betas: model.sample_latents(checked(x), seed, betas),
                                    x_spec, seed_spec),
        "reconstruct": signature(lambda x, betas: {"x_mean": model.reconstruct(checked(x), betas)}, x_spec),
        "decode": signature(lambda z1, betas: {"x_mean": model.decode(z1, betas)}, z1_spec),
        "sample": signature(lambda n, seed, betas: {"x_mean": model.sample(n, seed, betas)},
                            tf.TensorSpec((), tf.int32, name="n"), seed_spec),
    }
    module = tf.Module()
    module.model = model
    for name, fn in functions.items():
        setattr(module, name, fn)
    return module, functions


def metadata(model, config, run):
    mc = model.model_config
    checkpoints = run.checkpoints()
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
        "conditional": bool(mc.conditional_betas),
        "beta_range": list(mc.beta_range) if mc.conditional_betas else None,
        "dataset": config.dataset,
        "run": os.path.abspath(run.path),
        "checkpoint": os.path.basename(checkpoints[0]) if checkpoints else None,
        "signatures": list(SIGNATURES),
        "hvae_repr_version": __version__,
    }


def export_model(model, run, config=None):
    """Writes RUN/export/ for `model` (the run's TrainConfig is read from the run unless given).

    Built beside export/ and swapped in (hvae_repr.io_utils.replacing_folder): a failure leaves
    the old export (or none), never half of one; a failed write (a full disk) is one WriteFailed line.
    Returns the export folder.
    """
    from hvae_repr.tf_env import tf
    run = run if isinstance(run, RunDir) else RunDir(run)
    config = config or run.read_config()
    with io_utils.reported_write(run.file(run.EXPORT), "the checkpoints (and the previous export/, if any) are "
                                                       "intact; free space, then rerun the same command",
                                 (tf.errors.OpError,)):
        with run.replacing(run.EXPORT) as tmp:
            module, functions = _module(model)
            tf.saved_model.save(module, tmp, signatures=functions)
            io_utils.write_json_atomic(os.path.join(tmp, run.EXPORT_META), metadata(model, config, run))
    return run.file(run.EXPORT)


def export_run(workdir):
    """Restores the run's latest checkpoint and (re-)writes its export/. Returns the export folder."""
    run = RunDir(workdir)
    model, config = run.load_model()
    with run.lock():
        return export_model(model, run, config)


def define(flag_values):
    cli.define("string", "workdir", "", "Run folder to (re-)export; writes RUN/export/ (built beside the old one, "
               "then swapped in).", flag_values, group="run")


def main(flag_values):
    import logging
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # tf.saved_model.save is chatty at INFO
    with cli.one_line_errors():
        if not flag_values.workdir:
            raise ValueError("--workdir is required: pass the folder of a training run")
        target = export_run(flag_values.workdir)
    print(f"exported {flag_values.workdir} to {target}")


def run_main():
    cli.run(define, main)


if __name__ == "__main__":
    run_main()
