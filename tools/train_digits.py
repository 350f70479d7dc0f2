"""Train a small four-stage Meta-SpikeFormer on scikit-learn's 8x8 digits (see :mod:`golden.digits`).

Usage::

    python -m tools.train_digits                   # SDSA-3, T=1 -> checkpoints/digits_sdsa3_t1.pth
    python -m tools.train_digits --sdsa 1          # SDSA-1, T=1 -> checkpoints/digits_sdsa1_t1.pth
    python -m tools.train_digits --T 4 --init checkpoints/digits_sdsa3_t1.pth   # -> ..._sdsa3_t4.pth

(checkpoints/README.md lists the exact commands of the committed checkpoints.)

The model has all four stages (conv blocks in stages 1-2, transformer blocks with SDSA in stages
3-4; :data:`golden.digits.DIGITS_MODEL_DEFAULTS`). ``--init`` fine-tunes from a checkpoint
(typically T=1 to T=4, as the paper does): the architecture then comes from that checkpoint's
``args`` and only ``T`` (and nothing else) may differ.

Determinism: ``--seed`` seeds Python, NumPy and torch (model init), and a private
``torch.Generator`` drives the batch order and the shift augmentation; deterministic algorithms
are enforced and the thread count is fixed (``--threads``, default 2), so a rerun with the same
arguments on the same machine reproduces the same weights. The data split is fixed by
``--split-seed`` (:func:`golden.digits.load_digits_split`).

Training: AdamW (no decay on 1-D parameters), batch 32, per-step cosine learning rate with linear
warmup (from scratch: 40 epochs, peak 2e-3, 2 warmup epochs; with ``--init``: 8 epochs, 5e-4, no
warmup), cross-entropy with label smoothing 0.1, BN-bias initialisation that keeps the spikes alive
at the start (:func:`init_firing`; from scratch only), augmentation by random shifts of up to ``--shift`` native pixels (multiples of
``size/8`` after upsampling, zero fill, so inputs stay ``k/16``). The checkpoint holds the weights
of the *last* epoch (no selection on the test split), written with
:func:`golden.checkpoint.save_checkpoint` in the reference format; its ``args`` Namespace holds
every model-builder argument (:data:`golden.digits.MODEL_ARG_NAMES`), the training arguments, and
the final ``train_acc`` / ``test_acc`` (eval mode) and ``wall_time_s``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from golden.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from golden.digits import (
    DIGITS_MODEL_DEFAULTS,
    MODEL_ARG_NAMES,
    build_model_from_args,
    evaluate,
    load_digits_split,
    random_shift,
)
from golden.model import ARCHITECTURE_OPTIONS, MSAttention
from golden.model_args import ModelArgError, parse_model_args


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace(",", " ").split())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = DIGITS_MODEL_DEFAULTS
    p = argparse.ArgumentParser(prog="python -m tools.train_digits", description=__doc__.split("\n")[0])
    p.add_argument("--T", type=int, default=None, help="timesteps (default 1, or the --init checkpoint's)")
    p.add_argument("--sdsa", type=int, default=None, choices=(1, 2, 3, 4),
                   help="SDSA variant (default 3, or the --init checkpoint's)")
    p.add_argument("--epochs", type=int, default=None, help="default 40, or 8 with --init")
    p.add_argument("--out", type=Path, default=None,
                   help="checkpoint path (default checkpoints/digits_sdsa{S}_t{T}.pth)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this checkpoint (architecture from its args; T may change)")
    p.add_argument("--seed", type=int, default=0, help="model init, batch order and augmentation")
    p.add_argument("--split-seed", type=int, default=0, help="train/test split (load_digits_split)")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--size", type=int, default=d["img_size_h"], help="input side (multiple of 8)")
    p.add_argument("--embed-dim", type=_ints, default=d["embed_dim"], help="e0,e1,e2,e3")
    p.add_argument("--depths", type=_ints, default=d["depths"], help="6 (per block list) or 4 (per stage)")
    p.add_argument("--num-heads", type=int, default=d["num_heads"])
    p.add_argument("--mlp-ratio", type=float, default=d["mlp_ratio"])
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="more constructor arguments, as hwgen quantize takes them (repeatable; from scratch "
                        "only): the Table 5 options, e.g. shortcut=sew, blocks=conv (golden.model.ABLATIONS)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3, or 5e-4 with --init)")
    p.add_argument("--min-lr", type=float, default=1e-5, help="final cosine learning rate")
    p.add_argument("--warmup", type=float, default=None, help="warmup epochs, linear (default 2, or 0 with --init)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--shift", type=int, default=1, help="max random shift in native (8x8) pixels")
    p.add_argument("--shift-prob", type=float, default=0.3, help="share of training images shifted")
    p.add_argument("--qkv-bias-init", type=float, default=2.0,
                   help="initial bias of the q/k/v output BNs (ignored with --init); see init_firing")
    p.add_argument("--bn-bias-init", type=float, default=0.7,
                   help="initial bias of every other BN outside RepConv bodies (ignored with --init)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    fine_tune = args.init is not None
    if args.epochs is None:
        args.epochs = 8 if fine_tune else 40
    if args.lr is None:
        args.lr = 5e-4 if fine_tune else 2e-3
    if args.warmup is None:
        args.warmup = 0.0 if fine_tune else 2.0
    return args


def model_config(args: argparse.Namespace) -> dict:
    """Builder arguments: from the --init checkpoint's args (T, sdsa checked) or from the CLI."""
    if args.init is not None:
        init_args = read_checkpoint(args.init).get("args")
        if not isinstance(init_args, argparse.Namespace):
            raise SystemExit(f"--init {args.init}: checkpoint has no args Namespace")
        if args.model_arg:
            raise SystemExit("--model-arg: with --init the architecture comes from the init checkpoint")
        cfg = {k: getattr(init_args, k) for k in MODEL_ARG_NAMES}
        cfg.update({k: getattr(init_args, k) for k in ARCHITECTURE_OPTIONS if getattr(init_args, k, None) is not None})
        if args.sdsa is not None and args.sdsa != cfg["sdsa_variant"]:
            raise SystemExit(f"--sdsa {args.sdsa} conflicts with --init's sdsa_variant {cfg['sdsa_variant']}")
        if args.T is not None:
            cfg["T"] = args.T
        if args.size != cfg["img_size_h"]:
            print(f"note: --size {args.size} differs from the init checkpoint's {cfg['img_size_h']}; "
                  f"using {cfg['img_size_h']}")
        return cfg
    cfg = dict(
        DIGITS_MODEL_DEFAULTS,
        img_size_h=args.size, img_size_w=args.size, embed_dim=tuple(args.embed_dim),
        depths=tuple(args.depths), num_heads=args.num_heads, mlp_ratio=args.mlp_ratio,
        T=1 if args.T is None else args.T, sdsa_variant=3 if args.sdsa is None else args.sdsa,
    )
    try:
        cfg.update(parse_model_args(args.model_arg))
    except ModelArgError as e:
        raise SystemExit(str(e)) from None
    return cfg


