"""The reference classifier: images and flat inputs, caching keyed by data set."""
import dataclasses

import numpy as np
import pytest

from evaluation import reference_classifier as rc
from hvae_repr import data

FAST = dict(epochs=1, min_steps=40)


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


def test_image_classifier_learns_digits_and_is_cached(digits, tmp_path):
    first = rc.load_or_train(digits, cache_dir=str(tmp_path), **FAST)
    assert first.info["cached"] is False and first.info["epochs_run"] >= 2
    # 40 steps on 8x8 digits: well above chance (10%); the default 1000 steps reach ~98%.
    assert first.test_accuracy > 0.5
    probs, features = first.predict(digits.x_test[:50])
    assert probs.shape == (50, 10) and features.shape == (50, 128)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    second = rc.load_or_train(digits, cache_dir=str(tmp_path), **FAST)
    assert second.info["cached"] is True and second.test_accuracy == first.test_accuracy
    np.testing.assert_allclose(second.predict(digits.x_test[:50])[0], probs, atol=1e-6)
    assert (tmp_path / "digits" / "model.keras").exists()
    # Other settings or other data retrain instead of reusing a mismatched cache.
    other_settings = dict(epochs=1, min_steps=10)
    assert rc.load_or_train(digits, cache_dir=str(tmp_path), **other_settings).info["cached"] is False
    assert rc.load_or_train(digits, cache_dir=str(tmp_path), **other_settings).info["cached"] is True
    # Same name and images, other labels: the cache's fingerprint of the training data differs.
    relabeled = dataclasses.replace(digits, y_train=(digits.y_train + 1) % digits.num_classes)
    assert rc.load_or_train(relabeled, cache_dir=str(tmp_path), **other_settings).info["cached"] is False


def test_flat_inputs_get_an_mlp(digits, tmp_path):
    flat = dataclasses.replace(digits, name="digits_flat", x_train=digits.x_train.reshape(len(digits.x_train), -1),
                               x_test=digits.x_test.reshape(len(digits.x_test), -1))
    classifier = rc.load_or_train(flat, cache_dir=str(tmp_path), **FAST)
    assert classifier.info["architecture"].startswith("dense") and classifier.test_accuracy > 0.5
    with pytest.raises(ValueError, match="shape"):
        classifier.predict(digits.x_test[:3])
