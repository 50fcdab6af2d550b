"""FLOPs of one training step, counted analytically layer by layer.

Method: every convolution, transposed convolution and dense layer does a number
of multiply-accumulates (MACs) per example:

    conv      out_h * out_w * k_h * k_w * c_in * c_out
    deconv    in_h  * in_w  * k_h * k_w * c_in * c_out   (each input pixel is scattered into a k x k patch)
    dense     n_in * n_out

and one MAC is 2 FLOPs. A training step runs each layer forward once (2 MACs' worth
of FLOPs), then backward: the gradient of the weights costs as much again, and the
gradient of the layer's input as much again, except for layers that read the data x
(nothing upstream needs that gradient). So a step is 3x the forward FLOPs less one
forward's worth for the layers on x: the exact count, not the usual "backward ~ 2x forward".
Bias additions, activations, the KL and likelihood terms, the sampling and the Adam
update are not counted: they are elementwise and small next to the MACs, so the count
is a slight undercount of the work done, and GFLOP/s computed from it are a lower bound.

Cross-checks (tests/test_benchmarks.py, and the `flops` section of benchmarks.run):
- PyTorch's FlopCounterMode on the peer's real training step counts the same
  matrix-multiply and convolution FLOPs, forward and backward, from the operations
  actually run: it agrees with this count exactly, for every case.
- TensorFlow's profiler on the project's traced step: its MatMul count equals this
  count's dense part exactly, and its Conv2D count equals the forward FLOPs of the
  convolutions and transposed convolutions (the input gradient of a transposed
  convolution is a Conv2D op of the same size), plus `tf_subpixel_conv2d_flops`: the
  decoder's output layer runs forward as a larger Conv2D in TensorFlow. Its total is not
  comparable: see `tf_profiler_flops`.
"""
import dataclasses

from benchmarks import Case


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    kind: str                # "conv", "deconv" or "dense"
    macs: int                # multiply-accumulates per example, forward
    reads_data: bool = False  # True when the input is x itself: no input gradient in the backward pass


def conv(name, out_size, kernel, c_in, c_out, reads_data=False):
    return Layer(name, "conv", out_size * out_size * kernel * kernel * c_in * c_out, reads_data)


def deconv(name, in_size, kernel, c_in, c_out):
    return Layer(name, "deconv", in_size * in_size * kernel * kernel * c_in * c_out)


def dense(name, n_in, n_out, reads_data=False):
    return Layer(name, "dense", n_in * n_out, reads_data)


def reference_conv_layers(image_size, channels_in, c, k):
    """The paper's reference model: z1 a c x 4 x 4 map, z2 a vector of k (z1's channels = c)."""
    s2, s4 = image_size // 2, image_size // 4   # after one and two "down" convs (14, 7 or 16, 8)
    return [
        # q(z2 | x)
        conv("q2_down1", s2, 4, channels_in, c, reads_data=True), conv("q2_down2", s4, 4, c, c),
        conv("q2_mid", 4, 4, c, c), dense("q2_loc", 16 * c, k), dense("q2_scale", 16 * c, k),
        # q(z1 | z2, x)
        conv("q1_down1", s2, 4, channels_in, c, reads_data=True), conv("q1_down2", s4, 4, c, c),
        dense("q1_z_dense", k, 16 * c), deconv("q1_z_up", 4, 4, c, c), conv("q1_mid", 4, 4, 2 * c, c),
        conv("q1_loc", 4, 3, c, c), conv("q1_scale", 4, 3, c, c),
        # p(z1 | z2)
        dense("p1_hidden", k, 8 * c), dense("p1_loc", 8 * c, 16 * c), dense("p1_scale", 8 * c, 16 * c),
        # p(x | z1)
        deconv("dec_mid", 4, 4, c, c), deconv("dec_up", s4, 4, c, c), deconv("dec_out", s2, 4, c, channels_in),
    ]


