"""`hwgen sim`: a program on the simulated core, image by image, checked against the golden engine.

For each image the core's output of every layer (all timesteps) and the logits must equal the
integer engine's exactly; the first difference is reported by layer, image, timestep, channel
and position. The run folder gets ``run.json`` (schema: hwgen/report.py) and the report.

Per layer, ``bound`` is the fewest cycles its unit could take for the work it did:
``ceil(additions / lanes)`` for the accumulator array and the SDSA unit (``lanes`` additions per
cycle), the words streamed for the LIF core, the mask and the reductions (one word per cycle).
Efficiency is bound / cycles; the network's is the sum of bounds over the sum of cycles.

Energy follows the paper's model (Yao et al., Spike-driven Transformer V2, after Horowitz 2014,
45 nm): ``E = E_MAC * MACs(encoding layer) + E_AC * SOPs(every other layer)``, with the encoding
layer's MACs counted once per image as in the paper, and SOPs the synaptic additions the core
performed (accumulator array and SDSA unit, all timesteps).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from contract.compare import first_mismatch
from contract.config import HwConfig
from contract.program import Program
from golden.intsim import IntegerEngine
from hwgen.compiler import CoreImage, compile_program
from hwgen.sim.core import ImageResult, run_core

__all__ = ["E_AC_PJ", "E_MAC_PJ", "MismatchError", "load_images", "layer_table", "simulate"]

E_AC_PJ = 0.9
E_MAC_PJ = 4.6
UNITS = {"conv": "accumulator", "linear": "accumulator", "lif": "lif", "sdsa": "sdsa",
         "mask": "vector", "token_sum": "vector", "readout": "vector"}


class MismatchError(AssertionError):
    """The core's output differs from the golden engine's; the message names the first element."""


def load_images(program: Program, program_dir: Path, count: int, data: str | None = None):
    """``count`` images for ``program``: held-out digits for the digits models, else the samples
    in the program's traces. Returns (integer pixels [B, C, H, W], labels or None, source)."""
    header = program.header
    is_digits = header["input"]["shape"] == [1, 32, 32] and header.get("classes") == 10
    data = data or ("digits" if is_digits else "traces")
    if data == "digits":
        from golden.digits import load_digits_split
        _, _, x_test, y_test = load_digits_split(size=header["input"]["shape"][1])
        if count > len(x_test):
            raise ValueError(f"--images {count}: the digits test split has {len(x_test)} images")
        pixels = IntegerEngine(program).encode(x_test[:count])
        return pixels.numpy(), y_test[:count].numpy(), "digits test split"
    if data == "traces":
        from golden.export import load_traces
        traces = load_traces(program_dir)
        have = len(traces["input"])
        if count > have:
            raise ValueError(f"--images {count}: {program_dir}/traces.npz holds {have} sample images "
                             "(export more with hwgen quantize --samples)")
        labels = traces.get("labels")
        return traces["input"][:count].astype(np.int64), None if labels is None else labels[:count], "program traces"
    raise ValueError(f"--data {data!r}: expected 'digits' or 'traces'")


def _axes(kind: str, ndim: int) -> tuple[str, ...]:
    if kind == "readout":
        return ("class",)
    return ("timestep", "channel", "y", "x")[:ndim]


def check_image(image: CoreImage, result: ImageResult, golden: dict, b: int) -> None:
    """Raise MismatchError at the first layer whose core output differs from the golden one."""
    for layer, name in zip(image.layers, image.outputs):
        want = golden[name][b] if layer.kind == "readout" else golden[name][:, b]
        got = result.outputs[name]
        found = first_mismatch(np.asarray(want, dtype=np.int64), got, _axes(layer.kind, got.ndim))
        if found is not None:
            idx, e, g = found
            where = ", ".join(f"{a}={i}" for a, i in zip(_axes(layer.kind, got.ndim), idx))
            count = int((np.asarray(want) != got).sum())
            raise MismatchError(f"image {b}, layer {name} ({layer.kind}): first mismatch at {where}: "
                                f"golden {e}, core {g} ({count} of {got.size} differ)")


def _input_rate(layer, golden: dict, b: int) -> float | None:
    spikes = {"conv": [0], "linear": [0], "sdsa": [0, 1, 2], "mask": [1]}.get(layer.kind)
    if spikes is None or (layer.kind == "conv" and layer.attrs["input"] == "pixels"):
        return None
    names = [layer.inputs[i] for i in spikes if i < len(layer.inputs)]
    values = [np.asarray(golden[n][:, b]) for n in names]
    return float(np.mean([v.mean() for v in values]))


