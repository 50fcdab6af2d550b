"""The networks of a hierarchical VAE, for flat (`mlp`) and image (`conv`) inputs.

`build_networks` returns one `Networks` bundle whatever the architecture:

- `bottom_up[l]`: x (or the features of the layer below) -> deterministic features d_l(x)
- `posterior[l]`: the inference head of layer l; for every layer but the top it
  also sees the sampled layer above (`hvae`) or only d_l (`ladder`, merged with the prior)
- `prior[l]`: z_{l+1} -> parameters of p(z_l | z_{l+1}), for l < L
- `decoder`: z1 -> likelihood parameters [B, *input_shape, P]

Layers above z1 are vectors in both architectures and share the same code
(`VectorHead`, `prior` nets). The two-layer conv model is exactly the paper's
reference architecture (122,713 parameters for 28x28x1, c=16, k=20, Bernoulli).
Deeper conv hierarchies stack dense layers z3..zL on top of the z2 trunk.
"""
import dataclasses
import math

from hvae_repr.tf_env import tf

import keras
from keras import layers

from hvae_repr import choices, likelihoods
from hvae_repr.conditioning import Sites, apply, modulated


class GaussianHeads(layers.Layer):
    """Two parallel heads: loc and a softplus scale (the reference's 'two heads')."""

    def __init__(self, loc_head, scale_head, **kwargs):
        super().__init__(**kwargs)
        self.loc_head = loc_head
        self.scale_head = scale_head

    def call(self, h):
        loc = self.loc_head(h)
        scale = tf.nn.softplus(self.scale_head(h)) + 1e-4
        return keras.ops.reshape(loc, (-1, _flat(loc))), keras.ops.reshape(scale, (-1, _flat(scale)))


def _flat(t):
    return math.prod(t.shape[1:])


def dense_heads(dim, name, categorical=False):
    """Heads of a vector latent: (loc, scale) for Gaussian, logits for categorical."""
    if categorical:
        return layers.Dense(dim, name=f"{name}_logits")
    return GaussianHeads(layers.Dense(dim, name=f"{name}_loc"),
                         layers.Dense(dim, name=f"{name}_scale"), name=name)


class Stack(layers.Layer):
    """Layers applied in order (keras.Sequential's job). In a beta-conditional model (sites: its FiLM
    sites) each hidden (ReLU) layer comes wrapped in conditioning.Modulated, which FiLMs its output.
    (Each step is an attribute of its own: tf.train.Checkpoint does not see layers inside lists.)"""

    def __init__(self, steps, sites=None, **kwargs):
        super().__init__(**kwargs)
        self.num_steps = len(steps)
        for i, step in enumerate(steps):
            setattr(self, f"step_{i}", modulated(step, sites))

    @property
    def steps(self):
        return [getattr(self, f"step_{i}") for i in range(self.num_steps)]

    def call(self, x, film_params=None):
        for step in self.steps:
            x = apply(step, x, film_params)
        return x


class VectorPosterior(layers.Layer):
    """q(z_l | z_{l+1}, x) for a vector layer: features d_l(x) [+ features of z_{l+1}] -> heads."""

    def __init__(self, dim, hidden, conditioned, categorical=False, sites=None, **kwargs):
        super().__init__(**kwargs)
        self.conditioned = conditioned
        if conditioned:
            self.z_features = modulated(layers.Dense(hidden, activation="relu"), sites)
            self.merge = modulated(layers.Dense(hidden, activation="relu"), sites)
        self.heads = dense_heads(dim, "heads", categorical)

    def call(self, d, z_above=None, film_params=None):
        if self.conditioned:
            d = apply(self.merge, tf.concat([d, apply(self.z_features, z_above, film_params)], axis=-1), film_params)
        return self.heads(d)


