"""The neuromorphic core: the three units, the tensor memories and a sequencer (docs/core.md).

::

                  +------------- sequencer: fetch instruction, start engines, wait ------------+
                  |                                                                           |
    pixels ----> EventFeeder --events--> AccumulatorArray --sums--> DrainWriter --+--> int memory
    spike memory -^                                                 (+ residual)  |
    int memory --> LifStreamer --currents--> LifCore --spikes--> LifStreamer ---------> spike memory
    spike memory -> TokenGatherer --beats--> SdsaUnit --A--> StreamWriter ------------> int memory
    spike memory -> MaskEngine ------------------------------------------------------> spike memory
    int memory --> ReduceEngine -----------------------------------------------------> int memory

One instruction runs one program layer over all its timesteps; one engine (and unit) is active
at a time, so each memory port is a multiplexer selected by the instruction's op. The memories
are loaded through ``load`` while the core is idle. Every write into the tensor memories is also
visible on ``int_write`` / ``spike_write`` and every finished instruction on ``layer``, which is
how a testbench checks each layer's output and counts its cycles without reaching inside.

With ``accumulator.weights: external`` the core holds no weight memory: the accumulator array's
weight read stream (``hwgen.units.weight_stream.WeightStream``: burst requests, response beats of
up to ``weight_port_words`` words) is the core's ``weight_read`` port, a load to
``Target.WEIGHTS`` goes nowhere (the loaders refuse to make one, naming ``accumulator.weights``),
the ``weights_read`` traffic counter counts the words received on that port, and ``layer``
gains ``weight_stalls`` (the accumulator's count for a CONV). With on-chip weights the core is
the same gateware as without the option.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, Value, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from contract.config import COUNTER_WIDTH, HwConfig
from hwgen.core.engines import (
    DrainWriter,
    EventFeeder,
    LifStreamer,
    MaskEngine,
    ReduceEngine,
    StreamWriter,
    TokenGatherer,
    int_word,
)
from hwgen.core.isa import Op, Target, address_width, instruction_layout
from hwgen.units.accumulator import AccumulatorArray
from hwgen.units.lif import LifCore
from hwgen.units.sdsa import SdsaUnit
from hwgen.units.signatures import CounterBank, Counters, memory_words
from hwgen.units.weight_stream import WeightStream

__all__ = ["NeuromorphicCore", "load_data_width", "LAYER_COUNTERS", "TRAFFIC_COUNTERS"]

#: what the core reports per instruction (``layer`` port), COUNTER_WIDTH bits each
LAYER_COUNTERS = ("cycles", "additions", "events")
#: the words each instruction reads and writes per memory (``layer.traffic``), COUNTER_WIDTH bits
#: each: ``<memory>_read`` / ``<memory>_write`` for every port direction an instruction uses (the
#: loads through ``load`` are not counted); docs/core.md, "Memory traffic"
TRAFFIC_COUNTERS = ("program_read", "pixels_read", "spikes_read", "spikes_write", "ints_read", "ints_write",
                    "weights_read", "biases_read", "accumulators_read", "accumulators_write",
                    "membranes_read", "membranes_write", "thresholds_read", "kv_read", "kv_write")


def load_data_width(hw: HwConfig) -> int:
    acc, lif = hw.accumulator, hw.lif
    return max(instruction_layout(hw).size, acc.lanes * acc.weight_width, acc.lanes * acc.bias_width,
               lif.lanes * lif.threshold_width, acc.input_bits, int_word(hw).size, lif.lanes)


def _share_read_ports(m: Module, op, memory_ports: list, users: dict) -> None:
    """Each op's engine drives the memory's read ports (its n-th port the n-th); data fans out.
    A port no engine of the running op uses stays disabled (a memory port's enable is 1 unless
    driven): it reads nothing."""
    m.d.comb += [rd.en.eq(0) for rd in memory_ports]
    for ports in users.values():
        for rd, port in zip(memory_ports, ports):
            m.d.comb += port.data.eq(rd.data)
    with m.Switch(op):
        for code, ports in users.items():
            with m.Case(code):
                for rd, port in zip(memory_ports, ports):
                    m.d.comb += [rd.addr.eq(port.addr), rd.en.eq(port.en)]


def _share_write_port(m: Module, op, busy, memory_port, writers: dict, load_en, load) -> None:
    """While running, the op's engine writes; while idle, the load port."""
    with m.If(busy):
        with m.Switch(op):
            for code, port in writers.items():
                with m.Case(code):
                    m.d.comb += [memory_port.en.eq(port.en), memory_port.addr.eq(port.addr),
                                 memory_port.data.eq(port.data)]
    with m.Else():
        m.d.comb += [memory_port.en.eq(load_en), memory_port.addr.eq(load.addr),
                     Value.cast(memory_port.data).eq(load.data)]


