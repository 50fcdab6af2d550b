"""Trains a hierarchical VAE with one rate weight (beta) per latent layer.

    python -m hvae_repr.train --dataset=digits --betas=1,1 --workdir=runs/example

--betas and --latent_dims are listed from z1 (next to the data) up: --betas=b1,b2
weights R(z1|z2) with b1 and R(z2) with b2. Rerunning the same command with the same
workdir resumes from the last checkpoint; a finished run is not trained again.
"""
import dataclasses
import sys

from absl import app, flags, logging

from hvae_repr.config import TrainConfig


def train(config: TrainConfig, verbose=True):
    """Trains (or resumes) the run in config.workdir; returns the train_result dict."""
    from hvae_repr import trainer  # imports TensorFlow
    return trainer.Trainer(config, verbose=verbose).run()


# ------------------------------------------------------------------ absl flags
FLAGS = flags.FLAGS
_D = TrainConfig()
flags.DEFINE_string("dataset", _D.dataset, "Data set: digits (offline default), mnist, binary_mnist, fashion_mnist, "
                    "cifar10, svhn, synthetic, or npz:PATH (keys x_train, y_train, x_test, y_test).")
flags.DEFINE_string("data_dir", _D.data_dir, "Folder with the data set's files ('' = ~/.hvae_repr/data).")
flags.DEFINE_enum("architecture", _D.architecture, ["mlp", "conv"],
                  "mlp for any input (images are flattened); conv for 28x28xC or 32x32xC images "
                  "(the paper's reference model).")
flags.DEFINE_enum("inference", _D.inference, ["hvae", "ladder"],
                  "Top-down inference: hvae (features of x joined with the sampled layer above) or "
                  "ladder (bottom-up estimate merged with the prior by precision weighting).")
flags.DEFINE_enum("likelihood", _D.likelihood,
                  ["bernoulli", "gaussian", "gaussian_learned_sigma", "discretized_logistic_mixture"],
                  "p(x|z1): bernoulli (binary or grey in [0,1]), gaussian (fixed --gaussian_sigma), "
                  "gaussian_learned_sigma (one learned scale), discretized_logistic_mixture (8-bit images).")
flags.DEFINE_list("latent_dims", [], "Size of each latent layer, z1 first. Default: 32,16 for mlp; "
                  "16*channels,20 for conv (z1 is a 4x4xchannels map). More entries build deeper hierarchies.")
flags.DEFINE_list("betas", [], "Rate weight of each layer, z1 first: --betas=b1,b2 weights R(z1|z2) with b1 "
                  "and R(z2) with b2. Default: 1 for every layer (the ELBO).")
flags.DEFINE_integer("epochs", _D.epochs, "Training epochs.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Training batch size (the last partial batch is dropped).")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Adam learning rate.")
flags.DEFINE_integer("seed", _D.seed, "Seed of every random choice: weights, shuffling, samples.")
flags.DEFINE_string("workdir", _D.workdir, "Run folder ('' = runs/<dataset>_<architecture>_<inference>_betas<..>"
                    "_seed<seed>). The same command with the same workdir resumes.")
flags.DEFINE_integer("kl_warmup_epochs", _D.kl_warmup_epochs,
                     "Epochs over which every beta rises linearly from 0 to its value (0 = off).")
flags.DEFINE_integer("channels", _D.channels, "conv: channels of every conv layer (c in the paper).")
flags.DEFINE_integer("hidden_units", _D.hidden_units, "Units of the hidden dense layers.")
flags.DEFINE_float("gaussian_sigma", _D.gaussian_sigma, "Standard deviation of the gaussian likelihood "
                   "(the initial value for gaussian_learned_sigma).")
flags.DEFINE_integer("num_mixtures", _D.num_mixtures, "Components of discretized_logistic_mixture.")
flags.DEFINE_enum("top_latent", _D.top_latent, ["gaussian", "categorical"],
                  "Family of the top layer: diagonal Gaussian, or categorical with a Gumbel-softmax "
                  "relaxation in training (its last --latent_dims entry is the number of categories).")
flags.DEFINE_float("gumbel_temperature", _D.gumbel_temperature, "Initial Gumbel-softmax temperature.")
flags.DEFINE_float("gumbel_min_temperature", _D.gumbel_min_temperature, "Final Gumbel-softmax temperature.")
flags.DEFINE_float("gumbel_anneal_rate", _D.gumbel_anneal_rate,
                   "Temperature decay per step: max(min, initial * exp(-rate * step)).")
flags.DEFINE_float("checkpoint_every_secs", _D.checkpoint_every_secs,
                   "Seconds between checkpoints (taken at the end of an epoch, and always after the last one).")
flags.DEFINE_integer("threads", _D.threads, "CPU threads for TensorFlow (0 = its default).")


def config_from_flags():
    values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(TrainConfig)}
    values["latent_dims"] = tuple(_parse_list(values["latent_dims"], int, "latent_dims"))
    values["betas"] = tuple(_parse_list(values["betas"], float, "betas"))
    return TrainConfig(**values)


def _parse_list(items, kind, name):
    try:
        return [kind(v) for v in items]
    except ValueError:
        raise ValueError(f"--{name} must be a comma-separated list of numbers, z1 first (got {','.join(items)})")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keeps TensorFlow's per-checkpoint INFO lines out of the log
    from hvae_repr import trainer
    try:  # bad input: one clear line, no traceback (errors during training keep theirs)
        run = trainer.Trainer(config_from_flags(), verbose=True)
        finished = run.prepare()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if finished is None:
        run.fit()


def run_main():
    app.run(main)


if __name__ == "__main__":
    run_main()
