"""Input firing rates per layer: typed in from a rate table (``configs/rates/*.yaml``) or measured
from the integer engine's spike tensors.

Both give :class:`LayerRates` per layer: for every spike input of the layer (``"input"`` for a
conv or linear layer, ``"q"``, ``"k"``, ``"v"`` for an SDSA layer, ``"mask"`` and ``"v"`` for a
mask) the firing rate at each timestep, i.e. the fraction of ones in that spike tensor. That is
the paper's ``R`` (Yao et al. 2024, Appendix B.2: "the proportion of non-zero elements in the
spike tensor").

A rate table (format ``spikeforge-rates``, version 1) lists rows; each row has ``rates`` (one per
timestep), the paper's ``average``, and says which layers consume it (``layers``, ``if_present``,
or ``sdsa`` + ``tensor``; see ``configs/rates/paper_31m_t4.yaml``). :meth:`RateTable.for_program`
maps it onto a program and refuses, naming the row or the layer, a row whose layer the program
does not have and a spike-consuming layer no row gives a rate for.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import yaml

from contract.fsutil import read_document
from contract.program import Layer

__all__ = ["RateError", "RateRow", "RateTable", "LayerRates", "load_rate_table", "spike_inputs",
           "measured_rates", "SDSA_TENSORS"]

FORMAT, VERSION = "spikeforge-rates", 1
#: tensors a row may name for an SDSA layer; ``kv`` and ``attention`` are integer matrices the
#: paper's table lists too (non-zero fractions), consumed by no layer as spikes
SDSA_TENSORS = ("q", "k", "v", "kv", "attention")


class RateError(ValueError):
    """A rate table is malformed or does not fit the program; the message names file, row and layer."""


@dataclass(frozen=True)
class RateRow:
    """One row of a rate table: a spike tensor's rate per timestep and who consumes it."""

    row: str
    rates: tuple[float, ...]
    average: float | None
    layers: tuple[str, ...] = ()
    if_present: tuple[str, ...] = ()
    sdsa: str | None = None
    tensor: str | None = None


@dataclass
class LayerRates:
    """The input firing rates of one layer: role -> one rate per timestep (``len == T``)."""

    roles: dict[str, list[float]] = field(default_factory=dict)

    def mean(self, role: str | None = None) -> float | None:
        """Mean over timesteps of one role, or of all roles (None when the layer has none)."""
        values = [self.roles[role]] if role else list(self.roles.values())
        return float(np.mean([np.mean(v) for v in values])) if values else None


def _kind(layer: Layer):
    from hwgen.compiler.kinds import core_kind      # amaranth: only when rates are asked for

    return core_kind(layer.kind)


def spike_inputs(layer: Layer) -> dict[str, str]:
    """The spike tensors a layer consumes, role -> tensor name (the encoding conv's pixels and
    a membrane shortcut's integers are not spikes): its kind's ``spike_roles`` hook."""
    return _kind(layer).spike_roles(layer)


