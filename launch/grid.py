"""The beta grid of a sweep: one list of betas per layer, z1 first, and their product.

A list is explicit ("0.3,3") or log-spaced ("logspace:LOW,HIGH,N", N values from LOW to HIGH
with equal ratios; the paper's grid is logspace:0.1,10,21 for each of two layers, 441 points).
Points are numbered in row-major order of the product: z1's beta varies slowest.
"""
import itertools

import numpy as np


def parse_betas(text, layer):
    """The betas of one layer from its flag's text; ValueError (one line) naming the flag and the fix."""
    flag = f"--betas_{layer}"
    text = text.strip()
    try:
        if text.startswith("logspace:"):
            low, high, n = text[len("logspace:"):].split(",")
            low, high, n = float(low), float(high), int(n)
            if not (0 < low <= high and n >= 1):
                raise ValueError
            values = np.geomspace(low, high, n) if n > 1 else np.array([low])
        else:
            values = np.array([float(v) for v in text.split(",") if v.strip()])
            if not len(values):
                raise ValueError
    except ValueError:
        raise ValueError(f"{flag}={text!r} is neither a comma-separated list of betas (e.g. {flag}=0.3,3) nor "
                         f"logspace:LOW,HIGH,N with 0 < LOW <= HIGH and N >= 1 (e.g. {flag}=logspace:0.1,10,21)") from None
    if not np.all(np.isfinite(values)) or values.min() < 0:
        raise ValueError(f"{flag} must hold finite, non-negative betas (got {text})")
    return [float(f"{v:.6g}") for v in values]  # 6 significant digits: stable names and flags


def expand(beta_lists):
    """Every point of the grid as a tuple of betas (z1 first), in row-major order."""
    return list(itertools.product(*beta_lists))


def grid_from_flags(texts, num_layers):
    """The grid from the --betas_l flag texts ({layer: text}, layers counted from 1) of a model with
    `num_layers` layers; ValueError when a layer has no list or a list names a layer the model lacks."""
    given = sorted(layer for layer, text in texts.items() if text)
    wanted = list(range(1, num_layers + 1))
    if given != wanted:
        missing = [f"--betas_{l}" for l in wanted if l not in given]
        extra = [f"--betas_{l}" for l in given if l not in wanted]
        problem = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                          f"{', '.join(extra)} given" if extra else ""]))
        raise ValueError(f"the model has {num_layers} latent layers (--latent_dims), so the sweep needs one beta "
                         f"list per layer, --betas_1 to --betas_{num_layers} ({problem})")
    return expand([parse_betas(texts[l], l) for l in wanted])
