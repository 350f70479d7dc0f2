"""`hwgen sim`: a program on the simulated core, image by image, checked against the golden engine.

For each image the core's output of every layer (all timesteps) and the logits must equal the
integer engine's exactly; the first difference is reported by layer, image, timestep, channel
and position. The run folder gets ``run.json`` (schema: hwgen/report.py) and the report.

Per layer, ``bound`` is the fewest cycles its unit could take for the work it did:
``ceil(additions / lanes)`` for the accumulator array and the SDSA unit (``lanes`` additions per
cycle), the words streamed for the LIF core, the mask and the reductions (one word per cycle).
Efficiency is bound / cycles; the network's is its bound over the sum of cycles, where a CONV and
the LIF chained to it (they run at once, docs/core.md "Overlap") are bounded by the busier of the
two (``bound_per_image``); ``serial_bound_per_image`` adds every unit's bound (one unit at a
time) and ``additions_bound_per_image`` is the accumulator array's and the SDSA unit's alone.
A chained LIF's own efficiency is left empty (its cycles are the one it adds after the drain).

Energy follows the paper's model (Yao et al., Spike-driven Transformer V2, after Horowitz 2014,
45 nm): ``E = E_MAC * MACs(encoding layer) + E_AC * SOPs(every other layer)``, with the encoding
layer's MACs counted once per image as in the paper, and SOPs the synaptic additions the core
performed (accumulator array and SDSA unit, all timesteps).

With external weights (``accumulator.weights: external``) the run takes the memory model's
latency and bandwidth (``mem_latency``, ``mem_bandwidth``; ``hwgen sim --mem-latency N
--mem-bandwidth W``, refused for on-chip weights); ``run.json`` records them under ``memory``,
each layer's ``weight_stalls`` (cycles its accumulator waited for streamed weights, mean over
the images) and ``totals.weight_stalls_per_image``. The cycle model does not cover the prefetch
pipeline: such a run holds values, additions, events and traffic with ``==`` and records the
RTL's cycles (``memory.cycle_model``; ``hwgen.compiler.cycles.cycles_modelled``).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from contract.compare import first_mismatch
from contract.config import HwConfig
from contract.program import Program
from contract.progress import NullProgress
from golden.intsim import IntegerEngine
from hwgen.compiler import CoreImage, compile_program, to_words
from hwgen.compiler.image import chained_lif
from hwgen.compiler.cycles import check_cycles, cycles_modelled, network_bounds
from hwgen.compiler.kinds import CORE_KINDS, core_kind
from hwgen.sim.core import TRACE_NONE, TRACE_ONE, ImageResult, WaveWindow, memory_model, run_core
from hwgen.sim.digest import digest

__all__ = ["E_AC_PJ", "E_MAC_PJ", "MismatchError", "DigestMismatch", "images_for", "load_images", "layer_table",
           "check_image", "expected_writes", "simulate"]

E_AC_PJ = 0.9
E_MAC_PJ = 4.6
UNITS = {name: kind.unit for name, kind in CORE_KINDS.items()}    # layer kind -> the unit that runs it


class MismatchError(AssertionError):
    """The core's output differs from the golden engine's; the message names the first element.
    ``pc`` is the instruction and ``at`` the coordinates (``{"timestep": 2, ...}``) when known."""

    def __init__(self, message: str, pc: int | None = None, at: dict | None = None):
        super().__init__(message)
        self.pc, self.at = pc, at or {}


def images_for(program: Program, program_dir: Path, spec: str | None = None, *, start: int = 0,
               count: int | None = None, allow_upscale: bool = False):
    """The image source of a run: ``spec`` as ``hwgen sim --images`` takes it (an image folder, a
    tensor file, ``digits[:split]``, ``random[:seed]``), or ``traces`` (the sample images exported
    with the program); by default the digits test split for the digits models, else the traces.
    Returns a :class:`golden.images.ImageSource` of ``count`` images from ``start``."""
    from golden.images import ImageError, ImageSource, open_images
    from hwgen.inputs import preprocessing_of

    pre = preprocessing_of(program.header)
    spec = spec or {"digits": "digits:test", "events": "events:test"}.get(pre.kind, "traces")
    if spec == "traces":
        from golden.export import load_traces

        traces = load_traces(program_dir)
        labels = traces.get("labels")
        pixels = torch.from_numpy(traces["input"].astype(np.int64))
        source = ImageSource(f"{program_dir}/traces.npz", "tensor", pre, labels=labels, _pixels=pixels)
    else:
        source = open_images(spec, pre, allow_upscale=allow_upscale)
    if len(source) == 0:
        raise ImageError(f"{source.name}: holds no images")
    return source.select(start, count) if start or count is not None else source


def load_images(program: Program, program_dir: Path, count: int, data: str | None = None):
    """``count`` images for ``program`` as integer pixels: ``(pixels [B, C, H, W], labels or None,
    source name)`` (see :func:`images_for`)."""
    source = images_for(program, program_dir, data, count=count)
    pixels, labels = source.load()
    return pixels.numpy().astype(np.int64), None if labels is None else labels.numpy(), source.name


def _axes(kind: str, ndim: int) -> tuple[str, ...]:
    if not core_kind(kind).per_timestep:
        return ("class",)
    return ("timestep", "channel", "y", "x")[:ndim]


class DigestMismatch(MismatchError):
    """An instruction's writes differ from its golden output's words (``hwgen.sim.digest``);
    ``pc`` names the instruction (rerun it traced to locate the first differing element)."""


def golden_value(image: CoreImage, golden: dict, name: str, b: int) -> np.ndarray:
    """Tensor ``name`` of image ``b`` as the core stores it: ``[T, ...]`` (``[...]`` when not per timestep)."""
    kind = core_kind(image.layers[image.outputs.index(name)].kind)
    return np.asarray(golden[name][:, b] if kind.per_timestep else golden[name][b], dtype=np.int64)


def expected_writes(image: CoreImage, golden: dict, pc: int, b: int) -> tuple[str, int, int, int, int]:
    """What instruction ``pc`` must write for image ``b``: (memory, words, lowest and highest
    address, digest), from the golden tensor in the region's word layout."""
    name = image.outputs[pc]
    r = image.regions[name]
    value = golden_value(image, golden, name, b)
    words = to_words(value if core_kind(image.layers[pc].kind).per_timestep else value[None], r, image.lanes)
    width = image.hw.accumulator.accumulator_width if r.memory == "ints" else 1
    addrs = r.base + np.arange(r.size, dtype=np.int64)
    return r.memory, r.size, r.base, r.base + r.size - 1, digest(addrs, words, width)


