"""PyTorch peers of the benchmarked models, and their training step.

- `ReferenceConvHVAE`: the paper's two-layer reference conv architecture (see
  /work/shared/paper-notes.md, "Reference conv architecture"), built the way the
  paper's public PyTorch code builds it: NCHW tensors, softplus scales, Gaussian
  KLs from `torch.distributions`, reparameterized samples, the Bernoulli
  log-likelihood of sigmoid outputs with a 1e-8 floor, the fixed-sigma Gaussian
  log-likelihood written out, and `torch.optim.Adam` with PyTorch's defaults.
- `MLPHVAE`: a peer of this project's default `mlp` model (hvae_repr.networks._mlp_networks):
  the same layers and parameter count, with the project's 1e-4 floor on the scales.

Both have two latent layers, z1 next to the data and z2 on top. The training step
minimizes the HIT loss, mean over the batch of D + beta_1 R(z1|z2) + beta_2 R(z2), in nats.
"""
import math

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from benchmarks import Case, TrainStep

LEARNING_RATE = 3e-4


class TwoLayerHVAE(nn.Module):
    """Top-down inference q(z2|x) q(z1|z2,x) and generation p(z2) p(z1|z2) p(x|z1).

    Subclasses give the four networks; `forward` draws the layers and returns the
    decoder's output and the Gaussian parameters of every layer, z1 first.
    """
    scale_floor = 0.0

    def scale(self, pre_activation):
        return F.softplus(pre_activation) + self.scale_floor

    def features(self, x):
        """What both posteriors read: x itself unless the model shares a bottom-up trunk."""
        return x

    def forward(self, x):
        d = self.features(x)
        q2_loc, q2_scale = self.q_z2(d)
        z2 = q2_loc + torch.randn_like(q2_loc) * q2_scale
        q1_loc, q1_scale = self.q_z1(d, z2)
        z1 = q1_loc + torch.randn_like(q1_loc) * q1_scale
        p1_loc, p1_scale = self.p_z1(z2)
        layers = [(q1_loc, q1_scale, p1_loc, p1_scale),
                  (q2_loc, q2_scale, torch.zeros_like(q2_loc), torch.ones_like(q2_loc))]
        return self.decode(z1).reshape(x.shape), layers


class ReferenceConvHVAE(TwoLayerHVAE):
    """The paper's reference model for 28x28 or 32x32 images; z1 is a c x 4 x 4 map, z2 a vector of k."""

    def __init__(self, image_size, channels_in, c, k):
        super().__init__()
        if image_size not in (28, 32):
            raise ValueError(f"the reference conv model takes 28x28 or 32x32 images (got {image_size}); "
                             f"use the mlp case for other sizes")
        down = dict(kernel_size=4, stride=2, padding=1)
        # "mid" takes 7x7 to 4x4 on 28x28 inputs and 8x8 to 4x4 on 32x32 inputs.
        mid = dict(kernel_size=4, stride=1, padding=0) if image_size == 28 else down
        head = dict(kernel_size=3, stride=1, padding=1)
        self.c = c
        # q(z2 | x)
        self.q2_down1 = nn.Conv2d(channels_in, c, **down)
        self.q2_down2 = nn.Conv2d(c, c, **down)
        self.q2_mid = nn.Conv2d(c, c, **mid)
        self.q2_loc = nn.Linear(16 * c, k)
        self.q2_scale = nn.Linear(16 * c, k)
        # q(z1 | z2, x): an x branch and a z2 branch, concatenated
        self.q1_down1 = nn.Conv2d(channels_in, c, **down)
        self.q1_down2 = nn.Conv2d(c, c, **down)
        self.q1_z_dense = nn.Linear(k, 16 * c)
        self.q1_z_up = nn.ConvTranspose2d(c, c, **mid)
        self.q1_mid = nn.Conv2d(2 * c, c, **mid)
        self.q1_loc = nn.Conv2d(c, c, **head)
        self.q1_scale = nn.Conv2d(c, c, **head)
        # p(z1 | z2)
        self.p1_hidden = nn.Linear(k, 8 * c)
        self.p1_loc = nn.Linear(8 * c, 16 * c)
        self.p1_scale = nn.Linear(8 * c, 16 * c)
        # p(x | z1): logits (Bernoulli) or the mean (Gaussian)
        self.dec_mid = nn.ConvTranspose2d(c, c, **mid)
        self.dec_up = nn.ConvTranspose2d(c, c, **down)
        self.dec_out = nn.ConvTranspose2d(c, channels_in, **down)

    def q_z2(self, x):
        h = F.relu(self.q2_down1(x))
        h = F.relu(self.q2_down2(h))
        h = F.relu(self.q2_mid(h)).flatten(1)
        return self.q2_loc(h), self.scale(self.q2_scale(h))

    def q_z1(self, x, z2):
        h_x = F.relu(self.q1_down2(F.relu(self.q1_down1(x))))
        h_z = F.relu(self.q1_z_dense(z2)).view(-1, self.c, 4, 4)
        h_z = F.relu(self.q1_z_up(h_z))
        h = F.relu(self.q1_mid(torch.cat([h_z, h_x], dim=1)))
        return self.q1_loc(h), self.scale(self.q1_scale(h))

    def p_z1(self, z2):
        h = F.relu(self.p1_hidden(z2))
        shape = (-1, self.c, 4, 4)
        return self.p1_loc(h).view(shape), self.scale(self.p1_scale(h)).view(shape)

    def decode(self, z1):
        h = F.relu(self.dec_mid(z1))
        return self.dec_out(F.relu(self.dec_up(h)))


