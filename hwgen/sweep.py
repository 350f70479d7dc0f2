"""`hwgen sweep SPEC.yaml`: design-space sweeps over hardware and model/quantization parameters.

A spec (YAML, docs/sweep.md) names a base hardware configuration and a grid (cartesian) and/or a
list of points over dotted configuration keys (``accumulator.lanes``, ``core.int_depth``, ...,
``lanes`` for the three units' lanes at once) and model keys (``checkpoint``, ``T``,
``weight_bits``, ``model_args``). Every point is quantized for its hardware
(:func:`hwgen.flow.quantize_checkpoint`), evaluated on real images
(:func:`hwgen.flow.evaluate_program`: float and integer top-1) and estimated
(:func:`hwgen.estimate.estimate`: cycles per image from the core's cycle model, SOPs, energy in
the paper's and in the memory-aware model, whether the program fits and what is short); the
area (Yosys cells, flip-flops, memory bits of the ``core`` top) is measured once per distinct
hardware configuration (:attr:`HwConfig.hash`).

Outputs in the sweep folder::

    points/<key>/result.json    one point's figures, written atomically (with hw.yaml beside it)
    area/<hw hash>.json         one hardware configuration's Yosys statistics
    results.csv, results.json   every point in spec order, the Pareto fronts, the run
    pareto_accuracy_energy.png  integer accuracy against energy per image
    pareto_cycles_area.png      cycles per image against area

A point's key hashes everything its figures depend on (the resolved hardware configuration, the
checkpoint's sha256, T, weight bits, model arguments, the images and counts, the metrics), so a
rerun computes only the points whose ``result.json`` is missing: an interrupted sweep resumes
where it stopped. A point that cannot be built (configuration error, quantization error, does
not fit) is recorded with its message and status; only an unexpected error is left uncached
(the next run retries it) and makes the command exit 1.

The same function (:func:`run_task`) runs a point in local worker processes
(a spawned ``multiprocessing`` pool, the default) and on a ``dask.distributed`` cluster
(``scheduler="tcp://host:8786"``; workers need spikeforge installed and the checkpoints at the
same paths). Workers return plain dicts; only this process writes the sweep folder.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from contract.config import AccumulatorConfig, ConfigError, CoreConfig, HwConfig, LifConfig, SdsaConfig, load_config
from contract.fsutil import file_sha256

__all__ = ["SpecError", "SweepSpec", "SweepPoint", "load_spec", "run_task", "sweep", "pareto_front",
           "COLUMNS", "METRICS", "add_parser", "run_sweep"]

EXIT_FAIL, EXIT_USAGE = 1, 2
#: bump when a point's figures change meaning: every cached point is then computed again
SWEEP_VERSION = 1
#: what a sweep can measure; cycles and energy come from one estimate run, area from Yosys
METRICS = ("accuracy", "cycles", "energy", "area")
_MODEL_METRICS = ("accuracy", "cycles", "energy")
_SECTIONS = {"lif": LifConfig, "accumulator": AccumulatorConfig, "sdsa": SdsaConfig, "core": CoreConfig}
_LANES = ("lif.lanes", "accumulator.lanes", "sdsa.lanes")     # one tensor memory word: equal in a core
_MODEL_KEYS = ("checkpoint", "T", "weight_bits", "model_args")
_TOP_KEYS = ("name", "root", "base", "images", "count", "estimate_count", "metrics", "defaults", "grid", "points",
             "plots")
#: an SRAM bit cell is six transistors: memory bits and logic in one area figure (docs/sweep.md)
SRAM_TRANSISTORS_PER_BIT = 6

#: columns of results.csv (and keys of each results.json row), in order; the varied parameters
#: that are not among them follow ``status``
COLUMNS = (
    "index", "key", "label", "status",
    "checkpoint", "T", "lanes", "weight_bits", "hw_hash",
    "float_top1", "int_top1", "agreement", "accuracy_images",
    "cycles_per_image", "bound_per_image", "efficiency", "sops_per_image", "additions_per_image", "macs_per_image",
    "energy_uj_paper", "energy_uj_paper_datapath", "energy_uj_memory", "energy_uj_memory_paper", "estimate_images",
    "fits", "short",
    "cells", "flip_flops", "logic_cells", "memory_bits", "transistors_logic", "area_transistors",
    "pareto_accuracy_energy", "pareto_cycles_area", "message", "point_s",
)
_METRIC_COLUMNS = COLUMNS[COLUMNS.index("float_top1"):COLUMNS.index("short") + 1]
_AREA_COLUMNS = ("cells", "flip_flops", "logic_cells", "memory_bits", "transistors_logic", "area_transistors")
#: columns the Pareto plots may use (spec ``plots:``)
_ENERGY_COLUMNS = ("energy_uj_memory", "energy_uj_paper", "energy_uj_paper_datapath", "energy_uj_memory_paper")
_AREA_AXES = ("area_transistors", "cells", "logic_cells", "memory_bits", "transistors_logic")


class SpecError(ValueError):
    """A sweep spec is invalid. ``str()`` is one line naming the file, the key, the value and what
    is allowed (as :class:`contract.config.ConfigError`)."""

    def __init__(self, source: str, key: str, value: Any, allowed: str):
        self.source, self.key, self.value, self.allowed = source, key, value, allowed
        super().__init__(f"{source}: {key} = {value!r}: {allowed}")


# ---------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep, resolved: ``params`` as the spec sets them (over ``defaults``),
    ``hw`` the full hardware configuration as a dict, ``config`` the validated one (None, and
    ``error`` its message, when the configuration is invalid)."""

    index: int
    params: dict
    label: str
    hw: dict
    config: HwConfig | None
    error: str | None
    checkpoint: str | None          # absolute path
    checkpoint_sha256: str | None
    T: int | None                   # None: the checkpoint's own
    weight_bits: int
    model_args: dict
    key: str

    @property
    def hw_hash(self) -> str | None:
        return None if self.config is None else self.config.hash

    @property
    def lanes(self) -> int | None:
        return self.hw.get("lif", {}).get("lanes") if isinstance(self.hw.get("lif"), dict) else None


