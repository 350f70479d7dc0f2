"""Images in: the user's photos, the bundled digits, or a tensor file, as 8-bit pixels.

One image source serves ``hwgen quantize`` (calibration and trace samples), ``hwgen eval`` and
``hwgen sim``; :func:`open_images` tells the kinds apart:

- a folder in torchvision's ``ImageFolder`` layout (one subfolder per class, sorted names give the
  class indices, as torchvision and the reference training scripts number them): labelled;
- a flat folder of image files: unlabelled;
- a ``.npy`` / ``.pt`` file: a ``uint8`` tensor ``[N, C, H, W]`` of pixels already cropped to the
  model's input size, or a float tensor of *model inputs* (preprocessed), which the program's input
  encoding must map back onto its 8-bit grid exactly; a ``.pt`` file may also hold
  ``{"images": tensor, "labels": tensor}``;
- ``digits`` / ``digits:train`` / ``digits:test``: scikit-learn's bundled digits
  (:mod:`golden.digits`; the test split by default), pixel levels 0..16;
- ``random`` / ``random:SEED``: uniform random 8-bit pixels (a random-weight model needs inputs);
- ``events`` / ``events:train`` / ``events:test``: the digits seen by the simulated event camera
  (:mod:`golden.events`; the test split by default): per image ``T`` binary frames of two polarity
  channels, ``uint8 [T, 2, H, W]``, for a model whose input is spikes (docs/events.md). The camera,
  ``T`` and the motion seed are part of the preprocessing (:meth:`Preprocessing.event_frames`),
  so the program header records them and ``eval`` / ``sim`` see the same recordings.

Preprocessing of photos is the reference evaluation pipeline (timm / MAE ``build_transform`` as in
the Meta-SpikeFormer repository): resize the shorter side to ``int(input_size / crop_pct)``
(bicubic), center crop ``input_size``, ``ToTensor``, ``Normalize(mean, std)``, with
``crop_pct = 224 / 256`` up to 224 pixels and 1.0 above. Every parameter is a field of
:class:`Preprocessing` and is recorded in the program header.

The chip does not normalize: it receives the 8-bit pixels after resize and crop (the uint8
tensor that ``ToTensor`` divides by 255), and the normalization is folded into the encoding
layer (docs/arithmetic.md, "The chip's input"). So a source yields **pixels** (uint8), and the float
model's input is :meth:`Preprocessing.normalize` of them, which equals torchvision's pipeline on
the same file bit for bit.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_SUFFIXES", "ImageError", "Preprocessing", "ImageSource",
           "open_images", "torchvision"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: file endings read as images (torchvision's ``IMG_EXTENSIONS``)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


class ImageError(ValueError):
    """An image source cannot be used; the message names the file (and the image) and why."""


def torchvision():
    """``import torchvision``, made to work beside the CPU build of torch.

    The registry's torchvision 0.28.0 wheel is built against CUDA torch: its C++ operators
    (``torchvision::nms`` ...) fail to load beside ``torch==2.13.0+cpu``, and its import then
    stops at registering fake kernels for ``nms``/``qnms``. The project needs only the pure-Python
    transforms, so the two operator schemas are declared first when they are missing; the
    operators themselves stay unavailable (nothing here calls them)."""
    import importlib

    try:
        return importlib.import_module("torchvision")
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    import sys

    global _TORCHVISION_SCHEMAS
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _TORCHVISION_SCHEMAS = torch.library.Library("torchvision", "FRAGMENT")   # kept alive here
    for op in ("nms", "qnms"):
        try:
            _TORCHVISION_SCHEMAS.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass   # declared already
    return importlib.import_module("torchvision")


_TORCHVISION_SCHEMAS = None


@dataclass(frozen=True)
class Preprocessing:
    """Photo -> pixels (resize, crop) -> model input (``/255``, normalize).

    Attributes:
        input_size: side of the square model input.
        crop_pct: the shorter side is resized to ``int(input_size / crop_pct)`` before the center crop.
        interpolation: ``bicubic`` (reference), ``bilinear`` or ``nearest``.
        mean, std: per channel, applied to ``pixel / 255``.
        channels: 3 (RGB) or 1 (grayscale); photos are converted to this mode.
        levels: the largest pixel value (255 for photos; 16 for the digits, whose model input is
            ``pixel / 16``).
        kind: ``"photo"`` (the pipeline above), ``"digits"`` (already 32 x 32, no resize) or
            ``"events"`` (spike frames: ``[T, C, H, W]`` of 0/1 per image, no normalization).
        events: for ``"events"``: ``T``, ``seed`` (motions of the test split; the training split
            draws from it too, see :func:`golden.events.load_event_split`), ``split_seed`` and
            ``camera`` (:class:`golden.events.EventCamera` fields).
    """

    input_size: int
    crop_pct: float
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3
    levels: int = 255
    kind: str = "photo"
    events: dict | None = None

    def __post_init__(self):
        if self.input_size < 1:
            raise ImageError(f"input_size must be >= 1, not {self.input_size}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ImageError(f"crop_pct must be in (0, 1], not {self.crop_pct}")
        if self.interpolation not in INTERPOLATIONS:
            raise ImageError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {self.interpolation!r}")
        if self.kind == "events":
            if not self.events or not {"T", "camera"} <= set(self.events):
                raise ImageError(f"event frames need their T and camera in 'events', not {self.events}")
        elif self.channels not in (1, 3):
            raise ImageError(f"channels must be 1 or 3, not {self.channels}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if len(v) != self.channels:
                raise ImageError(f"{name} has {len(v)} values for {self.channels} channel(s): {list(v)}")
        if any(s <= 0 for s in self.std):
            raise ImageError(f"std must be positive, not {list(self.std)}")

    @classmethod
    def reference(cls, input_size: int, channels: int = 3, **overrides) -> "Preprocessing":
        """The reference evaluation pipeline for ``input_size`` (crop_pct 224/256 up to 224)."""
        crop_pct = 224 / 256 if input_size <= 224 else 1.0
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
        return cls(**{**dict(input_size=input_size, crop_pct=crop_pct, mean=mean, std=std, channels=channels),
                      **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def digits(cls, input_size: int = 32) -> "Preprocessing":
        """The digits model's input: ``pixel / 16`` (mean 0, std 1 on ``pixel / levels``)."""
        return cls(input_size=input_size, crop_pct=1.0, interpolation="nearest", mean=(0.0,), std=(1.0,),
                   channels=1, levels=16, kind="digits")

    @classmethod
    def event_frames(cls, input_size: int, T: int, camera: dict | None = None, *, seed: int = 0,
                     split_seed: int = 0, channels: int = 2) -> "Preprocessing":
        """Spike frames of the simulated event camera (:mod:`golden.events`): ``T`` binary frames
        of ``channels`` polarities per image, the model's input as they are (levels 1, no
        normalization). ``camera``: :class:`golden.events.EventCamera` fields (default its own)."""
        from golden.events import EventCamera

        cam = EventCamera(**(camera or {})).as_dict()
        return cls(input_size=input_size, crop_pct=1.0, interpolation="nearest", mean=(0.0,) * channels,
                   std=(1.0,) * channels, channels=channels, levels=1, kind="events",
                   events=dict(T=int(T), seed=int(seed), split_seed=int(split_seed), camera=cam))

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["resize"] = self.resize_size
        return d

    @property
    def resize_size(self) -> int:
        return int(self.input_size / self.crop_pct)

    @property
    def scale(self) -> tuple[float, ...]:
        """Model input = ``pixel * scale[c] + offset[c]`` (what the encoding layer folds in)."""
        return tuple(1.0 / (self.levels * s) for s in self.std)

    @property
    def offset(self) -> tuple[float, ...]:
        return tuple(-m / s for m, s in zip(self.mean, self.std))

    def pixel_transform(self):
        """PIL image -> ``uint8`` tensor ``[C, input_size, input_size]`` (torchvision transforms)."""
        T = torchvision().transforms
        mode = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR,
                "nearest": T.InterpolationMode.NEAREST}[self.interpolation]
        return T.Compose([T.Resize(self.resize_size, interpolation=mode), T.CenterCrop(self.input_size),
                          T.PILToTensor()])

    def normalize(self, pixels: Tensor) -> Tensor:
        """``uint8`` pixels ``[..., C, H, W]`` -> float32 model input, exactly as ``ToTensor`` then
        ``Normalize`` compute it (``pixel / levels``, then ``(x - mean) / std``). Event frames
        ``[B, T, C, H, W]`` -> the model's ``[T, B, C, H, W]`` of 0.0 / 1.0."""
        if self.kind == "events":
            return pixels.to(torch.float32).transpose(0, 1)
        x = pixels.to(torch.float32).div(self.levels)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return x.sub(mean).div(std)


