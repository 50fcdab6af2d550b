"""Synthetic binary images whose log-probability is known exactly.

The generator is a mixture of independent-Bernoulli images, one component per
(class, style) pair:

    p(x) = sum_{c,s} pi[c, s] prod_i Bern(x_i; theta[c, s, i]),   label y = c.

Because log p(x) is exact, the data entropy H[p_data] in the bound
E[D] >= H - E[rate] can be estimated without bias (or enumerated for tiny images).
"""
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticSource:
    """A mixture of independent-Bernoulli images with known components.

    weights: [C, S] mixture weights pi (class, style), summing to 1.
    probs: [C, S, D] pixel on-probabilities theta, strictly inside (0, 1).
    image_shape: shape of one image, prod(image_shape) == D.
    """
    weights: np.ndarray
    probs: np.ndarray
    image_shape: tuple

    def __post_init__(self):
        weights = np.asarray(self.weights, np.float64)
        probs = np.asarray(self.probs, np.float64)
        if weights.ndim != 2 or probs.shape[:2] != weights.shape:
            raise ValueError(f"weights {weights.shape} and probs {probs.shape} must be [C, S] and [C, S, D]")
        if probs.shape[2] != int(np.prod(self.image_shape)):
            raise ValueError(f"probs have {probs.shape[2]} pixels but image_shape is {self.image_shape}")
        if not np.isclose(weights.sum(), 1.0) or weights.min() < 0:
            raise ValueError("weights must be non-negative and sum to 1")
        # Strictly inside (0, 1) so that log(theta) and log(1 - theta) stay finite.
        if not (probs.min() > 0 and probs.max() < 1):
            raise ValueError("probs must lie strictly between 0 and 1")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "probs", probs)
        object.__setattr__(self, "image_shape", tuple(self.image_shape))

    @property
    def num_classes(self) -> int:
        return self.weights.shape[0]

    @property
    def num_pixels(self) -> int:
        return self.probs.shape[2]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draws n fresh examples: images float32 [n, *image_shape] in {0, 1}, labels int64 [n]."""
        num_styles = self.weights.shape[1]
        component = rng.choice(self.weights.size, size=n, p=self.weights.ravel())
        pixel_probs = self.probs.reshape(-1, self.num_pixels)[component]
        x = (rng.random(pixel_probs.shape) < pixel_probs).astype(np.float32)
        return x.reshape((n,) + self.image_shape), (component // num_styles).astype(np.int64)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Exact log p(x) in nats, float64 [n], for binary images x [n, *image_shape]."""
        x = np.asarray(x, np.float64).reshape(-1, self.num_pixels)
        if not np.all((x == 0) | (x == 1)):
            raise ValueError("log_prob needs binary images with values in {0, 1}")
        probs = self.probs.reshape(-1, self.num_pixels)
        component_log_lik = x @ np.log(probs).T + (1 - x) @ np.log1p(-probs).T  # [n, C*S]
        with np.errstate(divide="ignore"):  # zero-weight components give log 0 = -inf, which is fine
            log_weights = np.log(self.weights.ravel())
        joint = component_log_lik + log_weights
        top = joint.max(axis=1, keepdims=True)  # logsumexp over components, kept stable
        return (top + np.log(np.exp(joint - top).sum(axis=1, keepdims=True)))[:, 0]


def make_synthetic(image_shape=(8, 8, 1), num_classes=10, num_styles=3,
                   pixel_noise=0.1, style_flip=0.15, seed=0) -> SyntheticSource:
    """Builds the generator with fixed parameters drawn from `seed`.

    Each class has a random binary template; each style flips a random `style_flip`
    fraction of its class template's pixels; each pixel then disagrees with its
    (class, style) pattern with probability `pixel_noise`. All components are equally likely.
    """
    rng = np.random.default_rng(seed)
    num_pixels = int(np.prod(image_shape))
    templates = rng.random((num_classes, 1, num_pixels)) < 0.5
    flips = rng.random((num_classes, num_styles, num_pixels)) < style_flip
    patterns = templates ^ flips
    probs = np.where(patterns, 1.0 - pixel_noise, pixel_noise)
    weights = np.full((num_classes, num_styles), 1.0 / (num_classes * num_styles))
    return SyntheticSource(weights=weights, probs=probs, image_shape=tuple(image_shape))