@dataclass(frozen=True)
class SweepSpec:
    """A loaded, validated sweep spec: its settings and the points in order."""

    source: str
    name: str
    root: Path
    images: str
    images_hash: str | None
    count: int | None
    estimate_count: int
    metrics: tuple
    plots: dict
    points: list[SweepPoint]
    varied: list[str]               # parameter names whose values differ between points
    notes: list[str] = field(default_factory=list)

    @property
    def model_metrics(self) -> bool:
        """True when points are quantized and run (accuracy, cycles or energy asked for)."""
        return any(m in self.metrics for m in _MODEL_METRICS)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_param(source: str, where: str, key: str, value, root: Path):
    """Validate one point parameter; return its normalized value (paths made absolute)."""
    if key in ("lanes", "weight_bits"):
        if not _is_int(value) or value < 1:
            raise SpecError(source, where, value, "must be a positive integer")
        return value
    if key == "T":
        if value is not None and (not _is_int(value) or value < 1):
            raise SpecError(source, where, value, "must be a positive integer, or null for the checkpoint's own T")
        return value
    if key in ("checkpoint", "base"):
        if not isinstance(value, str) or not value:
            raise SpecError(source, where, value, "must be a file path (relative to root)")
        path = (root / value).resolve()
        if not path.is_file():
            raise SpecError(source, where, value, f"no such file (root is {root})")
        if key == "base":
            try:
                cfg = load_config(path)
            except ConfigError as e:
                raise SpecError(source, where, value, f"is not a valid hardware configuration: {e}") from None
            if cfg.core is None:
                raise SpecError(source, where, value, "has no 'core' section: a sweep measures programs on the core")
        return str(path)
    if key == "model_args":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise SpecError(source, where, value, "must be a mapping of constructor arguments (num_heads: 4, ...)")
        if "T" in value:
            raise SpecError(source, where + ".T", value["T"], "set T as its own parameter (T: 4)")
        return dict(value)
    section, _, name = key.partition(".")
    fields = {f.name: f for f in dataclasses.fields(_SECTIONS[section])} if section in _SECTIONS else {}
    if name not in fields:
        raise SpecError(source, where, value,
                        "unknown parameter; allowed: lanes, checkpoint, T, weight_bits, model_args, base, or a "
                        "hardware key section.field with section one of " + ", ".join(_SECTIONS)
                        + (f" (fields of {section}: {', '.join(fields)})" if fields else ""))
    kind = fields[name].metadata.get("kind", int)
    ok = (_is_int(value) if kind is int else isinstance(value, str) if kind is str
          else isinstance(value, list) if kind is tuple else True)
    if not ok:
        wanted = {int: "an integer", str: "a string", tuple: "a list"}.get(kind, str(kind))
        raise SpecError(source, where, value, f"must be {wanted} ({key}: {fields[name].metadata.get('help', '')})")
    return value


def _settings(source: str, where: str, raw, root: Path) -> dict:
    """A mapping of point parameters (one grid value or one list point), validated."""
    if not isinstance(raw, dict) or not raw:
        raise SpecError(source, where, raw, "must be a non-empty mapping of parameters to values")
    return {k: _check_param(source, f"{where}.{k}", k, v, root) for k, v in raw.items()}


def _grid(source: str, raw, root: Path) -> list[dict]:
    """The cartesian product of the grid's axes. An axis is ``key: [values]``, or
    ``name: [{key: value, ...}, ...]`` to vary several keys together (a checkpoint with its SDSA
    variant); no key may be set by two axes."""
    if not isinstance(raw, dict) or not raw:
        raise SpecError(source, "grid", raw, "must be a mapping of axes to lists of values")
    axes, owner = [], {}
    for name, values in raw.items():
        where = f"grid.{name}"
        if not isinstance(values, list) or not values:
            raise SpecError(source, where, values, "must be a non-empty list of values")
        if all(isinstance(v, dict) for v in values):
            axis = [_settings(source, f"{where}[{i}]", v, root) for i, v in enumerate(values)]
        elif any(isinstance(v, dict) for v in values):
            raise SpecError(source, where, values, "must list plain values, or only mappings of parameters")
        else:
            axis = [{name: _check_param(source, f"{where}[{i}]", name, v, root)} for i, v in enumerate(values)]
        for key in {k for s in axis for k in s}:
            if key in owner:
                raise SpecError(source, where, values, f"sets {key}, which grid.{owner[key]} sets already")
            owner[key] = name
        axes.append(axis)
    return [{k: v for s in combo for k, v in s.items()} for combo in itertools.product(*axes)]


def _images_hash(images: str) -> str | None:
    """Content hash of a file image source; of the listing (names, sizes, mtimes) of a folder;
    None for the built-in sources (digits, random), named by their spelling."""
    path = Path(images)
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        listing = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                         for p in path.rglob("*") if p.is_file())
        return _digest(listing)
    return None


def _hw_dict(base: dict, params: dict) -> dict:
    """The base configuration with the point's hardware parameters applied (``lanes`` first)."""
    hw = copy.deepcopy(base)
    for key in (*(_LANES if "lanes" in params else ()), *(k for k in params if "." in k)):
        section, _, name = key.partition(".")
        hw.setdefault(section, {})[name] = params["lanes"] if key in _LANES and key not in params else params[key]
    return hw


def _short(key: str, value) -> str:
    if key in ("checkpoint", "base"):
        return Path(value).stem
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _resolved(p: SweepPoint, key: str, root: Path):
    """The value of parameter ``key`` at point ``p``, set or inherited (base configuration, defaults)."""
    if key in p.params:
        value = p.params[key]
    elif key == "lanes":
        value = p.lanes
    elif key in ("T", "weight_bits", "checkpoint", "model_args"):
        value = {"T": p.T, "weight_bits": p.weight_bits, "checkpoint": p.checkpoint, "model_args": p.model_args}[key]
    elif "." in key:
        section, _, name = key.partition(".")
        value = p.hw.get(section, {}).get(name)
    else:
        value = None
    return _rel(value, root) if key in ("checkpoint", "base") and value is not None else value


