"""Weights from an external memory (``accumulator.weights: external``; docs/accumulator.md,
"Weights from external memory").

Instead of a weight memory of ``weight_depth`` words, the accumulator array reads its weight
words through a streaming port (:class:`WeightStream`): requests ``{addr, len}`` (a burst of
``len`` consecutive words from ``addr``) and responses of up to ``weight_port_words`` words per
beat, in request order. :class:`ExternalWeights` keeps the loop fed::

    events --tee--> EventQueue (event_queue deep) ------------------> KernelWindow -> OperationLoop
             |                                                                          | op
             +--> WeightPrefetcher: KernelWindow -> OperationLoop (the same stages, the  v
                  same events and descriptor: the same word sequence) -> bursts ----> join: an op
                  (issued only while the buffer has room reserved: credits)          waits for its
                                                                                       word(s)
    response --> WeightBuffer (weight_buffer words, two banks) --------------------------^

Each operation of the loop consumes the next streamed word; an operation that parks a folded
remainder (``last_word`` with ``fold_slots``) consumes two: its own and the parked word (the
slot keeps that word's weights, :class:`~hwgen.units.accumulator_stages.FoldSlots`), which is
why the buffer has two banks (two words can leave it in one cycle). The prefetcher generates
exactly this sequence because it *is* the loop's address generator, run ahead on the same
events: every layer kind (kxk, stride 2, pointwise, depthwise/grouped, lanes over x, folded,
bit planes, linear) follows without a second description of the kernel window.
"""
from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from contract.config import AccumulatorConfig
from hwgen.units.accumulator_stages import (
    KernelWindow,
    OperationLoop,
    _fold,
    descriptor_signature,
    event_layout,
    op_layout,
)
from hwgen.units.signatures import addr_width

__all__ = ["weight_word_layout", "weight_request_layout", "weight_response_layout", "WeightStream",
           "WeightPrefetcher", "WeightBuffer", "StreamedWeights", "ExternalWeights", "op_words"]


def weight_word_layout(cfg: AccumulatorConfig) -> data.ArrayLayout:
    """One weight word: ``lanes`` signed weights (lane l at bits ``l*weight_width``)."""
    return data.ArrayLayout(signed(cfg.weight_width), cfg.lanes)


def weight_request_layout(cfg: AccumulatorConfig) -> data.StructLayout:
    """A read request: ``len`` (1 .. ``weight_burst``) consecutive words from word ``addr``."""
    return data.StructLayout({"addr": addr_width(cfg.weight_depth), "len": range(cfg.weight_burst + 1)})


def weight_response_layout(cfg: AccumulatorConfig) -> data.StructLayout:
    """A response beat: ``count`` (1 .. ``weight_port_words``) words, ``data[0]`` first."""
    return data.StructLayout({"data": data.ArrayLayout(weight_word_layout(cfg), cfg.weight_port_words),
                              "count": range(cfg.weight_port_words + 1)})


class WeightStream(wiring.Signature):
    """The weight read port, from the reader's side: ``request`` (out, stream of
    :func:`weight_request_layout`) and ``response`` (in, stream of :func:`weight_response_layout`):
    the words of the requests, in request order, ``count`` per beat. A unit that reads its
    weights outside declares ``Out(WeightStream(cfg))``; the memory side takes it flipped."""

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        super().__init__({"request": Out(stream.Signature(weight_request_layout(cfg))),
                          "response": In(stream.Signature(weight_response_layout(cfg)))})

    def __eq__(self, other):
        return type(self) is type(other) and self.members == other.members

    def __repr__(self):
        return f"WeightStream(lanes={self._cfg.lanes}, burst={self._cfg.weight_burst})"


def op_words(cfg: AccumulatorConfig, desc, op) -> Value:
    """Words an operation of the loop consumes: 1, or 2 where it parks a folded remainder (its
    own word and the position's last word, ``w_addr + 1``)."""
    return 1 + (op.last_word & _fold(cfg, desc))



