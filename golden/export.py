"""Quantize-and-export: checkpoint -> program folder (the input of the RTL and of replays).

Folder layout (written atomically: assembled in a temporary sibling, renamed on success)::

    program.json        header + layer descriptors (docs/program.md)
    arrays.npz          integer weights, biases, thresholds by "<layer>.<role>"
    memories/           one $readmemh file per on-chip memory, in the hardware's word layout
                        (hwgen.layout), plus memory_map.json (lanes, width, words, depth)
        weights.hex     conv/linear weights, a word of accumulator.lanes weights per line
        biases.hex      biases, a word of accumulator.lanes biases per line
        thresholds.hex  LIF thresholds, a row of lif.lanes thresholds per line (padded
                        channels get the largest threshold: they never fire)
    traces.npz          for the sample images: "input" (integer pixels [B, C, H, W]), every
                        layer's output "<layer>" ([T, B, ...]: currents, spikes, sums), LIF
                        pre-reset membranes "<layer>.membrane", "labels", "float_logits"
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from golden.intsim import IntegerEngine
from golden.program import Program, write_program_files
from hwgen.fsutil import atomic_output_dir
from hwgen.sim.hexfile import write_lanes

__all__ = ["load_model", "export_program", "replay", "load_traces", "memory_images", "MemoryFitError"]


def load_model(checkpoint: str | Path | None, *, model_name: str | None = None, random_init: int | None = None,
               **model_kwargs):
    """Build the float model and load the checkpoint into it (``random_init``: a seed instead).

    The model comes from ``model_name`` (registry or reference name) when given, otherwise from
    the checkpoint's ``args`` (the builder arguments saved by tools/train_digits.py, or the
    reference scripts' ``args.model``)."""
    from golden.checkpoint import load_checkpoint, read_checkpoint
    from golden.model import create_model

    if random_init is not None:
        torch.manual_seed(random_init)   # before the model is built: its initial weights are the random ones
    args = None
    if checkpoint is not None:
        obj = read_checkpoint(checkpoint)
        args = obj.get("args") if isinstance(obj, dict) else None
    if model_name is not None:
        model = create_model(model_name, **model_kwargs)
    elif args is not None and hasattr(args, "embed_dim"):
        from golden.digits import build_model_from_args
        model = build_model_from_args(args)
    elif args is not None and getattr(args, "model", None):
        model = create_model(args.model, **model_kwargs)
    else:
        raise ValueError(f"{checkpoint}: no model name given (--model) and the checkpoint has no 'args' to build one")
    if random_init is not None:
        from golden.model import randomize_statistics
        randomize_statistics(model, random_init)  # non-trivial eval statistics, so folding matters
    else:
        load_checkpoint(checkpoint, model, trusted=True)
    return model.eval()


class MemoryFitError(ValueError):
    """The program's weights, biases or thresholds do not fit the configured memories."""