def _label(p: SweepPoint, varied: list[str], root: Path) -> str:
    """``lanes=8 weight_bits=4 checkpoint=digits_sdsa3_t1``: the varied parameters of a point (the
    model keys and lanes always, a hardware key where the point sets it)."""
    shown = [k for k in varied if k in p.params or k in ("lanes", "weight_bits", "checkpoint", "T")]
    parts = [f"{k}={_short(k, v)}" for k in shown if (v := _resolved(p, k, root)) is not None]
    return " ".join(parts) or f"point {p.index}"


def load_spec(spec: str | Path | dict, *, root: str | Path | None = None) -> SweepSpec:
    """Read and validate a sweep spec (a YAML file, or the same as a dict with ``root`` or the
    current folder for its relative paths). Raises :class:`SpecError` naming file, key and value."""
    if isinstance(spec, dict):
        raw, source, folder = spec, "<spec>", Path(root or ".").resolve()
    else:
        source, folder = str(spec), Path(spec).resolve().parent
        try:
            raw = yaml.safe_load(Path(spec).read_text())
        except OSError as e:
            raise SpecError(source, "<file>", None, f"cannot be read: {e.strerror}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise SpecError(source, f"line {mark.line + 1}" if mark else "<file>", None,
                            f"is not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise SpecError(source, "<top>", raw, "must be a mapping with base and a grid or points")
    for key in raw:
        if key not in _TOP_KEYS:
            raise SpecError(source, key, raw[key], f"unknown key; allowed keys: {', '.join(_TOP_KEYS)}")
    root_raw = raw.get("root", ".")
    if not isinstance(root_raw, str) or not (folder / root_raw).is_dir():
        raise SpecError(source, "root", root_raw, f"must be a folder (relative to {folder})")
    root = (folder / root_raw).resolve()
    name = raw.get("name", Path(source).stem if source != "<spec>" else "sweep")
    if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
        raise SpecError(source, "name", name, "must be a name of letters, digits, - and _")
    if "base" not in raw:
        raise SpecError(source, "base", None, "is required: the hardware configuration the points change")
    base = _check_param(source, "base", "base", raw["base"], root)

    metrics = raw.get("metrics", list(METRICS))
    if not isinstance(metrics, list) or not metrics or any(m not in METRICS for m in metrics):
        raise SpecError(source, "metrics", metrics, f"must be a non-empty list of {', '.join(METRICS)}")
    images = raw.get("images", "digits:test")
    if not isinstance(images, str):
        raise SpecError(source, "images", images, "must be an image source: digits[:train|test], random[:SEED], "
                                                  "a folder or a .npy/.pt file")
    head = images.partition(":")[0]
    if head not in ("digits", "random"):
        path = (root / images).resolve()
        if not path.exists():
            raise SpecError(source, "images", images, f"no such file or folder (root is {root}), and not "
                                                      "digits[:train|test] or random[:SEED]")
        images = str(path)
    for key, default in (("count", None), ("estimate_count", 50)):
        v = raw.get(key, default)
        if v is not None and (not _is_int(v) or v < 1):
            raise SpecError(source, key, v, "must be a positive integer" + (" or null (all)" if key == "count" else ""))
    count, estimate_count = raw.get("count"), raw.get("estimate_count", 50)
    if count is not None:
        estimate_count = min(estimate_count, count)
    plots = raw.get("plots", {})
    if not isinstance(plots, dict) or set(plots) - {"energy", "area"}:
        raise SpecError(source, "plots", plots, "must be a mapping with energy and/or area (the Pareto axes)")
    plots = {"energy": plots.get("energy", "energy_uj_memory"), "area": plots.get("area", "area_transistors")}
    if plots["energy"] not in _ENERGY_COLUMNS:
        raise SpecError(source, "plots.energy", plots["energy"], f"must be one of {', '.join(_ENERGY_COLUMNS)}")
    if plots["area"] not in _AREA_AXES:
        raise SpecError(source, "plots.area", plots["area"], f"must be one of {', '.join(_AREA_AXES)}")

    defaults = _settings(source, "defaults", raw["defaults"], root) if "defaults" in raw else {}
    combos = [("grid", c) for c in _grid(source, raw["grid"], root)] if "grid" in raw else []
    listed = raw.get("points", [])
    if not isinstance(listed, list):
        raise SpecError(source, "points", listed, "must be a list of mappings of parameters")
    combos += [(f"points[{i}]", _settings(source, f"points[{i}]", p, root)) for i, p in enumerate(listed)]
    if not combos:
        raise SpecError(source, "grid", None, "a spec needs a grid or a list of points (or both)")
    images_hash = _images_hash(images)
    settings = dict(images=images_hash or images, count=count, estimate_count=estimate_count,   # content, not path
                    metrics=sorted(m for m in metrics if m != "area"))
    needs_model = any(m in metrics for m in _MODEL_METRICS)
    points, seen, notes, shas, bases = [], {}, [], {}, {}
    for where, combo in combos:
        params = {**defaults, **combo}
        if needs_model and "checkpoint" not in params:
            raise SpecError(source, where + ".checkpoint", None,
                            "is required for accuracy, cycles and energy (set it in defaults, the grid or the point)")
        point = _resolve(len(points), params, base, shas, bases, settings)
        if point.key in seen:
            notes.append(f"{where} {params} is the same point as #{seen[point.key]}: computed once")
            continue
        seen[point.key] = point.index
        points.append(point)
    order = dict.fromkeys([*(k for _, c in combos for k in c), *defaults])      # grid axes first
    varied = [k for k in order if len({json.dumps(_resolved(p, k, root), sort_keys=True) for p in points}) > 1]
    points = [dataclasses.replace(p, label=_label(p, varied, root)) for p in points]
    return SweepSpec(source=source, name=name, root=root, images=images, images_hash=images_hash,
                     count=count, estimate_count=estimate_count, metrics=tuple(m for m in METRICS if m in metrics),
                     plots=plots, points=points, varied=varied, notes=notes)


def _resolve(index: int, params: dict, base: str, shas: dict, bases: dict, settings: dict) -> SweepPoint:
    """The point ``params`` over the base configuration: hardware dict, validated config, key."""
    base_path = params.get("base", base)
    if base_path not in bases:
        bases[base_path] = load_config(base_path).to_dict()
    hw = _hw_dict(bases[base_path], params)
    try:
        config, error = HwConfig.from_dict(hw, f"point #{index}"), None
    except ConfigError as e:
        config, error = None, str(e)
    ckpt = params.get("checkpoint")
    if ckpt is not None and ckpt not in shas:
        shas[ckpt] = file_sha256(Path(ckpt))
    T, weight_bits, model_args = params.get("T"), params.get("weight_bits", 8), params.get("model_args", {})
    key = _digest({"version": SWEEP_VERSION, "hw": config.to_dict() if config else hw,
                   "checkpoint_sha256": shas.get(ckpt), "T": T, "weight_bits": weight_bits,
                   "model_args": model_args, **settings})
    return SweepPoint(index=index, params=params, label="", hw=hw, config=config, error=error, checkpoint=ckpt,
                      checkpoint_sha256=shas.get(ckpt), T=T, weight_bits=weight_bits, model_args=model_args, key=key)


# ---------------------------------------------------------------------------- the work (both executors)
def run_task(task: dict) -> dict:
    """Run one task of a sweep, in whichever process or worker it lands: ``kind`` ``"point"``
    (quantize, evaluate, estimate) or ``"area"`` (Yosys on the core). ``task`` and the result are
    plain dicts. Never raises for an error of the point itself: the result's ``status`` and
    ``message`` say what happened (``"error"`` with the traceback when it was unexpected)."""
    import torch

    torch.set_num_threads(1)                 # one core per worker: the workers are the parallelism
    t0 = time.perf_counter()
    try:
        result = _run_point(task) if task["kind"] == "point" else _run_area(task)
    except Exception as e:                   # noqa: BLE001: recorded, not cached, retried next run
        result = {"status": "error", "message": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}
    result.setdefault("timing", {}).update(total_s=time.perf_counter() - t0, worker=f"{os.uname().nodename}:{os.getpid()}")
    return {"kind": task["kind"], "key": task["key"], **result}


def _run_point(task: dict) -> dict:
    """Quantize (into a temporary folder), check the fit, evaluate, estimate: the point's figures."""
    from contract.program import load_program
    from golden.checkpoint import CheckpointError
    from golden.model_args import ModelArgError
    from golden.quantize import QuantizationError
    from hwgen.compiler.placement import MemoryFitError
    from hwgen.estimate import core_fit, estimate
    from hwgen.flow import evaluate_program, quantize_checkpoint

    hw = HwConfig.from_dict(task["hw"], f"point {task['key']}")
    metrics, timing = {}, {}
    model_args = {**task["model_args"], **({"T": task["T"]} if task["T"] is not None else {})}
    with tempfile.TemporaryDirectory(prefix="spikeforge-sweep-") as tmp:
        t = time.perf_counter()
        try:
            folder = quantize_checkpoint(task["checkpoint"], hw, Path(tmp) / "program", model_args=model_args,
                                         weight_bits=task["weight_bits"], calib=0, samples=0, log=lambda s: None)
        except (QuantizationError, MemoryFitError) as e:      # widths or parameter memories too small
            return {"status": "does_not_fit", "message": str(e), "metrics": {"fits": False, "short": str(e)}}
        except (CheckpointError, ModelArgError, ValueError) as e:
            return {"status": "quantization_error", "message": str(e), "metrics": {}}
        timing["quantize_s"] = time.perf_counter() - t
        program = load_program(folder)
        metrics["T"] = program.T
        fit = core_fit(program, hw)
        metrics.update(fits=fit["fits"], short="; ".join(fit["problems"]) or None)
        if fit["image"] is None:      # not a capacity (an SDSA variant the core lacks ...): nothing runs
            return {"status": "does_not_fit", "message": metrics["short"], "metrics": metrics, "timing": timing}
        if "accuracy" in task["metrics"]:
            t = time.perf_counter()
            ev = evaluate_program(folder, images=task["images"], count=task["count"])
            metrics.update(float_top1=ev["float_top1"], int_top1=ev["int_top1"], agreement=ev["agreement"],
                           accuracy_images=ev["images"])
            timing["accuracy_s"] = time.perf_counter() - t
        if "cycles" in task["metrics"] or "energy" in task["metrics"]:
            t = time.perf_counter()
            run = estimate(folder, images=task["images"], count=task["estimate_count"], hw=hw,
                           cycle_model="auto" if "cycles" in task["metrics"] else None, log=lambda s: None)
            metrics.update(_estimate_metrics(run))
            timing["estimate_s"] = time.perf_counter() - t
    status = "ok" if metrics["fits"] else "does_not_fit"
    return {"status": status, "message": metrics["short"], "metrics": metrics, "timing": timing, "needs": fit["needs"]}


def _estimate_metrics(run: dict) -> dict:
    t, est = run["totals"], run["estimate"]
    e = est["energy_mj"]
    uj = lambda mj: None if mj is None else mj * 1e3        # noqa: E731
    return {"cycles_per_image": t["cycles_per_image"], "bound_per_image": t["bound_per_image"],
            "efficiency": t["efficiency"], "sops_per_image": est["sops_per_image"],
            "additions_per_image": t["additions_per_image"], "macs_per_image": t["macs_per_image"],
            "energy_uj_paper": uj(e["paper_model"]["paper"]), "energy_uj_paper_datapath": uj(e["paper_model"]["datapath"]),
            "energy_uj_memory": uj(e["memory_aware"]["datapath"]),
            "energy_uj_memory_paper": uj(e["memory_aware"]["paper"]), "estimate_images": est["source"]["count"]}


def _run_area(task: dict) -> dict:
    """Yosys statistics of the generated ``core`` top (hwgen/synth.py: logic to generic gates,
    memories kept as memory cells and counted in bits)."""
    from hwgen.build import emit_verilog
    from hwgen.core.top import NeuromorphicCore
    from hwgen.synth import SynthError, synth_stats

    core = NeuromorphicCore(HwConfig.from_dict(task["hw"], f"hardware {task['key']}"))
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spikeforge-area-") as tmp:
        (Path(tmp) / "core.v").write_text(emit_verilog(core, "core"))
        try:
            st = synth_stats(Path(tmp), "core.v", "core")
        except SynthError as e:
            return {"status": "error", "message": str(e)}
    logic = st["cmos_transistors_logic"]
    area = {"cells": st["cells"], "flip_flops": st["flip_flops"], "logic_cells": st["logic_cells"],
            "memory_bits": st["memory_bits"], "transistors_logic": logic,
            "area_transistors": None if logic is None else logic + SRAM_TRANSISTORS_PER_BIT * st["memory_bits"]}
    return {"status": "ok", "area": area, "memories": st["memories"], "timing": {"synth_s": time.perf_counter() - t}}


# ---------------------------------------------------------------------------- executors
def _worker_signals() -> None:
    """In a local worker: Ctrl-C, which the whole process group gets, is left to the sweep's own
    process (it stops the workers and says what was saved); SIGTERM (how it stops them) unwinds
    the running point, so its temporary folder is removed and a running Yosys is killed."""
    import signal

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)


