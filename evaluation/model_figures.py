"""Pictures of one model, which `python -m evaluation.evaluate` writes to RUN/figures/ (PNG, matplotlib's
Agg canvas, no display needed):

    reconstructions.png      test images (upper row) above their reconstructions (the mean of p(x|z1) at
                             the posterior means)
    prior_samples.png        ancestral samples z ~ p(z), shown as the mean of p(x|z1)
    resample_z<l>.png        what layer z_l encodes: for a few test images, the image, its reconstruction,
                             then samples in which only z_l is drawn anew, from p(z_l | z_{l+1}) with the
                             layers above at their posterior means given the image; the layers below are
                             inferred (posterior means) from the image and the new z_l
    samples_by_category.png  a categorical top layer: one row of samples per category of z_L

Image data only ([H, W, 1] or [H, W, 3] in [0, 1]). Every draw is seeded from the evaluation's seed
(seed stream "figures"), so the same evaluation draws the same pictures. The folder is built beside
the old one and swapped in (hvae_repr.io_utils.replacing_folder): never half-written.
"""
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hvae_repr import io_utils, seeds

NUM_RECONSTRUCTED = 16
NUM_PRIOR_SAMPLES = 64  # an 8 x 8 grid
NUM_RESAMPLED_IMAGES = 4  # test images per layer figure
NUM_RESAMPLES = 8  # samples per test image and layer, and per category
MAX_CATEGORIES = 20  # rows of samples_by_category.png
FOLDER = "figures"


def image_shape_problem(input_shape):
    """Why data of this shape cannot be drawn as images, or None when it can."""
    if len(input_shape) == 3 and input_shape[-1] in (1, 3):
        return None
    return (f"figures need image data of shape [H, W, 1] or [H, W, 3]; this data set's examples have shape "
            f"{list(input_shape)}")


def tile(images, columns, pad=1, background=1.0):
    """[N, H, W, C] images in a grid of `columns` columns (the last row padded), separated by `pad` pixels."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    n, h, w, c = images.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), background, np.float32)
    for i, image in enumerate(images):
        r, k = divmod(i, columns)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = image
    return out


def draw_grid(path, images, columns, title, row_labels=(), column_labels=(), cell_inches=0.45):
    """Writes one PNG of `images` tiled in `columns` columns, with a title and optional row/column labels."""
    grid = tile(images, columns)
    rows = -(-len(images) // columns)
    # Margins in inches (a fixed layout: a constrained one draws every figure twice).
    left, right, top, bottom = (0.9 if row_labels else 0.15), 0.15, 0.55, (0.3 if column_labels else 0.1)
    width, height = columns * cell_inches + left + right, rows * cell_inches + top + bottom
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / width, bottom / height, 1 - (left + right) / width, 1 - (top + bottom) / height))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0.0, vmax=1.0,
              interpolation="nearest")
    h, w = np.asarray(images).shape[1:3]
    ax.set_yticks([r * (h + 1) + h / 2 + 0.5 for r in range(len(row_labels))], list(row_labels), fontsize=8)
    ax.set_xticks([k * (w + 1) + w / 2 + 0.5 for k in range(len(column_labels))], list(column_labels), fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.savefig(path, format="png", dpi=100)


def _resampled(model, x, layer, seed, betas):
    """Decoded images of NUM_RESAMPLES draws per test image in which only layer `layer` (0 = z1) is drawn
    from its prior given the layers above (posterior means); [len(x) * NUM_RESAMPLES, ...], image-major."""
    x_rep = np.repeat(x, NUM_RESAMPLES, axis=0)
    layers = model.posteriors(x_rep, seed=seeds.derive(seed, "figures", 2, layer), use_mean=True, betas=betas,
                              from_prior=(layer,))
    return model.decode(layers[0].z, betas).numpy()


def write_figures(model, x, seed, betas, run_folder):
    """Draws the figures of the module docstring for `model` (its test images `x`) into RUN/figures/;
    returns eval_result.json's "figures" section (the files relative to the run folder)."""
    problem = image_shape_problem(model.model_config.input_shape)
    if problem:
        return {"status": "skipped", "reason": problem}
    names = model.latent_names
    shown = x[:NUM_RECONSTRUCTED]
    pictures = {  # name: (images, columns, title, row labels, column labels)
        "reconstructions": (np.concatenate([shown, model.reconstruct(shown, betas).numpy()]), len(shown),
                            "test images and their reconstructions", ("test", "recon."), ()),
        "prior_samples": (model.sample(NUM_PRIOR_SAMPLES, seeds.derive(seed, "figures", 1), betas).numpy(), 8,
                          "prior samples z ~ p(z)", (), ())}
    originals = x[:NUM_RESAMPLED_IMAGES]
    recon = model.reconstruct(originals, betas).numpy()
    for l, name in enumerate(names):
        draws = _resampled(model, originals, l, seed, betas).reshape((len(originals), NUM_RESAMPLES) + x.shape[1:])
        images = np.concatenate([originals[:, None], recon[:, None], draws], axis=1).reshape((-1,) + x.shape[1:])
        above = f"p({name} | z{l + 2})" if l + 1 < len(names) else f"p({name})"
        pictures[f"resample_{name}"] = (
            images, NUM_RESAMPLES + 2, f"only {name} drawn anew from {above}\n(the other layers: posterior of "
            f"each test image)", (), ["test", "recon."] + [str(k + 1) for k in range(NUM_RESAMPLES)])
    if model.categorical_top:
        categories = min(model.model_config.latent_dims[-1], MAX_CATEGORIES)
        top = np.eye(model.model_config.latent_dims[-1], dtype=np.float32)[np.repeat(np.arange(categories),
                                                                                      NUM_RESAMPLES)]
        samples = model.sample(len(top), seeds.derive(seed, "figures", 3), betas, top=top).numpy()
        pictures["samples_by_category"] = (samples, NUM_RESAMPLES, f"samples with {names[-1]} set to each category",
                                           [f"{names[-1]}={k}" for k in range(categories)], ())
    target = os.path.join(run_folder, FOLDER)
    with io_utils.replacing_folder(target) as folder:
        for name, (images, columns, title, row_labels, column_labels) in pictures.items():
            draw_grid(os.path.join(folder, f"{name}.png"), images, columns, title, row_labels, column_labels)
    return {"status": "drawn", "files": {name: f"{FOLDER}/{name}.png" for name in pictures},
            "note": "see evaluation/model_figures.py for what each figure shows",
            "settings": {"seed": int(seed), "num_reconstructed": int(len(shown)),
                         "num_resampled_images": int(len(originals)), "num_resamples": NUM_RESAMPLES}}
