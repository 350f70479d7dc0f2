"""Running the neuromorphic core in simulation: script in, write log out, tensors back.

:func:`run_core` writes a script (every memory word to load, then per image its pixels and a
run), lets the Verilated ``core_harness`` execute it with no Python per cycle, and turns the log
(templates/core_harness.sv) back into, per image, every layer's output tensor in the golden
engine's shape plus the cycles, additions, events and memory traffic of every instruction.

With ``accumulator.weights: external`` the harness is built with ``core_weights_external.sv``
(the define) and ``harness_extmem.sv``: the script's weight words become words of the memory
model (script op 3) instead of loads into the core, which has no weight memory (a WEIGHTS load
for such a core is refused, :func:`script_lines`); the model's latency and bandwidth are
``run_core(latency=, bandwidth=)`` (default :data:`DEFAULT_MEM_LATENCY`,
:data:`DEFAULT_MEM_BANDWIDTH`), and every instruction reports its weight stalls
(``LayerStats.weight_stalls``).
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hwgen.compiler import CoreImage, from_words
from hwgen.compiler.kinds import core_kind
from hwgen.core.isa import Target, address_width
from hwgen.core.top import TRAFFIC_COUNTERS, NeuromorphicCore, load_data_width
from hwgen.sim.runner import REPO_ROOT, SimRun, range_bits, run_cocotb, write_if_changed

__all__ = ["DEFAULT_MEM_LATENCY", "DEFAULT_MEM_BANDWIDTH", "memory_model", "script_lines", "TRACE_NONE", "TRACE_ALL", "TRACE_ONE", "WaveWindow", "LayerStats", "traffic_of", "ImageResult", "CoreSimError", "core_sim_run",
           "write_script", "LogReader", "parse_log", "run_core"]

TEMPLATES = Path(__file__).parent / "templates"
#: the external weight memory model's defaults: cycles from a request to its first word, words per cycle
DEFAULT_MEM_LATENCY, DEFAULT_MEM_BANDWIDTH = 100, 1


class CoreSimError(RuntimeError):
    """The simulated core did not finish, or wrote where no layer's output lives."""


#: what the harness logs of the writes: digests only, every write, or one instruction's writes
TRACE_NONE, TRACE_ALL, TRACE_ONE = 0, 1, 2


@dataclass(frozen=True)
class WaveWindow:
    """Dump every signal of the core into ``path`` (VCD) from the start of instruction ``first``
    of image ``image`` (of the run) to the end of instruction ``last``; the run ends there."""

    path: Path
    image: int
    first: int
    last: int
MEMORIES = {0: None, 1: "ints", 2: "spikes", 3: "both"}


def traffic_of(counts) -> dict[str, tuple[int, int]]:
    """The core's traffic counters (values in the order of ``TRAFFIC_COUNTERS``) as
    ``{memory: (words read, words written)}``, every memory with a counter."""
    out: dict[str, list[int]] = {}
    for name, value in zip(TRAFFIC_COUNTERS, counts, strict=True):
        memory, direction = name.rsplit("_", 1)
        out.setdefault(memory, [0, 0])[direction == "write"] = int(value)
    return {k: (r, w) for k, (r, w) in out.items()}


@dataclass
class LayerStats:
    """One instruction's counters, and what it wrote (``hwgen.sim.digest``): the memory, the
    number of words, the lowest and highest address, the digest; ``traffic``: the words it read
    and wrote per memory, ``{memory: (reads, writes)}`` (``hwgen.core.top.TRAFFIC_COUNTERS``)."""

    cycles: int
    additions: int
    events: int
    memory: str | None = None
    writes: int = 0
    lowest: int = 0
    highest: int = 0
    digest: int = 0
    traffic: dict[str, tuple[int, int]] = field(default_factory=dict)
    weight_stalls: int = 0       # external weights: cycles the accumulator waited for streamed weights


@dataclass
class ImageResult:
    cycles: int
    layers: list[LayerStats]                 # per instruction
    outputs: dict[str, np.ndarray] = field(default_factory=dict)   # traced layers -> [T, ...] (readout: [...])
    weight_requests: int = 0                 # external weights: the memory model's requests for this image


