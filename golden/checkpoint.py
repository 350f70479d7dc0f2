"""Loading and saving Meta-SpikeFormer checkpoints, strictly.

Accepted formats (detected in this order):

1. Reference training scripts: ``{"model": state_dict, "args": argparse.Namespace, "epoch": ...,
   "optimizer": ..., "scaler": ...}``.
2. Detection/segmentation (mmdet/mmseg style): ``{"state_dict": {...}}`` whose backbone keys
   carry a ``backbone.`` prefix; keys outside ``backbone.`` (neck, decode head...) are ignored
   and listed in :attr:`CheckpointInfo.ignored_keys`.
3. A bare state dict ``{key: tensor}``.

A ``module.`` prefix (DistributedDataParallel) on every key is stripped too. The key names of the
reference code are the names of :class:`golden.model.MetaSpikeFormer`, so no other renaming is
needed. Anything that does not match the model exactly (missing keys, unexpected keys, wrong
shapes) raises :class:`CheckpointError` listing them: there is never a silent partial load. So does
a NaN or infinite value in any weight or BatchNorm statistic, naming the tensor and where.

``torch.load`` runs with ``weights_only=True`` and an allowlist holding ``argparse.Namespace``
(the reference pickles its ``args``), which PyTorch >= 2.6 needs. A checkpoint that pickles other
objects needs ``trusted=True`` (``weights_only=False``: only for files you trust).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "read_checkpoint",
    "checkpoint_filter_fn",
    "check_finite",
    "load_checkpoint",
    "save_checkpoint",
]

#: prefixes stripped when *every* key has them, in this order.
_STRIP_PREFIXES = ("module.",)
#: backbone prefix of detection/segmentation checkpoints: only these keys are kept.
_BACKBONE_PREFIX = "backbone."
#: how many keys of each kind an error message lists.
_SHOW = 5


class CheckpointError(Exception):
    """A checkpoint cannot be read or does not match the model.

    Attributes:
        missing: keys the model has and the checkpoint lacks.
        unexpected: keys the checkpoint has and the model lacks.
        mismatched: ``(key, model_shape, checkpoint_shape)`` triples.
    """

    def __init__(self, message: str, *, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


@dataclass
class CheckpointInfo:
    """What :func:`load_checkpoint` found besides the weights.

    Attributes:
        format: ``"model"`` (reference), ``"state_dict"`` (detection/segmentation) or ``"bare"``.
        args: the pickled training ``argparse.Namespace``, if any.
        epoch: the stored epoch, if any.
        ignored_keys: checkpoint keys deliberately left out (non-backbone keys of format 2).
    """

    format: str
    args: argparse.Namespace | None = None
    epoch: int | None = None
    ignored_keys: list[str] = field(default_factory=list)


def read_checkpoint(path: str | os.PathLike, *, trusted: bool = False) -> object:
    """``torch.load`` a checkpoint file on the CPU (``weights_only`` with a Namespace allowlist).

    Raises:
        CheckpointError: the file is missing or holds objects outside the allowlist (the message
            says to pass ``trusted=True`` if the file is trusted).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if trusted:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch wraps every unpickling problem in UnpicklingError
        if "Unsupported global" in str(exc):
            raise CheckpointError(
                f"checkpoint {path} pickles objects outside the allowlist (argparse.Namespace); "
                f"pass trusted=True to load it with weights_only=False if you trust the file.\n{exc}"
            ) from exc
        raise CheckpointError(f"cannot read checkpoint {path} (not a torch.save file?): {exc}") from exc


def _unwrap(obj: object) -> tuple[str, Mapping, dict]:
    """Split a loaded checkpoint into (format, raw state dict, metadata)."""
    if isinstance(obj, nn.Module):
        raise CheckpointError("expected a checkpoint dict, got a whole nn.Module; pass module.state_dict()")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint must be a dict, not {type(obj).__name__}")
    for fmt in ("model", "state_dict"):
        if isinstance(obj.get(fmt), Mapping):
            return fmt, obj[fmt], {"args": obj.get("args"), "epoch": obj.get("epoch")}
    non_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise CheckpointError(
            "checkpoint is neither {'model': state_dict, ...}, {'state_dict': ...} nor a bare "
            f"state dict; top-level keys: {_preview(list(obj))}"
        )
    return "bare", obj, {}


