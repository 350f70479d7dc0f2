"""Train the digits Meta-SpikeFormer on event-camera recordings of the digits (:mod:`golden.events`).

Usage::

    python -m tools.train_events                    # T = 2, 15 epochs -> checkpoints/events_sdsa3_t2.pth

(checkpoints/README.md lists the exact command of the committed checkpoint.)

The model is the digits model (:data:`golden.digits.DIGITS_MODEL_DEFAULTS`: all four stages,
152k parameters) with two input channels, the OFF and ON polarities of the binary event frames
``[T, B, 2, 32, 32]``, one frame per timestep: the encoding conv reads spikes. The data are the
digits' fixed split (:func:`golden.events.load_event_split`) seen by the default
:class:`golden.events.EventCamera`: the test split with motion seed 0, as ``hwgen`` reads it
(``--images events:test``); training cycles through ``--motions`` other recordings of the training
images (motion seeds 1 .. N, one per epoch in turn: each epoch sees the digits under another
camera motion), with the digits' random shifts on top (the same shift for every frame of a
recording).

Determinism: ``--seed`` seeds the model init (torch), the batch order and the shifts (a private
``torch.Generator``); deterministic algorithms and a fixed thread count (``--threads``); the event
simulator is seeded by the motion seed alone. Training as for the digits (tools/train_digits.py):
AdamW (no decay on 1-D parameters), batch 32, cosine learning rate with linear warmup, label
smoothing 0.1, the BN-bias initialisation that keeps the spikes alive (``init_firing``). The
checkpoint holds the last epoch's weights (no selection on the test split) and in ``args`` every
builder argument, the training arguments, the camera (``events_camera``), ``train_acc``,
``test_acc`` (eval mode, motion seed 0) and ``wall_time_s``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from golden.digits import DIGITS_MODEL_DEFAULTS, build_model_from_args, random_shift
from golden.events import EventCamera, load_event_split
from tools.train_digits import (init_firing, optimizer_and_schedule, save_trained, seed_everything, train_step,
                                 training_args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.train_events", description=__doc__.split("\n")[0])
    p.add_argument("--T", type=int, default=2, help="timesteps = event frames per recording (default 2)")
    p.add_argument("--sdsa", type=int, default=3, choices=(1, 2, 3, 4), help="SDSA variant (default 3)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--out", type=Path, default=None, help="default checkpoints/events_sdsa{S}_t{T}.pth")
    p.add_argument("--seed", type=int, default=0, help="model init, batch order and shifts")
    p.add_argument("--motions", type=int, default=6,
                   help="camera motions of the training images, cycled one per epoch (seeds 1..N)")
    p.add_argument("--split-seed", type=int, default=0, help="the digits' train/test split")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--warmup", type=float, default=1.0, help="warmup epochs, linear")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--shift", type=int, default=1, help="max random shift in native (8x8) pixels")
    p.add_argument("--shift-prob", type=float, default=0.3, help="share of training recordings shifted")
    p.add_argument("--qkv-bias-init", type=float, default=2.0, help="see tools.train_digits.init_firing")
    p.add_argument("--bn-bias-init", type=float, default=0.7, help="see tools.train_digits.init_firing")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init", type=Path, default=None,
                   help="start from a digits checkpoint: every weight whose shape matches (all but the "
                        "encoding conv, which reads 2 polarities instead of 1 intensity channel)")
    return p.parse_args(argv)


def warm_start(model: torch.nn.Module, path: Path) -> list[str]:
    """Copy every tensor of checkpoint ``path`` whose key and shape match ``model``'s; returns the
    keys copied (the rest keep their initialisation)."""
    from golden.checkpoint import read_checkpoint

    src = read_checkpoint(path)["model"]
    own = model.state_dict()
    keys = [k for k, v in src.items() if k in own and own[k].shape == v.shape]
    model.load_state_dict({**own, **{k: src[k] for k in keys}})
    return keys


def time_major(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames ``[B, T, 2, H, W]`` -> the model's float input ``[T, B, 2, H, W]``."""
    return torch.from_numpy(frames).to(torch.float32).transpose(0, 1)