def init_firing(model: torch.nn.Module, qkv_bias: float, bn_bias: float = 0.0) -> None:
    """Initial BN biases that keep the spikes alive at the start of training.

    ``qkv_bias`` goes to the outer BN of every q/k/v RepConv. With 4 tokens per image, Q, K, V
    neurons firing at the ~3% rate of a freshly initialised network almost never reach the SDSA-3
    threshold (``A = Q K^T V >= 8``) or, for SDSA-1, a nonzero token count, so ``attn_lif`` never
    fires, ``proj_conv`` sees an all-zero input and its three training-mode BNs (variance 0)
    multiply the gradient by ``1/sqrt(eps)`` each (~3e7 in all), which wrecks training. A bias of
    2 puts the BN output mean at the firing point (``H = x/2 >= 1`` at t=0), so about half of them
    fire at the start.

    ``bn_bias`` goes to every other BN outside the RepConv bodies (the BNs whose outputs reach a
    neuron or a residual sum), raising the initial firing rate of the rest of the network.
    """
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and ".body." not in name:
                m.bias.fill_(bn_bias)
        for attn in (m for m in model.modules() if isinstance(m, MSAttention)):   # in any block list
            for name in ("q_conv", "k_conv", "v_conv"):
                conv = getattr(attn, name, None)
                if conv is not None:
                    conv[1].bias.fill_(qkv_bias)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def optimizer_and_schedule(model: torch.nn.Module, args, n_train: int):
    """AdamW without weight decay on BN and biases (1-D parameters), and the learning rate per
    step: linear warmup over ``args.warmup`` epochs, then cosine from ``args.lr`` to ``args.min_lr``."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = math.ceil(n_train / args.batch_size)
    total = args.epochs * steps_per_epoch
    warm = int(round(args.warmup * steps_per_epoch))

    def lr_at(step: int) -> float:
        if step < warm:
            return args.lr * (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1.0 + math.cos(math.pi * progress))

    return opt, lr_at


def train_step(model: torch.nn.Module, opt, lr: float, x: torch.Tensor, y: torch.Tensor,
               label_smoothing: float) -> tuple[float, int]:
    """One optimizer step on a batch at learning rate ``lr``: (summed loss, correct predictions)."""
    for group in opt.param_groups:
        group["lr"] = lr
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach()) * len(y), int((logits.detach().argmax(1) == y).sum())


def training_args(args) -> dict:
    """The training settings a checkpoint's ``args`` records (besides the model's)."""
    keys = ("epochs", "seed", "split_seed", "batch_size", "lr", "min_lr", "warmup", "weight_decay",
            "label_smoothing", "shift", "shift_prob", "threads")
    return {**{k: getattr(args, k) for k in keys}, "init": None if args.init is None else str(args.init)}


def save_trained(model: torch.nn.Module, out: Path, saved: argparse.Namespace, epochs: int, summary: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out, saved, epoch=epochs)
    print(summary)
    print(f"wall time {saved.wall_time_s:.1f}s  saved {out} ({os.path.getsize(out) / 1024:.0f} KiB)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    seed_everything(args.seed)
    t_start = time.perf_counter()

    cfg = model_config(args)
    size = cfg["img_size_h"]
    out = args.out or Path(f"checkpoints/digits_sdsa{cfg['sdsa_variant']}_t{cfg['T']}.pth")
    x_train, y_train, x_test, y_test = load_digits_split(
        size=size, seed=args.split_seed, test_fraction=args.test_fraction)

    model = build_model_from_args(cfg)
    if args.init is not None:
        load_checkpoint(args.init, model)
    else:
        init_firing(model, args.qkv_bias_init, args.bn_bias_init)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {cfg}\nparameters: {n_params}  train {len(y_train)}  test {len(y_test)}  "
          f"threads {torch.get_num_threads()}", flush=True)

    opt, lr_at = optimizer_and_schedule(model, args, len(y_train))
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(y_train), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i:i + args.batch_size]
            x = random_shift(x_train[idx], args.shift, gen, args.shift_prob)
            y = y_train[idx]
            loss, right = train_step(model, opt, lr_at(step), x, y, args.label_smoothing)
            step += 1
            loss_sum, correct, seen = loss_sum + loss, correct + right, seen + len(y)
        test_acc = evaluate(model, x_test, y_test)
        print(f"epoch {epoch + 1:3d}/{args.epochs}  loss {loss_sum / seen:.4f}  "
              f"train acc (augmented, train mode) {correct / seen:.4f}  test acc {test_acc:.4f}  "
              f"lr {lr_at(step - 1):.2e}  elapsed {time.perf_counter() - t_start:6.1f}s", flush=True)

    train_acc = evaluate(model, x_train, y_train)
    test_acc = evaluate(model, x_test, y_test)
    wall = time.perf_counter() - t_start
    saved = argparse.Namespace(
        **cfg,
        dataset="sklearn_digits", argv=list(sys.argv[1:] if argv is None else argv),
        **training_args(args), test_fraction=args.test_fraction,
        qkv_bias_init=None if args.init is not None else args.qkv_bias_init,
        bn_bias_init=None if args.init is not None else args.bn_bias_init,
        train_acc=train_acc, test_acc=test_acc, wall_time_s=round(wall, 1),
    )
    save_trained(model, out, saved, args.epochs, f"final (eval mode): train acc {train_acc:.4f}  test acc {test_acc:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
