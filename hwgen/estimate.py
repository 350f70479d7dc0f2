"""`hwgen estimate PROGRAM (--images SOURCE | --rates TABLE)`: cycles, operations, firing rates,
memory traffic and energy of a program on the core, per layer, without simulating the RTL.

The input firing rates come from the integer engine on real images (``--images``: every
layer's exact spike maps, one image at a time) or from a rate table (``--rates``, e.g. the
paper's, ``configs/rates/paper_31m_t4.yaml``). Per layer the estimate counts operations in two
conventions (the paper's FLOPs x rate, and the additions the spike-driven datapath performs) and
prices them in two energy models (the paper's E_AC / E_MAC, and a memory-aware one that adds
every access to every on-chip memory); see :mod:`hwgen.perf` and docs/energy.md. It says whether
the program fits the configured core and, when not, which memories are short and by how much.

Cycles come from the core's cycle model (``hwgen.compiler.cycles.instruction_cycles``, which is
held to the RTL's counters) when it is installed and images give the spike maps it needs;
otherwise they are "not modelled yet" (null), and only the lower bound is shown. Memory word
counts are :func:`hwgen.perf.memory.layer_traffic`, the model the core's traffic counters equal
on every image ``hwgen sim`` runs (exact from spike maps; expected from a rate table).

The output folder gets ``run.json`` in ``hwgen sim``'s format (``"kind": "estimate"``: no image
is bit-exact checked; the estimate's own fields under ``estimate`` and in each layer) and
``report.md`` / ``report.png`` from :func:`hwgen.report.write_report`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from contract.config import HwConfig, load_config
from contract.program import INPUT, KINDS, Program, load_program
from hwgen.compiler.kinds import core_kind
from hwgen.perf.architecture import PAPER_MODELS
from hwgen.perf.energy import E_AC_PJ, E_MAC_PJ, Work, datapath_work, paper_work
from hwgen.perf.memory import MEMORIES, SramModel, core_memories
from hwgen.perf.rates import LayerRates, RateTable, load_rate_table, measured_rates
from hwgen.perf.table import layer_rows, totals

__all__ = ["estimate", "core_fit", "default_cycle_model", "write_estimate", "add_parser", "run_estimate"]

EXIT_FAIL, EXIT_USAGE = 1, 2
#: capacities raised to find what a program needs when it does not fit (semantics untouched)
_ROOMY = {"accumulator": {"weight_depth": 1 << 28, "bias_depth": 1 << 24, "accumulator_depth": 1 << 28,
                          "max_channels": 1 << 16},
          "sdsa": {"heads": 1 << 10, "head_dim": 1 << 12, "max_tokens": 1 << 20},
          "lif": {"neurons": 1 << 28, "threshold_depth": 1 << 24, "channels": 1 << 20},
          "core": {"int_depth": 1 << 30, "spike_depth": 1 << 30, "pixel_depth": 1 << 30, "program_depth": 1 << 20}}


# ---------------------------------------------------------------------------- seams
def default_cycle_model() -> Callable | None:
    """The core's cycle model ``(image, tensors, b) -> [InstructionCycles]`` when installed, else
    None ("not modelled yet")."""
    try:
        from hwgen.compiler.cycles import instruction_cycles
    except ImportError:
        return None
    return instruction_cycles


def core_fit(program: Program, hw: HwConfig) -> dict:
    """Does ``program`` fit the core of ``hw``? Returns ``{"fits", "problems", "needs", "image"}``:
    ``needs`` per memory ``{"need", "have", "key"}`` (words), ``problems`` one line per memory
    that is short (all of them, not only the first), ``image`` the compiled program (for a core
    as large as needed when it does not fit; None when it cannot be compiled at all)."""
    from hwgen.compiler import CoreFitError, compile_program
    from hwgen.compiler.placement import MemoryFitError

    try:
        image = compile_program(program, hw)
        return {"fits": True, "problems": [], "needs": _needs(image, program, hw), "image": image}
    except (CoreFitError, MemoryFitError) as e:
        first = str(e)
    # the same core with every capacity raised: what the program needs, memory by memory
    roomy = HwConfig(name=hw.name, source=hw.source, **{
        s: dataclasses.replace(getattr(hw, s), **_ROOMY.get(s, {})) for s in ("lif", "accumulator", "sdsa", "core")})
    try:
        image = compile_program(program, roomy)
    except (CoreFitError, MemoryFitError) as e:            # not a capacity: the program cannot run on this core
        return {"fits": False, "problems": [first] + ([str(e)] if str(e) != first else []), "needs": {}, "image": None}
    needs = _needs(image, program, hw)
    problems = [_short(name, n) for name, n in needs.items() if n["need"] > n["have"]]
    return {"fits": False, "problems": problems or [first], "needs": needs, "image": image}


def _short(name: str, n: dict) -> str:
    if name in MEMORIES:
        return (f"the {name} memory: the program needs {n['need']:,} words, the core has {n['have']:,}: "
                f"{n['need'] - n['have']:,} short ({n['key']})")
    return f"{name}: the program needs {n['need']:,}, the core has {n['have']:,} ({n['key']})"


def _needs(image, program: Program, hw: HwConfig) -> dict:
    """What ``image`` (compiled) needs of each sized memory (words) and of the SDSA unit and the
    accumulator array's channels, against what ``hw`` has."""
    from hwgen.core.isa import Op

    p = image.placement
    convs = [f for f in image.instructions if f["op"] == Op.CONV]
    lifs = [f for f in image.instructions if f["op"] == Op.LIF]
    attn = [f for f in image.instructions if f["op"] == Op.SDSA]
    c, h, w = program.header["input"]["shape"]
    rows = {
        "weights": (p.words("weights"), hw.accumulator.weight_depth, "accumulator.weight_depth"),
        "biases": (p.words("biases"), hw.accumulator.bias_depth, "accumulator.bias_depth"),
        "thresholds": (p.words("thresholds"), hw.lif.threshold_depth, "lif.threshold_depth"),
        "accumulators": (max((f["desc"]["drain_words"] for f in convs), default=0), hw.accumulator.accumulator_depth,
                         "accumulator.accumulator_depth"),
        "membranes": (max((f["beats"] for f in lifs), default=0), hw.lif.beats, "lif.neurons / lanes"),
        "ints": (image.peak["ints"], hw.core.int_depth, "core.int_depth"),
        "spikes": (image.peak["spikes"], hw.core.spike_depth, "core.spike_depth"),
        "pixels": (0 if program.header["input"].get("encoding") == "spikes" else c * h * w,   # spike frames: none
                   hw.core.pixel_depth, "core.pixel_depth"),
        "program": (len(image.instructions) + 1, hw.core.program_depth, "core.program_depth"),
        "input channels": (max((core_kind(l.kind).geometry(l).c_in for l in image.layers
                                if core_kind(l.kind).unit == "accumulator"), default=0),
                           hw.accumulator.max_channels, "accumulator.max_channels"),
    }
    if attn and hw.sdsa is not None:
        rows.update({
            "SDSA heads": (max(f["heads"] for f in attn), hw.sdsa.heads, "sdsa.heads"),
            "SDSA head dimension": (max(f["head_dim"] for f in attn), hw.sdsa.head_dim, "sdsa.head_dim"),
            "SDSA tokens": (max(f["tokens"] for f in attn), hw.sdsa.max_tokens, "sdsa.max_tokens")})
    return {name: {"need": int(n), "have": int(have), "key": key} for name, (n, have, key) in rows.items()}