def memory_images(program: Program) -> dict[str, tuple[int, list[np.ndarray]]]:
    """Every weight, bias and threshold in the hardware's word layout (hwgen.layout), with its
    offset recorded in the layer (``weight_offset`` ... in words) and, for conv and linear
    layers, the accumulator array's run-time descriptor (``acc_descriptor``)."""
    from hwgen.layout import ConvGeometry, bias_words, descriptor, fold_slots, weight_words

    hw = program.header["hw"]
    acc_lanes, lif_lanes = hw["accumulator"]["lanes"], hw["lif"]["lanes"]
    th_max = (1 << hw["lif"]["threshold_width"]) - 1
    images = {"weights": [], "biases": [], "thresholds": []}
    used = {"weights": 0, "biases": 0, "thresholds": 0}

    def place(mem, words):
        offset = used[mem]
        images[mem].append(words)
        used[mem] += len(words)
        return offset

    for layer in program.layers:
        a = layer.attrs
        if layer.kind in ("conv", "linear"):
            w = program.array(layer, "weight").astype(np.int64)
            if layer.kind == "linear":
                w = w[:, :, None, None]
                geo = ConvGeometry(a["in_features"], a["out_features"], 1, 1)
            else:
                c, h, wd = a["in_shape"]
                geo = ConvGeometry(a["in_channels"], a["out_channels"], h, wd, a["kernel"], a["stride"],
                                   a["padding"], a["groups"])
            pixels = layer.kind == "conv" and a["input"] == "pixels"
            # the folded remainder for spike inputs (docs/accumulator.md); not the encoding layer's bit planes
            slots = 0 if pixels else fold_slots(geo, acc_lanes)
            a["weight_offset"] = place("weights", weight_words(w, geo.groups, acc_lanes, fold=slots))
            a["bias_offset"] = place("biases", bias_words(program.array(layer, "bias").astype(np.int64), geo.groups,
                                                          acc_lanes, fold=slots))
            signed = pixels and program.header["input"]["signed"]
            a["acc_descriptor"] = descriptor(geo, acc_lanes, w_offset=a["weight_offset"], b_offset=a["bias_offset"],
                                             signed_planes=signed, fold=slots > 0).as_dict()
        elif layer.kind == "lif":
            th = program.array(layer, "threshold").astype(np.int64)
            rows = -(-len(th) // lif_lanes)
            padded = np.full(rows * lif_lanes, th_max, dtype=np.int64)  # padding neurons never fire
            padded[:len(th)] = th
            a["threshold_offset"] = place("thresholds", padded.reshape(rows, lif_lanes))
    return {name: (used[name], parts) for name, parts in images.items()}


def _write_memories(program: Program, folder: Path) -> dict:
    hw = program.header["hw"]
    widths = {"weights": hw["accumulator"]["weight_width"], "biases": hw["accumulator"]["bias_width"],
              "thresholds": hw["lif"]["threshold_width"]}
    depths = {"weights": hw["accumulator"]["weight_depth"], "biases": hw["accumulator"]["bias_depth"],
              "thresholds": hw["lif"]["threshold_depth"]}
    images = memory_images(program)
    short = [f"{name} memory: the program needs {words} words, the hardware has {depths[name]}: "
             f"{words - depths[name]} words short" for name, (words, _) in images.items() if words > depths[name]]
    if short:
        raise MemoryFitError("program does not fit: " + "; ".join(short))
    folder.mkdir()
    mems = {}
    for name, (words, parts) in images.items():
        lanes = parts[0].shape[1] if parts else 1
        values = np.concatenate(parts) if parts else np.zeros((0, lanes), dtype=np.int64)
        write_lanes(folder / f"{name}.hex", values, widths[name])
        mems[name] = {"lanes": lanes, "width": widths[name], "words": int(words), "depth": depths[name],
                      "fits": bool(words <= depths[name])}
    (folder / "memory_map.json").write_text(json.dumps(mems, indent=1) + "\n")
    return mems


def _trace_arrays(env: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    out = {}
    for name, t in env.items():
        a = t.numpy()
        if name == "input":
            a = a[0]  # the image itself; the engine repeats it over T
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        dtype = np.int8 if -128 <= lo and hi <= 127 else (np.int32 if -2**31 <= lo and hi < 2**31 else np.int64)
        out[name] = a.astype(dtype)
    return out


def export_program(program: Program, out: str | Path, *, images: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None, float_logits: torch.Tensor | None = None,
                   force: bool = False, log=print) -> Path:
    """Write the program folder; with ``images``, also run the engine and write traces."""
    out = Path(out)
    with atomic_output_dir(out, force=force) as tmp:
        _write_memories(program, tmp / "memories")   # also records offsets and descriptors
        write_program_files(program, tmp)
        if images is not None:
            engine = IntegerEngine(program)
            env = engine.run(engine.encode(images))
            arrays = _trace_arrays(env)
            if labels is not None:
                arrays["labels"] = labels.numpy().astype(np.int64)
            if float_logits is not None:
                arrays["float_logits"] = float_logits.numpy()
            np.savez_compressed(tmp / "traces.npz", **arrays)
            log(f"traces: {len(images)} sample(s), {len(arrays)} tensors")
    return out


def load_traces(folder: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(folder) / "traces.npz") as npz:
        return {k: npz[k] for k in npz.files}


def replay(program: Program, traces: dict[str, np.ndarray]) -> list[str]:
    """Run every layer on its inputs *taken from the traces* and compare with the traced output.
    Returns the mismatches (empty when the export replays bit-exactly)."""
    from hwgen.sim.compare import first_mismatch

    engine = IntegerEngine(program)
    T = program.T
    env = {k: torch.from_numpy(v.astype(np.int64)) for k, v in traces.items() if k not in ("labels", "float_logits")}
    env["input"] = env["input"].unsqueeze(0).expand(T, *env["input"].shape)
    problems = []
    for layer in program.layers:
        out = engine.run_layer(layer, *(env[n] for n in layer.inputs))
        got = {layer.name: out} if layer.kind != "lif" else {layer.name: out[0], f"{layer.name}.membrane": out[1]}
        for name, value in got.items():
            axes = ("timestep", "image", "channel", "y", "x")[: value.dim()] if layer.kind != "readout" else ("image", "class")
            found = first_mismatch(env[name].numpy(), value.to(torch.int64).numpy(), axes)
            if found is not None:
                idx, e, g = found
                problems.append(f"{name}: at {dict(zip(axes, idx))} traced {e}, replayed {g}")
    return problems