class ConvPosteriorZ1(layers.Layer):
    """The reference q(z1 | z2, x): x branch and z2 branch merged by a 'mid' conv, 3x3 conv heads."""

    def __init__(self, channels, z1_channels, image_size, conditioned, sites=None, **kwargs):
        super().__init__(**kwargs)
        c = channels
        self.conditioned = conditioned
        self.z_channels = c
        if conditioned:
            self.z_dense = modulated(layers.Dense(c * 16, activation="relu"), sites)
            self.z_up = modulated(deconv_mid(c, image_size, activation="relu"), sites)
        self.mid = modulated(conv_mid(c, image_size, activation="relu"), sites)
        self.heads = GaussianHeads(layers.Conv2D(z1_channels, 3, padding="same"),
                                   layers.Conv2D(z1_channels, 3, padding="same"), name="heads")

    def call(self, d, z_above=None, film_params=None):
        if self.conditioned:
            z = apply(self.z_dense, z_above, film_params)
            z = apply(self.z_up, keras.ops.reshape(z, (-1, 4, 4, self.z_channels)), film_params)
            d = tf.concat([d, z], axis=-1)
        return self.heads(apply(self.mid, d, film_params))


class SubpixelConv2DTranspose(layers.Conv2DTranspose):
    """Keras's Conv2DTranspose (same weights, config and checkpoint), with a faster implementation of
    the reference model's 4x4, stride 2, "same" layers with few output channels (the decoder's output).

    oneDNN's transposed-convolution kernel vectorizes over the output channels and is slow for 1 or 3
    of them (binarized MNIST's output layer: 7.9 ms forward here). The same map is a 3x3 stride-1
    convolution whose 4 * filters output channels are the 4 output phases (2i + a, 2j + b), followed
    by depth_to_space (4.0 ms). See `subpixel_conv2d_transpose`.
    """
    MAX_FILTERS = 4  # with 16 filters the plain kernel was faster (3.7 vs 4.2 ms forward)

    def _use_subpixel(self):
        return (tuple(self.kernel_size) == (4, 4) and tuple(self.strides) == (2, 2) and self.padding == "same"
                and tuple(self.dilation_rate) == (1, 1) and self.output_padding is None
                and self.data_format == "channels_last" and self.use_bias and self.filters <= self.MAX_FILTERS)

    def call(self, inputs):
        if not self._use_subpixel():
            return super().call(inputs)
        outputs = subpixel_conv2d_transpose(tf.convert_to_tensor(inputs), tf.convert_to_tensor(self.kernel),
                                            tf.convert_to_tensor(self.bias))
        return outputs if self.activation is None else self.activation(outputs)


def _subpixel_taps():
    """Indices into the flattened 4x4 kernel (16 = a zero tap) of the 3x3 stride-1 kernel, [3, 3, 2, 2].

    1-D, a 4-tap stride-2 "same" transposed convolution is out[2i] = x[i] k[1] + x[i-1] k[3] and
    out[2i+1] = x[i+1] k[0] + x[i] k[2]; taps[a][u] is the tap that output phase a applies to x[i + u - 1].
    """
    taps = ((3, 1, None), (None, 2, 0))
    return [[[[16 if taps[a][u] is None or taps[b][v] is None else 4 * taps[a][u] + taps[b][v]
               for b in range(2)] for a in range(2)] for v in range(3)] for u in range(3)]


def subpixel_kernel(kernel):
    """A [4, 4, out, in] stride-2 transposed-convolution kernel as the [3, 3, in, 4 * out] kernel of the
    equivalent stride-1 convolution, output channels ordered (row phase, column phase, channel) as
    depth_to_space expects."""
    out_channels, in_channels = kernel.shape[2], kernel.shape[3]
    flat = tf.concat([tf.reshape(kernel, (16, out_channels, in_channels)),
                      tf.zeros((1, out_channels, in_channels), kernel.dtype)], axis=0)
    taps = tf.gather(flat, _subpixel_taps())                        # [3, 3, 2, 2, out, in]
    return tf.reshape(tf.transpose(taps, (0, 1, 5, 2, 3, 4)), (3, 3, in_channels, 4 * out_channels))


