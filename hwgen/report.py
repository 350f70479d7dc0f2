"""Per-layer report of a simulated run of the neuromorphic core (`hwgen report RUN`).

`hwgen sim` simulates the core on N images and writes a run folder with ``run.json``
(format ``spikeforge-run``, version 1): the program and hardware config, the timesteps T and
lanes, one entry per image (label, prediction, golden prediction, cycles, bit-exact or not),
one entry per layer and the totals. Every per-layer number is a mean over the images.
:func:`load_run` validates that file; :func:`write_report` turns it into

* ``report.md``: a header (program, config, accuracy, exact images, cycles, efficiency,
  energy and the energy model), one table row per layer (cycles, bound, efficiency,
  additions, MACs, input firing rate, energy, share of the cycles), a totals row, and the
  cycles, additions and energy summed by layer kind;
* ``report.png``: input firing rate per layer above cycles per layer (log scale) with the
  bound as a black tick, coloured by the unit that runs the layer.

A layer's ``bound`` is the lower bound on its cycles from its work and the lanes;
``efficiency = bound / cycles`` (null when the bound is 0). The whole-network efficiency is
the summed bound over the summed cycles.

Energy model (the Meta-SpikeFormer paper's, 45 nm figures from Horowitz, ISSCC 2014)::

    E = E_MAC * MACs + E_AC * SOPs,    E_MAC = 4.6 pJ,  E_AC = 0.9 pJ

The encoding layer takes pixels (integers, not spikes), so it multiplies and accumulates:
each of its operations costs a MAC. Every other layer takes spikes, so a synaptic
operation (SOP) is one addition of a weight. ``run.json`` carries the constants the simulator
used (``energy_model``) and each layer's ``energy_pj``; the report prints them, it does not
recompute them.

Unknown keys in ``run.json`` are ignored, so a simulator can add fields without a version
bump; a missing or mistyped known key is a :class:`RunError`.

An estimate (``hwgen estimate``, hwgen/estimate.py: ``"kind": "estimate"``, no RTL run) writes
the same file: a layer's ``cycles`` (and ``totals.cycles_per_image``) may be null, "not modelled
yet"; ``images_note`` replaces the images line of the header; ``sections`` (a list of
``{"title", "markdown"}``) are appended to ``report.md`` as they are.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract.program import KINDS as PROGRAM_KINDS
from hwgen.compiler.kinds import UNITS

__all__ = ["RunError", "load_run", "write_report", "add_parser", "run_report",
           "RUN_FORMAT", "RUN_VERSION", "KINDS", "UNITS", "FIGSIZE", "DPI"]

RUN_FORMAT, RUN_VERSION = "spikeforge-run", 1
KINDS = tuple(PROGRAM_KINDS)         # the layer kinds (contract.program.KINDS)
# UNITS (hwgen.compiler.kinds): the parts of the core that run them, in the legend's order
UNIT_COLOURS = {"accumulator": "#1f77b4", "lif": "#ff7f0e", "sdsa": "#2ca02c", "vector": "#9467bd"}
FIGSIZE, DPI = (14, 8), 120
# Same codes as hwgen.cli; not imported from there because cli imports this module.
EXIT_FAIL, EXIT_USAGE = 1, 2
NA = "–"  # a value that does not exist (no bound, no spike input), not a zero


class RunError(ValueError):
    """``run.json`` is unreadable or invalid. ``str()`` is a one-line message for the user."""


# ---------------------------------------------------------------------------- validation
# A check takes a value and returns None when it is fine, else what was expected.
Check = Callable[[Any], "str | None"]


def _is_number(v) -> bool:
    # bool is an int in Python; `true` is not a cycle count. NaN/inf would poison every sum.
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(lo: float | None = 0, hi: float | None = None, null: bool = False) -> Check:
    def check(v):
        if v is None and null:
            return None
        if not _is_number(v):
            return "expected a number" + (" or null" if null else "")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return f"expected a number in [{lo}, {hi}]" if hi is not None else f"expected a number >= {lo}"
        return None
    return check


def _integer(lo: int = 0, null: bool = False) -> Check:
    def check(v):
        if v is None and null:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            return "expected an integer" + (" or null" if null else "")
        return None if v >= lo else f"expected an integer >= {lo}"
    return check


def _choice(options: tuple[str, ...]) -> Check:
    return lambda v: None if v in options else f"expected one of {', '.join(options)}"


def _string(v) -> str | None:
    return None if isinstance(v, str) else "expected a string"


def _boolean(v) -> str | None:
    return None if isinstance(v, bool) else "expected true or false"


def _optional(check: Check) -> Check:
    def wrapped(v):
        return check(v)
    wrapped.optional = True
    return wrapped


class _ListOf:
    """Spec of a JSON list whose items all follow ``item``."""

    def __init__(self, item, non_empty: bool = False):
        self.item, self.non_empty = item, non_empty


_IMAGE = {"index": _integer(), "label": _integer(null=True), "predicted": _integer(),
          "golden_predicted": _integer(), "cycles": _number(), "exact": _boolean}
_LAYER = {"name": _string, "kind": _choice(KINDS), "unit": _choice(UNITS),
          "cycles": _number(), "bound": _number(), "efficiency": _number(null=True),
          "additions": _number(), "macs": _number(), "events": _number(),
          "input_rate": _number(0, 1, null=True), "energy_pj": _number()}
_TOTALS = {"cycles_per_image": _number(), "bound_per_image": _number(), "efficiency": _number(null=True),
           "serial_bound_per_image": _optional(_number()), "additions_bound_per_image": _optional(_number()),
           "additions_per_image": _number(), "macs_per_image": _number(), "energy_pj_per_image": _number(),
           "accuracy": _number(0, 1, null=True), "exact_images": _integer(), "images": _integer()}


def _sections(v) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, dict) and isinstance(x.get("title"), str)
                                     and isinstance(x.get("markdown"), str) for x in v)
    return None if ok else "expected a list of {title, markdown} strings"


_RUN = {"program": _string, "config": _string, "T": _integer(1), "lanes": _integer(1),
        "images_note": _optional(_string), "sections": _optional(_sections),
        "energy_model": {"e_ac_pj": _number(), "e_mac_pj": _number(), "note": _optional(_string)},
        "images": _ListOf(_IMAGE), "layers": _ListOf(_LAYER, non_empty=True), "totals": _TOTALS}
# an estimate (no RTL run) may leave the cycles null: not modelled yet
_ESTIMATE = {**_RUN, "layers": _ListOf({**_LAYER, "cycles": _number(null=True)}, non_empty=True),
             "totals": {**_TOTALS, "cycles_per_image": _number(null=True)}}


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."  # a whole object would flood the line


def _bad(source, key: str, value, expected: str) -> RunError:
    return RunError(f"{source}: {key} = {_show(value)}: {expected}")


def _validate(source, value, spec, key: str) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise _bad(source, key, value, "expected an object")
        for name, sub in spec.items():
            path = f"{key}.{name}" if key else name
            if name in value:
                _validate(source, value[name], sub, path)
            elif not getattr(sub, "optional", False):
                raise RunError(f"{source}: {path}: missing")
    elif isinstance(spec, _ListOf):
        if not isinstance(value, list):
            raise _bad(source, key, value, "expected a list")
        if spec.non_empty and not value:
            raise _bad(source, key, value, "expected a non-empty list")
        for i, item in enumerate(value):
            _validate(source, item, spec.item, f"{key}[{i}]")
    else:
        problem = spec(value)
        if problem:
            raise _bad(source, key, value, problem)


def _run_json(path: str | Path) -> Path:
    path = Path(path)
    return path / "run.json" if path.is_dir() else path


def load_run(path: str | Path) -> dict:
    """Read and validate a run (its folder or its ``run.json``).

    Raises FileNotFoundError when there is no such file, RunError when it is not a valid run.
    """
    source = _run_json(path)
    if not source.is_file():
        where = f"{path}: no run.json in this folder" if Path(path).is_dir() else f"{path}: no such file or folder"
        raise FileNotFoundError(where)
    try:
        run = json.loads(source.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise RunError(f"{source}: not a text file ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise RunError(f"{source}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    if not isinstance(run, dict):
        raise _bad(source, "(top level)", run, "expected an object")
    # Format and version first: a different file should be named as such, not as a missing key.
    if run.get("format") != RUN_FORMAT:
        raise _bad(source, "format", run.get("format"), f"expected {RUN_FORMAT!r} (a run.json from hwgen sim)")
    if run.get("version") != RUN_VERSION or isinstance(run.get("version"), bool):
        raise _bad(source, "version", run.get("version"), f"expected {RUN_VERSION} (the version this hwgen reads)")
    _validate(source, run, _ESTIMATE if run.get("kind") == "estimate" else _RUN, "")
    totals = run["totals"]
    if totals["exact_images"] > totals["images"]:
        raise _bad(source, "totals.exact_images", totals["exact_images"],
                   f"expected at most totals.images = {totals['images']}")
    return run


# ---------------------------------------------------------------------------- formatting
def _sig(v: float, digits: int = 3) -> str:
    """``digits`` significant digits, thousands separators, never scientific notation."""
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:,.{decimals}f}"


def _count(v: float | None) -> str:
    """A count (cycles, additions): whole numbers as such, fractional means to 3 digits."""
    if v is None:
        return NA   # not modelled (an estimate without a cycle model)
    return f"{v:,.0f}" if float(v).is_integer() or abs(v) >= 100 else _sig(v)


def _percent(fraction: float | None) -> str:
    return NA if fraction is None else f"{100 * fraction:.1f}%"


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _energy(pj: float) -> str:
    """Energy in the unit that keeps it readable (pJ, nJ, µJ, mJ)."""
    for unit, scale in (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{_sig(pj / scale)} {unit}"
    return f"{_sig(pj)} pJ"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe in a layer name would split the table cell


def _table(header: list[str], align: str, rows: list[list[str]]) -> list[str]:
    """Markdown table; ``align`` has one letter per column, l or r."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