class _LocalExecutor:
    """Worker processes on this machine (spawned: no torch state is forked). Tasks wait here and
    go to the pool one per free worker, area runs first (a Yosys run is the longest task: started
    early, it overlaps the points instead of trailing them); results arrive through the pool's
    callbacks in completion order."""

    def __init__(self, workers: int):
        import collections
        import multiprocessing
        import queue

        self.pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_signals)
        self.workers = workers
        self.waiting: collections.deque = collections.deque()
        self.arrived: queue.Queue = queue.Queue()
        self.running = 0
        self.what = f"local: {workers} worker process{'es' if workers > 1 else ''}"

    def submit(self, task: dict) -> None:
        if task["kind"] == "area":
            self.waiting.appendleft(task)
        else:
            self.waiting.append(task)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.waiting and self.running < self.workers:
            self.running += 1
            self.pool.apply_async(run_task, (self.waiting.popleft(),), callback=self.arrived.put,
                                  error_callback=self.arrived.put)

    def completed(self):
        """Yield each result dict as it arrives (a worker that failed outside a point raises)."""
        import queue

        while self.running:
            try:
                item = self.arrived.get(timeout=1.0)        # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            self.running -= 1
            if isinstance(item, BaseException):
                raise item
            yield item                                      # the caller may submit more here
            self._dispatch()

    def close(self, abort: bool) -> None:
        if abort:
            self.pool.terminate()                            # running points are dropped, not saved
        else:
            self.pool.close()
        self.pool.join()