def mlp_layers(input_size, hidden, latent_dims):
    """This project's default mlp model with two latent layers."""
    d1, d2 = latent_dims
    return [
        dense("bottom_up_z1_1", input_size, hidden, reads_data=True), dense("bottom_up_z1_2", hidden, hidden),
        dense("bottom_up_z2", hidden, hidden), dense("q2_loc", hidden, d2), dense("q2_scale", hidden, d2),
        dense("q1_z_features", d2, hidden), dense("q1_merge", 2 * hidden, hidden),
        dense("q1_loc", hidden, d1), dense("q1_scale", hidden, d1),
        dense("p1_hidden", d2, hidden), dense("p1_loc", hidden, d1), dense("p1_scale", hidden, d1),
        dense("decoder_1", d1, hidden), dense("decoder_2", hidden, hidden), dense("decoder_out", hidden, input_size),
    ]


def case_layers(case: Case):
    if case.architecture == "conv":
        if case.latent_dims[0] != 16 * case.channels:
            raise ValueError(f"the reference conv model's z1 is a {case.channels}x4x4 map "
                             f"({16 * case.channels} numbers), not {case.latent_dims[0]}; fix the case's latent_dims")
        h, _, channels_in = case.input_shape
        return reference_conv_layers(h, channels_in, case.channels, case.latent_dims[1])
    if case.architecture == "mlp":
        if len(case.latent_dims) != 2:
            raise ValueError(f"the FLOP count covers two latent layers, not {len(case.latent_dims)}")
        return mlp_layers(case.input_size, case.hidden_units, case.latent_dims)
    raise ValueError(f"no FLOP count for architecture {case.architecture!r}; use conv or mlp")


def forward_flops(layers, batch_size):
    return 2 * batch_size * sum(layer.macs for layer in layers)


def train_step_flops(layers, batch_size):
    """Forward, weight gradients, and input gradients of every layer that does not read x."""
    backward_macs = sum(layer.macs * (1 if layer.reads_data else 2) for layer in layers)
    return forward_flops(layers, batch_size) + 2 * batch_size * backward_macs


def tf_subpixel_conv2d_flops(case: Case, batch_size):
    """FLOPs of the extra Conv2D op that TensorFlow runs for a decoder output layer computed as a
    sub-pixel convolution (hvae_repr.networks.SubpixelConv2DTranspose: a 3x3 convolution to 4x the
    output channels at the input resolution, its zero taps included: 36 MACs per input pixel and
    channel pair where the transposed convolution does 16). 0 where the plain kernel runs."""
    from hvae_repr import likelihoods, networks
    if case.architecture != "conv":
        return 0
    h, _, channels_in = case.input_shape
    filters = channels_in * likelihoods.LIKELIHOODS[case.likelihood].params_per_value(case)
    if filters > networks.SubpixelConv2DTranspose.MAX_FILTERS:
        return 0
    return 2 * batch_size * (h // 2) ** 2 * 9 * case.channels * 4 * filters


def torch_counted_flops(run):
    """FLOPs of one call of `run` (a PyTorch training step) as torch.utils.flop_counter counts them:
    matrix multiplies and convolutions, forward and backward, as actually executed."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def tf_profiler_flops(graph):
    """FLOPs of a traced TensorFlow graph as TensorFlow's profiler counts them: {"total", "by_op"}.

    Read with care: the graph is the one traced, before grappler prunes the unused input
    gradients of the layers on x, and the profiler's statistic for Conv2DBackpropInput and
    Conv2DBackpropFilter multiplies the larger (input-side) tensor by the kernel, which
    overcounts strided and 'valid' convolutions; elementwise ops count one FLOP per element.
    Its Conv2D and MatMul counts are exact (output size x kernel x input depth x 2).
    """
    import collections

    from hvae_repr.tf_env import tf
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    root = tf.compat.v1.profiler.profile(graph, cmd="scope", options=options)
    by_op = collections.Counter()
    pending = list(root.children)
    while pending:
        node = pending.pop()
        pending.extend(node.children)
        if node.float_ops:
            by_op[graph.get_operation_by_name(node.name).type] += int(node.float_ops)
    return {"total": int(root.total_float_ops), "by_op": dict(by_op.most_common())}