@tf.custom_gradient
def subpixel_conv2d_transpose(x, kernel, bias):
    """tf.nn.conv2d_transpose(x, kernel, stride 2, "SAME") + bias for a 4x4 kernel, NHWC, computed as a
    stride-1 convolution (bias fused) and depth_to_space. The gradients of x and kernel are those of
    Conv2DTranspose (the same two kernels); the bias's is a plain sum (3x faster than BiasAddGrad on 1 channel)."""
    phases = tf.nn.bias_add(tf.nn.conv2d(x, subpixel_kernel(kernel), 1, "SAME"), tf.tile(bias, [4]))
    y = tf.nn.depth_to_space(phases, 2)

    def grad(dy):
        dx = tf.nn.conv2d(dy, kernel, 2, "SAME")
        dkernel = tf.raw_ops.Conv2DBackpropFilter(input=dy, filter_sizes=tf.shape(kernel), out_backprop=x,
                                                  strides=[1, 2, 2, 1], padding="SAME")
        return dx, dkernel, tf.reduce_sum(dy, axis=(0, 1, 2))
    return y, grad


def conv_down(c, **kw):
    return layers.Conv2D(c, 4, strides=2, padding="same", **kw)  # = PyTorch padding 1 on even sizes


def conv_mid(c, image_size, **kw):
    if image_size == 28:
        return layers.Conv2D(c, 4, strides=1, padding="valid", **kw)  # 7 -> 4
    return layers.Conv2D(c, 4, strides=2, padding="same", **kw)       # 8 -> 4


def deconv_up(c, **kw):
    return SubpixelConv2DTranspose(c, 4, strides=2, padding="same", **kw)


def deconv_mid(c, image_size, **kw):
    if image_size == 28:
        return layers.Conv2DTranspose(c, 4, strides=1, padding="valid", **kw)  # 4 -> 7
    return layers.Conv2DTranspose(c, 4, strides=2, padding="same", **kw)       # 4 -> 8


def prior_net(dim, hidden, name, sites=None):
    """p(z_l | z_{l+1}): one hidden dense layer, then Gaussian heads."""
    return Stack([layers.Dense(hidden, activation="relu"), dense_heads(dim, "heads")], sites, name=name)


@dataclasses.dataclass
class Networks:
    bottom_up: list      # per layer, callable on the previous entry's output (x for l = 0)
    bottom_up_input: list  # per layer: index of the bottom_up output it reads, or -1 for x
    posterior: list
    prior: list          # per layer l < L-1, else None
    decoder: Stack
    film_sites: Sites = None  # a beta-conditional model's FiLM sites


def build_networks(config):
    """Builds every network for a `ModelConfig` (FiLM sites for a beta-conditional one)."""
    sites = Sites(config.film_placement) if config.conditional_betas else None
    networks = BUILDERS[config.architecture](config, sites)
    networks.film_sites = sites
    return networks


def _outputs_per_value(config):
    return likelihoods.LIKELIHOODS[config.likelihood].params_per_value(config)


def _vector_layers(config, networks, first, sites):
    """Bottom-up features, posteriors and priors of vector layers `first`..L-1 (shared by both architectures)."""
    dims, hidden, top = config.latent_dims, config.hidden_units, len(config.latent_dims) - 1
    film = sites
    for l in range(first, top + 1):
        if l > first:  # layer `first` reads features that the caller already set up
            networks.bottom_up.append(Stack([layers.Dense(hidden, activation="relu")], film,
                                            name=f"bottom_up_z{l + 1}"))
            networks.bottom_up_input.append(l - 1)
        conditioned = l < top and config.inference == "hvae"
        categorical = l == top and config.top_latent == "categorical"
        networks.posterior.append(
            VectorPosterior(dims[l], hidden, conditioned, categorical, film, name=f"posterior_z{l + 1}"))
        networks.prior.append(prior_net(dims[l], hidden, f"prior_z{l + 1}", film) if l < top else None)