def memory_model(hw, latency: int | None = None, bandwidth: int | None = None) -> dict | None:
    """The external weight memory model's ``{"latency", "bandwidth"}`` for ``hw`` (None with
    on-chip weights), the defaults filled in; refuses values the model cannot take, and any value
    for a config with on-chip weights, naming ``accumulator.weights``."""
    acc = hw.accumulator
    if not acc.external_weights:
        if latency is not None or bandwidth is not None:
            raise ValueError(f"{hw.source}: accumulator.weights = {acc.weights!r}: the weights are on chip, there is "
                             "no external memory to give a latency or bandwidth (--mem-latency, --mem-bandwidth)")
        return None
    latency = DEFAULT_MEM_LATENCY if latency is None else int(latency)
    bandwidth = DEFAULT_MEM_BANDWIDTH if bandwidth is None else int(bandwidth)
    if not 2 <= latency < 1 << 16:
        raise ValueError(f"memory latency {latency}: the model takes 2 .. 65535 cycles")
    if not 1 <= bandwidth <= acc.weight_port_words:
        raise ValueError(f"memory bandwidth {bandwidth}: 1 .. accumulator.weight_port_words = {acc.weight_port_words} "
                         "words per cycle")
    return {"latency": latency, "bandwidth": bandwidth}


#: the code that makes the core's Verilog from a configuration: a change in any of it, or another
#: Amaranth, generates the Verilog again
GENERATOR_SOURCES = ("hwgen/core", "hwgen/units", "hwgen/layout.py", "hwgen/build.py", "contract/config.py")


def generator_digest() -> str:
    """A digest of :data:`GENERATOR_SOURCES` and the Amaranth version."""
    import amaranth

    h = hashlib.sha256(amaranth.__version__.encode())
    for rel in GENERATOR_SOURCES:
        root = REPO_ROOT / rel
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            h.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _core_verilog(hw) -> Path:
    """The core's Verilog for ``hw``, generated again only when the configuration or the
    generator changed (elaborating and converting it takes 2-3 s, most of a short run's
    overhead); the digest of what made it is kept beside it."""
    from hwgen.build import emit_verilog

    rtl_dir = REPO_ROOT / "build" / "rtl" / f"{hw.name}-{hw.hash}"
    rtl_dir.mkdir(parents=True, exist_ok=True)
    verilog, made_by = rtl_dir / "core.v", rtl_dir / "core.v.generator"
    digest = generator_digest()
    if verilog.exists() and made_by.exists() and made_by.read_text() == digest:
        return verilog
    write_if_changed(verilog, emit_verilog(NeuromorphicCore(hw), "core"))
    write_if_changed(made_by, digest)
    return verilog


def core_sim_run(hw, *, work: Path, script: Path, log: Path, watchdog: int,
                 random_init: int | None = None, stop_file: Path | None = None,
                 trace: int = TRACE_NONE, trace_pc: int = -1, waves: WaveWindow | None = None,
                 latency: int | None = None, bandwidth: int | None = None) -> SimRun:
    """The Verilator build (cached by content) and cocotb run of ``core_harness`` for ``hw``.
    ``random_init``: a seed; every memory and register without a reset value starts random
    instead of zero (a run must not depend on them). ``stop_file``: the harness ends the run
    before the next image once this file exists. ``trace``: log every write (``TRACE_ALL``), or
    those of instruction ``trace_pc`` (``TRACE_ONE``), besides each instruction's digest.
    ``waves``: a simulator built with tracing (its own build folder) dumps that window.
    ``latency``, ``bandwidth``: the external weight memory model's (:func:`memory_model`)."""
    from hwgen.core.engines import int_word

    verilog = _core_verilog(hw)
    params = {
        "SEL_W": range_bits(len(Target)),
        "ADDR_W": address_width(hw),
        "DATA_W": load_data_width(hw),
        "PC_W": range_bits(hw.core.program_depth),
        "INT_W": int_word(hw).size,
        "LANES": hw.lif.lanes,
    }
    extra = {}
    plusargs = [f"+core_script={script}", f"+core_log={log}", f"+core_watchdog={watchdog}"]
    mem = memory_model(hw, latency, bandwidth)
    sources = [verilog, TEMPLATES / "core_harness.sv"]
    if mem is not None:     # the define first, the memory model beside the harness
        acc = hw.accumulator
        params.update(WORD_W=acc.lanes * acc.weight_width, PORT_WORDS=acc.weight_port_words,
                      W_ADDR_W=range_bits(acc.weight_depth), LEN_W=range_bits(acc.weight_burst + 1),
                      CNT_W=range_bits(acc.weight_port_words + 1), BURST=acc.weight_burst)
        sources = [verilog, TEMPLATES / "core_weights_external.sv", TEMPLATES / "harness_extmem.sv",
                   TEMPLATES / "core_harness.sv"]
        plusargs += [f"+core_mem_latency={mem['latency']}", f"+core_mem_bandwidth={mem['bandwidth']}"]
    if stop_file is not None:
        plusargs.append(f"+core_stop={stop_file}")
    plusargs += [f"+core_trace={trace}", f"+core_trace_pc={trace_pc}"]
    if waves is not None:
        plusargs += [f"+core_waves={Path(waves.path).resolve()}", f"+core_wave_image={waves.image}",
                     f"+core_wave_from={waves.first}", f"+core_wave_to={waves.last}"]
        extra["waves"] = True
    # the harness clocks itself (delays: --timing; this wheel's gcc needs -fcoroutines for it)
    x_initial = "0"
    if random_init is not None:
        x_initial = "unique"
        plusargs += ["+verilator+rand+reset+2", f"+verilator+seed+{random_init}"]
    extra["build_args"] = ("-Wno-fatal", "--x-assign", "0", "--x-initial", x_initial, "-O3",
                           "--timing", "--timescale", "1ns/1ps", "-CFLAGS", "-fcoroutines")
    return SimRun(
        name=f"core-{hw.name}",
        sources=sources,
        toplevel="core_harness",
        test_module="core_tb",
        test_dir=Path(__file__).parent,
        parameters=params,
        plusargs=plusargs,
        log_file=work / "simulator.log",
        **extra,
    )


