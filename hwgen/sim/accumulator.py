"""Running the accumulator array in simulation through its file-driven harness.

* :func:`acc_sim_run` (pytest / scripts side) generates the unit's Verilog for a config and
  returns a :class:`~hwgen.sim.runner.SimRun` for ``templates/acc_harness.sv``.
* :class:`AccHarness` (cocotb side) loads weights, biases and spike events from files, lets the
  RTL run on its own and returns the drained accumulators, already un-padded to
  ``[T, C_out, H_out, W_out]``, with the unit's performance counters.
* :func:`spike_events` turns spike maps (or pixel bit planes) into the event list.

With ``accumulator.weights: external`` the harness serves the unit's weight read stream from a
memory model (``templates/harness_extmem.sv``) whose latency and bandwidth are run-time ports:
``AccHarness.run(latency=, bandwidth=)``, by default the plan's ``mem_latency`` and
``mem_bandwidth`` (100 cycles, 1 word per cycle).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.config import COUNTER_WIDTH, AccumulatorConfig, HwConfig
from hwgen.hexfile import pack_bits, unpack_fields
from hwgen.layout import (
    ConvGeometry,
    Descriptor,
    bias_words,
    descriptor,
    descriptor_layout,
    fold_slots,
    unpad_accumulators,
    weight_words,
    x_lanes_suit,
)
from hwgen.sim.harness import FileHarness
from hwgen.sim.runner import REPO_ROOT, TEMPLATES, SimRun, range_bits, unit_sim_run
from hwgen.units.accumulator import COUNTERS

__all__ = ["acc_sim_run", "AccHarness", "AccResult", "spike_events", "pack_struct", "TEMPLATES",
           "layers_from_program", "write_layer_specs"]

HARNESS_DEPTH = 1 << 17
#: the memory model's defaults (plan ``mem_latency`` / ``mem_bandwidth``)
DEFAULT_LATENCY, DEFAULT_BANDWIDTH = 100, 1


def pack_struct(layout, values: dict) -> int:
    """Pack field values into the integer of an Amaranth StructLayout (first field at bit 0)."""
    word = 0
    for name, fld in layout:
        v = int(values[name])
        width = fld.shape.width if hasattr(fld.shape, "width") else fld.width
        if not 0 <= v < (1 << width):
            raise ValueError(f"descriptor field {name} = {v} does not fit {width} bits")
        word |= v << fld.offset
    return word


def acc_sim_run(hw: HwConfig, *, test_module: str, test_dir: Path, testcase=None, plan: dict | None = None) -> SimRun:
    """The accumulator harness for ``hw.accumulator``; ``plan`` gets the config added."""
    from hwgen.units.accumulator import AccumulatorArray, event_layout

    cfg = hw.accumulator
    params = {
        "LANES": cfg.lanes,
        "EVENT_W": event_layout(cfg).size,
        "DESC_W": descriptor_layout(cfg).size,
        "ACC_W": cfg.accumulator_width,
        "WEIGHT_W": cfg.weight_width,
        "BIAS_W": cfg.bias_width,
        "W_ADDR_W": range_bits(cfg.weight_depth),
        "B_ADDR_W": range_bits(cfg.bias_depth),
        "COUNTER_WIDTH": COUNTER_WIDTH,
        "DEPTH": HARNESS_DEPTH,
    }
    if cfg.external_weights:   # the weight read stream
        params.update(PORT_WORDS=cfg.weight_port_words, LEN_W=range_bits(cfg.weight_burst + 1),
                      CNT_W=range_bits(cfg.weight_port_words + 1), BURST=cfg.weight_burst)
    run = unit_sim_run(AccumulatorArray(cfg), top="acc_array", harness="acc_harness.sv", name=f"acc-{hw.name}",
                       rtl_dir=REPO_ROOT / "build" / "rtl" / f"{hw.name}-{hw.hash}", parameters=params,
                       test_module=test_module, test_dir=test_dir, testcase=testcase,
                       plan={**(plan or {}), "config": hw.to_dict()})
    if cfg.external_weights:   # the define first, the memory model with the kit
        run.sources.insert(run.sources.index(TEMPLATES / "acc_harness.sv"), TEMPLATES / "acc_weights_external.sv")
        run.sources.append(TEMPLATES / "harness_extmem.sv")
    return run


def spike_events(spikes: np.ndarray, *, planes: int = 1) -> list[tuple[int, int, int, int, int]]:
    """Events ``(flush, ci, y, x, plane)`` for ``spikes[T, C, H, W]``, one flush per timestep.

    With ``planes > 1``, ``spikes`` holds unsigned (or two's complement) pixel integers and each
    set bit j becomes an event on plane j (the encoding layer's bit planes)."""
    events = []
    for frame in spikes:
        for j in range(planes):
            bits = (frame >> j) & 1 if planes > 1 else frame
            for ci, y, x in np.argwhere(bits != 0):
                events.append((0, int(ci), int(y), int(x), j))
        events.append((1, 0, 0, 0, 0))
    return events


@dataclass
class AccResult:
    sums: np.ndarray            # [T, C_out, H_out, W_out] drained accumulators
    counters: dict[str, int]
    cycles: int                 # harness: start .. last drain
    descriptor: Descriptor
    sim_wall: float = 0.0       # wall seconds from `go` to `finished`: the RTL running alone
    memory: dict | None = None  # external weights: {"latency", "bandwidth", "requests"} of the memory model


class AccHarness(FileHarness):
    """cocotb-side driver of ``acc_harness``: one :meth:`run` per layer."""

    def __init__(self, dut, cfg: AccumulatorConfig | None = None, workdir: Path | None = None):
        super().__init__(dut, workdir)
        self.cfg = cfg or HwConfig.from_dict(self.plan["config"], "test plan").accumulator

    async def run(self, geo: ConvGeometry, weight: np.ndarray, bias: np.ndarray, inputs: np.ndarray, *,
                  planes: int = 1, signed_planes: bool = False, w_offset: int = 0, b_offset: int = 0,
                  seed: int = 1, in_idle: int = 0, out_stall: int = 0, x_lanes: bool | None = None,
                  fold: bool | None = None, latency: int | None = None, bandwidth: int | None = None) -> AccResult:
        """Accumulate one layer over ``inputs[T, C_in, H, W]`` (spikes, or pixel integers with
        ``planes`` bit planes) with ``weight[C_out, C_in/groups, k, k]`` and ``bias[C_out]``.
        ``x_lanes``: lanes over output columns (docs/accumulator.md); by default wherever the
        layer suits it (depthwise, stride 1) and the config has grouped convs. ``fold``: the
        folded remainder, by default wherever the layer suits it (``hwgen.layout.fold_slots``)
        and the input is spikes (the encoding layer's bit planes are not folded). ``latency``,
        ``bandwidth``: the external weight memory's (external weights only; by default the
        plan's ``mem_latency`` / ``mem_bandwidth``)."""
        from hwgen.units.accumulator import event_layout

        cfg, d, L = self.cfg, self.dut, self.cfg.lanes
        if x_lanes is None:
            x_lanes = "grouped" in cfg.kinds and x_lanes_suit(geo)
        if fold is None:
            fold = planes == 1 and L >= 2 and fold_slots(geo, L) > 0
        desc = descriptor(geo, L, w_offset=w_offset, b_offset=b_offset, signed_planes=signed_planes, x_lanes=x_lanes,
                          fold=fold)
        T = inputs.shape[0]
        ww = weight_words(np.asarray(weight), geo.groups, L, x_lanes=x_lanes, fold=desc.fold_slots)
        bw = bias_words(np.asarray(bias), geo.groups, L, x_lanes=x_lanes, fold=desc.fold_slots)
        if w_offset + len(ww) > cfg.weight_depth or b_offset + len(bw) > cfg.bias_depth:
            raise ValueError(f"layer needs {w_offset + len(ww)} weight / {b_offset + len(bw)} bias words; "
                             f"memories hold {cfg.weight_depth} / {cfg.bias_depth}")
        if desc.drain_words > cfg.accumulator_depth:
            raise ValueError(f"layer needs {desc.drain_words} accumulator words, memory holds {cfg.accumulator_depth}")
        # images at their offsets (words below the offset stay zero)
        w_img = np.zeros((w_offset + len(ww), L), dtype=np.int64)
        w_img[w_offset:] = ww
        b_img = np.zeros((b_offset + len(bw), L), dtype=np.int64)
        b_img[b_offset:] = bw
        events = spike_events(np.asarray(inputs), planes=planes)
        if len(events) > HARNESS_DEPTH or desc.drain_words * T > HARNESS_DEPTH:
            raise ValueError(f"{len(events)} events / {desc.drain_words * T} words exceed the harness depth")
        ev_layout = event_layout(cfg)
        cols = np.array(events, dtype=np.int64).reshape(-1, 5)
        ev_words = np.zeros(len(cols), dtype=np.int64)
        for i, name in enumerate(("flush", "ci", "y", "x", "plane")):
            ev_words |= cols[:, i] << ev_layout[name].offset

        latency = int(self.plan.get("mem_latency", DEFAULT_LATENCY) if latency is None else latency)
        bandwidth = int(self.plan.get("mem_bandwidth", DEFAULT_BANDWIDTH) if bandwidth is None else bandwidth)
        if cfg.external_weights and not (2 <= latency < 1 << 16 and 1 <= bandwidth <= cfg.weight_port_words):
            raise ValueError(f"memory model: latency {latency} (2 .. 65535 cycles), bandwidth {bandwidth} (1 .. "
                             f"accumulator.weight_port_words = {cfg.weight_port_words} words per cycle)")
        limit = 64 * (len(w_img) + len(b_img) + len(events) * (geo.kernel ** 2) * max(1, desc.group_words)
                      + desc.drain_words * (T + 1)) + 10_000 + 4 * latency * (T + 1)
        status, bits = await self.exchange(
            inputs={"acc_weights.hex": pack_bits(w_img, cfg.weight_width), "acc_biases.hex": pack_bits(b_img, cfg.bias_width),
                    "acc_events.hex": pack_bits(ev_words[:, None], ev_layout.size)},
            ports=dict(desc=pack_struct(descriptor_layout(cfg), desc.as_dict()), n_weights=len(w_img), n_biases=len(b_img),
                       n_events=len(events), timesteps=T, seed=seed & 0xFFFFFFFF, in_idle=in_idle, out_stall=out_stall,
                       mem_latency=latency, mem_bandwidth=bandwidth),
            status=("outputs", "cycles", "mem_requests", "mem_bad_requests", *(f"count_{name}" for name in COUNTERS)),
            result="acc_res.hex",
            result_bits=L * cfg.accumulator_width + 1, limit_cycles=limit,
            progress=lambda: f"{int(d.outputs.value)} of {desc.drain_words * T} words out")
        if status["outputs"] != desc.drain_words * T:
            raise AssertionError(f"unit drained {status['outputs']} words, expected {desc.drain_words * T}")
        counters = {name: status[f"count_{name}"] for name in COUNTERS}
        if status["mem_bad_requests"]:
            raise AssertionError(f"{status['mem_bad_requests']} of {status['mem_requests']} weight requests malformed "
                                 f"(length 0 or > {cfg.weight_burst}, or past the image's {len(w_img)} words)")
        memory = {"latency": latency, "bandwidth": bandwidth, "requests": status["mem_requests"]} \
            if cfg.external_weights else None
        cycles = status["cycles"]
        data = unpack_fields(bits, L, cfg.accumulator_width, signed=True)
        last = unpack_fields(bits, 1, 1, signed=False, offset=L * cfg.accumulator_width)[:, 0]
        expected_last = np.zeros(len(last), dtype=np.int64)
        expected_last[desc.drain_words - 1::desc.drain_words] = 1
        if not np.array_equal(last, expected_last):
            raise AssertionError(f"`last` flags wrong: at words {np.flatnonzero(last)[:8]}, "
                                 f"expected {np.flatnonzero(expected_last)[:8]}")
        sums = np.stack([unpad_accumulators(data[t * desc.drain_words:(t + 1) * desc.drain_words], geo, L, x_lanes=x_lanes)
                         for t in range(T)])
        return AccResult(sums=sums, counters=counters, cycles=cycles, descriptor=desc, sim_wall=self.sim_wall,
                         memory=memory)


def layers_from_program(folder: Path, cfg: AccumulatorConfig, image: int = 0):
    """Every conv and linear layer of an exported program, with its traced input spikes (or
    integer pixels) for one image: ``(name, geometry, weight, bias, inputs[T, C, H, W], planes,
    traced)`` where ``traced`` is the exported output minus its residual (the unit does not add
    the membrane shortcut), ``[T, C_out, H_out, W_out]``."""
    from contract.program import load_program
    from golden.export import load_traces
    from hwgen.compiler.kinds import core_kind

    program = load_program(folder)
    traces = load_traces(folder)
    T = program.T
    layers = []
    for layer in program.layers:
        kind = core_kind(layer.kind)
        if kind.unit != "accumulator":
            continue
        geo = kind.geometry(layer)
        w = kind.weights(program.array(layer, "weight").astype(np.int64))
        b = program.array(layer, "bias").astype(np.int64)
        if kind.pixels(layer):
            x, planes = np.repeat(traces["input"][None, image], T, axis=0).astype(np.int64), cfg.input_bits
        else:
            x, planes = traces[layer.inputs[0]][:, image].astype(np.int64).reshape(T, geo.c_in, geo.h, geo.w), 1
        traced = traces[layer.name][:, image].astype(np.int64)
        if layer.attrs.get("residual") is not None:
            traced = traced - traces[layer.attrs["residual"]][:, image].astype(np.int64)
        layers.append((layer.name, geo, w, b, x, planes, traced.reshape(T, geo.c_out, geo.out_h, geo.out_w)))
    return layers


def write_layer_specs(path: Path, layers) -> None:
    """The .npz read by acc_tb.bench_layers."""
    spec = {"count": np.array(len(layers))}
    for i, (label, geo, w, b, x, planes, *traced) in enumerate(layers):
        if traced:
            spec[f"e{i}"] = traced[0]
        spec.update({f"geo{i}": np.array([geo.c_in, geo.c_out, geo.h, geo.w, geo.kernel, geo.stride, geo.padding,
                                          geo.groups]),
                     f"w{i}": w, f"b{i}": b, f"x{i}": x, f"planes{i}": np.array(planes), f"label{i}": np.array(label)})
    np.savez(path, **spec)