def _mlp_networks(config, sites):
    hidden = config.hidden_units
    per_value = _outputs_per_value(config)
    out_size = math.prod(config.input_shape) * per_value
    film = sites
    networks = Networks(
        bottom_up=[Stack([layers.Flatten(), layers.Dense(hidden, activation="relu"),
                          layers.Dense(hidden, activation="relu")], film, name="bottom_up_z1")],
        bottom_up_input=[-1], posterior=[], prior=[],
        decoder=Stack([layers.Dense(hidden, activation="relu"), layers.Dense(hidden, activation="relu"),
                       layers.Dense(out_size), layers.Reshape(tuple(config.input_shape) + (per_value,))],
                      film, name="decoder"))
    _vector_layers(config, networks, 0, sites)
    return networks


def _conv_networks(config, sites):
    h, w, channels_in = _check_conv_input(config)
    c, z1_dim = config.channels, config.latent_dims[0]
    if z1_dim % 16:
        raise ValueError(f"conv z1 is a 4x4xC map, so its size must be a multiple of 16 (got {z1_dim}); "
                         f"e.g. --latent_dims={16 * c},20")
    z1_channels = z1_dim // 16
    ladder, film = config.inference == "ladder", sites
    # z1's x branch: down, down (7x7 or 8x8 features), then z1's own 'mid' conv and heads.
    x_branch = [conv_down(c, activation="relu"), conv_down(c, activation="relu")]
    networks = Networks(
        bottom_up=[Stack(x_branch, film, name="bottom_up_z1")],
        bottom_up_input=[-1],
        posterior=[ConvPosteriorZ1(c, z1_channels, h, conditioned=not ladder and len(config.latent_dims) > 1,
                                   sites=film, name="posterior_z1")],
        prior=[prior_net(z1_dim, c * 8, "prior_z1", film)] if len(config.latent_dims) > 1 else [None],
        decoder=Stack([
            layers.Reshape((4, 4, z1_channels)),
            deconv_mid(c, h, activation="relu"),
            deconv_up(c, activation="relu"),
            deconv_up(channels_in * _outputs_per_value(config)),
            layers.Reshape((h, w, channels_in, _outputs_per_value(config)))], film, name="decoder"))
    if len(config.latent_dims) > 1:
        if ladder:  # the paper's ladder variant: z2 continues z1's trunk (down, down) with its own mid conv
            networks.bottom_up.append(Stack([conv_mid(c, h, activation="relu"), layers.Flatten()], film,
                                            name="bottom_up_z2"))
            networks.bottom_up_input.append(0)
        else:  # the reference hvae: z2's trunk reads x separately, sharing no weights with z1's branch
            networks.bottom_up.append(Stack(
                [conv_down(c, activation="relu"), conv_down(c, activation="relu"),
                 conv_mid(c, h, activation="relu"), layers.Flatten()], film, name="bottom_up_z2"))
            networks.bottom_up_input.append(-1)
        _vector_layers(config, networks, 1, sites)
    return networks


def _check_conv_input(config):
    shape = tuple(config.input_shape)
    if len(shape) != 3 or shape[0] != shape[1] or shape[0] not in (28, 32):
        raise ValueError(f"the conv architecture needs 28x28xC or 32x32xC images (got input shape {shape}); "
                         f"use --architecture=mlp for this data set")
    if config.top_latent == "categorical" and len(config.latent_dims) == 1:
        raise ValueError("the conv z1 is a Gaussian map and cannot be categorical; add a layer above it "
                         "or use --top_latent=gaussian")
    return shape


# The networks of each architecture (hvae_repr.choices.ARCHITECTURES names and describes them):
# (ModelConfig, FiLM Sites or None) -> Networks.
BUILDERS = {"mlp": _mlp_networks, "conv": _conv_networks}
choices.check_implemented(choices.ARCHITECTURES, BUILDERS, "hvae_repr.networks")
