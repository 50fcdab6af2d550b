"""Loss balance of a beta-conditional model (--balance_betas).

An example's objective L = D + sum_l beta_l R_l grows with its betas (on binarized MNIST about 30 nats
at betas (0.1, 0.1) and about 190 at (10, 10)), so in loss-conditional training the examples drawn at
high betas dominate every update and the low-beta corner of the plane trains as if it counted less.
With balance, each example's objective is divided by the running mean objective at its betas: every
point of the plane then counts by its objective's relative change, the quantity a spot check compares
(the logged loss and terms stay the plain batch means).

The running means: a table of CELLS cells per layer over the normalized log betas (CELLS ** L cells),
each an exponential moving average (MOMENTUM) of its examples' mean objective per batch, checkpointed
with the run. Under a data-parallel strategy the cells' sums and counts are summed across replicas
first, so every replica holds the table (and computes the weights) a single device would.
"""
from hvae_repr import conditioning
from hvae_repr.tf_env import tf

CELLS = 8
MOMENTUM = 0.99


class ObjectiveTable(tf.Module):
    """The running mean objective per cell of log betas (0: a cell no example has reached yet)."""

    def __init__(self, num_layers, beta_range):
        super().__init__(name="objective_table")
        self.num_layers, self.beta_range = num_layers, tuple(beta_range)
        self.size = CELLS ** num_layers
        # Replicas assign equal values (see the module docstring): the first one's is kept.
        self.means = tf.Variable(tf.zeros([self.size]), trainable=False, name="means",
                                 aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def cells(self, betas):
        """[B] flat cell index of each row of betas [B, L] (betas outside the range: the edge cells)."""
        u = conditioning.normalized_log_betas(betas, self.beta_range)  # [-1, 1] inside the range
        index = tf.clip_by_value(tf.cast(tf.floor((u + 1.0) / 2.0 * CELLS), tf.int32), 0, CELLS - 1)
        return tf.reduce_sum(index * CELLS ** tf.range(self.num_layers), axis=-1)

    def weights(self, betas, losses, all_reduce=None):
        """Updates the table with the examples' objectives `losses` [B] drawn at `betas` [B, L] and returns
        their weights [B] (constants for the gradient): 1 / the cell's mean, scaled so that the cells
        reached so far weigh 1 on average. all_reduce sums a tensor across replicas (None: one device)."""
        cells = self.cells(betas)
        losses = tf.stop_gradient(losses)
        sums = tf.math.unsorted_segment_sum(losses, cells, self.size)
        counts = tf.math.unsorted_segment_sum(tf.ones_like(losses), cells, self.size)
        if all_reduce is not None:
            sums, counts = all_reduce(sums), all_reduce(counts)
        batch = sums / tf.maximum(counts, 1.0)
        old = self.means
        new = tf.where(counts > 0, tf.where(old > 0, MOMENTUM * old + (1.0 - MOMENTUM) * batch, batch), old)
        self.means.assign(new)
        reached = new > 0
        inverse = tf.where(reached, 1.0 / tf.where(reached, new, 1.0), 0.0)
        average = tf.reduce_sum(inverse) / tf.maximum(tf.reduce_sum(tf.cast(reached, tf.float32)), 1.0)
        return tf.gather(inverse, cells) / average
