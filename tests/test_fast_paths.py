"""Faster implementations of the training step's pieces compute what the plain ones compute."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from hvae_repr import networks


@pytest.mark.parametrize("in_channels,filters,size,activation", [(16, 1, 14, None), (32, 3, 16, "relu"),
                                                                 (5, 2, 3, None)])
def test_subpixel_transposed_convolution_equals_keras_conv2d_transpose(in_channels, filters, size, activation):
    rng = np.random.default_rng(0)
    fast = networks.SubpixelConv2DTranspose(filters, 4, strides=2, padding="same", activation=activation)
    plain = keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", activation=activation)
    x = tf.constant(rng.standard_normal((3, size, size, in_channels)), tf.float32)
    fast.build(x.shape)
    plain.build(x.shape)
    assert fast._use_subpixel()
    plain.kernel.assign(rng.standard_normal(plain.kernel.shape).astype(np.float32))
    plain.bias.assign(rng.standard_normal(filters).astype(np.float32))
    fast.kernel.assign(plain.kernel)
    fast.bias.assign(plain.bias)
    weight = tf.constant(rng.standard_normal((3, 2 * size, 2 * size, filters)), tf.float32)

    def value_and_gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * weight)
        return [y] + tape.gradient(loss, [x, layer.kernel, layer.bias])

    got, want = value_and_gradients(fast), value_and_gradients(plain)
    assert got[0].shape == want[0].shape == (3, 2 * size, 2 * size, filters)
    for name, a, b in zip(("output", "input gradient", "kernel gradient", "bias gradient"), got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5 * float(tf.reduce_max(tf.abs(b))),
                                   err_msg=name)


def test_subpixel_layer_keeps_keras_weights_and_falls_back_where_it_is_not_faster():
    wide = networks.SubpixelConv2DTranspose(16, 4, strides=2, padding="same")
    wide.build((None, 7, 7, 16))
    assert not wide._use_subpixel()  # 16 filters: the plain kernel
    narrow = networks.deconv_up(1)
    narrow.build((None, 14, 14, 16))
    assert narrow._use_subpixel()
    assert [tuple(v.shape) for v in narrow.weights] == [(4, 4, 1, 16), (1,)]
    assert narrow(tf.zeros((2, 14, 14, 16))).shape == (2, 28, 28, 1)
