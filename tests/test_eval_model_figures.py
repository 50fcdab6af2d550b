"""RUN/figures/ of the evaluation: the pictures are drawn, seeded, written atomically, skipped for
non-image data, and each layer's figure resamples that layer only."""
import os
import types

import numpy as np
import pytest
from matplotlib import image as mpimg

from evaluation import model_figures
from hvae_repr import data, seeds
from hvae_repr.runs import RunDir


@pytest.fixture(scope="module")
def model_and_images(tiny_run):
    model, config = RunDir(tiny_run).load_model()
    return model, data.load_dataset("digits", None).x_test[:32], config


def test_figures_are_seeded_pngs_of_every_kind(model_and_images, tmp_path):
    model, x, config = model_and_images
    section = model_figures.write_figures(model, x, 0, config.betas, str(tmp_path / "a"))
    assert section["status"] == "drawn"
    assert set(section["files"]) == {"reconstructions", "prior_samples", "resample_z1", "resample_z2"}
    pixels = {}
    for name, relative in section["files"].items():
        image = mpimg.imread(os.path.join(tmp_path / "a", relative))
        assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50, name
        pixels[name] = image
    again = model_figures.write_figures(model, x, 0, config.betas, str(tmp_path / "b"))
    for name, relative in again["files"].items():
        np.testing.assert_array_equal(mpimg.imread(os.path.join(tmp_path / "b", relative)), pixels[name])
    other = model_figures.write_figures(model, x, 1, config.betas, str(tmp_path / "c"))
    assert not np.array_equal(mpimg.imread(os.path.join(tmp_path / "c", other["files"]["prior_samples"])),
                              pixels["prior_samples"])  # another seed, other samples


def test_only_the_chosen_layer_is_drawn_from_its_prior(model_and_images):
    model, x, config = model_and_images
    x_rep = np.repeat(x[:2], 4, axis=0)
    posterior = model.posteriors(x_rep, use_mean=True)
    seed = seeds.derive(0, "figures", 0)
    z1_resampled = model.posteriors(x_rep, seed=seed, use_mean=True, from_prior=(0,))
    np.testing.assert_array_equal(z1_resampled[1].z.numpy(), posterior[1].z.numpy())  # z2 kept at the posterior
    z1 = z1_resampled[0].z.numpy().reshape(2, 4, -1)
    assert np.all(np.std(z1, axis=1) > 0)  # four different draws per image
    assert not np.allclose(z1_resampled[0].z.numpy(), posterior[0].z.numpy())
    z2_resampled = model.posteriors(x_rep, seed=seed, use_mean=True, from_prior=(1,))
    z2 = z2_resampled[1].z.numpy().reshape(2, 4, -1)
    assert np.all(np.std(z2, axis=1) > 0)
    # z1 is inferred from the image and the new z2: it moves with z2.
    assert not np.allclose(z2_resampled[0].z.numpy(), posterior[0].z.numpy())


def test_folder_is_replaced_whole_or_not_at_all(model_and_images, tmp_path, monkeypatch):
    model, x, config = model_and_images
    folder = tmp_path / model_figures.FOLDER
    folder.mkdir()
    (folder / "stale.png").write_text("old")
    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return draw(*args, **kwargs)
    draw = model_figures.draw_grid
    monkeypatch.setattr(model_figures, "draw_grid", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        model_figures.write_figures(model, x, 0, config.betas, str(tmp_path))
    assert os.listdir(tmp_path) == [model_figures.FOLDER] and os.listdir(folder) == ["stale.png"]
    monkeypatch.setattr(model_figures, "draw_grid", draw)
    model_figures.write_figures(model, x, 0, config.betas, str(tmp_path))
    assert sorted(os.listdir(folder)) == ["prior_samples.png", "reconstructions.png", "resample_z1.png",
                                          "resample_z2.png"]


def test_non_image_data_is_skipped_with_the_reason(tmp_path):
    flat = types.SimpleNamespace(model_config=types.SimpleNamespace(input_shape=(64,)))
    section = model_figures.write_figures(flat, np.zeros((4, 64)), 0, (1.0,), str(tmp_path))
    assert section["status"] == "skipped" and "[H, W, 1] or [H, W, 3]" in section["reason"] and "[64]" in section["reason"]
    assert os.listdir(tmp_path) == []