class WeightPrefetcher(wiring.Component):
    """The loop's weight-word sequence, run ahead of it, as burst requests.

    A :class:`KernelWindow` and an :class:`OperationLoop` (the loop's own stages, so the same
    words in the same order) walk each event; every operation's words (:func:`op_words`) are
    reserved in the buffer (``credits``: words free and not yet requested) and coalesced into
    a burst while they are consecutive and the burst is shorter than ``weight_burst``. A burst
    is requested as soon as the next words cannot extend it in the same cycle (not consecutive,
    the burst is full, no credit, or no word this cycle), and then held unchanged until taken.

    Ports
    -----
    events : In(stream of event_layout)
        The events, as the loop will see them (flushes are taken and dropped).
    desc : In(descriptor_signature)
    request : Out(stream of weight_request_layout)
    popped : In(range(3))
        Words that left the buffer this cycle: their credits return.
    """

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        super().__init__({
            "events": In(stream.Signature(event_layout(cfg))),
            "desc": In(descriptor_signature(cfg)),
            "request": Out(stream.Signature(weight_request_layout(cfg))),
            "popped": In(range(3)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.window = window = KernelWindow(cfg)
        m.submodules.loop = loop = OperationLoop(cfg)
        wiring.connect(m, wiring.flipped(self.desc), window.desc, loop.desc)
        wiring.connect(m, wiring.flipped(self.events), window.events)
        wiring.connect(m, window.window, loop.window)
        m.d.comb += window.accept.eq(1)

        aw, burst = addr_width(cfg.weight_depth), cfg.weight_burst
        op = loop.op
        n = Signal(range(3))
        m.d.comb += n.eq(op_words(cfg, self.desc, op.payload))
        addr = op.payload.w_addr[:aw]
        credits = Signal(range(cfg.weight_buffer + 1), init=cfg.weight_buffer)
        p_valid, p_addr, p_len, locked = Signal(), Signal(aw), Signal(range(burst + 1)), Signal()
        req = self.request
        has_credit = credits >= n
        extend = Signal()
        m.d.comb += extend.eq(op.valid & has_credit & p_valid & ~locked & (addr == p_addr + p_len)
                              & (p_len + n <= burst))
        m.d.comb += [req.valid.eq(p_valid & ~extend), req.payload.addr.eq(p_addr), req.payload.len.eq(p_len)]
        accepted = req.valid & req.ready
        m.d.comb += op.ready.eq(has_credit & (extend | ~p_valid | accepted))
        take = op.valid & op.ready
        with m.If(extend):
            m.d.sync += p_len.eq(p_len + n)
        with m.Elif(take):
            m.d.sync += [p_valid.eq(1), p_addr.eq(addr), p_len.eq(n)]
        with m.Elif(accepted):
            m.d.sync += p_valid.eq(0)
        m.d.sync += [locked.eq(req.valid & ~req.ready),
                     credits.eq(credits - Mux(take, n, 0) + self.popped)]
        return m


class WeightBuffer(wiring.Component):
    """The prefetch buffer: ``weight_buffer`` words in two banks (FIFOs of half the depth),
    streamed word i into bank ``i mod 2``, so a response beat can write two words and an
    operation that parks a folded remainder can take two in one cycle.

    Ports
    -----
    response : In(stream of weight_response_layout)
        Always ready while the prefetcher's credits hold (room for every requested word).
    head : Out(2)
        The next one / two words are here (``head[0]``, ``head[1]``).
    word, next_word : Out(weight_word_layout)
        The next two words.
    pop : In(range(3))
        Words taken this cycle (at most those ``head`` shows).
    received : Out(range(weight_port_words + 1))
        Words written this cycle (the ``weight_words`` counter).
    """

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        super().__init__({
            "response": In(stream.Signature(weight_response_layout(cfg))),
            "head": Out(2),
            "word": Out(weight_word_layout(cfg)),
            "next_word": Out(weight_word_layout(cfg)),
            "pop": In(range(3)),
            "received": Out(range(cfg.weight_port_words + 1)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        width = weight_word_layout(cfg).size
        banks = [fifo.SyncFIFOBuffered(width=width, depth=cfg.weight_buffer // 2) for _ in range(2)]
        m.submodules.bank0, m.submodules.bank1 = banks
        wp, rp = Signal(), Signal()            # the bank of the next word written / read
        resp = self.response
        beat = resp.payload
        two = (beat.count == 2) if cfg.weight_port_words == 2 else Const(0)
        d0 = beat.data[0].as_value()
        d1 = beat.data[1].as_value() if cfg.weight_port_words == 2 else d0
        m.d.comb += resp.ready.eq(banks[0].w_rdy & banks[1].w_rdy)
        take = resp.valid & resp.ready & (beat.count != 0)
        m.d.comb += [banks[0].w_data.eq(Mux(wp, d1, d0)), banks[0].w_en.eq(take & (~wp | two)),
                     banks[1].w_data.eq(Mux(wp, d0, d1)), banks[1].w_en.eq(take & (wp | two)),
                     self.received.eq(Mux(take, beat.count, 0))]
        with m.If(take & ~two):
            m.d.sync += wp.eq(~wp)
        first = Mux(rp, banks[1].r_data, banks[0].r_data)
        second = Mux(rp, banks[0].r_data, banks[1].r_data)
        m.d.comb += [self.word.eq(first), self.next_word.eq(second),
                     self.head[0].eq(Mux(rp, banks[1].r_rdy, banks[0].r_rdy)),
                     self.head[1].eq(Mux(rp, banks[0].r_rdy, banks[1].r_rdy))]
        # pop 1: bank rp; pop 2: both
        m.d.comb += [banks[0].r_en.eq((self.pop == 2) | ((self.pop == 1) & ~rp)),
                     banks[1].r_en.eq((self.pop == 2) | ((self.pop == 1) & rp))]
        with m.If(self.pop == 1):
            m.d.sync += rp.eq(~rp)
        return m


class StreamedWeights(wiring.Component):
    """Stands where the weight memory stands for :class:`AdderLanes`: lane l's read port returns,
    the cycle after ``en``, lane l of ``word`` (the issued operation's streamed weights) as it
    was in the ``en`` cycle, and holds it while ``en`` is low. Addresses are not used.

    Ports
    -----
    word : In(weight_word_layout)
    read : Out(ReadPort.Signature).array(lanes)
    """

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        aw = addr_width(cfg.weight_depth)
        super().__init__({
            "word": In(weight_word_layout(cfg)),
            "read": Out(memory.ReadPort.Signature(addr_width=aw, shape=signed(cfg.weight_width))).array(cfg.lanes),
        })

    def elaborate(self, platform):
        m = Module()
        for lane in range(self._cfg.lanes):
            rd = self.read[lane]
            with m.If(rd.en):
                m.d.sync += rd.data.eq(self.word[lane])
        return m


class ExternalWeights(wiring.Component):
    """Everything between the unit's ports and its loop in external-weights mode: the event
    queue with the prefetcher beside it, the prefetch buffer, and the join that holds an
    operation until its weights are in.

    Ports
    -----
    events : In(stream of event_layout)
        The unit's events; taken while ``enable``, the queue has room and the prefetcher's window
        is free: one event enters the queue and the prefetcher in the same cycle.
    enable : In(1)
        A layer has been started (the descriptor is latched).
    desc : In(descriptor_signature)
    queued : Out(stream of event_layout)
        The queue's head, for the loop's KernelWindow.
    pending : Out(1)
        Events are queued (the pipeline is not empty).
    op_in : In(stream of op_layout), op_out : Out(stream of op_layout)
        The loop's operations, passed on once their words (:func:`op_words`) are in the buffer.
    word, park_word : Out(weight_word_layout)
        With ``op_out``: the operation's weights, and the parked remainder's (FoldSlots).
    memory : Out(WeightStream)
    stall : Out(1)
        The loop has an operation whose weights are not in (``weight_stalls``).
    received : Out(range(weight_port_words + 1))
        Words received this cycle (``weight_words``).
    """

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        super().__init__({
            "events": In(stream.Signature(event_layout(cfg))),
            "enable": In(1),
            "desc": In(descriptor_signature(cfg)),
            "queued": Out(stream.Signature(event_layout(cfg))),
            "pending": Out(1),
            "op_in": In(stream.Signature(op_layout(cfg))),
            "op_out": Out(stream.Signature(op_layout(cfg))),
            "word": Out(weight_word_layout(cfg)),
            "park_word": Out(weight_word_layout(cfg)),
            "memory": Out(WeightStream(cfg)),
            "stall": Out(1),
            "received": Out(range(cfg.weight_port_words + 1)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.prefetcher = pf = WeightPrefetcher(cfg)
        m.submodules.buffer = buf = WeightBuffer(cfg)
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=event_layout(cfg).size, depth=cfg.event_queue)
        wiring.connect(m, wiring.flipped(self.desc), pf.desc)

        # the tee: an event enters the queue and the prefetcher's window together
        ev = self.events
        m.d.comb += [ev.ready.eq(self.enable & queue.w_rdy & pf.events.ready),
                     pf.events.valid.eq(ev.valid & self.enable & queue.w_rdy), pf.events.payload.eq(ev.payload),
                     queue.w_en.eq(ev.valid & ev.ready), queue.w_data.eq(ev.payload),
                     self.queued.valid.eq(queue.r_rdy), self.queued.payload.eq(queue.r_data),
                     queue.r_en.eq(self.queued.ready), self.pending.eq(queue.level != 0)]

        wiring.connect(m, pf.request, wiring.flipped(self.memory.request))
        wiring.connect(m, wiring.flipped(self.memory.response), buf.response)

        # the join: an operation goes on with its words
        n = Signal(range(3))
        m.d.comb += n.eq(op_words(cfg, self.desc, self.op_in.payload))
        ready = buf.head[0] & ((n == 1) | buf.head[1])
        go = self.op_in.valid & self.op_out.ready & ready
        m.d.comb += [self.op_out.valid.eq(self.op_in.valid & ready), self.op_out.payload.eq(self.op_in.payload),
                     self.op_in.ready.eq(self.op_out.ready & ready),
                     self.word.eq(buf.word), self.park_word.eq(buf.next_word),
                     buf.pop.eq(Mux(go, n, 0)), pf.popped.eq(Mux(go, n, 0)),
                     self.stall.eq(self.op_in.valid & ~ready), self.received.eq(buf.received)]
        return m
