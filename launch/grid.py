"""The beta grid of a sweep: one list of betas per layer, z1 first, and their product.

A list is explicit ("0.3,3"), log-spaced ("logspace:LOW,HIGH,N", N values from LOW to HIGH
with equal ratios; the paper's grid is logspace:0.1,10,21 for each of two layers, 441 points) or
evenly spaced ("linspace:LOW,HIGH,N"). A grid of target rates (target_grid) is built the same way.
Points are numbered in row-major order of the product: z1's beta varies slowest.
"""
import itertools

import numpy as np


def parse_values(text, flag, what="betas", example="0.3,3"):
    """The values of one layer from its flag's text: a list, logspace:LOW,HIGH,N or linspace:LOW,HIGH,N;
    ValueError (one line) naming the flag and the fix."""
    text = text.strip()
    try:
        if text.startswith(("logspace:", "linspace:")):
            kind, _, spec = text.partition(":")
            low, high, n = spec.split(",")
            low, high, n = float(low), float(high), int(n)
            if not (0 <= low <= high and n >= 1) or (kind == "logspace" and low == 0):
                raise ValueError
            space = np.geomspace if kind == "logspace" else np.linspace
            values = space(low, high, n) if n > 1 else np.array([low])
        else:
            values = np.array([float(v) for v in text.split(",") if v.strip()])
            if not len(values):
                raise ValueError
    except ValueError:
        raise ValueError(f"{flag}={text!r} is neither a comma-separated list of {what} (e.g. {flag}={example}) nor "
                         f"logspace:LOW,HIGH,N with 0 < LOW <= HIGH or linspace:LOW,HIGH,N with 0 <= LOW <= HIGH, "
                         f"N >= 1 (e.g. {flag}=logspace:0.1,10,21)") from None
    if not np.all(np.isfinite(values)) or values.min() < 0:
        raise ValueError(f"{flag} must hold finite, non-negative {what} (got {text})")
    return [float(f"{v:.6g}") for v in values]  # 6 significant digits: stable names and flags


def parse_betas(text, layer):
    """The betas of one layer from its --betas_l text."""
    return parse_values(text, f"--betas_{layer}")


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


def target_grid(beta_texts, target_texts, num_layers, start_betas):
    """A grid of target rates: [(betas, target_rates)] with each layer given either --target_rates_l (its
    targets; its beta starts at start_betas[l]) or --betas_l (its fixed betas; target "-"), z1 first, in
    row-major order like the beta grid. ValueError when a layer has neither or both."""
    lists = []
    for layer in range(1, num_layers + 1):
        beta_text, target_text = beta_texts.get(layer) or "", target_texts.get(layer) or ""
        if bool(beta_text) == bool(target_text):
            raise ValueError(f"layer z{layer} needs either --target_rates_{layer} (rates it is trained to) or "
                             f"--betas_{layer} (fixed betas), not {'both' if beta_text else 'neither'}")
        if target_text:
            rates = parse_values(target_text, f"--target_rates_{layer}", "rates in nats", "5,20")
            lists.append([(start_betas[layer - 1], f"{r:g}") for r in rates])
        else:
            lists.append([(b, "-") for b in parse_betas(beta_text, layer)])
    extra = sorted(l for l, t in list(beta_texts.items()) + list(target_texts.items()) if t and l > num_layers)
    if extra:
        raise ValueError(f"the model has {num_layers} latent layers (--latent_dims), but layer {extra[0]} has a list")
    return [(tuple(b for b, _ in point), tuple(t for _, t in point)) for point in expand(lists)]
