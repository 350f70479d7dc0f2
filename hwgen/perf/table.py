"""Per-layer rows and totals of an estimate: operations in both counting conventions, energy in
both models, memory traffic, bounds, and the cycles when a cycle model supplies them.

:func:`layer_rows` takes, per layer, the paper's and the datapath's :class:`~hwgen.perf.energy.Work`
(means over the images, or expected from rates) and returns rows in the ``run.json`` layer
format of ``hwgen sim`` (hwgen/report.py) plus the estimate's own fields:

========================  =================================================================
``additions``, ``macs``   the datapath's synaptic additions; the encoding conv's MACs (as
                          ``hwgen sim`` records them)
``energy_pj``             as ``hwgen sim``: E_MAC x MACs for the encoding conv, E_AC x
                          additions for every other layer
``sops``                  the paper's counting: FLOPs x input rate, summed over timesteps
``energy_paper_pj``       paper's model, paper's counting (encoding MACs once, or T times)
``energy_datapath_pj``    paper's model, datapath counting (every addition at E_AC, the
                          encoding conv's bit-plane additions included, no MAC)
``energy_memory_pj``      memory-aware model, datapath counting (compute + every memory)
``energy_memory_paper_pj`` memory-aware model on the paper's counting (its operations, with
                          the datapath's accesses per operation)
``memory``, ``memory_pj`` datapath words read and written per memory, and their energy
``cycles``                from the cycle model, or null: not modelled
========================  =================================================================
"""
from __future__ import annotations

import math
from typing import Sequence

from contract.config import HwConfig
from contract.program import Layer
from hwgen.perf.energy import E_AC_PJ, E_MAC_PJ, Work, paper_model_pj
from hwgen.perf.memory import MemorySpec, SramModel, layer_traffic, memory_aware_pj

__all__ = ["layer_rows", "totals"]


def _bound(layer: Layer, work: Work, T: int, lanes: int) -> float:
    """The fewest cycles the layer's unit could take (docs/core.md): ``ceil(additions / lanes)``
    for the accumulator array and the SDSA unit, one word per cycle for the rest (the kind's
    ``estimate_bound`` hook)."""
    from hwgen.compiler.kinds import core_kind

    return core_kind(layer.kind).estimate_bound(layer, work, T, lambda c: math.ceil(c / lanes))


def layer_rows(layers: Sequence[Layer], hw_layers: Sequence[Layer], paper: Sequence[Work],
               datapath: Sequence[Work], input_rates: Sequence[float | None], *, T: int, hw: HwConfig,
               memories: dict[str, MemorySpec] | None, cycles: Sequence[float] | None = None,
               encoding_timesteps: int = 1, model: SramModel = SramModel()) -> list[dict]:
    """One row per layer (see the module docstring). ``layers``: the program's; ``hw_layers``:
    as the core runs them (padded heads); ``memories``: the core's (None: no memory-aware model,
    e.g. a config without a core)."""
    from hwgen.compiler.kinds import core_kind      # amaranth: only when an estimate is made

    lanes = hw.accumulator.lanes
    by_name = {layer.name: layer for layer in hw_layers}
    rows = []
    for i, (layer, hw_layer, pw, dw, rate) in enumerate(zip(layers, hw_layers, paper, datapath, input_rates)):
        kind = core_kind(layer.kind)
        encoding = kind.pixels(layer)
        macs = pw.macs if encoding else 0.0
        row = {
            "name": layer.name, "kind": layer.kind, "unit": kind.unit,
            "cycles": None if cycles is None else float(cycles[i]),
            "bound": _bound(hw_layer, dw, T, lanes),
            "efficiency": None,
            "additions": float(dw.additions), "macs": float(macs), "events": float(dw.events),
            "input_rate": rate,
            "energy_pj": E_MAC_PJ * macs if encoding else E_AC_PJ * dw.additions,
            "sops": float(pw.additions),
            "energy_paper_pj": paper_model_pj(pw, encoding_timesteps=encoding_timesteps),
            "energy_datapath_pj": paper_model_pj(dw),
        }
        if row["cycles"] and row["bound"]:
            row["efficiency"] = row["bound"] / row["cycles"]
        if memories is not None:
            traffic = layer_traffic(hw_layer, dw, T, lanes, by_name)
            parts = memory_aware_pj(hw_layer, dw, traffic, hw, memories, model)
            paper_traffic = layer_traffic(hw_layer, pw, T, lanes, by_name)
            paper_parts = memory_aware_pj(hw_layer, pw, paper_traffic, hw, memories, model)
            row.update(memory=traffic, memory_pj={k: v for k, v in parts.items() if k != "compute"},
                       compute_pj=parts["compute"], energy_memory_pj=sum(parts.values()),
                       energy_memory_paper_pj=sum(paper_parts.values()))
        rows.append(row)
    return rows


def totals(rows: Sequence[dict]) -> dict:
    """Sums over the layers (``None`` for a quantity a row does not have)."""
    def total(key):
        values = [r.get(key) for r in rows]
        return None if any(v is None for v in values) else float(sum(values))

    out = {key: total(key) for key in ("cycles", "bound", "additions", "macs", "sops", "energy_pj",
                                       "energy_paper_pj", "energy_datapath_pj", "energy_memory_pj",
                                       "energy_memory_paper_pj", "compute_pj")}
    if all("memory" in r for r in rows):
        memory: dict[str, list[float]] = {}
        memory_pj: dict[str, float] = {}
        for r in rows:
            for name, (reads, writes) in r["memory"].items():
                acc = memory.setdefault(name, [0.0, 0.0])
                acc[0] += reads
                acc[1] += writes
                memory_pj[name] = memory_pj.get(name, 0.0) + r["memory_pj"][name]
        out.update(memory=memory, memory_pj=memory_pj)
    return out
