"""Quantize-and-export: checkpoint -> program folder (the input of the RTL and of replays).

Folder layout (written atomically: assembled in a temporary sibling, renamed on success)::

    program.json        header + layer descriptors (docs/program.md)
    arrays.npz          integer weights, biases, thresholds by "<layer>.<role>"
    traces.npz          for the sample images: "input" (integer pixels [B, C, H, W], or spike
                        frames [B, T, C, H, W] for a spike-input program), every
                        layer's output "<layer>" ([T, B, ...]: currents, spikes, sums), LIF
                        pre-reset membranes "<layer>.membrane", "labels", "float_logits"

The hardware side adds what is about its word layout (``hwgen quantize`` writes ``memories/``
through the ``extra`` hook of :func:`export_program`, inside the same atomic folder).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from contract.fsutil import atomic_output_dir
from contract.program import Program, write_program_files
from golden.encoding import input_over_time, input_per_image
from golden.intsim import IntegerEngine

__all__ = ["load_model", "export_program", "replay", "load_traces"]


def build_model(checkpoint: str | Path | None, *, model_name: str | None = None,
                overrides: dict | None = None, random_init: int | None = None):
    """Build the float model a checkpoint holds and load its weights (``random_init``: a seed for
    random weights and BatchNorm statistics instead of a checkpoint).

    The constructor arguments come from :func:`golden.model_args.resolve`: the registered name's
    defaults, the weights' shapes, the checkpoint's ``args`` and ``overrides`` (CLI), in that
    precedence. Returns ``(model in eval mode, ModelSpec)``.

    Raises:
        CheckpointError: unreadable file, keys or shapes that do not match, non-finite values.
        ModelArgError: no model can be named, or an argument has the wrong type.
    """
    from golden.checkpoint import _strip, _unwrap, load_checkpoint, read_checkpoint
    from golden.model import randomize_statistics
    from golden.model_args import resolve

    if random_init is not None:
        torch.manual_seed(random_init)   # before the model is built: its initial weights are the random ones
    args, state, source = None, None, "--random-init"
    obj = None
    if checkpoint is not None:
        obj = read_checkpoint(checkpoint, trusted=True)
        _, raw, meta = _unwrap(obj)
        state, _ = _strip(raw)
        args, source = meta.get("args"), str(checkpoint)
    spec = resolve(model_name=model_name, args=args, state=state, overrides=overrides, source=source)
    try:
        model = spec.build()
    except (TypeError, ValueError) as e:
        from golden.model_args import ModelArgError
        raise ModelArgError(f"{source}: cannot build {spec.describe()}: {e}") from None
    if random_init is not None:
        randomize_statistics(model, random_init)  # non-trivial eval statistics, so folding matters
    else:
        load_checkpoint(obj, model)
    return model.eval(), spec


def load_model(checkpoint: str | Path | None, *, model_name: str | None = None, random_init: int | None = None,
               **model_kwargs):
    """The float model of a checkpoint (or ``random_init``), ``model_kwargs`` overriding its
    constructor arguments: :func:`build_model` without the spec."""
    return build_model(checkpoint, model_name=model_name, overrides=model_kwargs, random_init=random_init)[0]


def _trace_arrays(env: dict[str, torch.Tensor], header: dict) -> dict[str, np.ndarray]:
    out = {}
    for name, t in env.items():
        if name == "input":   # the image itself (the engine repeats it over T), or the spike frames [B, T, ...]
            t = input_per_image(header, t)
        a = t.numpy()
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        dtype = np.int8 if -128 <= lo and hi <= 127 else (np.int32 if -2**31 <= lo and hi < 2**31 else np.int64)
        out[name] = a.astype(dtype)
    return out


def export_program(program: Program, out: str | Path, *, images: torch.Tensor | None = None,
                   pixels: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                   float_logits: torch.Tensor | None = None, force: bool = False, log=print,
                   extra: Callable[[Path], None] | None = None) -> Path:
    """Write the program folder; with sample ``pixels`` (the integer input ``[B, C, H, W]``), or
    float ``images`` that the program's input encoding turns into pixels, also run the engine and
    write traces. ``extra(folder)`` writes more into the folder before it is renamed into place (an
    exception there leaves nothing written)."""
    out = Path(out)
    with atomic_output_dir(out, force=force) as tmp:
        if extra is not None:
            extra(tmp)
        write_program_files(program, tmp)
        if images is not None or pixels is not None:
            engine = IntegerEngine(program)
            pixels = engine.encode(images) if pixels is None else pixels.to(torch.int64)
            env = engine.run(pixels)
            arrays = _trace_arrays(env, program.header)
            if labels is not None:
                arrays["labels"] = labels.numpy().astype(np.int64)
            if float_logits is not None:
                arrays["float_logits"] = float_logits.numpy()
            np.savez_compressed(tmp / "traces.npz", **arrays)
            log(f"traces: {len(pixels)} sample(s), {len(arrays)} tensors")
    return out


def load_traces(folder: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(folder) / "traces.npz") as npz:
        return {k: npz[k] for k in npz.files}


def replay(program: Program, traces: dict[str, np.ndarray]) -> list[str]:
    """Run every layer on its inputs *taken from the traces* and compare with the traced output.
    Returns the mismatches (empty when the export replays bit-exactly)."""
    from contract.compare import first_mismatch
    from contract.program import KINDS
    from golden.kinds import golden_kind

    engine = IntegerEngine(program)
    env = {k: torch.from_numpy(v.astype(np.int64)) for k, v in traces.items() if k not in ("labels", "float_logits")}
    env["input"] = input_over_time(program.header, env["input"])
    problems = []
    for layer in program.layers:
        out = engine.run_layer(layer, *(env[n] for n in layer.inputs))
        membrane = golden_kind(layer.kind).membrane_output
        got = {layer.name: out[0], f"{layer.name}.membrane": out[1]} if membrane else {layer.name: out}
        for name, value in got.items():
            if KINDS[layer.kind].per_timestep:
                axes = ("timestep", "image", "channel", "y", "x")[: value.dim()]
            else:
                axes = ("image", "class")
            found = first_mismatch(env[name].numpy(), value.to(torch.int64).numpy(), axes)
            if found is not None:
                idx, e, g = found
                problems.append(f"{name}: at {dict(zip(axes, idx))} traced {e}, replayed {g}")
    return problems
