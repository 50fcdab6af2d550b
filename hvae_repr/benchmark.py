"""Benchmark of the training step: milliseconds per step and examples per second.

    python -m hvae_repr.benchmark [--steps=50] [--batch_size=256]

Times the same tf.function step that `python -m hvae_repr.train` runs, on random
inputs, for the default mlp on 8x8 digits and the paper's reference conv model on
28x28 binary images (after a few warm-up steps, so tracing is not counted).
"""
import time

import hvae_repr  # noqa: F401  (sets TensorFlow's environment first)
import numpy as np
from absl import app, flags

flags.DEFINE_integer("steps", 50, "Timed steps per model.")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
FLAGS = flags.FLAGS

CASES = {
    "mlp, digits 8x8x1, z 32,16": dict(input_shape=(8, 8, 1), architecture="mlp"),
    "conv (reference), 28x28x1, z 256,20": dict(input_shape=(28, 28, 1), architecture="conv"),
}


def time_step(input_shape, architecture, steps, batch_size):
    import keras
    import tensorflow as tf
    from hvae_repr import runs, trainer
    from hvae_repr.config import TrainConfig
    config = TrainConfig(architecture=architecture, batch_size=batch_size, workdir="unused")
    model = runs.build_model(config.model_config(input_shape))
    optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)
    step = trainer.Trainer(config, verbose=False)._make_step(model, optimizer, input_shape)
    x = np.random.default_rng(0).random((batch_size,) + input_shape, dtype=np.float32).round()
    betas = np.ones(model.num_layers, np.float32)
    for i in range(3):  # tracing and warm-up
        step(x, tf.constant([0, i]), betas, tf.constant(1.0)).popitem()
    started = time.perf_counter()
    for i in range(steps):
        out = step(x, tf.constant([0, i]), betas, tf.constant(1.0))
    float(out["loss"])
    return (time.perf_counter() - started) / steps


def main(argv):
    del argv
    import os
    print(f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, batch {FLAGS.batch_size}, "
          f"{FLAGS.steps} timed steps")
    for name, case in CASES.items():
        seconds = time_step(case["input_shape"], case["architecture"], FLAGS.steps, FLAGS.batch_size)
        print(f"{name:<40} {seconds * 1000:8.1f} ms/step {FLAGS.batch_size / seconds:10.0f} examples/s")


if __name__ == "__main__":
    app.run(main)