class NeuromorphicCore(wiring.Component):
    """Runs a compiled program (``hwgen.compiler``) on one image per ``start``.

    Ports
    -----
    start : In(1)
        Pulse while idle: run the program from instruction 0 to its END.
    busy, done : Out(1)
        ``busy`` until END; ``done`` pulses once then.
    load : In
        ``en``, ``sel`` (:class:`Target`), ``addr``, ``data`` (low bits used): one memory word per
        cycle, while idle.
    int_write, spike_write : Out
        The tensor memories' write ports (``en``, ``addr``, ``data``), for observation.
    layer : Out
        ``done`` pulses when an instruction finishes, with its ``pc``, ``cycles`` (fetch to
        finish), synaptic ``additions`` and input ``events`` (spikes, or SDSA token beats), and
        ``traffic`` (:data:`TRAFFIC_COUNTERS`): the words it read and wrote in each memory, from
        its fetch to its finish (every cycle with the port's enable asserted; the finishing
        cycle's accesses included); with external weights also ``weight_stalls``.
    weight_read : Out(WeightStream), external weights only
        The accumulator array's weight read stream, to an outside memory.
    """

    def __init__(self, hw: HwConfig):
        if hw.core is None:
            raise ValueError(f"{hw.source}: the configuration has no 'core' section")
        self._hw = hw
        aw = address_width(hw)
        external = hw.accumulator.external_weights
        super().__init__({
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "load": In(wiring.Signature({
                "en": Out(1), "sel": Out(range(len(Target))), "addr": Out(aw),
                "data": Out(load_data_width(hw))})),
            "int_write": Out(wiring.Signature({"en": Out(1), "pc": Out(range(hw.core.program_depth)), "addr": Out(aw),
                                               "data": Out(int_word(hw))})),
            "spike_write": Out(wiring.Signature({"en": Out(1), "pc": Out(range(hw.core.program_depth)), "addr": Out(aw),
                                                 "data": Out(hw.lif.lanes)})),
            "layer": Out(wiring.Signature({
                "done": Out(1), "pc": Out(range(hw.core.program_depth)), "spikes": Out(1),
                **Counters(LAYER_COUNTERS + (("weight_stalls",) if external else ())).members,
                "traffic": Out(Counters(TRAFFIC_COUNTERS))})),
            **({"weight_read": Out(WeightStream(hw.accumulator))} if external else {}),
        })

    def elaborate(self, platform):
        hw = self._hw
        core = hw.core
        m = Module()

        # ---- units and engines --------------------------------------------------------------
        m.submodules.acc = acc = AccumulatorArray(hw.accumulator)
        m.submodules.lif = lif = LifCore(hw.lif)
        m.submodules.sdsa = sdsa = SdsaUnit(cfg=hw.sdsa)
        m.submodules.feeder = feeder = EventFeeder(hw)
        m.submodules.drain = drain = DrainWriter(hw)
        m.submodules.lif_io = lif_io = LifStreamer(hw)
        m.submodules.gather = gather = TokenGatherer(hw)
        m.submodules.attention_out = att_out = StreamWriter(hw)
        m.submodules.mask = mask = MaskEngine(hw)
        m.submodules.reduce = red = ReduceEngine(hw)
        engines = [feeder, drain, lif_io, gather, att_out, mask, red]

        wiring.connect(m, feeder.events, acc.events)
        wiring.connect(m, acc.sums, drain.sums)
        wiring.connect(m, drain.forward, lif_io.drained)
        wiring.connect(m, lif_io.currents, lif.currents)
        wiring.connect(m, lif.spikes, lif_io.spikes)
        wiring.connect(m, gather.beat, sdsa.spikes)
        wiring.connect(m, sdsa.out, att_out.beats)

        # ---- memories -----------------------------------------------------------------------
        layout = instruction_layout(hw)
        m.submodules.program = prog = memory.Memory(shape=layout, depth=core.program_depth, init=[])
        m.submodules.pixels = pixels = memory.Memory(shape=unsigned(hw.accumulator.input_bits),
                                                     depth=memory_words(core.pixel_depth), init=[])
        m.submodules.ints = ints = memory.Memory(shape=int_word(hw), depth=memory_words(core.int_depth), init=[])
        m.submodules.spikes = spikes = memory.Memory(shape=unsigned(hw.lif.lanes), depth=memory_words(core.spike_depth),
                                                     init=[])
        prog_rd, prog_wr = prog.read_port(), prog.write_port()
        pix_rd, pix_wr = pixels.read_port(), pixels.write_port()
        int_rd, int_wr = ints.read_port(), ints.write_port()
        spk_rd = [spikes.read_port() for _ in range(3)]
        spk_wr = spikes.write_port()

        # ---- sequencer ----------------------------------------------------------------------
        instr = Signal(layout)
        pc = Signal(range(core.program_depth))
        cycles = Signal(COUNTER_WIDTH)
        launch = Signal()
        finished = Signal()     # the running instruction's engine is done (a chained CONV: its drain)
        reported = Signal()     # an instruction finished: the layer report
        # Overlap: a CONV with ``chain`` runs with the LIF after it. In its first RUN cycles the
        # sequencer fetches that LIF into ``chained`` and starts the LIF core, which takes the
        # drained sums as they are written; the CONV reports when its drain is done, the LIF
        # (instruction pc + 1) when its last spike is written (TAIL), and the sequencer goes on
        # at pc + 2.
        chained = Signal(layout)
        chaining = (instr.op == Op.CONV) & instr.chain
        chain_step = Signal(range(4))     # in RUN: 0 fetch the LIF, 1 decode it, 2 start it, 3 running
        chain_live = Signal()             # the chained LIF's accesses are its own (traffic)
        lif_launch = Signal()
        lif_instr = Signal(layout)        # the LIF engines' instruction: the chained one under a CONV
        m.d.comb += lif_instr.eq(Mux(instr.op == Op.CONV, chained, instr))
        for engine in engines:
            m.d.comb += engine.instr.eq(lif_instr if engine is lif_io else instr)

        chain_fetch = Signal()
        m.d.comb += prog_rd.addr.eq(Mux(chain_fetch, pc + 1, pc))    # read in FETCH, held in DECODE
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += pc.eq(0)
                    # between images the array is idle; after reset it may still be clearing
                    with m.If(acc.run.busy):
                        m.next = "CLEARING"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("CLEARING"):      # the accumulator array zeroes its words once after reset
                with m.If(~acc.run.busy):
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += cycles.eq(1)
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += [instr.eq(prog_rd.data), cycles.eq(cycles + 1)]
                m.next = "LAUNCH"
            with m.State("LAUNCH"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(instr.op == Op.END):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += launch.eq(1)
                    m.d.sync += [chain_step.eq(0), chain_live.eq(chaining)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(chaining & (chain_step != 3)):
                    m.d.sync += chain_step.eq(chain_step + 1)
                    with m.Switch(chain_step):
                        with m.Case(0):
                            m.d.comb += chain_fetch.eq(1)
                        with m.Case(1):
                            m.d.sync += chained.eq(prog_rd.data)
                        with m.Case(2):
                            m.d.comb += lif_launch.eq(1)
                m.d.comb += reported.eq(finished)
                with m.If(finished):
                    with m.If(chaining):
                        m.d.sync += cycles.eq(0)
                        m.next = "TAIL"
                    with m.Else():
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
            with m.State("TAIL"):      # a chained CONV finished: its LIF writes its last spikes
                m.d.sync += cycles.eq(cycles + 1)
                m.d.comb += reported.eq(lif_io.run.done)
                with m.If(lif_io.run.done):
                    m.d.sync += [pc.eq(pc + 2), chain_live.eq(0)]
                    m.next = "FETCH"
        tail = fsm.ongoing("TAIL")
        m.d.comb += [self.busy.eq(~fsm.ongoing("IDLE")), prog_rd.en.eq(fsm.ongoing("FETCH") | chain_fetch)]

        op = instr.op
        # each op starts its unit and engines together; the one named last ends the instruction
        runs = {Op.CONV: [acc.run, feeder.run, drain.run], Op.LIF: [lif.run, lif_io.run],
                Op.SDSA: [gather.run, att_out, sdsa.run], Op.MASK: [mask.run], Op.REDUCE: [red.run]}
        with m.Switch(op):
            for code, started in runs.items():
                with m.Case(code):
                    m.d.comb += [port.start.eq(launch) for port in started]
                    m.d.comb += finished.eq(started[-1].done)
        with m.If(lif_launch):
            m.d.comb += [lif.run.start.eq(1), lif_io.run.start.eq(1)]

        # unit run-time registers come straight from the instruction
        m.d.comb += [
            acc.desc.eq(instr.desc),
            lif.beats.eq(lif_instr.beats), lif.thr_rows.eq(lif_instr.thr_rows), lif.thr_base.eq(lif_instr.thr_base),
            lif.timesteps.eq(lif_instr.timesteps),
            sdsa.tokens.eq(instr.tokens), sdsa.heads.eq(instr.heads), sdsa.head_dim.eq(instr.head_dim),
            sdsa.timesteps.eq(instr.timesteps),
        ]

        # the layer report (in TAIL: the chained LIF, instruction pc + 1)
        m.d.comb += [self.layer.done.eq(reported), self.layer.pc.eq(Mux(tail, pc + 1, pc)),
                     self.layer.cycles.eq(cycles + 1),
                     self.layer.spikes.eq(tail | (op == Op.LIF) | (op == Op.MASK))]
        with m.Switch(Mux(tail, Op.LIF, op)):
            with m.Case(Op.CONV):
                m.d.comb += [self.layer.additions.eq(acc.counters.additions), self.layer.events.eq(acc.counters.events)]
                if hw.accumulator.external_weights:
                    m.d.comb += self.layer.weight_stalls.eq(acc.counters.weight_stalls)
            with m.Case(Op.SDSA):
                m.d.comb += [self.layer.additions.eq(sdsa.perf.additions), self.layer.events.eq(sdsa.perf.in_beats)]

        # ---- memory ports: one engine at a time, the load port while idle --------------------
        ld = self.load
        loading = ~self.busy & ld.en
        m.d.comb += [
            prog_wr.en.eq(loading & (ld.sel == Target.PROGRAM)), prog_wr.addr.eq(ld.addr),
            prog_wr.data.eq(ld.data[:layout.size]),
            pix_wr.en.eq(loading & (ld.sel == Target.PIXELS)), pix_wr.addr.eq(ld.addr), pix_wr.data.eq(ld.data),
            *([] if hw.accumulator.external_weights else [
                acc.weight_write.en.eq(loading & (ld.sel == Target.WEIGHTS)), acc.weight_write.addr.eq(ld.addr),
                acc.weight_write.data.as_value().eq(ld.data)]),
            acc.bias_write.en.eq(loading & (ld.sel == Target.BIASES)), acc.bias_write.addr.eq(ld.addr),
            acc.bias_write.data.as_value().eq(ld.data),
            lif.thr_write.en.eq(loading & (ld.sel == Target.THRESHOLDS)), lif.thr_write.addr.eq(ld.addr),
            lif.thr_write.data.as_value().eq(ld.data),
            pix_rd.addr.eq(feeder.pixels.addr), pix_rd.en.eq(feeder.pixels.en), feeder.pixels.data.eq(pix_rd.data),
        ]
        if hw.accumulator.external_weights:     # no weight memory: the stream goes out
            wiring.connect(m, acc.weight_read, wiring.flipped(self.weight_read))

        # int memory: one read port, one write port; spike memory: three read ports (q, k, v), one write
        _share_read_ports(m, op, [int_rd], {Op.CONV: [drain.residual], Op.LIF: [lif_io.source], Op.REDUCE: [red.source]})
        _share_read_ports(m, op, spk_rd, {Op.CONV: [feeder.spikes], Op.SDSA: [gather.q, gather.k, gather.v],
                                          Op.MASK: [mask.v, mask.mask]})
        _share_write_port(m, op, self.busy, int_wr, {Op.CONV: drain.out, Op.SDSA: att_out.out, Op.REDUCE: red.out},
                          loading & (ld.sel == Target.INTS), ld)
        _share_write_port(m, op, self.busy, spk_wr, {Op.CONV: lif_io.out, Op.LIF: lif_io.out, Op.MASK: mask.out},
                          loading & (ld.sel == Target.SPIKES), ld)

        # ---- memory traffic: every word an instruction reads or writes, per memory --------------
        # the most words one cycle accesses: the spike memory's three read ports, the accumulator
        # array's two banks (buffers: 2)
        widths = {name: {"spikes_read": 3, **acc.access_steps}.get(name, 1) for name in TRAFFIC_COUNTERS}
        m.submodules.traffic = traffic = CounterBank(widths)
        # a chained LIF's own accesses (its fetch, the LIF core's memories, its spike writes),
        # counted apart from its CONV's and reported with it
        m.submodules.chained_traffic = chained_traffic = CounterBank(widths)
        busy = self.busy
        strobes = {
            "program_read": prog_rd.en & ~chain_fetch, "pixels_read": pix_rd.en & busy,
            "spikes_read": sum(port.en & busy for port in spk_rd), "spikes_write": spk_wr.en & busy,
            "ints_read": int_rd.en & busy, "ints_write": int_wr.en & busy,
            **{name: acc.accesses[name] for name, _ in acc.accesses.shape()},
            **{name: lif.accesses[name] for name, _ in lif.accesses.shape()},
            **{name: sdsa.accesses[name] for name, _ in sdsa.accesses.shape()},
        }
        if set(strobes) != set(TRAFFIC_COUNTERS):
            raise AssertionError(f"traffic strobes {sorted(strobes)} != TRAFFIC_COUNTERS")
        lif_side = {"spikes_write", "membranes_read", "membranes_write", "thresholds_read"}
        # cleared as an image starts and as an instruction finishes (its counts reported then,
        # the finishing cycle's accesses included): each instruction counts from its FETCH
        m.d.comb += [traffic.clear.eq(self.start | reported), chained_traffic.clear.eq(self.start | (tail & reported))]
        for name in TRAFFIC_COUNTERS:
            own = strobes[name] & ~chain_live if name in lif_side else strobes[name]
            theirs = (strobes[name] & chain_live) if name in lif_side else chain_fetch if name == "program_read" else 0
            step, chained_step = getattr(traffic.step, name), getattr(chained_traffic.step, name)
            m.d.comb += [step.eq(own), chained_step.eq(theirs)]
            total = getattr(traffic.counters, name) + step
            chained_total = getattr(chained_traffic.counters, name) + chained_step
            m.d.comb += getattr(self.layer.traffic, name).eq(Mux(tail, total + chained_total, total))

        m.d.comb += [
            self.int_write.en.eq(int_wr.en & self.busy), self.int_write.pc.eq(pc), self.int_write.addr.eq(int_wr.addr),
            self.int_write.data.eq(int_wr.data),
            # a chained LIF's spikes are its own instruction's (pc + 1)
            self.spike_write.en.eq(spk_wr.en & self.busy), self.spike_write.pc.eq(Mux(op == Op.CONV, pc + 1, pc)),
            self.spike_write.addr.eq(spk_wr.addr), self.spike_write.data.eq(spk_wr.data),
        ]
        return m
