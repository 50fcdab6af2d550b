"""The state of an epoch in progress, kept in every checkpoint, so that a run stopped in the middle of an
epoch (a SIGTERM, hvae_repr.preemption) resumes at the next step and ends with the numbers of an
uninterrupted run: the data order (np.random.default_rng([seed, epoch])) and every step's seed (from
the global step) follow from the epoch and the step, and the rest is stored here.

At an epoch's end it holds step 0 and zero totals; only `bad_in_a_row` carries across epochs.
"""
import numpy as np

from hvae_repr.tf_env import tf

CHECKPOINT_KEY = "epoch_progress"  # its name in the checkpoint


class EpochProgress:
    def __init__(self, outputs):
        """outputs: the training step's outputs as tensor specs {name: spec} (their shapes and dtypes)."""
        self.module = tf.Module()
        self.module.step = tf.Variable(0, dtype=tf.int64, trainable=False)       # the next step in the epoch
        self.module.good = tf.Variable(0, dtype=tf.int64, trainable=False)       # finite steps so far
        self.module.bad_in_a_row = tf.Variable(0, dtype=tf.int64, trainable=False)
        # The running totals in float64 (the loop's float32 and float64 sums are exact in it), with the
        # dtype each sum has in the loop (0.0 + a step output), to give them back unchanged.
        self.dtypes = {k: (0.0 + np.zeros((), s.dtype.as_numpy_dtype)).dtype for k, s in outputs.items()}
        self.module.totals = {k: tf.Variable(tf.zeros(s.shape, tf.float64), trainable=False)
                              for k, s in outputs.items()}

    def store(self, step, good, bad_in_a_row, totals):
        self.module.step.assign(step)
        self.module.good.assign(good)
        self.module.bad_in_a_row.assign(bad_in_a_row)
        for key, var in self.module.totals.items():
            var.assign(np.asarray(totals.get(key, 0.0), np.float64) * np.ones(var.shape))

    def read(self):
        """(next step, good steps, bad steps in a row, totals) as the loop holds them."""
        good = int(self.module.good)
        totals = {k: var.numpy().astype(self.dtypes[k]) for k, var in self.module.totals.items()} if good else {}
        return int(self.module.step), good, int(self.module.bad_in_a_row), totals


def in_checkpoint(path):
    """Whether the checkpoint at `path` holds an EpochProgress (those written before it existed do not);
    True when it cannot be read (restoring it will then say why)."""
    try:
        return any(name.startswith(CHECKPOINT_KEY + "/") for name, _ in tf.train.list_variables(path))
    except Exception:  # unreadable: left to the restore's own report
        return True