# ---------------------------------------------------------------------------- measuring
def _run_image(engine, program: Program, pixels, kept: dict | None, times: dict):
    """Run one image ``[1, C, H, W]`` layer by layer; yields ``(index, layer, inputs)`` with every
    input of the layer (``[T, ...]`` numpy, batch axis dropped) when it runs. A tensor is dropped
    after its last reader (the 31M at 224 keeps a few layers, not all of them); ``kept`` (when
    given) collects the image and every spike tensor ``[T, 1, ...]`` for the cycle model. The
    logits end up in ``times["logits"]``, the engine's seconds in ``times["engine"]``."""
    import torch

    from golden.encoding import input_over_time, spike_input

    env = {INPUT: input_over_time(program.header, pixels)}     # pixels repeated over T, or the spike frames
    last_use: dict[str, int] = {}
    for i, layer in enumerate(program.layers):
        for n in layer.inputs:
            last_use[n] = i
    frames = spike_input(program.header)
    if kept is not None:      # pixels [1, 1, C, H, W]: the same every timestep; spike frames [T, 1, C, H, W]
        kept[INPUT] = env[INPUT].numpy() if frames else pixels.numpy()[None]
    with torch.no_grad():
        for i, layer in enumerate(program.layers):
            t0 = time.perf_counter()
            out = engine.run_layer(layer, *(env[n] for n in layer.inputs))
            times["engine"] += time.perf_counter() - t0
            env[layer.name] = out[0] if isinstance(out, tuple) else out     # LIF: (spikes, membranes)
            view = {n: env[n].numpy()[:, 0] for n in layer.inputs if n != INPUT or frames}
            yield i, layer, view
            if kept is not None and KINDS[layer.kind].output == "spikes":     # 0/1, whatever the engine's dtype
                kept[layer.name] = env[layer.name].numpy().astype(np.int8)
            for n in set(layer.inputs):
                if last_use[n] == i and n != INPUT:
                    env.pop(n, None)
    times["logits"] = env[program.output].numpy()[0]