def script_lines(hw, loads, *, external_memory: bool = False) -> list[str]:
    """Script lines for ``loads`` ((target, address, word)): loads through the core's load port
    (op 0); with ``external_memory`` the WEIGHTS words become words of the external weight
    memory model (op 3). A WEIGHTS load into a core with external weights is refused: it has no
    weight memory (``accumulator.weights: external``)."""
    lines = []
    external = hw.accumulator.external_weights
    for sel, addr, word in loads:
        if sel == Target.WEIGHTS and external:
            if not external_memory:
                raise ValueError(f"{hw.source}: accumulator.weights = 'external': the core has no weight memory to "
                                 f"load (weight word {addr}); its weights belong in the external memory")
            lines.append(f"3 0 {addr:x} {word:x}")
        else:
            lines.append(f"0 {int(sel):x} {addr:x} {word:x}")
    return lines


def write_script(image: CoreImage, pixels: np.ndarray, path: Path,
                 preload: list[dict[str, np.ndarray]] | None = None) -> None:
    """Loads of the static memories, then per image its pixels (and preloaded tensors) and a run.
    With external weights the weight words go to the memory model (:func:`script_lines`)."""
    hw = image.hw
    lines = script_lines(hw, image.static_loads(), external_memory=True)
    for b, img in enumerate(pixels):
        loads = image.input_loads(img)        # its pixels, or its spike frames
        for name, value in (preload[b] if preload else {}).items():
            loads += image.tensor_loads(name, value)
        lines += script_lines(hw, loads)
        lines.append("1 0 0 0")
    lines.append("2 0 0 0")
    path.write_text("\n".join(lines) + "\n")


def _decode(words: list[int], lanes: int, width: int, signed: bool) -> np.ndarray:
    a = np.array(words, dtype=object)
    mask = (1 << width) - 1
    out = np.empty((len(words), lanes), dtype=np.int64)
    for lane in range(lanes):
        out[:, lane] = ((a >> (lane * width)) & mask).astype(np.int64)
    if signed:
        out = np.where(out >= (1 << (width - 1)), out - (1 << width), out)
    return out


def _tensor(image: CoreImage, pc: int, writes: list[tuple[int, int]], memory: str) -> np.ndarray:
    name = image.outputs[pc]
    r = image.regions[name]
    hw = image.hw
    if r.memory != memory:
        raise CoreSimError(f"instruction {pc} ({name}) wrote the {memory} memory; its output is in {r.memory}")
    L = hw.lif.lanes
    signed = memory == "ints"
    width = hw.accumulator.accumulator_width if signed else 1
    offsets = np.array([a - r.base for a, _ in writes], dtype=np.int64)
    bad = np.flatnonzero((offsets < 0) | (offsets >= r.size))
    if bad.size:
        raise CoreSimError(f"instruction {pc} ({name}) wrote {memory} address {writes[bad[0]][0]}, outside its "
                           f"region [{r.base}, {r.base + r.size})")
    counts = np.bincount(offsets, minlength=r.size)
    if (counts != 1).any():
        i = int(np.flatnonzero(counts != 1)[0])
        raise CoreSimError(f"instruction {pc} ({name}) wrote word {i} of its output {counts[i]} times "
                           f"(each of its {r.size} words must be written once)")
    words = np.zeros((r.size, L), dtype=np.int64)
    words[offsets] = _decode([d for _, d in writes], L, width, signed)
    value = from_words(words, r, L)
    if r.index is not None:   # head padding (hwgen.compiler.padding): padding channels must stay zero
        pads = np.delete(value, r.index, axis=1)
        if pads.any():
            raise CoreSimError(f"instruction {pc} ({name}) wrote {int(np.count_nonzero(pads))} non-zero padding "
                               "channels between attention heads")
        value = value[:, r.index]
    return value if core_kind(image.layers[pc].kind).per_timestep else value[0]


