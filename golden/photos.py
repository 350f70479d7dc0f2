"""Real photos that ship with scikit-learn (``load_sample_images``: china.jpg and flower.jpg,
427 x 640 RGB), for tests, demos and "one real photo" runs; nothing is downloaded.

:func:`write_photo_folder` cuts seeded random crops of both photos into an ``ImageFolder``
(``china/`` and ``flower/``, JPEG), the smallest labelled photo data set that exercises the whole
image path (decode, resize, crop, normalize)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["PHOTOS", "photo_path", "photo", "write_photo_folder"]

PHOTOS = ("china", "flower")


def photo_path(name: str) -> Path:
    """The JPEG file of a bundled photo (``china`` or ``flower``)."""
    from sklearn.datasets import load_sample_images

    if name not in PHOTOS:
        raise ValueError(f"photo must be one of {PHOTOS}, not {name!r}")
    return Path(next(f for f in load_sample_images().filenames if Path(f).stem == name))


def photo(name: str) -> np.ndarray:
    """A bundled photo as ``uint8 [H, W, 3]``."""
    from PIL import Image

    with Image.open(photo_path(name)) as img:
        return np.asarray(img.convert("RGB"))


def write_photo_folder(folder: str | Path, *, per_class: int = 4, size: int = 96, seed: int = 0,
                       quality: int = 90) -> Path:
    """``per_class`` random ``size`` x ``size`` crops of each photo as JPEGs in ``folder/<photo>/``."""
    from PIL import Image

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        img = photo(name)
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            y = int(rng.integers(0, img.shape[0] - size + 1))
            x = int(rng.integers(0, img.shape[1] - size + 1))
            Image.fromarray(img[y:y + size, x:x + size]).save(folder / name / f"{name}_{i}.jpg", quality=quality)
    return folder