@torch.no_grad()
def accuracy(model: torch.nn.Module, frames: np.ndarray, labels: np.ndarray, batch: int = 256) -> float:
    """Top-1 of ``model`` in eval mode on ``frames`` ``[N, T, 2, H, W]`` (restores the mode)."""
    was = model.training
    model.eval()
    correct = 0
    try:
        for i in range(0, len(labels), batch):
            logits = model(time_major(frames[i:i + batch]))
            correct += int((logits.argmax(1).numpy() == labels[i:i + batch]).sum())
    finally:
        model.train(was)
    return correct / len(labels)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    seed_everything(args.seed)
    t_start = time.perf_counter()
    camera = EventCamera()
    cfg = dict(DIGITS_MODEL_DEFAULTS, in_channels=2, T=args.T, sdsa_variant=args.sdsa)
    size = cfg["img_size_h"]
    out = args.out or Path(f"checkpoints/events_sdsa{args.sdsa}_t{args.T}.pth")

    def split(seed: int, part: str):
        return load_event_split(args.T, size=size, seed=seed, split_seed=args.split_seed, camera=camera,
                                parts=(part,))[part]

    f_test, y_test = split(0, "test")
    f_train0, y_train = split(0, "train")
    motions: dict[int, np.ndarray] = {}

    model = build_model_from_args(cfg)
    init_firing(model, args.qkv_bias_init, args.bn_bias_init)
    if args.init is not None:
        loaded = warm_start(model, args.init)
        print(f"init: {len(loaded)} tensors from {args.init}", flush=True)
    print(f"model: {cfg}\nparameters: {sum(p.numel() for p in model.parameters())}  train {len(y_train)}  "
          f"test {len(y_test)}  frame rate (test) {f_test.mean():.3f}  threads {torch.get_num_threads()}",
          flush=True)
    opt, lr_at = optimizer_and_schedule(model, args, len(y_train))
    gen = torch.Generator().manual_seed(args.seed)
    labels = torch.from_numpy(y_train)
    step = 0
    for epoch in range(args.epochs):
        motion = 1 + epoch % args.motions
        if motion not in motions:
            motions[motion] = split(motion, "train")[0]
        frames = motions[motion]
        model.train()
        perm = torch.randperm(len(y_train), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i:i + args.batch_size]
            x = torch.from_numpy(frames[idx.numpy()]).to(torch.float32)         # [b, T, 2, S, S]
            b = len(idx)
            x = random_shift(x.reshape(b, -1, size, size), args.shift, gen, args.shift_prob).reshape(x.shape)
            y = labels[idx]
            loss, right = train_step(model, opt, lr_at(step), x.transpose(0, 1), y, args.label_smoothing)
            step += 1
            loss_sum, correct, seen = loss_sum + loss, correct + right, seen + b
        test_acc = accuracy(model, f_test, y_test)
        print(f"epoch {epoch + 1:3d}/{args.epochs}  motion {motion}  loss {loss_sum / seen:.4f}  "
              f"train acc (augmented) {correct / seen:.4f}  test acc {test_acc:.4f}  lr {lr_at(step - 1):.2e}  "
              f"elapsed {time.perf_counter() - t_start:6.1f}s", flush=True)

    train_acc = accuracy(model, f_train0, y_train)
    test_acc = accuracy(model, f_test, y_test)
    wall = time.perf_counter() - t_start
    saved = argparse.Namespace(
        **cfg, dataset="sklearn_digits_events", events_camera=camera.as_dict(),
        argv=list(sys.argv[1:] if argv is None else argv), **training_args(args), motions=args.motions,
        qkv_bias_init=args.qkv_bias_init, bn_bias_init=args.bn_bias_init,
        train_acc=train_acc, test_acc=test_acc, wall_time_s=round(wall, 1),
    )
    save_trained(model, out, saved, args.epochs,
                 f"final (eval mode, motion seed 0): train acc {train_acc:.4f}  test acc {test_acc:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