def check_image(image: CoreImage, result: ImageResult, golden: dict, b: int, *, index: int | None = None) -> None:
    """Raise MismatchError at the first layer whose core output differs from the golden one
    (``golden[...][:, b]``; the message calls the image ``index``, by default ``b``), then at the
    first instruction whose cycles, additions or events differ from the cycle model's
    (``hwgen.compiler.cycles``, computed from the same golden tensors).

    A layer whose writes were traced is compared element by element; any other by what the harness
    reported of its writes (memory, words, address range, digest): a difference there raises
    :class:`DigestMismatch` naming the instruction."""
    image_name = b if index is None else index
    for pc, (layer, name) in enumerate(zip(image.layers, image.outputs)):
        want = golden_value(image, golden, name, b)
        if name in result.outputs:
            got = result.outputs[name]
            axes = _axes(layer.kind, got.ndim)
            found = first_mismatch(want, got, axes)
            if found is not None:
                idx, e, g = found
                where = ", ".join(f"{a}={i}" for a, i in zip(axes, idx))
                count = int((want != got).sum())
                raise MismatchError(f"image {image_name}, layer {name} ({layer.kind}): first mismatch "
                                    f"at {where}: golden {e}, core {g} ({count} of {got.size} differ)",
                                    pc, dict(zip(axes, idx)))
            continue
        stats = result.layers[pc]
        memory, words, lo, hi, dig = expected_writes(image, golden, pc, b)
        got = (stats.memory, stats.writes, stats.lowest, stats.highest)
        if got != (memory, words, lo, hi) or stats.digest != dig:
            what = (f"wrote {stats.writes} words of the {stats.memory} memory at [{stats.lowest}, {stats.highest}]; "
                    f"its output is {words} words of the {memory} memory at [{lo}, {hi}]"
                    if got != (memory, words, lo, hi) else f"wrote digest {stats.digest:016x}, the golden words' is "
                                                           f"{dig:016x}")
            raise DigestMismatch(f"image {image_name}, layer {name} ({layer.kind}), instruction {pc}: {what}", pc)
    check_cycles(image, result.layers, golden, b, index=index, error=MismatchError)


