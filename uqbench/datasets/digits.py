"""``digits``: scikit-learn's bundled 8×8 handwritten digits (no download).

- In-distribution: the 1,443 images of classes 0–7, split 75/25 stratified by class with
  the seed (``n_classes = 8``).
- OOD ``heldout-classes``: all 354 images of classes 8 and 9 (``y`` is None: the model
  has no such classes).
- OOD ``shifted``: the in-distribution *test* images, each rotated about its centre by a
  seeded angle ``±U(30°, 60°)`` (random sign; bilinear, zero fill, no reshape), with their
  labels kept in ``OODSet.y``.

Scaling: ``input_scaling="standardize"`` (default) subtracts one scalar mean and divides by
one scalar std over all training pixels (per-pixel statistics would divide by the
near-zero spread of almost-always-blank border pixels, blowing up any OOD image that
inks them); ``"unit"`` gives ``pixels / 16`` in ``[0, 1]``. OOD sets are scaled the same way.
"""

from __future__ import annotations

import numpy as np

from ._base import Dataset, InputScaling, OODSet, Standardizer, rng_streams

NAME = "digits"
IN_CLASSES = tuple(range(8))
HELDOUT_CLASSES = (8, 9)
TEST_FRACTION = 0.25
ANGLE_RANGE = (30.0, 60.0)
IMAGE_SHAPE = (8, 8)
MAX_PIXEL = 16.0


def stratified_split(
    y: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)``: per class, ``round(test_fraction * n_c)`` rows go to test.

    Both index arrays come back shuffled (not grouped by class).
    """
    train, test = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        n_test = round(test_fraction * len(rows))
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def rotate_images(images: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Each ``[H, W]`` image of ``images`` ``[N, H, W]`` rotated by ``angles[n]`` degrees."""
    from scipy import ndimage

    return np.stack(
        [
            ndimage.rotate(img, angle, reshape=False, order=1, mode="constant", cval=0.0)
            for img, angle in zip(images, angles, strict=True)
        ]
    )


def load_digits_dataset(*, seed: int, input_scaling: InputScaling = "standardize") -> Dataset:
    """The seeded ``digits`` dataset (see the module docstring).

    Returns
    -------
    Dataset with ``X_*`` ``[N, 64]`` float64, ``y_*`` ``[N]`` int64 in 0..7
    (1,082 train, 361 test), OOD sets ``heldout-classes`` (354) and ``shifted`` (361).
    """
    # Imported here: sklearn costs seconds, and `uqbench list` should not pay them.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.asarray(bunch.data, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    inside = np.isin(labels, IN_CLASSES)
    X_in, y_in = pixels[inside], labels[inside]
    X_held = pixels[np.isin(labels, HELDOUT_CLASSES)]

    rng_split, rng_rotate = rng_streams(seed, 2)
    train, test = stratified_split(y_in, TEST_FRACTION, rng_split)
    signs = rng_rotate.choice([-1.0, 1.0], size=len(test))
    angles = signs * rng_rotate.uniform(*ANGLE_RANGE, size=len(test))
    X_rot = rotate_images(X_in[test].reshape(-1, *IMAGE_SHAPE), angles).reshape(len(test), -1)
    # Bilinear interpolation cannot leave [0, 16]; the clip only removes float round-off.
    X_rot = np.clip(X_rot, 0.0, MAX_PIXEL)

    if input_scaling == "unit":
        scaling_info: dict = {"kind": "unit", "divisor": MAX_PIXEL}

        def scale(X: np.ndarray) -> np.ndarray:
            return X / MAX_PIXEL
    else:
        scaler = Standardizer.fit(X_in[train], axis=None)
        scaling_info = {
            "kind": "standardize (one scalar over all training pixels)",
            **scaler.to_info(),
        }
        scale = scaler.transform

    return Dataset(
        name=NAME,
        task="classification",
        X_train=scale(X_in[train]),
        y_train=y_in[train],
        X_test=scale(X_in[test]),
        y_test=y_in[test],
        ood={
            "heldout-classes": OODSet(scale(X_held), None),
            "shifted": OODSet(scale(X_rot), y_in[test].copy()),
        },
        n_classes=len(IN_CLASSES),
        image_shape=IMAGE_SHAPE,
        info={
            "source": "sklearn.datasets.load_digits (bundled, no download)",
            "seed": seed,
            "description": "8x8 digits; classes 0-7 in distribution, 8-9 held out",
            "split": f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} by class from the seed",
            "shift": "test images rotated by ±U(30, 60) degrees (seeded; bilinear, zero fill)",
            "input_scaling": scaling_info,
            "n_train": len(train),
            "n_test": len(test),
            "n_ood": {"heldout-classes": len(X_held), "shifted": len(test)},
        },
    )