def _input_rate(layer, rates: LayerRates | None) -> float | None:
    """The report's input rate: the mean rate of the spike inputs ``hwgen sim`` shows for the
    kind (its ``spike_inputs`` hook: a conv's input, q, k, v of an SDSA layer, v of a mask)."""
    if rates is None or not rates.roles:
        return None
    kind = core_kind(layer.kind)
    shown = {layer.inputs[i] for i in kind.spike_inputs(layer)}
    roles = [role for role, tensor in kind.spike_roles(layer).items() if tensor in shown and role in rates.roles]
    return float(np.mean([rates.mean(role) for role in roles])) if roles else rates.mean()


def _mean_work(works: list[Work]) -> Work:
    n = len(works)
    return Work(**{k: sum(getattr(w, k) for w in works) / n for k in Work.__dataclass_fields__ if k != "chained"})


# ---------------------------------------------------------------------------- the estimate
def estimate(program_dir: str | Path, *, rates: str | Path | RateTable | None = None, images: str | None = None,
             hw: HwConfig | None = None, start: int = 0, count: int | None = None, allow_upscale: bool = False,
             encoding_timesteps: int | None = 1, pixel_ones: float | None = None,
             cycle_model: Callable | str | None = "auto",
             log: Callable[[str], None] = print, progress=None) -> dict:
    """The estimate record of a program (see the module docstring), from ``rates`` (a rate table
    or its file) or the integer engine on ``images`` (a source as ``hwgen sim --images`` takes
    it). ``hw``: the core to fit (default: the configuration the program was quantized for).
    ``encoding_timesteps``: how often the paper's counting charges the encoding conv's MACs (1,
    as the paper's formula; None: T, once per timestep). ``cycle_model``: ``"auto"``
    (:func:`default_cycle_model`), a callable, or None."""
    if (rates is None) == (images is None):
        raise ValueError("give either rates (a rate table) or images (an image source)")
    t0 = time.perf_counter()
    program_dir = Path(program_dir)
    program = load_program(program_dir)
    hw = hw or HwConfig.from_dict(program.header["hw"], f"{program_dir}/program.json: hw "
                                                        f"({program.header['hw'].get('name')})")
    if hw.core is None:
        raise ValueError(f"{hw.source}: no 'core' section: an estimate is of a program on the core")
    T, lanes = program.T, hw.accumulator.lanes
    encoding_timesteps = T if encoding_timesteps is None else encoding_timesteps
    fit = core_fit(program, hw)
    image = fit["image"]
    hw_layers = image.layers if image is not None else program.layers
    if [l.name for l in hw_layers] != [l.name for l in program.layers]:
        raise ValueError("the compiled program's layers differ from the program's")
    memories = core_memories(hw)
    if cycle_model == "auto":
        cycle_model = default_cycle_model()
    notes: list[str] = []
    input_bits = hw.accumulator.input_bits
    cycles = None
    records: list[dict] = []
    if rates is not None:
        table = rates if isinstance(rates, RateTable) else load_rate_table(rates)
        per_layer = table.for_program(program.layers, T)
        paper = [paper_work(l, per_layer.get(l.name), T, lanes) for l in program.layers]
        datapath = [datapath_work(h, T, lanes, rates=per_layer.get(l.name), real=l, input_bits=input_bits,
                                  pixel_ones=pixel_ones) for l, h in zip(program.layers, hw_layers)]
        shown = [per_layer.get(l.name) for l in program.layers]
        source = {"rates": table.path, "table_source": table.source, "columns": f"timesteps 1..{T}"}
        ones = input_bits / 2 if pixel_ones is None else pixel_ones
        notes.append(f"rates from {table.path}: spikes assumed spread uniformly over each map; the encoding conv's "
                     f"bit planes assume {ones:g} set bits per pixel")
        notes.append("cycles need the spike maps (the cycle model follows every word): not modelled from rates")
        source_text = f"none simulated: input firing rates from `{table.path}` ({table.source})"
    else:
        paper, datapath, shown, source, source_text, cycles, records = _from_images(
            program, program_dir, images, hw, image, start=start, count=count, allow_upscale=allow_upscale,
            cycle_model=cycle_model, pixel_ones=pixel_ones, notes=notes, log=log, progress=progress)
    input_rates = [_input_rate(layer, r) for layer, r in zip(program.layers, shown)]
    if image is not None:       # LIFs the core runs with their CONV read no int memory
        from hwgen.compiler.image import chained_lif

        chained = [chained_lif(f) for f in image.instructions]
        paper = [dataclasses.replace(w, chained=c) for w, c in zip(paper, chained)]
        datapath = [dataclasses.replace(w, chained=c) for w, c in zip(datapath, chained)]
    rows = layer_rows(program.layers, hw_layers, paper, datapath, input_rates,
                      T=T, hw=hw, memories=memories, cycles=cycles, encoding_timesteps=encoding_timesteps)
    if image is not None:       # a chained LIF's one cycle says nothing of its unit's efficiency
        for row, c in zip(rows, chained):
            if c:
                row["efficiency"] = None
    record = _record(program_dir, program, hw, rows, fit, memories, source, source_text, records, notes,
                     encoding_timesteps, cycle_model is not None and cycles is not None)
    record["estimate"]["wall_s"] = time.perf_counter() - t0
    return record


