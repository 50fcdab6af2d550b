"""Benchmarks a user can rerun: `python -m benchmarks.run` (see run.py for the sections).

The cases below are shared by the TensorFlow adapter (tf_steps), the PyTorch peer
(torch_peer) and the FLOP count (flops), so that all three describe the same model.
Layers are numbered from the data up: latent_dims lists z1 first.
"""
import dataclasses
from typing import Callable, NamedTuple


@dataclasses.dataclass(frozen=True)
class Case:
    """One model whose training step is benchmarked in both frameworks."""
    name: str                    # key in the results
    title: str                   # row label in the table
    input_shape: tuple           # (H, W, C)
    architecture: str            # "conv" (the paper's reference model) or "mlp" (this project's default)
    latent_dims: tuple           # z1 first
    likelihood: str              # "bernoulli" or "gaussian" (fixed sigma)
    channels: int = 16           # conv only
    hidden_units: int = 256      # mlp only
    gaussian_sigma: float = 0.71  # the paper README's CIFAR-10 command
    reference_parameters: int = 0  # the paper's count for the reference model; 0 = none published
    target_ratio: float = 0.0      # issue 11's target for TF median / torch median; 0 = none

    @property
    def input_size(self):
        h, w, c = self.input_shape
        return h * w * c


MNIST = Case("mnist_conv", "binarized MNIST, conv c=16, z 256,20", (28, 28, 1), "conv", (16 * 16, 20),
             "bernoulli", channels=16, reference_parameters=122_713, target_ratio=0.6)
COLOUR = Case("colour_conv", "colour 32x32x3, conv c=32, z 512,32", (32, 32, 3), "conv", (32 * 16, 32),
              "gaussian", channels=32, reference_parameters=475_811, target_ratio=0.5)
MLP = Case("mlp_digits", "digits 8x8x1, mlp 256, z 32,16", (8, 8, 1), "mlp", (32, 16), "bernoulli")

CASES = {case.name: case for case in (MNIST, COLOUR, MLP)}


class TrainStep(NamedTuple):
    """One framework's training step on a fixed batch, ready to time."""
    run: Callable[[], float]  # one step (Adam update included); returns the loss before the update, nats
    num_parameters: int
    graph: Callable = None    # TensorFlow only: gives the traced step's graph (for the profiler)