# ---------------------------------------------------------------------------- markdown
def _render_markdown(run: dict, png_name: str) -> str:
    layers, totals, model = run["layers"], run["totals"], run["energy_model"]
    cycles = totals["cycles_per_image"]
    efficiency = _ratio(totals["bound_per_image"], cycles)
    images = f"{totals['images']}"
    if totals["accuracy"] is not None:
        images += f", accuracy {_percent(totals['accuracy'])}"
    images += f", bit-exact against the golden model: {totals['exact_images']}/{totals['images']}"
    images = run.get("images_note", images)
    note = f" {model['note']}" if model.get("note") else ""
    out = [
        f"# {'Estimate' if run.get('kind') == 'estimate' else 'Run'} report: {run['program']}",
        "",
        f"- **Program:** `{run['program']}`",
        f"- **Hardware config:** `{run['config']}` (T = {run['T']}, {run['lanes']} lanes)",
        f"- **Images:** {images}",
        f"- **Cycles/image:** {'not modelled yet' if cycles is None else _count(cycles)} "
        f"(bound {_count(totals['bound_per_image'])}, "
        f"efficiency bound/cycles {_percent(efficiency)}"
        + ("" if totals.get("serial_bound_per_image") is None else
           f"; one unit at a time {_count(totals['serial_bound_per_image'])}, "
           f"accumulator and SDSA additions alone {_count(totals['additions_bound_per_image'])}, "
           f"{_percent(_ratio(totals['additions_bound_per_image'], cycles))}") + ")",
        f"- **Energy/image:** {_energy(totals['energy_pj_per_image'])} "
        f"({_count(totals['additions_per_image'])} additions, {_count(totals['macs_per_image'])} MACs)",
        f"- **Energy model:** E = E_MAC × MACs + E_AC × additions (SOPs), "
        f"E_MAC = {model['e_mac_pj']:g} pJ, E_AC = {model['e_ac_pj']:g} pJ.{note}",  # as configured
        "",
        f"![input firing rate and cycles per layer]({png_name})",
        "",
        "## Layers",
        "",
        "Per image, mean over the images. Efficiency = bound / cycles; input rate is the firing rate "
        f"of the layer's spike input ({NA} when its input is not spikes).",
        "",
    ]
    # One energy unit for the whole column, so rows compare at a glance.
    nj = max(layer["energy_pj"] for layer in layers) >= 1e3
    scale, unit = (1e3, "nJ") if nj else (1.0, "pJ")
    rows = [[str(i), layer["name"], layer["kind"], layer["unit"], _count(layer["cycles"]), _count(layer["bound"]),
             _percent(layer["efficiency"]), _count(layer["additions"]), _count(layer["macs"]),
             NA if layer["input_rate"] is None else f"{layer['input_rate']:.3f}",
             _sig(layer["energy_pj"] / scale), _percent(_ratio(layer["cycles"], cycles))]
            for i, layer in enumerate(layers)]
    layer_cycles = None if cycles is None else sum(layer["cycles"] for layer in layers)
    rows.append(["", "**total**", "", "", _count(cycles), _count(totals["bound_per_image"]), _percent(efficiency),
                 _count(totals["additions_per_image"]), _count(totals["macs_per_image"]), "",
                 _sig(totals["energy_pj_per_image"] / scale), _percent(_ratio(layer_cycles, cycles))])
    out += _table(["#", "layer", "kind", "unit", "cycles", "bound", "efficiency", "additions", "MACs",
                   "input rate", f"energy ({unit})", "share of cycles"], "llllrrrrrrrr", rows)
    # Cycles spent between layers (or overlapped ones) show up as a gap; say so rather than hide it.
    if cycles and abs(layer_cycles - cycles) > 1e-3 * cycles:
        out += ["", f"The layers add up to {_count(layer_cycles)} cycles of the {_count(cycles)} per image."]

    by_kind: dict[str, list[float]] = {}
    for layer in layers:
        acc = by_kind.setdefault(layer["kind"], [0, 0.0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += layer["cycles"] or 0   # null: not modelled
        acc[2] += layer["additions"]
        acc[3] += layer["energy_pj"]
    kind_rows = [[kind, str(n), _count(c if cycles is not None else None), _percent(_ratio(c, cycles)), _count(a),
                  _energy(e)]
                 for kind, (n, c, a, e) in sorted(by_kind.items(), key=lambda kv: -kv[1][1])]
    out += ["", "## By kind", ""]
    out += _table(["kind", "layers", "cycles", "share of cycles", "additions", "energy"], "lrrrrr", kind_rows)
    for section in run.get("sections", []):
        out += ["", f"## {section['title']}", "", section["markdown"].rstrip("\n")]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- figure
def _short_name(name: str, limit: int = 18) -> str:
    """The tail of a dotted layer name, for a tick label ('block3.0.attn.q_conv' -> 'attn.q_conv')."""
    parts = [p for p in name.split(".") if not p.isdigit()] or [name]
    short = ".".join(parts[-2:])
    if len(short) > limit:
        short = parts[-1]
    return short if len(short) <= limit else short[:limit - 1] + "…"


def _render_png(run: dict) -> bytes:
    # The Figure API with the Agg canvas, not pyplot: no display, and no change to the
    # process-wide backend or pyplot's figure list for whoever imported this module.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    layers = run["layers"]
    n = len(layers)
    x = list(range(n))
    colours = [UNIT_COLOURS[layer["unit"]] for layer in layers]
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax_rate, ax_cyc = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2])
    total = run["totals"]["cycles_per_image"]
    fig.suptitle(f"{run['program']}   T = {run['T']}   "
                 + ("cycles not modelled yet: bounds only" if total is None else f"{_count(total)} cycles/image"))

    rates = [layer["input_rate"] for layer in layers]
    spiking = [i for i in x if rates[i] is not None]
    top = max([rates[i] for i in spiking], default=0) * 1.15 or 1.0
    ax_rate.bar(spiking, [rates[i] for i in spiking], width=0.8, color=[colours[i] for i in spiking])
    no_spikes = [i for i in x if rates[i] is None]
    # Full-height hatched columns: an input that is not spikes has no rate, which is not a rate of 0.
    ax_rate.bar(no_spikes, [top] * len(no_spikes), width=0.8, fill=False, hatch="///",
                edgecolor="0.8", linewidth=0)
    ax_rate.set_ylim(0, top)
    ax_rate.set_ylabel("input firing rate")
    ax_rate.grid(axis="y", alpha=0.3)

    cycles = [layer["cycles"] or 0 for layer in layers]   # null (not modelled): no bar, the bound still shows
    bounds = [(i, layer["bound"]) for i, layer in enumerate(layers) if layer["bound"] > 0]
    ax_cyc.bar(x, cycles, width=0.8, color=colours)
    if bounds:
        ax_cyc.hlines([b for _, b in bounds], [i - 0.4 for i, _ in bounds], [i + 0.4 for i, _ in bounds],
                      colors="black", linewidth=1.5)
    positive = [c for c in cycles if c > 0] + [b for _, b in bounds]
    if positive:  # a log axis needs something above zero
        ax_cyc.set_yscale("log")
        ax_cyc.set_ylim(min(positive) / 2, max(positive) * 2)
    ax_cyc.set_ylabel("cycles per image")
    ax_cyc.set_xlabel("layer")
    ax_cyc.grid(axis="y", which="major", alpha=0.3)
    ax_cyc.set_xlim(-0.6, n - 0.4)

    if n <= 100:
        fontsize = min(8.0, max(5.0, 500 / n))  # ~6 pt for 80 layers still fits 14 inches
        ax_cyc.set_xticks(x, [f"{i} {_short_name(layer['name'])}" for i, layer in enumerate(layers)],
                          rotation=90, fontsize=fontsize)
    else:  # names would overlap: every k-th index only
        ticks = x[::math.ceil(n / 50)]
        ax_cyc.set_xticks(ticks, [str(i) for i in ticks], rotation=90, fontsize=7)

    units = [u for u in UNITS if any(layer["unit"] == u for layer in layers)]
    handles = [Patch(color=UNIT_COLOURS[u], label=u) for u in units]
    handles.append(Line2D([], [], color="black", linewidth=1.5, label="bound"))
    if no_spikes:
        handles.append(Patch(fill=False, hatch="///", edgecolor="0.8", label="input not spikes"))
    ax_rate.legend(handles=handles, loc="lower right", bbox_to_anchor=(1, 1.0), ncol=len(handles),
                   fontsize=8, frameon=False)

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ---------------------------------------------------------------------------- output
def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temp file in the same folder, then os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(run: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.png`` for a run (as from :func:`load_run`) into ``out_dir``.

    Both are rendered before either is written, so a failure leaves the old pair untouched.
    Returns (markdown path, PNG path).
    """
    out_dir = Path(out_dir)
    md_path, png_path = out_dir / "report.md", out_dir / "report.png"
    markdown = _render_markdown(run, png_path.name)
    png = _render_png(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(md_path, markdown.encode("utf-8"))
    _write_atomic(png_path, png)
    return md_path, png_path


# ---------------------------------------------------------------------------- command line
def run_report(args: argparse.Namespace) -> int:
    """`hwgen report RUN [--out DIR]`: print the written paths; 2 on a bad or missing run."""
    try:
        run = load_run(args.run)
    except (RunError, OSError) as e:
        print(f"hwgen report: {e}", file=sys.stderr)
        return EXIT_USAGE
    out = args.out if args.out is not None else _run_json(args.run).parent
    try:
        paths = write_report(run, out)
    except OSError as e:
        print(f"hwgen report: cannot write the report: {e}", file=sys.stderr)
        return EXIT_FAIL
    for path in paths:
        print(f"wrote {path}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `report` subcommand on ``hwgen``'s subparsers."""
    r = subparsers.add_parser("report", help="per-layer report (markdown table and plot) of a simulated run")
    r.add_argument("run", metavar="RUN", help="run folder from hwgen sim, or its run.json")
    r.add_argument("--out", metavar="DIR", help="output folder (default: the run folder)")
    r.set_defaults(func=run_report)
    return r