def _input_rate(layer, golden: dict, b: int) -> float | None:
    spikes = core_kind(layer.kind).spike_inputs(layer)
    if not spikes:
        return None
    names = [layer.inputs[i] for i in spikes]
    values = [np.asarray(golden[n][:, b]) for n in names]
    return float(np.mean([v.mean() for v in values]))


def _encoding_macs(layer) -> int:
    a = layer.attrs
    c_out, h, w = layer.shape
    return c_out * h * w * (a["in_channels"] // a["groups"]) * a["kernel"] ** 2


def _bound(image: CoreImage, fields: dict, kind: str, additions: int) -> int:
    return core_kind(kind).cycle_bound(fields, additions, image.lanes)


def layer_table(image: CoreImage, results: list[ImageResult], rates: list[list[float | None]]) -> list[dict]:
    """Per-layer means over the images: cycles, bound, additions, events, input firing rate
    (``rates[image][pc]``, from the golden spikes), energy."""
    rows = []
    n = len(results)
    for pc, (layer, fields) in enumerate(zip(image.layers, image.instructions)):
        cycles = sum(r.layers[pc].cycles for r in results) / n
        additions = sum(r.layers[pc].additions for r in results) / n
        events = sum(r.layers[pc].events for r in results) / n
        bound = sum(_bound(image, fields, layer.kind, r.layers[pc].additions) for r in results) / n
        encoding = core_kind(layer.kind).pixels(layer)
        macs = float(_encoding_macs(layer)) if encoding else 0.0
        energy = E_MAC_PJ * macs if encoding else E_AC_PJ * additions
        layer_rates = [r[pc] for r in rates]
        chained = chained_lif(fields)       # hidden behind its CONV's drain
        stalls = sum(r.layers[pc].weight_stalls for r in results) / n
        rows.append({
            "name": layer.name, "kind": layer.kind, "unit": UNITS[layer.kind],
            "cycles": cycles, "bound": bound, **({"weight_stalls": stalls} if image.hw.accumulator.external_weights else {}),
            "efficiency": bound / cycles if cycles and bound and not chained else None,
            "additions": additions, "macs": macs, "events": events,
            "input_rate": None if layer_rates[0] is None else float(np.mean(layer_rates)),
            "energy_pj": energy,
        })
    return rows


class _RunLock:
    """One ``hwgen sim`` per run folder: a second run on the same folder is refused, not mixed in."""

    def __init__(self, out: Path):
        self.path = out / ".lock"

    def __enter__(self):
        import fcntl

        self.file = open(self.path, "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise ValueError(f"{self.path.parent} is in use by another hwgen sim; give this run its own --out") from None
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
        return False


def simulate(program_dir: str | Path, hw: HwConfig, *, out: str | Path, images: str | None = None,
             start: int = 0, count: int | None = None, keep_going: bool = False, allow_upscale: bool = False,
             waves: str | None = None, log: Callable[[str], None] = print,
             progress: Callable[[int], object] | None = None, mem_latency: int | None = None,
             mem_bandwidth: int | None = None) -> dict:
    """Simulate ``count`` images of the source ``images`` from ``start`` (see :func:`images_for`)
    and check every layer of each image against the golden engine as soon as the core finishes it;
    write ``run.json`` and the report into ``out``; return the run dictionary.

    The first mismatch stops the run (the simulator ends before the next image) and raises
    MismatchError, after ``run.json`` recorded it; with ``keep_going`` a mismatching image is marked
    in ``run.json`` with its first mismatch and the run goes on. ``progress(total)`` makes the
    progress display (``contract.progress.Progress``) advanced once per checked image.

    ``waves``: ``"mismatch"`` writes a waveform (VCD) of the instruction before the first mismatch and
    the mismatching one, for that image, into ``out/waves/`` (named by image, layer and timestep);
    ``"IMAGE:LAYER[:LAYER]"`` (an index of the source, layer names or instruction numbers) writes one
    of that window after the run. Waveforms come from a simulator built with tracing, in a build
    folder of its own.

    ``mem_latency``, ``mem_bandwidth``: the external weight memory model's (external weights
    only; by default 100 cycles and 1 word per cycle; refused for on-chip weights)."""
    from contract.program import load_program
    from hwgen.report import write_report

    memory = memory_model(hw, mem_latency, mem_bandwidth)       # refused before anything runs
    mem = {} if memory is None else {"latency": memory["latency"], "bandwidth": memory["bandwidth"]}
    program_dir, out = Path(program_dir), Path(out)
    program = load_program(program_dir)
    image = compile_program(program, hw)
    source = images_for(program, program_dir, images, start=start, count=count, allow_upscale=allow_upscale)
    pixels, labels = source.load()
    pixels = pixels.to(torch.int64)
    log(f"{program_dir}: {len(image.instructions)} instructions, T={program.T}; int memory "
        f"{image.peak['ints']}/{hw.core.int_depth} words, spike memory {image.peak['spikes']}/{hw.core.spike_depth}; "
        f"{len(pixels)} image(s) from {source.name}" + (f", from index {source.first}" if source.first else ""))
    engine = IntegerEngine(program, hw)
    window = None if waves in (None, "mismatch") else _wave_window(waves, image, source)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    rates: list[list[float | None]] = []

    def check(b: int, result: ImageResult) -> bool:
        """Golden of image ``b`` alone, compared layer by layer; False stops the run. The core
        reports digests of each layer's writes; a layer whose digest differs is simulated again
        for this image with its writes logged, to name the first differing element."""
        with torch.no_grad():
            golden = {k: v.numpy() for k, v in engine.run(pixels[b:b + 1]).items()}
        predicted = int(golden[program.output][0].argmax())
        # the logits' digest equals the golden one's when the image is exact: the core predicted the same
        record = {"index": source.first + b, "label": None if labels is None else int(labels[b]),
                  "predicted": predicted, "golden_predicted": predicted, "cycles": result.cycles, "exact": True}
        try:
            try:
                check_image(image, result, golden, 0, index=source.first + b)
            except DigestMismatch as e:
                again = run_core(image, pixels[b:b + 1].numpy(), work=out / "sim" / f"locate-{source.first + b}",
                                 trace=TRACE_ONE, trace_pc=e.pc, **mem)[0]
                check_image(image, again, golden, 0, index=source.first + b)
                raise MismatchError(f"{e} (the traced run of the image wrote the golden words: not reproducible)")
        except MismatchError as e:
            record.update(exact=False, predicted=None, mismatch=str(e))
            if waves is not None and e.pc is not None:
                record["waves"] = str(_dump_waves(image, pixels[b:b + 1], out, source.first + b, max(0, e.pc - 1),
                                                  e.pc, e.at.get("timestep"), mem))
        records.append(record)
        rates.append([_input_rate(layer, golden, 0) for layer in image.layers])
        return record["exact"] or keep_going

    with _RunLock(out), (progress(len(pixels)) if progress else NullProgress()) as bar:
        t0 = time.perf_counter()
        results = run_core(image, pixels.numpy(), work=out / "sim", progress=lambda done: bar.advance(1),
                           on_image=check, trace=TRACE_NONE, **mem)
        wall = time.perf_counter() - t0
        run = _run_record(program_dir, hw, program, image, results, records, rates, wall, memory)
        if window is not None:
            b, first, last = window
            run["waves"] = str(_dump_waves(image, pixels[b:b + 1], out, source.first + b, first, last, None, mem))
            log(f"wrote {run['waves']}")
        tmp = out / "run.json.tmp"
        tmp.write_text(json.dumps(run, indent=1) + "\n")
        os.replace(tmp, out / "run.json")
        write_report(run, out)
    if memory is not None:
        t = run["totals"]
        log(f"external weights (latency {memory['latency']} cycles, {memory['bandwidth']} word(s)/cycle): "
            f"{t['weight_stalls_per_image']:,.0f} weight stall cycles per image, "
            f"{100 * t['weight_stall_share']:.2f}% of {t['cycles_per_image']:,.0f} cycles (slowdown over the cycles "
            f"without them {100 * t['weight_stall_slowdown']:.2f}%); the cycle model does not cover external weights: "
            "cycles recorded, not compared")
    bad = [r for r in records if not r["exact"]]
    if bad and not keep_going:
        raise MismatchError(bad[0]["mismatch"])
    return run


def _wave_window(spec: str, image: CoreImage, source) -> tuple[int, int, int]:
    """``"IMAGE:LAYER[:LAYER]"`` -> (image within the run, first and last instruction)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"--waves {spec!r}: expected 'mismatch' or IMAGE:LAYER[:LAYER]")

    def pc_of(text: str) -> int:
        if text.isdigit() and int(text) < len(image.outputs):
            return int(text)
        if text in image.outputs:
            return image.outputs.index(text)
        raise ValueError(f"--waves {spec!r}: {text!r} is neither a layer of the program nor an instruction number "
                         f"below {len(image.outputs)}")

    if not parts[0].isdigit() or not source.first <= int(parts[0]) < source.first + len(source):
        raise ValueError(f"--waves {spec!r}: image {parts[0]!r} is not among the run's images "
                         f"({source.first}..{source.first + len(source) - 1})")
    first = pc_of(parts[1])
    last = pc_of(parts[2]) if len(parts) == 3 else first
    if last < first:
        raise ValueError(f"--waves {spec!r}: the window ends before it starts")
    return int(parts[0]) - source.first, first, last


def _dump_waves(image: CoreImage, pixels: torch.Tensor, out: Path, index: int, first: int, last: int,
                timestep: int | None, mem: dict | None = None) -> Path:
    """Simulate one image on the traced simulator, dumping instructions ``first..last``."""
    folder = out / "waves"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"image{index}_{image.outputs[last]}" + (f"_t{timestep}" if timestep is not None else "")
    path = folder / f"{name}.vcd"
    run_core(image, pixels.numpy(), work=out / "sim" / f"waves-{index}", trace=TRACE_NONE,
             waves=WaveWindow(path, 0, first, last), **(mem or {}))
    return path


def _run_record(program_dir: Path, hw: HwConfig, program: Program, image: CoreImage, results: list[ImageResult],
                records: list[dict], rates: list, wall: float, memory: dict | None = None) -> dict:
    rows = layer_table(image, results, rates)
    cycles = float(np.mean([r.cycles for r in results]))
    bounds = network_bounds(rows, image.instructions)
    bound = bounds["overlapped"]
    labelled = [r for r in records if r["label"] is not None]
    accuracy = float(np.mean([r["predicted"] == r["label"] for r in labelled])) if labelled else None
    run = {
        "format": "spikeforge-run", "version": 1,
        "program": str(program_dir), "config": str(hw.source), "T": program.T, "lanes": image.lanes,
        "energy_model": {"e_ac_pj": E_AC_PJ, "e_mac_pj": E_MAC_PJ,
                         "note": "E_MAC x MACs of the encoding layer (once per image) + E_AC x synaptic "
                                 "additions of every other layer (45 nm, Horowitz 2014, as in the paper)"},
        "images": records,
        "layers": rows,
        "totals": {
            "cycles_per_image": cycles, "bound_per_image": bound,
            "efficiency": bound / cycles if cycles else None,
            "serial_bound_per_image": bounds["serial"], "additions_bound_per_image": bounds["additions"],
            "additions_per_image": sum(r["additions"] for r in rows),
            "macs_per_image": sum(r["macs"] for r in rows),
            "energy_pj_per_image": sum(r["energy_pj"] for r in rows),
            "accuracy": accuracy, "exact_images": sum(r["exact"] for r in records), "images": len(records),
            # Verilator build (when not cached), script, simulation and the checks together
            "sim_wall_s": wall, "sim_cycles_per_s": sum(r.cycles for r in results) / wall,
        },
    }
    if memory is not None:      # external weights: the memory model, the stalls, what the cycle model covers
        stalls = float(np.mean([sum(s.weight_stalls for s in r.layers) for r in results]))
        run["memory"] = {
            "weights": "external", "latency": memory["latency"], "bandwidth": memory["bandwidth"],
            "requests_per_image": float(np.mean([r.weight_requests for r in results])),
            "cycle_model": "does not cover external weights: the RTL's cycles are recorded, not compared; values, "
                           "additions, events and traffic are held with ==" if not cycles_modelled(hw) else "exact",
        }
        run["totals"].update(weight_stalls_per_image=stalls, weight_stall_share=stalls / cycles if cycles else 0.0,
                             weight_stall_slowdown=stalls / (cycles - stalls) if cycles > stalls else 0.0)
    return run