class _DaskExecutor:
    """An existing ``dask.distributed`` cluster (``Client(address)``), or a given ``Client``."""

    def __init__(self, scheduler):
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise SpecError("--scheduler", "scheduler", str(scheduler), "the Dask path needs dask[distributed]: "
                            "pip install 'spikeforge[dask]'") from None
        self.own = not isinstance(scheduler, Client)
        self.client = Client(scheduler, timeout="20s") if self.own else scheduler
        self.done = as_completed()
        self.futures: list = []
        self.what = f"dask: {self.client.scheduler.address}"

    def submit(self, task: dict) -> None:
        # the long Yosys runs first, so they overlap the points
        fut = self.client.submit(run_task, task, pure=False, priority=1 if task["kind"] == "area" else 0)
        self.futures.append(fut)
        self.done.add(fut)

    def completed(self):
        """Yield each result dict as it arrives (a task the cluster lost raises)."""
        for fut in self.done:
            yield fut.result()

    def close(self, abort: bool) -> None:
        if abort:
            self.client.cancel([f for f in self.futures if not f.done()])
        if self.own:
            self.client.close()


def _executor(scheduler, workers: int | None, tasks: int):
    if scheduler is not None:
        return _DaskExecutor(scheduler)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return _LocalExecutor(max(1, min(workers or cores, max(tasks, 1))))


