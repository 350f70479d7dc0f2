"""The project's real data set: scikit-learn's bundled 8x8 handwritten digits, and the model builder.

Data: :func:`sklearn.datasets.load_digits` (1,797 images of 8x8 pixels, 10 classes, shipped inside
scikit-learn: no download). Every pixel is an integer ``p`` in ``0..16``. :func:`load_digits_split`
returns ``x = p / 16`` as float32, so every value is exactly ``k / 16`` (a dyadic fraction, exact
in float32) and the pixel integer is recovered exactly as ``round(x * 16)`` in ``0..16``
(:func:`pixel_integers`): the quantizer sees an integer input with :data:`PIXEL_LEVELS` = 16
steps per unit.

Upsampling is NEAREST (each 8x8 pixel becomes a ``size/8 x size/8`` square, ``repeat_interleave``),
so no new values are created. ``size`` must be a multiple of 8 (32 gives a 2x2 token grid in
stages 3 and 4 of Meta-SpikeFormer).

Split: ``sklearn.model_selection.train_test_split(indices, test_size=test_fraction, stratify=y,
random_state=seed)``, i.e. a fixed, stratified split determined by ``seed`` alone (seed 0,
fraction 0.25: 1,347 training and 450 test images, every class within one image of its share).
The order of each part is the order ``train_test_split`` returns (deterministic for the seed).

:func:`build_model_from_args` rebuilds a :class:`~golden.model.MetaSpikeFormer` from the
``argparse.Namespace`` stored in a checkpoint (:mod:`tools.train_digits` writes every builder
argument into it), so a checkpoint file alone is enough to rebuild and load its model.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from golden.model import ARCHITECTURE_OPTIONS, MetaSpikeFormer

__all__ = [
    "PIXEL_LEVELS",
    "NATIVE_SIZE",
    "NUM_CLASSES",
    "MODEL_ARG_NAMES",
    "DIGITS_MODEL_DEFAULTS",
    "load_digits_split",
    "upsample_nearest",
    "pixel_integers",
    "random_shift",
    "build_model_from_args",
    "evaluate",
]

#: pixel integers run 0..PIXEL_LEVELS; the float input is ``pixel / PIXEL_LEVELS``.
PIXEL_LEVELS = 16
#: side of the original images.
NATIVE_SIZE = 8
NUM_CLASSES = 10

#: the :class:`MetaSpikeFormer` constructor arguments a checkpoint's ``args`` must hold.
MODEL_ARG_NAMES = (
    "img_size_h", "img_size_w", "in_channels", "num_classes", "embed_dim", "depths", "num_heads",
    "mlp_ratio", "T", "sdsa_variant", "kd", "head_input",
)

#: the digits model (all four stages; one block per reference list; 4 tokens in stages 3-4).
DIGITS_MODEL_DEFAULTS = dict(
    img_size_h=32, img_size_w=32, in_channels=1, num_classes=NUM_CLASSES,
    embed_dim=(16, 16, 32, 48), depths=(1, 1, 1, 1, 1, 1), num_heads=2, mlp_ratio=4,
    T=1, sdsa_variant=3, kd=False, head_input="spike",
)


def upsample_nearest(x: Tensor, size: int) -> Tensor:
    """``[B, C, 8, 8] -> [B, C, size, size]`` by repeating each pixel (``size`` a multiple of 8)."""
    h, w = x.shape[-2:]
    if size % h or size % w:
        raise ValueError(f"size must be a multiple of the image side ({h}x{w}), not {size}")
    return x.repeat_interleave(size // h, dim=-2).repeat_interleave(size // w, dim=-1)


def pixel_integers(x: Tensor) -> Tensor:
    """Float images ``pixel / 16`` back to their integer pixels ``round(x * 16)`` (int64, 0..16)."""
    return torch.round(x * PIXEL_LEVELS).to(torch.int64)


def load_digits_split(*, size: int = 32, seed: int = 0, test_fraction: float = 0.25
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The digits, nearest-upsampled to ``size``, split (stratified, fixed by ``seed``).

    Args:
        size: output side, a positive multiple of 8 (8 keeps the native resolution).
        seed: ``random_state`` of ``train_test_split``.
        test_fraction: share of each class held out for testing.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: x float32 ``[B, 1, size, size]`` with values
        ``pixel / 16`` (pixel an integer in 0..16), y int64 ``[B]`` in 0..9.
    """
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download
    from sklearn.model_selection import train_test_split

    if size <= 0 or size % NATIVE_SIZE:
        raise ValueError(f"size must be a positive multiple of {NATIVE_SIZE}, not {size}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), not {test_fraction}")
    data = load_digits()
    images = np.asarray(data.images)  # [1797, 8, 8] float64 holding integers 0..16
    labels = np.asarray(data.target, dtype=np.int64)
    pixels = np.rint(images).astype(np.int64)
    if not (np.array_equal(pixels, images) and pixels.min() >= 0 and pixels.max() <= PIXEL_LEVELS):
        raise RuntimeError("scikit-learn digits are expected to be integers 0..16")
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed)

    def part(idx: np.ndarray) -> tuple[Tensor, Tensor]:
        x = torch.from_numpy(pixels[idx]).to(torch.float32).unsqueeze(1) / PIXEL_LEVELS  # exact
        return upsample_nearest(x, size).contiguous(), torch.from_numpy(labels[idx])

    x_train, y_train = part(idx_train)
    x_test, y_test = part(idx_test)
    return x_train, y_train, x_test, y_test


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator | None = None,
                 prob: float = 1.0) -> Tensor:
    """Shift images by a random whole number of *native* pixels, zero fill (augmentation).

    ``x`` is ``[B, C, S, S]`` upsampled from 8x8. Each image is picked with probability ``prob``;
    a picked image moves by ``(dy, dx)`` native pixels, ``dy, dx`` uniform in
    ``-max_shift..max_shift``, i.e. by multiples of ``S / 8`` output pixels, so every value stays
    a pixel of the original grid (``k / 16``) or 0. Draws from ``generator`` (shifts, then picks).
    """
    if max_shift <= 0 or prob <= 0:
        return x
    b, _, s, _ = x.shape
    cell = s // NATIVE_SIZE
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=generator) * cell
    if prob < 1:
        shifts *= (torch.rand(b, generator=generator) < prob).to(shifts.dtype).unsqueeze(1)
    out = torch.zeros_like(x)
    for i in range(b):
        dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
        src_y, dst_y = slice(max(0, -dy), s - max(0, dy)), slice(max(0, dy), s - max(0, -dy))
        src_x, dst_x = slice(max(0, -dx), s - max(0, dx)), slice(max(0, dx), s - max(0, -dx))
        out[i, :, dst_y, dst_x] = x[i, :, src_y, src_x]
    return out


