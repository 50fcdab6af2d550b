"""Every random draw's seed, derived in one place from a run's seed with TensorFlow's
stateless fold-in: seed(base, stream, i, j, ...) = fold_in(...fold_in(fold_in([base, 0],
stream), i)..., j). Streams keep the draws of different purposes apart (a training step and
a test-set batch never share noise), and the indices (step, batch) make each draw
reproducible on its own, in graph or eager code.
"""
from hvae_repr.tf_env import tf

STREAMS = ("train_step", "test_pass", "importance_weights", "prior_samples", "summary_images", "train_betas",
           "figures", "generative_information")


def derive(seed, stream, *indices):
    """The stateless seed (int32 [2]) of draw `indices` of `stream` under the run's `seed`."""
    if stream not in STREAMS:
        raise ValueError(f"unknown seed stream {stream!r}; use one of {', '.join(STREAMS)}")
    out = tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])
    for data in (STREAMS.index(stream),) + indices:
        out = tf.random.experimental.stateless_fold_in(out, tf.cast(data, tf.int32))
    return out