class LogReader:
    """Turns the harness log into one :class:`ImageResult` per finished image, incrementally: each
    :meth:`feed` reads what the simulator appended since the last call (complete lines only), so a
    run can be checked image by image while it is still simulating. The outputs of the traced
    instructions (``trace``, as the harness was told) are rebuilt from their writes."""

    def __init__(self, image: CoreImage, path: Path, *, trace: int = TRACE_NONE, trace_pc: int = -1):
        self.image, self.path = image, Path(path)
        self.images = 0
        self.waves_closed = False
        # the instructions whose writes the log holds (an instruction that writes nothing logs none)
        traced = range(len(image.instructions)) if trace == TRACE_ALL else [trace_pc] if trace == TRACE_ONE else []
        self._traced = set(traced)
        self._pos, self._tail = 0, b""
        self._writes: dict[int, dict[str, list]] = {pc: {"I": [], "S": []} for pc in self._traced}
        self._stats: dict[int, LayerStats] = {}
        self._requests = 0        # the memory model's requests before this image
        self._image_requests = 0

    def feed(self) -> list[ImageResult]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self._pos)
            chunk = f.read()
        self._pos += len(chunk)
        data = self._tail + chunk
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        return [r for line in data[:cut].decode().splitlines() if (r := self._line(line)) is not None]

    def _line(self, line: str) -> ImageResult | None:
        image, n = self.image, len(self.image.instructions)
        tag, *rest = line.split()
        if tag in ("I", "S"):
            pc, addr, data = (int(x, 16) for x in rest)
            self._writes.setdefault(pc, {"I": [], "S": []})[tag].append((addr, data))
        elif tag == "L":
            pc = int(rest[0], 16)
            cycles, additions, events, mem, count = (int(x) for x in rest[1:6])
            lowest, highest, digest = (int(x, 16) for x in rest[6:9])
            if MEMORIES[mem] == "both":
                raise CoreSimError(f"image {self.images}: instruction {pc} ({image.outputs[pc]}) wrote both memories")
            if len(rest) != 10 + len(TRAFFIC_COUNTERS):
                raise CoreSimError(f"a log line of {len(rest) - 10} traffic counters, the core has "
                                   f"{len(TRAFFIC_COUNTERS)} (a stale core_harness build?): {line!r}")
            self._stats[pc] = LayerStats(cycles, additions, events, MEMORIES[mem], count, lowest, highest, digest,
                                         traffic_of(rest[9:-1]), int(rest[-1]))
        elif tag == "M":          # the external weight memory model, before the image's D line
            requests, bad = (int(x) for x in rest)
            if bad:
                raise CoreSimError(f"image {self.images}: {bad} of {requests} weight requests malformed (length 0 or "
                                   f"> accumulator.weight_burst, or past the weight image)")
            self._image_requests, self._requests = requests - self._requests, requests
        elif tag == "D":
            missing = [pc for pc in range(n) if pc not in self._stats]
            if missing:
                raise CoreSimError(f"image {self.images}: instruction {missing[0]} ({image.outputs[missing[0]]}) "
                                   "never finished")
            res = ImageResult(int(rest[0]), [self._stats[pc] for pc in range(n)], weight_requests=self._image_requests)
            for pc, w in self._writes.items():       # the traced instructions' outputs, from their writes
                if w["I"] and w["S"]:
                    raise CoreSimError(f"instruction {pc} ({image.outputs[pc]}) wrote both memories")
                memory = "ints" if w["I"] else "spikes"
                res.outputs[image.outputs[pc]] = _tensor(image, pc, w["I"] or w["S"], memory)
            self._writes = {pc: {"I": [], "S": []} for pc in self._traced}
            self._stats = {}
            self.images += 1
            return res
        elif tag == "W":          # the wave window closed and the run ended there
            self.waves_closed = True
        elif tag == "H":
            pc = int(rest[0], 16)
            raise CoreSimError(f"image {self.images}: the core hung in instruction {pc} "
                               f"({image.outputs[pc] if pc < n else 'END'}) after {rest[1]} cycles (watchdog)")
        return None