@dataclass
class ImageSource:
    """Pixels and labels of an image source, loaded on demand in index order.

    ``len(source)`` images; :meth:`load` returns ``(pixels uint8 [n, C, H, W], labels int64 [n] or
    None)`` for a range (event frames: ``[n, T, C, H, W]``). ``notes`` collects what was done that a user should know (converted
    grayscale images ...)."""

    name: str
    kind: str                      # "folder", "flat", "tensor", "digits", "random", "events"
    preprocessing: Preprocessing
    files: list[Path] = field(default_factory=list)
    labels: np.ndarray | None = None
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    _pixels: Tensor | None = None          # in-memory sources (tensor, digits, random)
    allow_upscale: bool = False
    first: int = 0                         # index of this selection's first image in the whole source

    def __len__(self) -> int:
        return len(self.files) if self._pixels is None else len(self._pixels)

    def select(self, start: int = 0, count: int | None = None) -> "ImageSource":
        """The images ``start .. start + count - 1`` (all to the end with ``count`` None)."""
        n = len(self)
        if not 0 <= start < n:
            raise ImageError(f"{self.name}: --start {start} is past the end: the source has {n} image(s) "
                             f"(indices 0..{n - 1})")
        stop = n if count is None else start + count
        if count is not None and (count < 1 or stop > n):
            raise ImageError(f"{self.name}: --count {count} from --start {start} needs images up to index "
                             f"{stop - 1}; the source has {n} (indices 0..{n - 1})")
        return ImageSource(self.name, self.kind, self.preprocessing, self.files[start:stop],
                           None if self.labels is None else self.labels[start:stop], self.classes, self.notes,
                           None if self._pixels is None else self._pixels[start:stop], self.allow_upscale,
                           self.first + start)

    def load(self, start: int = 0, stop: int | None = None) -> tuple[Tensor, Tensor | None]:
        stop = len(self) if stop is None else min(stop, len(self))
        labels = None if self.labels is None else torch.from_numpy(np.asarray(self.labels[start:stop], dtype=np.int64))
        if self._pixels is not None:
            return self._pixels[start:stop], labels
        transform = self.preprocessing.pixel_transform()
        return torch.stack([self._load_file(f, transform) for f in self.files[start:stop]]), labels

    def batches(self, size: int) -> Iterator[tuple[int, Tensor, Tensor | None]]:
        """``(first index, pixels, labels)`` in batches of ``size``."""
        for i in range(0, len(self), size):
            pixels, labels = self.load(i, i + size)
            yield i, pixels, labels

    def normalized(self, pixels: Tensor) -> Tensor:
        return self.preprocessing.normalize(pixels)

    def _load_file(self, path: Path, transform) -> Tensor:
        from PIL import Image, UnidentifiedImageError

        pre = self.preprocessing
        try:
            with Image.open(path) as img:
                img.load()
                mode = "RGB" if pre.channels == 3 else "L"
                if img.mode != mode:
                    if not (img.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr") and mode == "RGB"):
                        self.notes.append(f"{path}: {img.mode} image converted to {mode}")
                    img = img.convert(mode)
                if min(img.size) < pre.input_size and not self.allow_upscale:
                    raise ImageError(f"{path}: the image is {img.size[0]}x{img.size[1]}, smaller than the "
                                     f"{pre.input_size}x{pre.input_size} crop (pass --allow-upscale to resize "
                                     "it up anyway)")
                return transform(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            if isinstance(e, ImageError):
                raise
            raise ImageError(f"{path}: cannot be read as an image ({type(e).__name__}: {e})") from None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _from_folder(path: Path, pre: Preprocessing, allow_upscale: bool) -> ImageSource:
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    flat = _image_files(path)
    if subdirs and not flat:
        files, labels = [], []
        for index, sub in enumerate(subdirs):
            found = [p for p in sorted(sub.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            files += found
            labels += [index] * len(found)
        if not files:
            raise ImageError(f"{path}: no image files in its {len(subdirs)} class folder(s) "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        return ImageSource(str(path), "folder", pre, files, np.array(labels, dtype=np.int64),
                           [s.name for s in subdirs], allow_upscale=allow_upscale)
    if not flat:
        raise ImageError(f"{path}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)}) and no class "
                         "subfolders")
    return ImageSource(str(path), "flat", pre, flat, allow_upscale=allow_upscale)


def _from_tensor_file(path: Path, pre: Preprocessing, encode) -> ImageSource:
    labels = None
    if path.suffix == ".npy":
        try:
            images = torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise ImageError(f"{path}: cannot be read as a .npy array: {e}") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch wraps unpickling problems in several types
            raise ImageError(f"{path}: cannot be read as a .pt tensor file: {e}") from None
        if isinstance(obj, dict):
            if "images" not in obj:
                raise ImageError(f"{path}: a dict needs the key 'images' (and optionally 'labels'); it has "
                                 f"{sorted(obj)}")
            images, labels = obj["images"], obj.get("labels")
        else:
            images = obj
        if not isinstance(images, Tensor):
            raise ImageError(f"{path}: 'images' must be a tensor, not {type(images).__name__}")
    want = (pre.channels, pre.input_size, pre.input_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != want:
        raise ImageError(f"{path}: images must be [N, {', '.join(map(str, want))}] for this model, not "
                         f"{list(images.shape)}")
    if len(images) == 0:
        raise ImageError(f"{path}: holds no images")
    if images.dtype == torch.uint8:
        pixels = images
        if int(pixels.max()) > pre.levels:
            raise ImageError(f"{path}: pixel value {int(pixels.max())} exceeds the top level {pre.levels}")
    elif images.dtype.is_floating_point:
        if encode is None:
            raise ImageError(f"{path}: a float tensor holds model inputs; reading it needs the program's input "
                             "encoding (give uint8 pixels to calibrate from it)")
        pixels = encode(images, source=str(path))
    else:
        raise ImageError(f"{path}: images must be uint8 pixels or float model inputs, not {images.dtype}")
    if labels is not None:
        labels = np.asarray(torch.as_tensor(labels), dtype=np.int64)
        if labels.shape != (len(pixels),):
            raise ImageError(f"{path}: labels must be [{len(pixels)}], not {list(labels.shape)}")
    return ImageSource(str(path), "tensor", pre, labels=labels, _pixels=pixels.contiguous())


def open_images(spec: str | os.PathLike, pre: Preprocessing, *, allow_upscale: bool = False,
                encode=None) -> ImageSource:
    """The image source named by ``spec`` (see the module docstring), preprocessed by ``pre``.

    ``encode(float_images, source=...)`` maps float model inputs onto the 8-bit grid (the program's
    input encoding); only tensor files of floats need it.

    Raises:
        ImageError: the source does not exist, is empty, or does not suit the model (naming the
            file, the value and what was expected).
    """
    text = str(spec)
    head, _, arg = text.partition(":")
    if head == "digits" and not Path(text).exists():
        return _digits(arg or "test", pre)
    if head == "events" and not Path(text).exists():
        return _events(arg or "test", pre)
    if head == "random" and not Path(text).exists():
        try:
            seed = int(arg or 0)
        except ValueError:
            raise ImageError(f"random:{arg}: the seed must be an integer") from None
        gen = torch.Generator().manual_seed(seed)
        frames = (pre.events["T"],) if pre.kind == "events" else ()     # random spike frames for an event model
        pixels = torch.randint(0, pre.levels + 1, (64, *frames, pre.channels, pre.input_size, pre.input_size),
                               generator=gen, dtype=torch.int64).to(torch.uint8)
        return ImageSource(f"random:{seed}", "random", pre, _pixels=pixels)
    path = Path(text)
    if not path.exists():
        raise ImageError(f"{path}: no such file or folder (an image folder, a .npy/.pt tensor file, "
                         "'digits', 'events' or 'random')")
    if path.is_dir():
        return _from_folder(path, pre, allow_upscale)
    if path.suffix in (".npy", ".pt", ".pth"):
        return _from_tensor_file(path, pre, encode)
    raise ImageError(f"{path}: not a folder and not a .npy/.pt tensor file")


def _digits(split: str, pre: Preprocessing) -> ImageSource:
    from golden.digits import PIXEL_LEVELS, load_digits_split

    if split not in ("train", "test"):
        raise ImageError(f"digits:{split}: the split must be 'train' or 'test'")
    if pre.kind != "digits" or pre.channels != 1:
        raise ImageError("digits: the digits are 1-channel images with 17 levels; this model takes "
                         f"{pre.channels}-channel photos")
    x_train, y_train, x_test, y_test = load_digits_split(size=pre.input_size)
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    pixels = torch.round(x * PIXEL_LEVELS).to(torch.uint8)
    return ImageSource(f"digits:{split}", "digits", pre, labels=y.numpy(), _pixels=pixels,
                       classes=[str(i) for i in range(10)])


def _events(split: str, pre: Preprocessing) -> ImageSource:
    """The digits split ``split`` recorded by the simulated event camera ``pre.events`` describes."""
    from golden.events import EventCamera, load_event_split

    if split not in ("train", "test"):
        raise ImageError(f"events:{split}: the split must be 'train' or 'test'")
    if pre.kind != "events":
        raise ImageError(f"events:{split}: event frames (2 polarity channels, one frame per timestep) are the "
                         f"input of an event model; this model takes {pre.channels}-channel {pre.kind} images")
    ev = pre.events
    frames, labels = load_event_split(ev["T"], size=pre.input_size, seed=ev.get("seed", 0),
                                      split_seed=ev.get("split_seed", 0), camera=EventCamera(**ev["camera"]),
                                      parts=(split,))[split]
    if frames.shape[2] != pre.channels:
        raise ImageError(f"events:{split}: the camera gives {frames.shape[2]} polarity channels, the model takes "
                         f"{pre.channels}")
    return ImageSource(f"events:{split}", "events", pre, labels=labels, _pixels=torch.from_numpy(frames),
                       classes=[str(i) for i in range(10)])