def _from_images(program, program_dir, spec, hw, image, *, start, count, allow_upscale, cycle_model, pixel_ones,
                 notes, log, progress):
    from contract.progress import NullProgress
    from golden.images import ImageError
    from golden.intsim import IntegerEngine
    from hwgen.inputs import image_source, preprocessing_of

    del pixel_ones      # the pixels are known: the bit planes are counted exactly
    T, lanes = program.T, hw.accumulator.lanes
    source = image_source(spec, preprocessing_of(program.header),
                          argparse.Namespace(start=start, count=count, allow_upscale=allow_upscale))
    pixels, labels = source.load()
    if len(pixels) == 0:
        raise ImageError(f"{source.name}: holds no images")
    engine = IntegerEngine(program)
    hw_layers = image.layers if image is not None else program.layers
    external = hw.accumulator.external_weights       # the cycle model follows on-chip weights only
    use_cycles = cycle_model is not None and image is not None and not external
    if cycle_model is None:
        notes.append("cycles: not modelled yet (no cycle model installed: hwgen.compiler.cycles)")
    elif image is None:
        notes.append("cycles: not modelled (the program cannot be compiled for this core)")
    elif external:
        notes.append("cycles: not modelled (the cycle model does not cover external weights: hwgen sim measures them)")
    paper_all, datapath_all, rates_all, cycles_all, records = [], [], [], [], []
    times = {"engine": 0.0, "counting": 0.0, "cycles": 0.0}
    log(f"{program_dir}: {len(program.layers)} layers, T={T}; {len(pixels)} image(s) from {source.name}")
    with (progress(len(pixels)) if progress else NullProgress()) as bar:
        for b in range(len(pixels)):
            pw, dw, rs = [], [], []
            kept = {} if use_cycles else None
            for i, layer, view in _run_image(engine, program, pixels[b:b + 1], kept, times):
                t0 = time.perf_counter()
                r = measured_rates(layer, view)
                rs.append(r)
                pw.append(paper_work(layer, r, T, lanes))
                dw.append(datapath_work(hw_layers[i], T, lanes, tensors=view, real=layer,
                                        pixels=pixels[b].numpy() if layer.inputs[0] == INPUT else None,
                                        input_bits=hw.accumulator.input_bits))
                times["counting"] += time.perf_counter() - t0
            if use_cycles:
                t0 = time.perf_counter()
                cycles_all.append([c.cycles for c in cycle_model(image, kept, 0)])
                times["cycles"] += time.perf_counter() - t0
            paper_all.append(pw)
            datapath_all.append(dw)
            rates_all.append(rs)
            records.append({"index": source.first + b, "label": None if labels is None else int(labels[b]),
                            "predicted": int(np.argmax(times["logits"]))})
            bar.advance(1)
    n = len(pixels)
    notes.append(f"time per image: integer engine {times['engine'] / n:.2f} s, counting {times['counting'] / n:.2f} s"
                 + (f", cycle model {times['cycles'] / n:.2f} s" if use_cycles else ""))
    paper = [_mean_work([paper_all[b][i] for b in range(n)]) for i in range(len(program.layers))]
    datapath = [_mean_work([datapath_all[b][i] for b in range(n)]) for i in range(len(program.layers))]
    shown = []
    for i in range(len(program.layers)):
        roles = rates_all[0][i].roles
        shown.append(LayerRates({role: [float(np.mean([rates_all[b][i].roles[role][t] for b in range(n)]))
                                        for t in range(T)] for role in roles}))
    cycles = [float(np.mean([c[i] for c in cycles_all])) for i in range(len(program.layers))] if cycles_all else None
    if cycles is not None and image.hw is not hw:
        notes.append("cycles of a core as large as the program needs (it does not fit the configured one)")
    src = {"images": source.name, "first": source.first, "count": n}
    text = (f"{n} from {source.name}" + (f" (from index {source.first})" if source.first else "")
            + ": firing rates measured by the integer engine, no RTL run")
    return paper, datapath, shown, src, text, cycles, records


