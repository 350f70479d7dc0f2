"""A user's inputs, made here: a reference-format checkpoint and a folder of real photos.

    python -m tools.example_inputs --out build/example

writes ``build/example/kd64.pth``: a Meta-SpikeFormer with a distillation head, 3-channel 64 x 64
input, dimensions no registered model has (embed_dim 16/32/64/96, 4 heads), random weights and
BatchNorm statistics, saved the way the reference training scripts save (``{"model", "args":
Namespace(model=..., time_steps=4, nb_classes=2, input_size=64, ...)}``); and
``build/example/photos/``: crops of scikit-learn's two bundled photos in the ``ImageFolder`` layout
(classes ``china`` and ``flower``). The README's "Your own checkpoint and photos" runs on them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from golden.checkpoint import save_checkpoint
from golden.model import MetaSpikeFormer, randomize_statistics
from golden.photos import write_photo_folder

#: what no registered constructor has: the dimensions, the heads, 2 classes, 64 x 64
EXAMPLE = dict(img_size_h=64, img_size_w=64, in_channels=3, num_classes=2, embed_dim=(16, 32, 64, 96),
               depths=(1, 1, 1, 1, 1, 1), num_heads=4, mlp_ratio=4, T=4, kd=True)


def reference_args(**kw) -> argparse.Namespace:
    """The reference scripts' Namespace (the fields the flow reads, and some it ignores)."""
    return argparse.Namespace(**{"model": "metaspikformer_8_256", "time_steps": 4, "nb_classes": 2,
                                 "input_size": 64, "batch_size": 32, "lr": 6e-4, "epochs": 200,
                                 "dist_eval": False, **kw})


def write_checkpoint(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = MetaSpikeFormer(**EXAMPLE)
    randomize_statistics(model, seed, negative_scales=0.05)
    return save_checkpoint(model, path, reference_args(), epoch=199)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="build/example", help="output folder (default build/example)")
    p.add_argument("--per-class", type=int, default=8, help="photo crops per class (default 8)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = write_checkpoint(out / "kd64.pth", args.seed)
    photos = write_photo_folder(out / "photos", per_class=args.per_class, size=96, seed=args.seed)
    print(f"wrote {ckpt} (kd, 3 x 64 x 64, embed_dim 16/32/64/96, 4 heads, T = 4) and {photos} "
          f"({2 * args.per_class} photos, 2 classes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
