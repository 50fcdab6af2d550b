"""Image-quality numbers: PSNR, Inception-style score, Frechet distance.

The score and the distance take a classifier's outputs as arrays, so any
classifier works; evaluation.reference_classifier provides a small CNN per data
set. With that CNN they are NOT the Inception-network IS/FID (those weights
cannot be had offline, and ImageNet features fit 28x28 digits poorly), so the
numbers are not comparable with published ones; they still rank models of one
data set, because every model is scored by the same fixed classifier trained on
that data: sharper, class-like samples give confident predictions, samples
covering all classes give a flat label marginal, and samples whose features are
distributed like the test images' give a small Frechet distance.
"""
import numpy as np

from evaluation.stats import entropy, mean_stderr

NOT_INCEPTION_NOTE = (
    "computed with this project's reference CNN for the data set, not the Inception network: "
    "not comparable with published IS/FID, but comparable between models of the same data set "
    "scored by the same cached classifier")


def psnr(x, x_hat, data_range=1.0):
    """PSNR in dB, 10 log10(range^2 / MSE), two ways that are easily confused:

    - pooled_mse_db: one MSE pooled over every pixel of every image, then the log
      (the paper's code). pooled_mse_stderr_db: its delta-method standard error
      from the per-image MSEs.
    - mean_per_image_db: the log of each image's MSE, then the mean over images
      (with mean_per_image_stderr_db). By Jensen's inequality it is at least
      pooled_mse_db: the log rewards the best images more than the worst cost.
    Identical images (MSE 0) are capped at 100 dB so both stay finite (the
    inequality holds whenever no image reaches the cap).
    """
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.asarray(x_hat, dtype=np.float64)
    if x.shape != x_hat.shape or x.ndim < 2:
        raise ValueError(f"psnr needs two image batches of equal shape; got {x.shape} and {x_hat.shape}")

    def db(mse):
        return np.minimum(10.0 * np.log10(data_range ** 2 / np.maximum(mse, 1e-300)), 100.0)
    mse = np.mean(np.square(x - x_hat).reshape(len(x), -1), axis=1)
    pooled_mse, pooled_mse_stderr = mean_stderr(mse)  # equal image sizes: pooled MSE = mean per-image MSE
    mean, stderr = mean_stderr(db(mse))
    return {"pooled_mse_db": float(db(pooled_mse)),
            "pooled_mse_stderr_db": float(10.0 / np.log(10.0) * pooled_mse_stderr / max(pooled_mse, 1e-300)),
            "mean_per_image_db": mean, "mean_per_image_stderr_db": stderr,
            "settings": {"data_range": data_range, "num_images": int(len(x)), "cap_db": 100.0,
                         "pooled_mse_db": "10 log10(range^2 / MSE over all pixels of all images) (the paper's)",
                         "mean_per_image_db": "mean over images of 10 log10(range^2 / the image's MSE)"}}


def inception_score(probs, num_splits=10):
    """IS = exp(E_x KL[p(y|x) || p(y)]) = diversity * sharpness, per split.

    diversity = exp(H[p(y)]) with p(y) the split's mean prediction (1..M),
    sharpness = exp(-E_x H[p(y|x)]) (1/M..1). Returns mean and std over splits of each.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) < num_splits:
        raise ValueError(f"need probs [N, M] with N >= num_splits={num_splits}; got {p.shape}")
    scores = {"inception_score": [], "diversity": [], "sharpness": []}
    for part in np.array_split(p, num_splits):
        diversity = np.exp(entropy(part.mean(0)))
        sharpness = np.exp(-np.mean(entropy(part)))
        scores["diversity"].append(diversity)
        scores["sharpness"].append(sharpness)
        scores["inception_score"].append(diversity * sharpness)
    result = {}
    for key, values in scores.items():
        result[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    result["settings"] = {"num_samples": int(len(p)), "num_splits": int(num_splits),
                          "num_classes": int(p.shape[1]),
                          "units": "inception_score and diversity in effective classes (1..M); "
                                   "sharpness in (0, 1]"}
    return result


def _sqrt_psd(c):
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def feature_statistics(features):
    """(mean, covariance) of a feature set [N, F] (N >= 2), as frechet_distance uses them."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need a feature set [N, F] with N >= 2; got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(features_a, features_b):
    """||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a^(1/2) C_b C_a^(1/2))^(1/2)) of two feature sets.

    Either set may be given as its feature_statistics (a tuple), e.g. the test images' once for many
    generated sets.

    The matrix square root uses symmetric eigen-decompositions, which stay real
    and stable for singular covariances (unlike a general sqrtm of C_a C_b).
    """
    (mean_a, cov_a), (mean_b, cov_b) = (s if isinstance(s, tuple) else feature_statistics(s)
                                        for s in (features_a, features_b))
    if cov_a.shape != cov_b.shape:
        raise ValueError(f"need two feature sets [N, F] with the same F; got F = {len(cov_a)} and {len(cov_b)}")
    mean_term = np.sum(np.square(mean_a - mean_b))
    root_a = _sqrt_psd(cov_a)
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)))
    return float(max(mean_term + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross, 0.0))