def build_model_from_args(args: argparse.Namespace | Mapping) -> MetaSpikeFormer:
    """A :class:`MetaSpikeFormer` from a checkpoint's ``args`` (Namespace or dict).

    Every name of :data:`MODEL_ARG_NAMES` must be present; the architecture options
    (:data:`golden.model.ARCHITECTURE_OPTIONS`, Table 5) are taken where present (else the
    reference's); other entries (training arguments) are ignored.

    Raises:
        ValueError: a builder argument is missing.
    """
    values = dict(args) if isinstance(args, Mapping) else vars(args)
    missing = [k for k in MODEL_ARG_NAMES if k not in values]
    if missing:
        raise ValueError(f"args lack model-builder argument(s) {missing}; need all of {list(MODEL_ARG_NAMES)}")
    kwargs = {k: values[k] for k in MODEL_ARG_NAMES}
    kwargs.update({k: values[k] for k in ARCHITECTURE_OPTIONS if values.get(k) is not None})
    kwargs["embed_dim"] = tuple(kwargs["embed_dim"])
    kwargs["depths"] = tuple(kwargs["depths"])
    return MetaSpikeFormer(**kwargs)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` in eval mode on ``(x, y)``, in batches (restores the mode)."""
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for i in range(0, len(y), batch_size):
            logits = model(x[i:i + batch_size])
            correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / len(y)