def _preview(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def _strip(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Apply the prefix rules; returns (state dict, ignored keys)."""
    state = dict(state)
    ignored: list[str] = []
    if any(k.startswith(_BACKBONE_PREFIX) for k in state):
        ignored = [k for k in state if not k.startswith(_BACKBONE_PREFIX)]
        state = {k[len(_BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(_BACKBONE_PREFIX)}
    for prefix in _STRIP_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state, ignored


def _check_against(state: Mapping[str, Tensor], model: nn.Module) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly ``model``'s keys and shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        (k, tuple(expected[k].shape), tuple(state[k].shape))
        for k in expected
        if k in state and tuple(expected[k].shape) != tuple(state[k].shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"checkpoint does not match {type(model).__name__}:"]
    if missing:
        lines.append(f"  {len(missing)} missing key(s) (in the model, not in the checkpoint): {_preview(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected key(s) (in the checkpoint, not in the model): "
                     f"{_preview(unexpected)}")
    if mismatched:
        shown = "; ".join(f"{k}: model expects {e}, checkpoint has {g}" for k, e, g in mismatched[:_SHOW])
        more = f"; ... ({len(mismatched) - _SHOW} more)" if len(mismatched) > _SHOW else ""
        lines.append(f"  {len(mismatched)} mis-shaped key(s): {shown}{more}")
    # Hints for the two configuration mismatches that are easy to make.
    if any(k.startswith("head_kd.") for k in unexpected):
        lines.append("  hint: the checkpoint has a distillation head: build the model with kd=True")
    if any(k.startswith("head_kd.") for k in missing):
        lines.append("  hint: the checkpoint has no distillation head: build the model with kd=False")
    if any(k.endswith("attn_lif.v_threshold") for k in missing + unexpected):
        lines.append("  hint: learnable attention thresholds belong to sdsa_variant=4")
    if any(".attn.k_conv." in k for k in missing + unexpected):
        lines.append("  hint: k_conv is absent only with sdsa_variant=2")
    raise CheckpointError("\n".join(lines), missing=missing, unexpected=unexpected, mismatched=mismatched)


def check_finite(state: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming every tensor with a NaN or an infinity (weights and
    BatchNorm statistics alike), with counts and the first bad index."""
    bad = []
    for key, t in state.items():
        if not (isinstance(t, Tensor) and t.is_floating_point()):
            continue
        finite = torch.isfinite(t)
        if bool(finite.all()):
            continue
        nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        first = tuple(int(i) for i in (~finite).nonzero()[0]) if t.dim() else ()
        bad.append(f"{key}: {nan} NaN, {inf} infinite value(s) of {t.numel()}, first at index {list(first)}")
    if bad:
        more = f"\n  ... ({len(bad) - _SHOW} more tensors)" if len(bad) > _SHOW else ""
        raise CheckpointError(f"{source} has non-finite values:\n  " + "\n  ".join(bad[:_SHOW]) + more)


def checkpoint_filter_fn(obj: object, model: nn.Module | None = None) -> dict[str, Tensor]:
    """Turn a loaded checkpoint (any accepted format) into a state dict for ``model``.

    Unwraps ``"model"`` / ``"state_dict"``, keeps only ``backbone.*`` keys when that prefix
    is present, strips the ``backbone.`` / ``module.`` prefixes, and, when ``model`` is given,
    checks keys and shapes exactly.

    Raises:
        CheckpointError: unknown format, or (with ``model``) missing / unexpected / mis-shaped
            keys, each listed (first few, with counts; shapes as model vs checkpoint).
    """
    _, raw, _ = _unwrap(obj)
    state, _ = _strip(raw)
    if model is not None:
        _check_against(state, model)
    return state


def load_checkpoint(path_or_obj: str | os.PathLike | Mapping, model: nn.Module, *,
                    trusted: bool = False) -> CheckpointInfo:
    """Load a checkpoint file (or an already loaded checkpoint object) into ``model``, strictly.

    Args:
        path_or_obj: a file path, or the object ``torch.load`` returned.
        model: the model to fill (its configuration must match: kd, sdsa_variant, dims).
        trusted: allow arbitrary pickled objects (``weights_only=False``).

    Returns:
        :class:`CheckpointInfo` with the format, ``args``, ``epoch`` and ignored keys.

    Raises:
        CheckpointError: see :func:`checkpoint_filter_fn`; the model is left untouched.
    """
    obj = path_or_obj if isinstance(path_or_obj, Mapping) else read_checkpoint(path_or_obj, trusted=trusted)
    fmt, raw, meta = _unwrap(obj)
    state, ignored = _strip(raw)
    _check_against(state, model)
    check_finite(state, "checkpoint" if isinstance(path_or_obj, Mapping) else str(path_or_obj))
    model.load_state_dict(state, strict=True)
    args = meta.get("args")
    return CheckpointInfo(
        format=fmt,
        args=args if isinstance(args, argparse.Namespace) else None,
        epoch=meta.get("epoch"),
        ignored_keys=ignored,
    )


def save_checkpoint(model: nn.Module, path: str | os.PathLike, args: argparse.Namespace | None = None,
                    *, epoch: int | None = None) -> Path:
    """Write ``{"model": state_dict, "args": Namespace, "epoch": epoch}`` (reference format) atomically.

    The file is written to a temporary file in the same folder, synced, then renamed over
    ``path`` with ``os.replace``: readers see the old file or the complete new one, never a
    partial file. Without ``args``, ``model.config`` (if any) is stored as the Namespace.
    Tensors are saved on the CPU.

    Returns:
        the path written.
    """
    path = Path(path)
    if args is None:
        args = argparse.Namespace(**getattr(model, "config", {}))
    payload = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "args": args,
        "epoch": epoch,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
