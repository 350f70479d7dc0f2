"""Spike-addressed accumulator array: a synaptic operation only where a spike is.

Each input event (the address ``(ci, y, x)`` of a spike, plus a pixel bit plane for the
encoding layer) selects, for every kernel offset ``(ky, kx)`` that lands on an output position,
one word of ``lanes`` weights (``lanes`` output channels) and adds it into the accumulator word
of that output position: ``lanes`` additions per cycle, no multiplier per synapse. The cost
follows the number of spikes. Layer geometry is a run-time descriptor (``hwgen.layout``), so one
instance runs every conv, pointwise, depthwise/grouped and linear layer of a network.

Pipeline (docs/accumulator.md), one stage per component (``hwgen.units.accumulator_stages``)::

    events -> KernelWindow (window, base addresses) -> OperationLoop (one op per cycle (ky, kx, g))
           -> FoldSlots (parked last words, per-lane addresses) -> AdderLanes (read, add, write back)
    flush  -> Walker (drain: stream every accumulator word out plus its bias, leaving it zero)

The accumulator read port is transparent to the write port, so an op that reads the word the
previous op writes in the same cycle sees the new value: back-to-back updates of one word need
no stall.

Depthwise convs with stride 1 may run with the lanes over output columns instead of output
channels (descriptor ``x_lanes``): one op per kernel row covers ``lanes`` columns, each lane at
its own accumulator word (one accumulator memory per lane) and its own kernel column of one
weight word (docs/accumulator.md, "Depthwise: lanes over output columns"). Dense layers whose
last channel word is at most half full may fold (descriptor ``fold_slots`` = S): the last words
of S ops are parked and issued as one, each slot at its own weight and accumulator word (one
weight memory per lane), and the drain sums the slots (docs/accumulator.md, "Folded remainder").
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from contract.config import AccumulatorConfig
from hwgen.layout import descriptor_layout
from hwgen.units.accumulator_stages import (
    AdderLanes,
    FoldSlots,
    KernelWindow,
    OperationLoop,
    Walker,
    WeightMemory,
    descriptor_signature,
    event_layout,
)
from hwgen.units.signatures import (
    CounterBank,
    Counters,
    RunControl,
    accesses_layout,
    addr_width,
    memory_words,
    memory_write,
    sums_layout,
)
from hwgen.units.weight_stream import ExternalWeights, StreamedWeights, WeightStream

__all__ = ["AccumulatorArray", "descriptor_layout", "event_layout", "COUNTERS", "ACCESSES"]

#: the array's performance counters, in port order
COUNTERS = ("busy", "additions", "events", "ops", "starved", "drain", "drain_stalls", "weight_stalls", "weight_words")
#: the array's memory accesses (its ``accesses`` attribute): weight words read by the lanes, bias
#: words read by the walker, accumulator words read and written by the lanes and the walker
ACCESSES = ("weights_read", "biases_read", "accumulators_read", "accumulators_write")


class AccumulatorArray(wiring.Component):
    """Event-driven conv/linear accumulation over ``lanes`` output channels per cycle.

    Ports
    -----
    events : In(stream of event_layout)
        Spike addresses of one timestep in any order, then one ``flush`` event. ``plane`` is the
        pixel bit plane (encoding layer; 0 for spikes): the weight is added shifted left by it,
        and negated for the top plane when ``desc.signed_planes``.
    sums : Out(stream of sums_layout)
        After a flush: every accumulator word of the layer in address order
        (``hwgen.layout``: position-major, padded channel groups), ``last`` on the final word.
    desc : In(descriptor_layout)
        The layer, latched by ``run.start``.
    run : In(RunControl)
        ``start`` latches ``desc``; events are taken from the next cycle (the accumulators are
        zero between layers: each drain leaves its words zero, and the array zeroes all
        ``accumulator_depth`` words once after reset, taking no events meanwhile; a start then
        waits for it). Pulse it only while not ``busy``. ``busy``: work in flight (clearing, an
        event or a flush pending, draining); ``done`` pulses in the first cycle ``busy`` is low
        again (after every drain).
    weight_write, bias_write : memory_write
        ``en``/``addr``/``data`` (a word of ``lanes`` values) to load the memories while idle.
    counters : Out(Counters)
        ``busy`` cycles, synaptic ``additions`` (active lanes only), spike ``events``, ``ops``
        (cycles that issued a weight word), ``starved`` (busy accumulating with no op to issue),
        ``drain`` cycles and ``drain_stalls`` (output not ready); with external weights
        ``weight_stalls`` (cycles the loop held an operation whose weights were not in; a
        parked folded operation may still issue in such a cycle) and ``weight_words`` (weight
        words received), both 0 with on-chip weights. Cleared by ``start``.
    weight_read : Out(WeightStream), external weights only (instead of ``weight_write``)
        Burst requests and their words (``hwgen.units.weight_stream``; docs/accumulator.md,
        "Weights from external memory").

    ``accesses`` (an attribute, :func:`~hwgen.units.signatures.accesses_layout` of
    :data:`ACCESSES`) shows this cycle's accesses to the array's memories, for the core's
    traffic counters: one word of the weight memory per issued operation, of the accumulator
    memories (any lane) per operation read and written and per walked word, of the bias memory
    per walked word.
    """

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        L = cfg.lanes
        super().__init__({
            "events": In(stream.Signature(event_layout(cfg))),
            "sums": Out(stream.Signature(sums_layout(cfg))),
            "desc": In(descriptor_layout(cfg)),
            "run": In(RunControl()),
            **({"weight_read": Out(WeightStream(cfg))} if cfg.external_weights else
               {"weight_write": memory_write(addr_width(cfg.weight_depth), data.ArrayLayout(signed(cfg.weight_width), L))}),
            "bias_write": memory_write(addr_width(cfg.bias_depth), data.ArrayLayout(signed(cfg.bias_width), L)),
            "counters": Out(Counters(COUNTERS)),
        })
        #: the most words of each memory one cycle accesses (two accumulator banks: one
        #: accumulating, one draining)
        self.access_steps = {"accumulators_read": cfg.buffers, "accumulators_write": cfg.buffers,
                             # external weights: the words received this cycle (up to a beat's)
                             **({"weights_read": cfg.weight_port_words} if cfg.external_weights else {})}
        self.accesses = Signal(accesses_layout(ACCESSES, self.access_steps), name="acc_accesses")

    @property
    def cfg(self) -> AccumulatorConfig:
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        L = cfg.lanes
        m = Module()
        m.submodules.window = window = KernelWindow(cfg)
        m.submodules.loop = loop = OperationLoop(cfg)
        m.submodules.fold = fold = FoldSlots(cfg)
        m.submodules.lanes = lanes = AdderLanes(cfg)
        m.submodules.walker = walker = Walker(cfg)
        m.submodules.weights = weights = StreamedWeights(cfg) if cfg.external_weights else WeightMemory(cfg)
        m.submodules.counter_bank = bank = CounterBank(
            {name: {"additions": L, "weight_words": cfg.weight_port_words}.get(name, 1) for name in COUNTERS})

        # the descriptor latched at start, one register per field, read by every stage
        desc = descriptor_signature(cfg).create(path=("desc_latched",))
        wiring.connect(m, desc, window.desc, loop.desc, fold.desc, lanes.desc, walker.desc)
        wiring.connect(m, window.window, loop.window)
        wiring.connect(m, fold.issue, lanes.issue)
        if cfg.external_weights:
            # events through a queue with the prefetcher beside it; an op waits for its streamed
            # weights (docs/accumulator.md, "Weights from external memory")
            m.submodules.external = ext = ExternalWeights(cfg)
            layer_started = Signal()        # the descriptor is latched: the prefetcher may take events
            m.d.sync += layer_started.eq(layer_started | self.run.start)
            wiring.connect(m, desc, ext.desc)
            wiring.connect(m, wiring.flipped(self.events), ext.events)
            wiring.connect(m, ext.queued, window.events)
            wiring.connect(m, loop.op, ext.op_in)
            wiring.connect(m, ext.op_out, fold.op)
            wiring.connect(m, ext.memory, wiring.flipped(self.weight_read))
            m.d.comb += [ext.enable.eq(layer_started), fold.word.eq(ext.word), fold.park_word.eq(ext.park_word),
                         weights.word.eq(fold.issue_word)]
            weights_queued, weight_stall, weight_words = ext.pending, ext.stall, ext.received
        else:
            wiring.connect(m, wiring.flipped(self.events), window.events)
            wiring.connect(m, loop.op, fold.op)
            wiring.connect(m, wiring.flipped(self.weight_write), weights.write)
            weights_queued, weight_stall, weight_words = Const(0), Const(0), Const(0)
        for lane in range(L):
            wiring.connect(m, lanes.weights[lane], weights.read[lane])
        wiring.connect(m, walker.sums, wiring.flipped(self.sums))
        wiring.connect(m, bank.counters, wiring.flipped(self.counters))

        m.submodules.biases = b_mem = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.bias_width), L), depth=memory_words(cfg.bias_depth), init=[])
        wiring.connect(m, wiring.flipped(self.bias_write), b_mem.write_port())
        wiring.connect(m, walker.bias, b_mem.read_port())

        # ---- mode: CLEAR (after reset), then ACCUM; the walker drains beside it ------------------
        # Accumulators are clean between layers: every drain writes zeros back, so a layer
        # accumulates from its first cycle and adds its biases as it drains. CLEAR zeroes every
        # word once after reset (no memory has initial contents); a start while clearing waits.
        # A timestep's end (flush seen, pipeline empty) hands its bank to the walker once the
        # walker is free: with one bank the next timestep waits for the drain, with two
        # (``buffers: 2``) it accumulates in the other bank meanwhile.
        IDLE, CLEAR, ACCUM = 0, 1, 2
        mode = Signal(range(3), init=CLEAR)
        started = Signal()      # a start arrived while clearing
        flush_seen = Signal()
        accumulating = mode == ACCUM
        draining = Signal()     # the walker drains bank drain_bank
        B = cfg.buffers
        acc_bank, drain_bank = Signal(range(max(B, 2))), Signal(range(max(B, 2)))

        # One accumulator memory per lane and bank (with lanes over x, lanes address different
        # words): the walker has the bank it drains (every bank while clearing), the adder lanes
        # the bank they accumulate in. Banks change hands only with no access in flight (a
        # timestep's end with the pipeline empty, the walker done). The read port is
        # transparent to the write port: back-to-back updates of one word need no stall.
        clearing = mode == CLEAR
        acc_reads, acc_writes = [[] for _ in range(B)], [[] for _ in range(B)]
        for lane in range(L):
            add_rd, walk_rd = lanes.acc_read[lane], walker.acc_read[lane]
            add_wr, walk_wr = lanes.acc_write[lane], walker.acc_write[lane]
            add_data, walk_data = [], []
            for b in range(B):
                mem = memory.Memory(shape=signed(cfg.accumulator_width), depth=memory_words(cfg.accumulator_depth),
                                    init=[])
                m.submodules[f"accumulators_{lane}" if B == 1 else f"accumulators_{lane}_{b}"] = mem
                wr = mem.write_port()
                rd = mem.read_port(transparent_for=(wr,))
                walked = clearing | (draining & (drain_bank == b))
                added = accumulating & (acc_bank == b) & ~walked
                with m.If(walked):
                    m.d.comb += [rd.addr.eq(walk_rd.addr), rd.en.eq(walk_rd.en)]
                with m.Else():
                    m.d.comb += [rd.addr.eq(add_rd.addr), rd.en.eq(add_rd.en & added)]
                with m.If(walked):
                    m.d.comb += [wr.en.eq(walk_wr.en), wr.addr.eq(walk_wr.addr), wr.data.eq(walk_wr.data)]
                with m.Elif(added & lanes.writing):
                    m.d.comb += [wr.en.eq(add_wr.en), wr.addr.eq(add_wr.addr), wr.data.eq(add_wr.data)]
                add_data.append(rd.data)
                walk_data.append(rd.data)
                acc_reads[b].append(rd.en)
                acc_writes[b].append(wr.en)
            m.d.comb += [add_rd.data.eq(Array(add_data)[acc_bank] if B > 1 else add_data[0]),
                         walk_rd.data.eq(Array(walk_data)[drain_bank] if B > 1 else walk_data[0])]
        m.d.comb += [
            # every lane reads with the operation; external weights: the words received from outside
            self.accesses.weights_read.eq(weight_words if cfg.external_weights else lanes.weights[0].en),
            self.accesses.biases_read.eq(walker.bias.en),
            self.accesses.accumulators_read.eq(sum(Cat(*ens).any() for ens in acc_reads)),
            self.accesses.accumulators_write.eq(sum(Cat(*ens).any() for ens in acc_writes)),
        ]

        s0_valid, s1_valid = window.window.valid, loop.op.valid
        pipeline_empty = ~s0_valid & ~s1_valid & ~lanes.writing & ~fold.parked
        m.d.comb += [
            # one bank: the next timestep waits for the drain
            window.accept.eq(accumulating & ~flush_seen & (~draining if B == 1 else 1)),
            fold.flush.eq(flush_seen & ~s0_valid & ~s1_valid),
            walker.clear.eq(clearing), walker.drain.eq(draining),
        ]
        with m.If(draining & walker.done):
            m.d.sync += draining.eq(0)
        with m.If(self.run.start):
            m.d.sync += [*(getattr(desc, name).eq(getattr(self.desc, name)) for name, _ in descriptor_layout(cfg)),
                         flush_seen.eq(0)]
            with m.If(mode == CLEAR):
                m.d.sync += started.eq(1)
            with m.Else():
                m.d.sync += [mode.eq(ACCUM), acc_bank.eq(0)]
        with m.Else():
            with m.Switch(mode):
                with m.Case(CLEAR):
                    with m.If(walker.done):
                        m.d.sync += [mode.eq(Mux(started, ACCUM, IDLE)), started.eq(0)]
                        m.d.comb += walker.restart.eq(1)
                with m.Case(ACCUM):
                    with m.If(window.flush):
                        m.d.sync += flush_seen.eq(1)
                    with m.If(flush_seen & pipeline_empty & ~draining):    # the bank goes to the walker
                        m.d.sync += [flush_seen.eq(0), draining.eq(1), drain_bank.eq(acc_bank)]
                        if B > 1:
                            m.d.sync += acc_bank.eq(acc_bank + 1)
                        m.d.comb += walker.restart.eq(1)

        idle = (mode == IDLE) | (accumulating & ~flush_seen & pipeline_empty & ~weights_queued & ~draining)
        was_busy = Signal()
        m.d.sync += was_busy.eq(~idle)
        m.d.comb += [self.run.busy.eq(~idle), self.run.done.eq(was_busy & idle)]

        # ---- performance counters ------------------------------------------------------------
        issue = fold.issue.valid & accumulating
        ev = self.events
        # busy: walking the accumulators, or an event / flush in flight
        working = clearing | draining | (accumulating & (flush_seen | ~pipeline_empty | weights_queued))
        m.d.comb += [
            bank.clear.eq(self.run.start),
            bank.step.busy.eq(working),
            bank.step.additions.eq(Mux(issue, sum(fold.issue.active[i] for i in range(L)), 0)),
            bank.step.events.eq(ev.valid & ev.ready & ~ev.payload.flush),
            bank.step.ops.eq(issue),
            bank.step.starved.eq(accumulating & working & ~fold.issue.valid),
            bank.step.drain.eq(draining),
            bank.step.drain_stalls.eq(self.sums.valid & ~self.sums.ready),
            bank.step.weight_stalls.eq(weight_stall), bank.step.weight_words.eq(weight_words),
        ]
        return m