def _accuracy(images: list[dict]) -> float | None:
    """Top-1 of the integer engine's predictions on the labelled images (None without labels)."""
    labelled = [r for r in images if r["label"] is not None]
    return float(np.mean([r["predicted"] == r["label"] for r in labelled])) if labelled else None


def _paper_figure(program: Program) -> float | None:
    """The paper's Table 1 energy (mJ) for this model and T, when it is one of the paper's scales at 224."""
    name = program.header.get("model")
    shape = program.header.get("input", {}).get("shape")
    for m in PAPER_MODELS.values():
        if m.name == name and shape == [3, 224, 224]:
            return m.energy_mj.get(program.T)
    return None


def _record(program_dir, program, hw, rows, fit, memories, source, source_text, images, notes,
            encoding_timesteps, modelled) -> dict:
    tot = totals(rows)
    model = SramModel()
    mem_info = {}
    if memories is not None:
        for name in MEMORIES:
            m = memories[name]
            reads, writes = tot.get("memory", {}).get(name, [0.0, 0.0])
            mem_info[name] = {"macros": m.macros, "banks": m.banks, "depth": m.depth, "width": m.width,
                              "bytes": m.total_bytes, "pj_per_access": m.access_pj(model),
                              "extrapolated": model.extrapolated(m.macro_bytes), "reads": reads, "writes": writes,
                              "energy_pj": tot.get("memory_pj", {}).get(name, 0.0), "config": m.config, "note": m.note}
    mj = lambda pj: None if pj is None else pj / 1e9                          # noqa: E731
    energy = {"paper_model": {"paper": mj(tot["energy_paper_pj"]), "datapath": mj(tot["energy_datapath_pj"])},
              "memory_aware": {"paper": mj(tot["energy_memory_paper_pj"]), "datapath": mj(tot["energy_memory_pj"])}}
    cycles = tot["cycles"]
    from hwgen.compiler.cycles import network_bounds        # amaranth: only when an estimate is made

    bounds = network_bounds(rows, fit["image"].instructions if fit.get("image") is not None else None)
    fit_out = {k: v for k, v in fit.items() if k != "image"}
    run = {
        "format": "spikeforge-run", "version": 1, "kind": "estimate",
        "program": str(program_dir), "config": str(hw.source), "T": program.T, "lanes": hw.accumulator.lanes,
        "energy_model": {"e_ac_pj": E_AC_PJ, "e_mac_pj": E_MAC_PJ,
                         "note": "As hwgen sim: E_MAC x MACs of the encoding layer (once per image) + E_AC x the "
                                 "datapath's additions of every other layer. The estimate's sections give both "
                                 "counting conventions in both energy models."},
        "images": [],
        "images_note": source_text + ("" if _accuracy(images) is None else
                                      f"; integer engine's accuracy {100 * _accuracy(images):.1f}%"),
        "layers": rows,
        "totals": {
            "cycles_per_image": cycles, "bound_per_image": bounds["overlapped"],
            "efficiency": bounds["overlapped"] / cycles if cycles else None,
            "serial_bound_per_image": bounds["serial"], "additions_bound_per_image": bounds["additions"],
            "additions_per_image": tot["additions"], "macs_per_image": tot["macs"],
            "energy_pj_per_image": tot["energy_pj"], "accuracy": _accuracy(images), "exact_images": 0, "images": 0,
        },
        "estimate": {"source": source, "images": images, "energy_mj": energy, "paper_figure_mj": _paper_figure(program),
                     "encoding_timesteps": encoding_timesteps, "sops_per_image": tot["sops"],
                     "memories": mem_info, "fit": fit_out, "notes": notes,
                     "cycle_model": "hwgen.compiler.cycles" if modelled else "not modelled yet"},
    }
    run["sections"] = _sections(run, rows)
    return run