def _encoding_macs(layer) -> int:
    a = layer.attrs
    c_out, h, w = layer.shape
    return c_out * h * w * (a["in_channels"] // a["groups"]) * a["kernel"] ** 2


def _bound(image: CoreImage, fields: dict, kind: str, additions: int) -> int:
    if kind in ("conv", "linear", "sdsa"):
        return math.ceil(additions / image.lanes)
    if kind in ("lif", "mask"):
        return fields["count"]
    return fields["outer"] * fields["count"] * fields["in_words"]      # reductions: words read


def layer_table(image: CoreImage, results: list[ImageResult], golden: dict) -> list[dict]:
    """Per-layer means over the images: cycles, bound, additions, events, rate, energy."""
    rows = []
    n = len(results)
    for pc, (layer, fields) in enumerate(zip(image.layers, image.instructions)):
        cycles = sum(r.layers[pc].cycles for r in results) / n
        additions = sum(r.layers[pc].additions for r in results) / n
        events = sum(r.layers[pc].events for r in results) / n
        bound = sum(_bound(image, fields, layer.kind, r.layers[pc].additions) for r in results) / n
        encoding = layer.kind == "conv" and layer.attrs["input"] == "pixels"
        macs = float(_encoding_macs(layer)) if encoding else 0.0
        energy = E_MAC_PJ * macs if encoding else E_AC_PJ * additions
        rates = [_input_rate(layer, golden, b) for b in range(n)]
        rows.append({
            "name": layer.name, "kind": layer.kind, "unit": UNITS[layer.kind],
            "cycles": cycles, "bound": bound, "efficiency": bound / cycles if cycles and bound else None,
            "additions": additions, "macs": macs, "events": events,
            "input_rate": None if rates[0] is None else float(np.mean(rates)),
            "energy_pj": energy,
        })
    return rows


def simulate(program_dir: str | Path, hw: HwConfig, *, images: int, out: str | Path, data: str | None = None,
             log: Callable[[str], None] = print,
             progress: Callable[[int], None] | None = None) -> dict:
    """Simulate ``images`` images, check every layer, write ``run.json`` and the report into
    ``out``; returns the run dictionary. Raises MismatchError on the first difference."""
    from contract.program import load_program
    from hwgen.report import write_report

    program_dir, out = Path(program_dir), Path(out)
    program = load_program(program_dir)
    image = compile_program(program, hw)
    pixels, labels, source = load_images(program, program_dir, images, data)
    log(f"{program_dir}: {len(image.instructions)} instructions, T={program.T}; int memory "
        f"{image.peak['ints']}/{hw.core.int_depth} words, spike memory {image.peak['spikes']}/{hw.core.spike_depth}; "
        f"{images} image(s) from the {source}")
    with torch.no_grad():
        golden = {k: v.numpy() for k, v in IntegerEngine(program, hw).run(torch.from_numpy(pixels)).items()}
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = run_core(image, pixels, work=out / "sim", progress=progress)
    wall = time.perf_counter() - t0
    for b, result in enumerate(results):
        check_image(image, result, golden, b)

    golden_predicted = golden[program.output].argmax(1)
    predicted = np.array([r.outputs[program.output].argmax() for r in results])
    rows = layer_table(image, results, golden)
    cycles = float(np.mean([r.cycles for r in results]))
    bound = sum(r["bound"] for r in rows)
    accuracy = float((predicted == labels).mean()) if labels is not None else None
    run = {
        "format": "spikeforge-run", "version": 1,
        "program": str(program_dir), "config": str(hw.source), "T": program.T, "lanes": image.lanes,
        "energy_model": {"e_ac_pj": E_AC_PJ, "e_mac_pj": E_MAC_PJ,
                         "note": "E_MAC x MACs of the encoding layer (once per image) + E_AC x synaptic "
                                 "additions of every other layer (45 nm, Horowitz 2014, as in the paper)"},
        "images": [{"index": b, "label": None if labels is None else int(labels[b]), "predicted": int(predicted[b]),
                    "golden_predicted": int(golden_predicted[b]), "cycles": r.cycles, "exact": True}
                   for b, r in enumerate(results)],
        "layers": rows,
        "totals": {
            "cycles_per_image": cycles, "bound_per_image": bound,
            "efficiency": bound / cycles if cycles else None,
            "additions_per_image": sum(r["additions"] for r in rows),
            "macs_per_image": sum(r["macs"] for r in rows),
            "energy_pj_per_image": sum(r["energy_pj"] for r in rows),
            "accuracy": accuracy, "exact_images": len(results), "images": len(results),
            # Verilator build (when not cached), script, simulation and log parsing together
            "sim_wall_s": wall, "sim_cycles_per_s": sum(r.cycles for r in results) / wall,
        },
    }
    tmp = out / "run.json.tmp"
    tmp.write_text(json.dumps(run, indent=1) + "\n")
    os.replace(tmp, out / "run.json")
    write_report(run, out)
    return run
