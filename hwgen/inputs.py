"""The image-source options shared by ``hwgen quantize``, ``hwgen eval`` and ``hwgen sim``.

``--images SOURCE`` names a folder (``ImageFolder`` layout or flat), a ``.npy``/``.pt`` tensor file,
``digits[:train|test]`` or ``random[:SEED]`` (:func:`golden.images.open_images`); ``--start`` and
``--count`` select a range of it. ``hwgen quantize`` decides the preprocessing (reference pipeline
for the model's input size, every parameter overridable) and records it in the program header;
``eval`` and ``sim`` read it back from there, because the normalization is folded into the program's
encoding layer and must be the one the program was quantized with.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # golden.images imports torch: only when an image is needed, not for `hwgen check`
    from golden.images import ImageSource, Preprocessing

__all__ = ["add_image_options", "add_preprocessing_options", "is_digits_shape", "preprocessing_for_model",
           "preprocessing_of", "image_source"]


def add_image_options(p: argparse.ArgumentParser, *, default_help: str, select: bool = True) -> None:
    p.add_argument("--images", metavar="SOURCE",
                   help="image folder (ImageFolder layout: labelled; flat: unlabelled), .npy/.pt tensor file, "
                        f"'digits[:train|test]', 'events[:train|test]' (event frames, for an event model) or "
                        f"'random[:SEED]' ({default_help})")
    if select:
        p.add_argument("--start", type=int, default=0, help="first image of the source (default 0)")
        p.add_argument("--count", type=int, help="images from --start (default: all)")
    p.add_argument("--allow-upscale", action="store_true",
                   help="resize images smaller than the crop up instead of refusing them")


def add_preprocessing_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("preprocessing (default: the reference evaluation pipeline; recorded in the program)")
    g.add_argument("--crop-pct", type=float, help="shorter side resized to input_size / crop_pct before the "
                                                  "center crop (default 224/256 up to 224 pixels, else 1.0)")
    g.add_argument("--interpolation", choices=("bicubic", "bilinear", "nearest"), help="resize filter (bicubic)")
    g.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel mean (ImageNet's by default)")
    g.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std (ImageNet's by default)")


def is_digits_shape(channels: int, height: int, width: int, classes: int) -> bool:
    """The bundled digits models' input: 1 x 32 x 32, 10 classes, pixel levels 0..16."""
    return (channels, height, width, classes) == (1, 32, 32, 10)


def preprocessing_for_model(config: dict, args: argparse.Namespace, *, events: dict | None = None) -> "Preprocessing":
    """The preprocessing for a model's ``config`` (its constructor arguments) and the CLI overrides.
    ``events`` (the camera of a model trained on event frames, from its checkpoint: ``camera``,
    ``split_seed``), or ``--images events[:split]``: spike frames (golden.events), ``T`` of them."""
    from golden.images import Preprocessing

    c, h, w = config["in_channels"], config["img_size_h"], config["img_size_w"]
    if h != w:
        raise ValueError(f"img_size_h = {h}, img_size_w = {w}: the preprocessing crops square images")
    overrides = dict(crop_pct=args.crop_pct, interpolation=args.interpolation,
                     mean=tuple(args.mean) if args.mean else None, std=tuple(args.std) if args.std else None)
    if events is not None or str(args.images or "").startswith("events"):
        if any(v is not None for v in overrides.values()):
            raise ValueError("event frames are spikes, not photos: --crop-pct, --interpolation, --mean and --std "
                             "do not apply")
        events = events or {}
        return Preprocessing.event_frames(h, config["T"], events.get("camera"), split_seed=events.get("split_seed", 0),
                                          channels=c)
    if is_digits_shape(c, h, w, config["num_classes"]) and not any(v is not None for v in overrides.values()) \
            and (args.images is None or str(args.images).startswith("digits")):
        return Preprocessing.digits(h)
    return Preprocessing.reference(h, channels=c, **overrides)


def preprocessing_of(header: dict) -> "Preprocessing":
    """The preprocessing a program was quantized with (programs from before it was recorded: the
    digits one for digits-shaped programs)."""
    from golden.images import Preprocessing

    if "preprocessing" in header:
        return Preprocessing.from_dict({k: v for k, v in header["preprocessing"].items() if k != "resize"})
    c, h, w = header["input"]["shape"]
    if is_digits_shape(c, h, w, header.get("classes")):
        return Preprocessing.digits(h)
    raise ValueError("the program header records no preprocessing; quantize it again with this version")


def image_source(spec: str, pre: "Preprocessing", args: argparse.Namespace, *, encode=None) -> "ImageSource":
    """Open ``spec`` and select ``--start`` / ``--count`` (ImageError on bad input)."""
    from golden.images import open_images

    source = open_images(spec, pre, allow_upscale=getattr(args, "allow_upscale", False), encode=encode)
    start, count = getattr(args, "start", 0), getattr(args, "count", None)
    if start or count is not None:
        source = source.select(start, count)
    return source