@dataclass
class RateTable:
    rows: list[RateRow]
    timesteps: int
    source: str = ""
    path: str = "<memory>"

    def for_program(self, layers: list[Layer], T: int) -> dict[str, LayerRates]:
        """Rates per layer name for a program's ``layers`` and ``T`` (the first T columns)."""
        if T > self.timesteps:
            raise RateError(f"{self.path}: the table gives {self.timesteps} timesteps, the program runs T = {T}")
        by_name = {layer.name: layer for layer in layers}
        out: dict[str, LayerRates] = {}
        for row in self.rows:
            rates = [float(r) for r in row.rates[:T]]
            if row.sdsa is not None:
                layer = by_name.get(row.sdsa)
                if layer is None or _kind(layer).unit != "sdsa":
                    raise RateError(f"{self.path}: row {row.row!r} names SDSA layer {row.sdsa!r}, which the program "
                                    f"does not have" + ("" if layer is None else f" (it is a {layer.kind} layer)"))
                if row.tensor in spike_inputs(layer):
                    self._put(out, layer, row.tensor, rates, row)
                continue
            names = list(row.layers) + [n for n in row.if_present if n in by_name]
            for name in names:
                layer = by_name.get(name)
                if layer is None:
                    raise RateError(f"{self.path}: row {row.row!r} names layer {name!r}, which the program does not "
                                    "have")
                if _kind(layer).pixels(layer):
                    continue            # the encoding conv: its input is the image (the table says 1)
                if "input" not in spike_inputs(layer):
                    raise RateError(f"{self.path}: row {row.row!r} names {name!r}, a {layer.kind} layer with no "
                                    "spike input")
                self._put(out, layer, "input", rates, row)
        missing = [(layer.name, role) for layer in layers for role in spike_inputs(layer)
                   if role not in out.get(layer.name, LayerRates()).roles]
        if missing:
            name, role = missing[0]
            raise RateError(f"{self.path}: no row gives the rate of {name!r} ({role})"
                            + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        return out

    @staticmethod
    def _put(out: dict[str, LayerRates], layer: Layer, role: str, rates: list[float], row: RateRow) -> None:
        entry = out.setdefault(layer.name, LayerRates())
        if role in entry.roles:
            raise RateError(f"row {row.row!r}: {layer.name!r} ({role}) already has a rate from another row")
        entry.roles[role] = rates


def _problem(path: str, where: str, value, expected: str) -> RateError:
    text = repr(value)
    return RateError(f"{path}: {where} = {text if len(text) <= 60 else text[:57] + '...'}: {expected}")


def _names(path: str, where: str, value) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _problem(path, where, value, "expected a list of layer names")
    return tuple(value)


def load_rate_table(path: str | Path) -> RateTable:
    """Read and validate a rate table (RateError naming the row and key on a bad file)."""
    path = Path(path)
    doc = read_document(path, yaml.safe_load, RateError, (yaml.YAMLError,), "YAML")
    p = str(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        got = doc.get("format") if isinstance(doc, dict) else doc
        raise _problem(p, "format", got, f"expected {FORMAT!r}, version {VERSION}")
    T = doc.get("timesteps")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise _problem(p, "timesteps", T, "expected an integer >= 1")
    raw_rows = doc.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows:
        raise _problem(p, "rows", raw_rows, "expected a non-empty list")
    rows = []
    for i, r in enumerate(raw_rows):
        where = f"rows[{i}]"
        if not isinstance(r, dict):
            raise _problem(p, where, r, "expected a mapping")
        unknown = sorted(set(r) - {"row", "rates", "average", "layers", "if_present", "sdsa", "tensor"})
        if unknown:
            raise _problem(p, f"{where}.{unknown[0]}", r[unknown[0]], "unknown key")
        label = r.get("row", where)
        rates = r.get("rates")
        if (not isinstance(rates, list) or len(rates) != T
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in rates)):
            raise _problem(p, f"{where} ({label}).rates", rates, f"expected {T} rates in [0, 1]")
        average = r.get("average")
        if average is not None and abs(float(np.mean(rates)) - average) > 1e-4:
            raise _problem(p, f"{where} ({label}).average", average,
                           f"differs from the mean of the rates ({np.mean(rates):.5f}) by more than 1e-4: a typo?")
        sdsa, tensor = r.get("sdsa"), r.get("tensor")
        layers, if_present = _names(p, f"{where}.layers", r.get("layers")), _names(p, f"{where}.if_present",
                                                                                     r.get("if_present"))
        if (sdsa is None) == (not layers and not if_present):
            raise _problem(p, f"{where} ({label})", sorted(r), "expected either layers (and/or if_present) or "
                                                               "sdsa with tensor")
        if sdsa is not None and tensor not in SDSA_TENSORS:
            raise _problem(p, f"{where} ({label}).tensor", tensor, f"expected one of {', '.join(SDSA_TENSORS)}")
        rows.append(RateRow(str(label), tuple(float(v) for v in rates), average, layers, if_present, sdsa, tensor))
    return RateTable(rows, T, str(doc.get("source", "")), p)


def measured_rates(layer: Layer, tensors: Mapping[str, np.ndarray]) -> LayerRates:
    """The rates of ``layer``'s spike inputs from the tensors of one image (``[T, ...]`` each)."""
    out = LayerRates()
    for role, name in spike_inputs(layer).items():
        s = np.asarray(tensors[name])
        out.roles[role] = [float(s[t].mean()) for t in range(s.shape[0])]
    return out
