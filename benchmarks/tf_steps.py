"""Adapter: this project's model and training step for a benchmark case.

Kept small on purpose: it only calls the project's public pieces (the settings built from flag
names, HierarchicalVAE, trainer.make_train_step), so that a change of that API changes this file only.
"""
import hvae_repr  # noqa: F401  (sets TensorFlow's environment before TensorFlow is imported)

from benchmarks import Case, TrainStep


def train_config(case: Case, batch_size, threads, conditional=False):
    from hvae_repr import cli
    from hvae_repr.config import TrainConfig
    return cli.build(TrainConfig, architecture=case.architecture, latent_dims=case.latent_dims,
                     likelihood=case.likelihood, channels=case.channels, hidden_units=case.hidden_units,
                     gaussian_sigma=case.gaussian_sigma, batch_size=batch_size, threads=threads,
                     conditional_betas=conditional, workdir="unused").with_input_shape(case.input_shape)


def set_threads(threads):
    """TensorFlow's intra- and inter-op threads, set the way training sets them (config `threads`);
    returns the values in force, which stay TensorFlow's defaults once it has run an op."""
    from hvae_repr import trainer
    from hvae_repr.tf_env import tf
    trainer.set_threads(threads)
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def make_train_step(case: Case, x, threads=0, seed=0, conditional=False):
    """The project's tf.function training step on the batch `x` ([B, H, W, C] numpy), all betas 1 (or, with
    `conditional`, the beta-conditional model's step: betas drawn per example, FiLM in every network).

    Its run() returns the loss as a float (the loss before the update, as the trainer logs it).
    """
    import keras
    import numpy as np
    from hvae_repr import trainer
    from hvae_repr.model import HierarchicalVAE
    from hvae_repr.tf_env import tf
    config = train_config(case, len(x), threads, conditional)
    keras.utils.set_random_seed(seed)
    model = HierarchicalVAE(config.model).build_all()
    optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)
    train_step = trainer.make_train_step(model, optimizer, len(x), case.input_shape)
    x = tf.constant(x)
    betas = tf.ones(model.num_layers, tf.float32)
    temperature = tf.constant(1.0)
    base_seed = tf.constant(seed, tf.int32)
    count = [0]

    def step():
        count[0] += 1
        return float(train_step(x, base_seed, tf.constant(count[0], tf.int32), betas, temperature)["loss"])

    num_parameters = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    return TrainStep(step, num_parameters, lambda: train_step.get_concrete_function().graph)