# ---------------------------------------------------------------------------- report sections
def _mj(v: float | None) -> str:
    return "–" if v is None else f"{v:.3g} mJ" if v >= 0.1 else f"{v * 1e3:.3g} µJ"


def _sections(run: dict, rows: list[dict]) -> list[dict]:
    e, est = run["estimate"]["energy_mj"], run["estimate"]
    paper = est["paper_figure_mj"]
    rel = (lambda v: f" ({100 * (v / paper - 1):+.1f}% of the paper's {paper:g} mJ)") if paper else (lambda v: "")
    enc = "once per image" if est["encoding_timesteps"] == 1 else f"{est['encoding_timesteps']} times"
    lines = [
        "| model | paper's counting (FLOPs x rate) | datapath's additions |",
        "|---|---:|---:|",
        f"| paper's (E_AC 0.9 pJ, E_MAC 4.6 pJ) | {_mj(e['paper_model']['paper'])}{rel(e['paper_model']['paper'])} "
        f"| {_mj(e['paper_model']['datapath'])} |",
        f"| memory-aware (Horowitz 2014 SRAM + integer ops) | {_mj(e['memory_aware']['paper'])} "
        f"| {_mj(e['memory_aware']['datapath'])} |",
        "",
        f"Per image, T = {run['T']}. Paper's counting: {est['sops_per_image'] / 1e9:,.3f} G additions (SOPs) and "
        f"{run['totals']['macs_per_image'] / 1e6:,.1f} M encoding MACs ({enc}); datapath: "
        f"{run['totals']['additions_per_image'] / 1e9:,.3f} G additions, the encoding conv as pixel bit planes, "
        "no MAC (docs/energy.md).",
    ]
    sections = [{"title": "Energy in two models, two countings", "markdown": "\n".join(lines)}]

    scale, unit = (1e6, "µJ") if max(r["energy_paper_pj"] for r in rows) >= 1e6 else (1e3, "nJ")
    has_mem = "energy_memory_pj" in rows[0]
    head = ["#", "layer", "SOPs (paper)", "additions (datapath)", f"paper model, paper counting ({unit})",
            f"paper model, datapath ({unit})"]
    head += [f"memory-aware, datapath ({unit})", "of it memory"] if has_mem else []
    table = ["| " + " | ".join(head) + " |", "|" + "|".join(["---:", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for i, r in enumerate(rows):
        cells = [str(i), r["name"], f"{r['sops']:,.0f}", f"{r['additions']:,.0f}",
                 f"{r['energy_paper_pj'] / scale:,.3g}", f"{r['energy_datapath_pj'] / scale:,.3g}"]
        if has_mem:
            mem = r["energy_memory_pj"] - r["compute_pj"]
            cells += [f"{r['energy_memory_pj'] / scale:,.3g}",
                      f"{100 * mem / r['energy_memory_pj']:.0f}%" if r["energy_memory_pj"] else "–"]
        table.append("| " + " | ".join(cells) + " |")
    sections.append({"title": "Energy per layer", "markdown": "\n".join(table)})

    if est["memories"]:
        mt = ["| memory | macros x depth x width | size | pJ/access | reads | writes | energy | share |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
        total = sum(m["energy_pj"] for m in est["memories"].values()) + sum(r["compute_pj"] for r in rows)
        for name, m in est["memories"].items():
            banks = f" x {m['banks']} banks" if m["banks"] > 1 else ""
            flag = " *" if m["extrapolated"] else ""
            mt.append(f"| {name} | {m['macros']} x {m['depth']:,} x {m['width']}{banks} | {_bytes(m['bytes'])} | "
                      f"{m['pj_per_access']:.3g}{flag} | {m['reads']:,.0f} | {m['writes']:,.0f} | "
                      f"{_mj(m['energy_pj'] / 1e9)} | {100 * m['energy_pj'] / total:.1f}% |")
        compute = sum(r["compute_pj"] for r in rows)
        mt.append(f"| (integer arithmetic) | | | | | | {_mj(compute / 1e9)} | {100 * compute / total:.1f}% |")
        mt += ["", "Words per image, datapath counting (hwgen.perf.memory.layer_traffic, which the core's "
               "traffic counters equal on simulated images). "
               "pJ/access for one word of all its macros; * outside Horowitz's 8 KB - 1 MB SRAM points "
               "(extrapolated; a memory beyond 1 MB would in practice be DRAM, 1.3-2.6 nJ per 64 bits)."]
        sections.append({"title": "Memory traffic (memory-aware model)", "markdown": "\n".join(mt)})

    fit = est["fit"]
    if fit["fits"]:
        text = f"The program fits `{run['config']}`."
    else:
        text = f"The program does **not** fit `{run['config']}`:\n\n" + "\n".join(f"- {p}" for p in fit["problems"])
    if fit["needs"]:
        text += "\n\n| memory or limit | needs | has | config key |\n|---|---:|---:|---|\n" + "\n".join(
            f"| {n} | {v['need']:,} | {v['have']:,} | `{v['key']}` |" for n, v in fit["needs"].items())
    sections.append({"title": "Fit", "markdown": text})
    notes = est["notes"] + [f"cycles: {est['cycle_model']}"]
    sections.append({"title": "Notes", "markdown": "\n".join(f"- {n}" for n in notes)})
    return sections


def _bytes(b: float) -> str:
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if b >= scale:
            return f"{b / scale:,.3g} {unit}"
    return f"{b:.0f} B"


def write_estimate(run: dict, out: str | Path) -> tuple[Path, Path, Path]:
    """``run.json``, ``report.md`` and ``report.png`` into ``out`` (written whole or not at all)."""
    from hwgen.report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "run.json.tmp"
    tmp.write_text(json.dumps(run, indent=1) + "\n")
    os.replace(tmp, out / "run.json")
    md, png = write_report(run, out)
    return out / "run.json", md, png


# ---------------------------------------------------------------------------- command line
def run_estimate(args: argparse.Namespace) -> int:
    """`hwgen estimate`: print the per-layer table and totals, write the folder; 2 on bad input."""
    from contract.config import ConfigError
    from contract.program import ProgramError
    from contract.progress import Progress
    from golden.images import ImageError
    from hwgen.perf.rates import RateError

    out = Path(args.out or f"build/estimates/{Path(args.program).name}")
    try:
        hw = load_config(args.config) if args.config else None
        run = estimate(args.program, rates=args.rates, images=args.images, hw=hw, start=args.start, count=args.count,
                       allow_upscale=args.allow_upscale, pixel_ones=args.pixel_ones,
                       encoding_timesteps=None if args.encoding_per_timestep else 1,
                       progress=lambda total: Progress("estimate", total))
    except (ConfigError, ProgramError, ImageError, RateError, FileNotFoundError, ValueError) as e:
        print(f"hwgen estimate: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        paths = write_estimate(run, out)
    except OSError as e:
        print(f"hwgen estimate: cannot write {out}: {e}", file=sys.stderr)
        return EXIT_FAIL
    _print(run)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _print(run: dict) -> None:
    t, est = run["totals"], run["estimate"]
    has_mem = "energy_memory_pj" in run["layers"][0]
    print(f"{'layer':40s} {'kind':9s} {'cycles':>11s} {'rate':>6s} {'SOPs':>14s} {'additions':>14s} "
          f"{'paper':>10s}" + (f" {'memory':>10s}" if has_mem else ""))
    for r in run["layers"]:
        rate = "" if r["input_rate"] is None else f"{r['input_rate']:.3f}"
        cycles = "n/m" if r["cycles"] is None else f"{r['cycles']:,.0f}"
        mem = f" {r['energy_memory_pj'] / 1e6:8.2f}uJ" if has_mem else ""
        print(f"{r['name'][:40]:40s} {r['kind']:9s} {cycles:>11s} {rate:>6s} {r['sops']:14,.0f} "
              f"{r['additions']:14,.0f} {r['energy_paper_pj'] / 1e6:8.2f}uJ{mem}")
    cycles = t["cycles_per_image"]
    print(f"cycles/image: {'not modelled yet' if cycles is None else f'{cycles:,.0f}'} "
          f"(bound {t['bound_per_image']:,.0f})")
    e, paper = est["energy_mj"], est["paper_figure_mj"]
    print(f"energy/image, paper's model: {e['paper_model']['paper']:.3f} mJ (paper's counting), "
          f"{e['paper_model']['datapath']:.3f} mJ (datapath's additions)"
          + (f"; the paper: {paper:g} mJ" if paper else ""))
    if e["memory_aware"]["datapath"] is not None:
        print(f"energy/image, memory-aware: {e['memory_aware']['datapath']:.3f} mJ (datapath), "
              f"{e['memory_aware']['paper']:.3f} mJ (paper's counting)")
    fit = est["fit"]
    print("fits the core" if fit["fits"] else "does not fit the core: " + "; ".join(fit["problems"]))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `estimate` subcommand on ``hwgen``'s subparsers."""
    p = subparsers.add_parser("estimate", help="cycles, operations, memory traffic and energy per layer of a program, "
                                               "from images or a rate table, without an RTL run")
    p.add_argument("program", metavar="PROGRAM", help="program folder written by hwgen quantize")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--rates", metavar="TABLE", help="per-layer firing rates, e.g. configs/rates/paper_31m_t4.yaml")
    src.add_argument("--images", metavar="SOURCE",
                     help="image folder (ImageFolder layout or flat), .npy/.pt tensor file, 'digits[:train|test]' or "
                          "'random[:SEED]': the integer engine measures every layer's firing rates on them")
    p.add_argument("--start", type=int, default=0, help="first image of the source (default 0)")
    p.add_argument("--count", type=int, help="images from --start (default: all)")
    p.add_argument("--allow-upscale", action="store_true",
                   help="resize images smaller than the crop up instead of refusing them")
    p.add_argument("--config",
                   help="hardware configuration of the core (default: the one the program was quantized for)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: build/estimates/<program folder name>)")
    p.add_argument("--encoding-per-timestep", action="store_true",
                   help="paper's counting: charge the encoding conv's MACs at every timestep (default: once per image)")
    p.add_argument("--pixel-ones", type=float, metavar="N",
                   help="with --rates: mean set bits per pixel for the bit-plane encoding (default: input_bits / 2)")
    p.set_defaults(func=run_estimate)
    return p