# ---------------------------------------------------------------------------- the sweep
def _write_atomic(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def _point_task(spec: SweepSpec, p: SweepPoint) -> dict:
    return {"kind": "point", "key": p.key, "hw": p.config.to_dict(), "checkpoint": p.checkpoint, "T": p.T,
            "weight_bits": p.weight_bits, "model_args": p.model_args, "images": spec.images, "count": spec.count,
            "estimate_count": spec.estimate_count, "metrics": list(spec.metrics)}


def _save_point(out: Path, spec: SweepSpec, p: SweepPoint, result: dict) -> None:
    """``points/<key>/`` with result.json and hw.yaml, whole or not at all."""
    from contract.fsutil import atomic_output_dir

    record = {"format": "spikeforge-sweep-point", "version": SWEEP_VERSION, "key": p.key, "params": p.params,
              "checkpoint": p.checkpoint, "checkpoint_sha256": p.checkpoint_sha256, "hw_hash": p.hw_hash,
              "images": spec.images, "count": spec.count, "estimate_count": spec.estimate_count,
              "metrics_asked": list(spec.metrics), **{k: v for k, v in result.items() if k not in ("kind", "key")}}
    with atomic_output_dir(out / "points" / p.key, force=True) as tmp:
        (tmp / "result.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
        (tmp / "hw.yaml").write_text(f"# sweep {spec.name}, point #{p.index}: {p.label}\n"
                                     + yaml.safe_dump(p.config.to_dict(), sort_keys=False))


def _load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None                          # missing (or unreadable: computed again)


def sweep(spec: str | Path | dict | SweepSpec, out: str | Path, *, scheduler=None, workers: int | None = None,
          log: Callable[[str], None] = print, progress=None, on_result: Callable[[dict], None] | None = None) -> dict:
    """Run a sweep into ``out`` (see the module docstring); returns the results.json record.

    ``scheduler``: None for local worker processes (``workers`` of them, default the cores), or a
    ``dask.distributed`` scheduler address (``"tcp://10.0.0.5:8786"``) or ``Client``.
    ``progress(total)`` makes the progress display; ``on_result(row)`` is called after each new
    point is saved. Points already in ``out/points`` are not computed again."""
    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    t0 = time.perf_counter()
    run = _Sweep(spec, Path(out), log)
    for note in spec.notes:
        log(f"note: {note}")
    log(f"sweep {spec.name}: {len(spec.points)} point(s), {len(run.cached)} cached, {len(run.todo)} to compute"
        + (f"; {len(run.configs) - len(run.area_cached)} of {len(run.configs)} hardware configuration(s) without "
           "an area yet" if "area" in spec.metrics else ""))
    first_areas = [h for h in run.configs if run.area_wanted(h)]
    executor = None
    if run.todo or first_areas:
        executor = _executor(scheduler, workers, len(run.todo) + len(first_areas))
        log(f"running on {executor.what}")
        try:
            with (progress(len(run.todo)) if progress and run.todo else _null_progress()) as bar:
                for h in first_areas:
                    run.ask_area(executor, h)
                for p in run.todo:
                    executor.submit(_point_task(spec, p))
                for r in executor.completed():
                    if r["kind"] == "area":
                        run.area_done(r)
                        continue
                    row = run.point_done(r, executor)
                    bar.advance(1, f"#{row['index']}")
                    if on_result is not None:
                        on_result(row)
        except BaseException:
            executor.close(abort=True)
            log(f"interrupted: {len(run.cached) + len(run.computed)} of {len(spec.points)} point(s) saved in "
                f"{run.out / 'points'}; run again to compute the rest")
            raise
        executor.close(abort=False)
    rows = [_row(spec, p, run.results[p.key], run.areas.get(p.hw_hash)) for p in spec.points]
    record = _results(spec, rows, run.areas, {
        "scheduler": executor.what if executor else "none (every point cached)",
        "computed": run.computed, "cached": run.cached, "area_computed": run.area_computed,
        "area_cached": run.area_cached, "wall_s": time.perf_counter() - t0,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_results(record, run.out, log=log)
    return record


def _null_progress():
    from contract.progress import NullProgress

    return NullProgress()


class _Sweep:
    """The state of one sweep run: what the folder holds already, what is left, what came back.
    Only this process writes the folder; the workers return plain dicts."""

    def __init__(self, spec: SweepSpec, out: Path, log: Callable[[str], None]):
        self.spec, self.out, self.log = spec, out, log
        (out / "points").mkdir(parents=True, exist_ok=True)
        (out / "area").mkdir(exist_ok=True)
        self.results: dict[str, dict] = {}          # point key -> result
        self.areas: dict[str, dict] = {}            # hardware hash -> area result
        self.cached, self.computed, self.area_cached, self.area_computed = [], [], [], []
        self.todo: list[SweepPoint] = []
        self.asked: set[str] = set()
        self.by_key = {p.key: p for p in spec.points}
        self.configs = {p.hw_hash: p.config for p in spec.points if p.config is not None}
        for p in spec.points:
            if p.config is None:                    # nothing to compute: not cached, recorded every run
                self.results[p.key] = {"status": "invalid_config", "message": p.error, "metrics": {}}
            elif not spec.model_metrics:            # an area-only sweep
                self.results[p.key] = {"status": "ok", "message": None, "metrics": {}}
            elif (r := _load_json(out / "points" / p.key / "result.json")) is not None:
                self.results[p.key] = r
                self.cached.append(p.key)
            else:
                self.todo.append(p)
        if "area" in spec.metrics:
            for h in self.configs:
                if (a := _load_json(out / "area" / f"{h}.json")) is not None:
                    self.areas[h] = a
                    self.area_cached.append(h)

    def area_wanted(self, h: str) -> bool:
        """Area is measured once per hardware configuration, and only for one a point runs on."""
        return ("area" in self.spec.metrics and h not in self.areas and h not in self.asked
                and any(p.hw_hash == h and self.results.get(p.key, {}).get("status") == "ok" for p in self.spec.points))

    def ask_area(self, executor, h: str) -> None:
        self.asked.add(h)
        executor.submit({"kind": "area", "key": h, "hw": self.configs[h].to_dict()})

    def area_done(self, r: dict) -> None:
        h = r["key"]
        self.areas[h] = r
        self.area_computed.append(h)
        if r["status"] == "ok":
            _write_atomic(self.out / "area" / f"{h}.json", json.dumps(r, indent=1) + "\n")
            self.log(f"area of {self.configs[h].name} {h}: {r['area']['cells']:,} cells, "
                     f"{r['area']['memory_bits']:,} memory bits ({r['timing']['synth_s']:.0f} s)")
        else:
            self.log(f"area of {self.configs[h].name} {h}: {r['message']}")

    def point_done(self, r: dict, executor) -> dict:
        p = self.by_key[r["key"]]
        self.results[p.key] = r
        self.computed.append(p.key)
        if r["status"] != "error":                  # an unexpected error is retried by the next run
            _save_point(self.out, self.spec, p, r)
        if self.area_wanted(p.hw_hash):
            self.ask_area(executor, p.hw_hash)
        row = _row(self.spec, p, r, None)
        self.log(f"#{p.index} {p.label}: {_summary(row)}")
        return row


def _summary(row: dict) -> str:
    if row["status"] not in ("ok", "does_not_fit") or (row["int_top1"] is None and row["cycles_per_image"] is None):
        return f"{row['status']}: {(row['message'] or '').splitlines()[0] if row['message'] else ''}"
    parts = [row["status"]]
    if row["int_top1"] is not None:
        parts.append(f"integer {100 * row['int_top1']:.2f}% (float {100 * row['float_top1']:.2f}%)")
    if row["cycles_per_image"] is not None:
        parts.append(f"{row['cycles_per_image']:,.0f} cycles/image")
    if row["energy_uj_memory"] is not None:
        parts.append(f"{row['energy_uj_paper_datapath']:.3g} uJ paper model, {row['energy_uj_memory']:.3g} uJ "
                     "memory-aware")
    if row["status"] == "does_not_fit":
        parts.append(f"short: {row['short']}")
    return ", ".join(parts)


def _row(spec: SweepSpec, p: SweepPoint, r: dict, area: dict | None) -> dict:
    """One results row: the point's parameters, its figures, the area of its hardware."""
    m = r.get("metrics", {})
    row = {c: None for c in COLUMNS}
    row.update(index=p.index, key=p.key, label=p.label, status=r["status"],
               checkpoint=None if p.checkpoint is None else _rel(p.checkpoint, spec.root),
               T=m.get("T", p.T), lanes=p.lanes, weight_bits=p.weight_bits, hw_hash=p.hw_hash,
               message=r.get("message"), point_s=r.get("timing", {}).get("total_s"))
    row.update({c: m.get(c) for c in _METRIC_COLUMNS})
    if area is not None and area.get("status") == "ok":
        row.update(area["area"])
    row.update({k: _resolved(p, k, spec.root) for k in spec.varied if k not in COLUMNS})
    row["params"] = {k: _rel(v, spec.root) if k in ("checkpoint", "base") else v for k, v in p.params.items()}
    row["timing"] = r.get("timing", {})
    return row


def _rel(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


# ---------------------------------------------------------------------------- results
def pareto_front(xs: list[float], ys: list[float], *, maximize_y: bool) -> list[int]:
    """Indices of the points no other point dominates, x minimized and y minimized (or maximized):
    ``q`` dominates ``p`` when it is at least as good in both and better in one. Ties (equal in
    both) are all on the front."""
    sign = -1 if maximize_y else 1
    front = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        dominated = any(xq <= x and sign * yq <= sign * y and (xq < x or sign * yq < sign * y)
                        for xq, yq in zip(xs, ys))
        if not dominated:
            front.append(i)
    return front


def _plotted(rows: list[dict], x: str, y: str) -> list[dict]:
    return [r for r in rows if r["status"] == "ok" and r[x] is not None and r[y] is not None]


def _results(spec: SweepSpec, rows: list[dict], areas: dict, run: dict) -> dict:
    fronts = {}
    for name, x, y, maximize in (("accuracy_energy", spec.plots["energy"], "int_top1", True),
                                 ("cycles_area", spec.plots["area"], "cycles_per_image", False)):
        pts = _plotted(rows, x, y)
        idx = pareto_front([r[x] for r in pts], [r[y] for r in pts], maximize_y=maximize)
        fronts[name] = {"x": x, "y": y, "maximize_y": maximize, "points": [pts[i]["index"] for i in idx]}
        for r in rows:
            r[f"pareto_{name}"] = r["index"] in fronts[name]["points"] if r in pts else None
    return {"format": "spikeforge-sweep", "version": SWEEP_VERSION, "name": spec.name, "spec": spec.source,
            "root": str(spec.root), "images": spec.images, "count": spec.count, "estimate_count": spec.estimate_count,
            "metrics": list(spec.metrics), "varied": spec.varied, "columns": _columns(spec), "points": rows,
            "area": {h: {k: v for k, v in a.items() if k not in ("kind",)} for h, a in areas.items()},
            "pareto": fronts, "notes": spec.notes, "run": run}


def _columns(spec: SweepSpec) -> list[str]:
    """COLUMNS with the varied parameters that are not columns already after ``status``."""
    extra = [k for k in spec.varied if k not in COLUMNS]
    i = COLUMNS.index("status") + 1
    return [*COLUMNS[:i], *extra, *COLUMNS[i:]]


def _csv(record: dict) -> str:
    columns = record["columns"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in record["points"]:
        values = [row.get(c) for c in columns]
        w.writerow(["" if v is None else json.dumps(v) if isinstance(v, (dict, list)) else
                    (v.splitlines()[0] if isinstance(v, str) and v else v) for v in values])
    return buf.getvalue()


def write_results(record: dict, out: str | Path, *, log: Callable[[str], None] = print) -> list[Path]:
    """results.json, results.csv and the Pareto plots (each written whole or not at all)."""
    out = Path(out)
    written = []
    for name, text in (("results.json", json.dumps(record, indent=1, default=str) + "\n"),
                       ("results.csv", _csv(record))):
        _write_atomic(out / name, text)
        written.append(out / name)
    for name, title, xlabel, ylabel in (
            ("accuracy_energy", "integer accuracy against energy per image", "energy per image (uJ)",
             "integer top-1 accuracy"),
            ("cycles_area", "cycles per image against area", "area", "cycles per image")):
        front = record["pareto"][name]
        pts = _plotted(record["points"], front["x"], front["y"])
        path = out / f"pareto_{name}.png"
        if not pts:
            log(f"no {path.name}: no point that fits has both {front['x']} and {front['y']} "
                f"(metrics: {', '.join(record['metrics'])})")
            continue
        _write_atomic(path, _plot(record, pts, front, title, xlabel, ylabel))
        written.append(path)
    log("wrote " + ", ".join(str(p) for p in written))
    return written


_AXIS_UNITS = {"energy_uj_memory": "energy per image, memory-aware model, datapath's additions (uJ)",
               "energy_uj_paper": "energy per image, paper's model (E_AC, E_MAC), paper's counting (uJ)",
               "energy_uj_paper_datapath": "energy per image, paper's model (E_AC, E_MAC), datapath's additions (uJ)",
               "energy_uj_memory_paper": "energy per image, memory-aware model, paper's counting (uJ)",
               "area_transistors": "area (transistors: logic + 6 per memory bit)", "cells": "Yosys cells",
               "logic_cells": "Yosys logic cells", "memory_bits": "memory bits",
               "transistors_logic": "logic transistors (yosys stat -tech cmos)"}


def _value(column: str, v) -> str:
    """A figure with its unit, for the plots' side panels."""
    if column == "int_top1":
        return f"{100 * v:.2f}%"
    if column == "cycles_per_image":
        return f"{v:,.0f} cycles"
    if column.startswith("energy_uj"):
        return f"{v:.3g} uJ"
    if column in ("area_transistors", "transistors_logic"):
        return f"{v / 1e6:.3g} M transistors"
    if column == "memory_bits":
        return f"{v / 1e6:.3g} Mbit"
    return f"{v:,} {column.replace('_', ' ')}"


def _plot(record: dict, pts: list[dict], front: dict, title: str, xlabel: str, ylabel: str) -> bytes:
    """One Pareto plot: every point that fits by its index, the front as a step line, and beside
    the axes the front's points with their parameters (labels that would overlap on the axes)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = front["x"], front["y"]
    on = sorted((r for r in pts if r["index"] in front["points"]), key=lambda r: (r[x], r[y]))
    off = [r for r in pts if r["index"] not in front["points"]]
    misfit = [r for r in record["points"] if r["status"] == "does_not_fit" and r[x] is not None and r[y] is not None]
    fig, (ax, side) = plt.subplots(1, 2, figsize=(11, 5.5), dpi=110, gridspec_kw={"width_ratios": [2.3, 1]})
    ax.scatter([r[x] for r in off], [r[y] for r in off], c="0.6", s=28, label="dominated")
    if misfit:
        ax.scatter([r[x] for r in misfit], [r[y] for r in misfit], marker="x", c="tab:red", s=36,
                   label="does not fit (figures of a large enough core)")
    ax.step([r[x] for r in on], [r[y] for r in on], where="post", c="tab:blue", lw=1.2, alpha=0.7)
    ax.scatter([r[x] for r in on], [r[y] for r in on], c="tab:blue", s=46, zorder=3, label="Pareto front")
    for r in off + misfit:
        ax.annotate(f"{r['index']}", (r[x], r[y]), textcoords="offset points", xytext=(4, -9), fontsize=6, c="0.4")
    for r in on:
        ax.annotate(f"{r['index']}", (r[x], r[y]), textcoords="offset points", xytext=(5, 3), fontsize=8,
                    c="tab:blue", weight="bold")
    ax.set_xlabel(_AXIS_UNITS.get(x, f"{xlabel} [{x}]"), fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    if y == "int_top1":
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_title(f"sweep {record['name']}: {title}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")

    lines = ["Pareto front", ""]
    for r in on:
        lines += textwrap.wrap(f"{r['index']}: {r['label']}", 44, subsequent_indent="    ")
        lines += [f"    {_value(y, r[y])}, {_value(x, r[x])}", ""]
    side.axis("off")
    side.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=7, family="monospace", transform=side.transAxes)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------------------- command line
def run_sweep(args: argparse.Namespace) -> int:
    """`hwgen sweep`: 0 when every point was built or recorded as invalid, 1 when a point failed
    unexpectedly (or a worker died), 2 on a bad spec."""
    from contract.progress import Progress

    try:
        spec = load_spec(args.spec)
    except SpecError as e:
        print(f"hwgen sweep: {e}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out or f"build/sweeps/{spec.name}")
    if args.dry_run:
        for p in spec.points:
            cached = (out / "points" / p.key / "result.json").exists()
            state = "invalid: " + p.error if p.error else "cached" if cached else "to compute"
            print(f"#{p.index:3d} {p.key} {p.label}: {state}")
        return 0
    try:
        record = sweep(spec, out, scheduler=args.scheduler, workers=args.workers,
                       progress=lambda total: Progress("sweep", total, what="point"))
    except SpecError as e:
        print(f"hwgen sweep: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:                      # the scheduler cannot be reached, the folder cannot be written
        print(f"hwgen sweep: {e}", file=sys.stderr)
        return EXIT_FAIL
    _print(record)
    return EXIT_FAIL if any(r["status"] == "error" for r in record["points"]) else 0


def _print(record: dict) -> None:
    def f(v, fmt, width):
        return f"{'-' if v is None else format(v, fmt):>{width}s}"

    w = min(90, max(len(r["label"]) for r in record["points"]))
    print(f"{'#':>3s} {'label':{w}s} {'status':16s} {'int top-1':>9s} {'cycles':>10s} {'uJ paper':>9s} "
          f"{'uJ memory':>10s} {'cells':>8s} {'mem bits':>11s}")
    for r in record["points"]:
        mark = "*" if r["pareto_accuracy_energy"] else " "
        print(f"{r['index']:3d} {r['label'][:w]:{w}s} {r['status']:16s} {f(r['int_top1'], '.2%', 9)} "
              f"{f(r['cycles_per_image'], ',.0f', 10)} {f(r['energy_uj_paper_datapath'], '.3g', 9)} "
              f"{f(r['energy_uj_memory'], '.3g', 9)}{mark} {f(r['cells'], ',d', 8)} {f(r['memory_bits'], ',d', 11)}")
    run = record["run"]
    print(f"{len(run['computed'])} point(s) computed, {len(run['cached'])} cached; "
          f"{len(run['area_computed'])} area run(s), {len(run['area_cached'])} cached; {run['wall_s']:.0f} s on "
          f"{run['scheduler']} (* Pareto front, accuracy against energy)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `sweep` subcommand on ``hwgen``'s subparsers."""
    p = subparsers.add_parser("sweep", help="design-space sweep over hardware and quantization parameters: "
                                            "accuracy, cycles, energy, area, Pareto plots (cached, resumable)")
    p.add_argument("spec", metavar="SPEC", help="sweep spec (YAML), e.g. configs/sweeps/digits_lanes_bits.yaml")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default: build/sweeps/<spec name>); "
                                                "points already in it are not computed again")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the points on an existing dask.distributed cluster (e.g. tcp://10.0.0.5:8786) "
                        "instead of local processes")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: the cores)")
    p.add_argument("--dry-run", action="store_true", help="list the points, their keys and what is cached; run nothing")
    p.set_defaults(func=run_sweep)
    return p