def parse_log(image: CoreImage, path: Path, *, trace: int = TRACE_ALL, trace_pc: int = -1) -> list[ImageResult]:
    """The whole harness log -> one result per finished image. Raises on a watchdog stop."""
    return LogReader(image, path, trace=trace, trace_pc=trace_pc).feed()


def _watchdog(image: CoreImage) -> int:
    """Cycles an instruction may take at most: a dense scan (every input a spike) of the
    largest layer, with margin. The harness stops a run that goes quiet for longer."""
    worst = 0
    for fields in image.instructions:
        d = fields.get("desc")
        if d:
            positions = fields["in_h"] * fields["in_w"] * fields["in_words"] * image.lanes
            worst = max(worst, positions * d["kernel"] ** 2 * d["words"] * image.hw.accumulator.input_bits)
        worst = max(worst, fields.get("count", 0) * 4, fields.get("tokens", 0) * 4096)
    return worst * max(1, image.program.T) + 100_000


def run_core(image: CoreImage, pixels: np.ndarray, *, work: Path,
             preload: list[dict[str, np.ndarray]] | None = None, random_init: int | None = None,
             progress: Callable[[int], None] | None = None,
             on_image: Callable[[int, ImageResult], bool] | None = None,
             trace: int = TRACE_ALL, trace_pc: int = -1, waves: WaveWindow | None = None,
             latency: int | None = None, bandwidth: int | None = None) -> list[ImageResult]:
    """Simulate the core on integer images ``pixels[B, C, H, W]``.

    While the simulator runs, a watcher thread reads the log as it grows: ``progress(images_done)``
    is called after each image, and ``on_image(index, result)`` with each finished image's result;
    when it returns False the simulator stops before the next image (the harness polls a stop file
    between images). With ``on_image`` the returned results carry counters only (their outputs
    were handed to ``on_image``); without it, the traced layers' outputs too. ``trace``: which
    instructions' writes the harness logs (``TRACE_ALL`` rebuilds every layer's output; with
    ``TRACE_NONE`` each instruction reports only the digest of its writes, which is what a long run
    wants: a log line per instruction instead of one per word). ``waves``: dump a window of
    signals (the run ends at its last instruction). ``latency``, ``bandwidth``: the external
    weight memory model's (external weights only; :func:`memory_model`)."""
    memory_model(image.hw, latency, bandwidth)        # refused before anything is written
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    script, log = (work / "core_script.txt").resolve(), (work / "core_log.txt").resolve()
    stop_file = (work / "core_stop").resolve()
    write_script(image, pixels, script, preload)
    for stale in (log, stop_file):
        if stale.exists():
            stale.unlink()
    run = core_sim_run(image.hw, work=work, script=script, log=log, watchdog=_watchdog(image),
                       random_init=random_init, stop_file=stop_file, trace=trace, trace_pc=trace_pc, waves=waves,
                       latency=latency, bandwidth=bandwidth)
    reader = LogReader(image, log, trace=trace, trace_pc=trace_pc)
    results: list[ImageResult] = []
    failure: list[BaseException] = []
    stop = threading.Event()

    def take(new: list[ImageResult]) -> None:
        for res in new:
            index = len(results)
            if on_image is not None:
                go_on = on_image(index, res)
                res = ImageResult(res.cycles, res.layers, weight_requests=res.weight_requests)
                if go_on is False:
                    stop_file.write_text("stop\n")
            results.append(res)
            if progress:
                progress(len(results))

    def watch():
        while True:
            stopping = stop.wait(0.5)
            try:
                take(reader.feed())
            except BaseException as e:      # a parse error or a failing check: stop the simulator
                failure.append(e)
                stop_file.write_text("stop\n")
                return
            if stopping:
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run_cocotb(run)
    except (AssertionError, SystemExit) as e:
        stop.set()
        watcher.join()
        if failure:
            raise failure[0]
        raise CoreSimError(f"simulation failed ({e}); see {work / 'simulator.log'}") from None
    stop.set()
    watcher.join()
    if failure:
        raise failure[0]
    stopped = stop_file.exists() or reader.waves_closed
    if waves is not None and not reader.waves_closed:
        raise CoreSimError(f"the wave window (image {waves.image}, instructions {waves.first}..{waves.last}) was "
                           f"never reached; see {log}")
    if len(results) != len(pixels) and not stopped:
        raise CoreSimError(f"{len(results)} of {len(pixels)} images finished; see {log}")
    return results