class MLPHVAE(TwoLayerHVAE):
    """This project's default mlp model: dense bottom-up trunk, conditioned z1 posterior, dense decoder."""
    scale_floor = 1e-4

    def __init__(self, input_size, hidden, latent_dims):
        super().__init__()
        d1, d2 = latent_dims
        self.bottom_up_z1 = nn.Sequential(nn.Flatten(), nn.Linear(input_size, hidden), nn.ReLU(),
                                          nn.Linear(hidden, hidden), nn.ReLU())
        self.bottom_up_z2 = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.q2_loc = nn.Linear(hidden, d2)
        self.q2_scale = nn.Linear(hidden, d2)
        self.q1_z_features = nn.Linear(d2, hidden)
        self.q1_merge = nn.Linear(2 * hidden, hidden)
        self.q1_loc = nn.Linear(hidden, d1)
        self.q1_scale = nn.Linear(hidden, d1)
        self.p1_hidden = nn.Linear(d2, hidden)
        self.p1_loc = nn.Linear(hidden, d1)
        self.p1_scale = nn.Linear(hidden, d1)
        self.decoder = nn.Sequential(nn.Linear(d1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, input_size))

    def features(self, x):
        return self.bottom_up_z1(x)  # d_1(x); z2's trunk continues from it

    def q_z2(self, d):
        h = self.bottom_up_z2(d)
        return self.q2_loc(h), self.scale(self.q2_scale(h))

    def q_z1(self, d, z2):
        h = F.relu(self.q1_merge(torch.cat([d, F.relu(self.q1_z_features(z2))], dim=1)))
        return self.q1_loc(h), self.scale(self.q1_scale(h))

    def p_z1(self, z2):
        h = F.relu(self.p1_hidden(z2))
        return self.p1_loc(h), self.scale(self.p1_scale(h))

    def decode(self, z1):
        return self.decoder(z1)


def build_model(case: Case):
    """The peer of a benchmark case (channels first: inputs are [B, C, H, W])."""
    h, w, channels_in = case.input_shape
    if case.architecture == "conv":
        return ReferenceConvHVAE(h, channels_in, case.channels, case.latent_dims[1])
    if case.architecture == "mlp":
        return MLPHVAE(case.input_size, case.hidden_units, case.latent_dims)
    raise ValueError(f"no PyTorch peer for architecture {case.architecture!r}; use conv or mlp")


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def log_likelihood(x, out, case: Case):
    """log p(x | z1) per example (nats), as the paper's code computes it."""
    if case.likelihood == "bernoulli":
        p = torch.sigmoid(out)
        ll = x * torch.log(p + 1e-8) + (1 - x) * torch.log(1 - p + 1e-8)
    elif case.likelihood == "gaussian":
        log_sigma = math.log(case.gaussian_sigma)
        ll = -0.5 * ((x - out) ** 2 * math.exp(-2 * log_sigma) + 2 * log_sigma + math.log(2 * math.pi))
    else:
        raise ValueError(f"no PyTorch peer for likelihood {case.likelihood!r}; use bernoulli or gaussian")
    return ll.flatten(1).sum(-1)


def loss_terms(model, x, case: Case):
    """Per-example distortion D and rates [R(z1|z2), R(z2)], in nats, from one sample of each layer."""
    out, layers = model(x)
    rates = [D.kl_divergence(D.Normal(q_loc, q_scale), D.Normal(p_loc, p_scale)).flatten(1).sum(-1)
             for q_loc, q_scale, p_loc, p_scale in layers]
    return -log_likelihood(x, out, case), rates


def hit_loss(distortion, rates, betas):
    """Mean over the batch of D + sum_l beta_l R_l (betas z1 first)."""
    weighted = distortion
    for beta, rate in zip(betas, rates):
        weighted = weighted + beta * rate
    return weighted.mean()


def to_channels_first(x_nhwc):
    """A numpy batch [B, H, W, C] as the peer's input tensor [B, C, H, W]."""
    return torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous()


def make_train_step(case: Case, x_nhwc, seed=0, betas=(1.0, 1.0), learning_rate=LEARNING_RATE):
    """The peer's training step on the batch `x_nhwc` ([B, H, W, C] numpy, as TensorFlow gets it).

    Its run() does one Adam step and returns the loss before the update, so the first
    call gives the untrained model's loss.
    """
    torch.manual_seed(seed)
    model = build_model(case)
    x = to_channels_first(x_nhwc)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()

    def step():
        optimizer.zero_grad()
        distortion, rates = loss_terms(model, x, case)
        loss = hit_loss(distortion, rates, betas)
        loss.backward()
        optimizer.step()
        return loss.item()

    return TrainStep(step, count_parameters(model))
