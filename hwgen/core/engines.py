"""The core's data movers: each runs one instruction kind between the tensor memories and a unit.

Every engine is started through its ``run`` port (:class:`~hwgen.units.signatures.RunControl`): a
one-cycle ``start`` (the instruction is stable on ``instr`` meanwhile); ``busy`` while it works;
``done`` pulses in its last busy cycle. (:class:`StreamWriter` is a plain sink with ``start``
only: the SDSA unit's ``done`` ends its instruction.) Memory ports are ``lib.memory`` read and
write port signatures: data arrives the cycle after ``addr``/``en``, and holds while ``en`` is low. Engines read ahead by computing the next address
from this cycle's handshake, so a stream moves one word per cycle (docs/core.md, "Engines").

* :class:`EventFeeder`  spike / pixel words -> accumulator events, a flush per timestep
* :class:`DrainWriter`  accumulator sums (+ residual) -> int memory
* :class:`LifStreamer`  int memory -> LIF currents; LIF spikes -> spike memory
* :class:`TokenGatherer` spike words -> SDSA token beats (q, k, v), double-buffered
* :class:`StreamWriter` SDSA attention beats -> int memory
* :class:`MaskEngine`   v AND mask -> spike memory (SDSA-1/2)
* :class:`ReduceEngine` strided integer sums (token sum, readout) -> int memory
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from contract.config import HwConfig
from hwgen.core.isa import address_width, instruction_layout
from hwgen.units.accumulator import event_layout
from hwgen.units.bits import lowest_onehot, onehot_index
from hwgen.units.lif import lif_output_layout
from hwgen.units.sdsa import input_fields, sdsa_input_layout, sdsa_output_layout
from hwgen.units.signatures import RunControl, currents_layout, read_port, sums_layout, write_port

__all__ = ["int_word", "EventFeeder", "DrainWriter", "LifStreamer", "TokenGatherer", "StreamWriter",
           "MaskEngine", "ReduceEngine", "ENGINES"]


def int_word(hw: HwConfig) -> data.ArrayLayout:
    """A word of the integer tensor memory: ``lanes`` signed accumulators (a drained sum)."""
    return sums_layout(hw.accumulator)["data"].shape


def _lowest_index(m: Module, bits, name: str):
    """(index of the lowest set bit, bits with it cleared, whether it is the only one)."""
    index = onehot_index(m, lowest_onehot(m, bits, f"{name}_onehot"), f"{name}_index")
    rest = Signal(len(bits), name=f"{name}_rest")
    m.d.comb += rest.eq(bits & (bits - 1))
    return index, rest, rest == 0


class _Engine(wiring.Component):
    """Common ports: the instruction and the run control (``run``; ``start`` only if not ``runs``)."""

    def __init__(self, hw: HwConfig, members: dict, *, runs: bool = True):
        self._hw = hw
        self._aw = address_width(hw)
        control = {"run": In(RunControl())} if runs else {"start": In(1)}
        super().__init__({"instr": In(instruction_layout(hw)), **control, **members})


class EventFeeder(_Engine):
    """Scans a tensor's words position by position and emits one event per spike (per pixel bit
    plane in pixel mode), then a flush, for each timestep. A zero word costs one cycle."""

    def __init__(self, hw: HwConfig):
        acc = hw.accumulator
        aw = address_width(hw)
        super().__init__(hw, {
            "spikes": read_port(aw, acc.lanes),
            "pixels": read_port(aw, acc.input_bits),
            "events": Out(stream.Signature(event_layout(acc))),
        })

    def elaborate(self, platform):
        acc = self._hw.accumulator
        L, aw = acc.lanes, self._aw
        ins = self.instr
        m = Module()

        running, exhausted, flushing = Signal(), Signal(), Signal()
        m.d.comb += self.run.busy.eq(running)
        t = Signal.like(ins.timesteps)
        t_base, addr = Signal(aw), Signal(aw)
        # scan position of the next word to read
        g = Signal.like(ins.in_words)
        y, x = Signal.like(ins.in_h), Signal.like(ins.in_w)
        ci = Signal(range(acc.max_channels + L + 1))     # channel of the word's bit 0
        # a read in flight: its word is on the port's data the next cycle
        pend = Signal()
        pend_ci, pend_y, pend_x = Signal.like(ci), Signal.like(y), Signal.like(x)
        # the word being turned into events
        width = max(L, acc.input_bits)
        slot, slot_valid = Signal(width), Signal()
        slot_ci, slot_y, slot_x = Signal.like(ci), Signal.like(y), Signal.like(x)

        land = Signal(width)
        m.d.comb += land.eq(Mux(ins.pixels, self.pixels.data, self.spikes.data))
        index, rest, last_bit = _lowest_index(m, slot, "spike")

        ev = self.events
        m.d.comb += [
            ev.valid.eq(slot_valid | flushing),
            ev.payload.flush.eq(~slot_valid),
            ev.payload.ci.eq(Mux(ins.pixels, slot_ci, slot_ci + index)),
            ev.payload.plane.eq(Mux(ins.pixels, index, 0)),
            ev.payload.y.eq(slot_y),
            ev.payload.x.eq(slot_x),
        ]
        take = ev.valid & ev.ready
        slot_frees = ~slot_valid | (take & last_bit)
        consume = pend & ((land == 0) | slot_frees)
        issue = running & ~exhausted & ~flushing & (~pend | consume)
        for port, reads in ((self.spikes, ~ins.pixels), (self.pixels, ins.pixels)):   # the one it scans
            m.d.comb += [port.addr.eq(addr), port.en.eq(issue & reads)]

        with m.If(issue):
            m.d.sync += [pend.eq(1), pend_ci.eq(ci), pend_y.eq(y), pend_x.eq(x), addr.eq(addr + 1)]
            with m.If(g == ins.in_words - 1):
                m.d.sync += [g.eq(0), ci.eq(0)]
                with m.If(x == ins.in_w - 1):
                    m.d.sync += x.eq(0)
                    with m.If(y == ins.in_h - 1):
                        m.d.sync += [y.eq(0), exhausted.eq(1)]
                    with m.Else():
                        m.d.sync += y.eq(y + 1)
                with m.Else():
                    m.d.sync += x.eq(x + 1)
            with m.Else():
                m.d.sync += [g.eq(g + 1), ci.eq(ci + Mux(ins.pixels, 1, L))]
        with m.Elif(consume):
            m.d.sync += pend.eq(0)

        with m.If(consume & (land != 0)):
            m.d.sync += [slot.eq(land), slot_valid.eq(1), slot_ci.eq(pend_ci), slot_y.eq(pend_y), slot_x.eq(pend_x)]
        with m.Elif(slot_valid & take):
            m.d.sync += [slot.eq(rest), slot_valid.eq(~last_bit)]

        with m.If(running & exhausted & ~pend & ~slot_valid & ~flushing):
            m.d.sync += flushing.eq(1)
        with m.If(flushing & take):
            m.d.sync += flushing.eq(0)
            with m.If(t == ins.timesteps - 1):
                m.d.sync += running.eq(0)
                m.d.comb += self.run.done.eq(1)
            with m.Else():
                m.d.sync += [t.eq(t + 1), t_base.eq(t_base + ins.a_step), addr.eq(t_base + ins.a_step),
                             exhausted.eq(0)]

        with m.If(self.run.start):
            m.d.sync += [running.eq(1), exhausted.eq(0), flushing.eq(0), pend.eq(0), slot_valid.eq(0),
                         t.eq(0), t_base.eq(ins.a_base), addr.eq(ins.a_base), g.eq(0), ci.eq(0), y.eq(0), x.eq(0)]
        return m


class DrainWriter(_Engine):
    """Accumulator sums -> int memory, plus the residual (membrane shortcut) read one word ahead.
    With ``chain`` each word written is also offered on ``forward`` (to the LIF streamer), and a
    sum is taken only when ``forward`` takes it too."""

    def __init__(self, hw: HwConfig):
        aw = address_width(hw)
        word = int_word(hw)
        super().__init__(hw, {
            "sums": In(stream.Signature(sums_layout(hw.accumulator))),
            "residual": read_port(aw, word),
            "out": write_port(aw, word),
            "forward": Out(stream.Signature(word)),
        })

    def elaborate(self, platform):
        hw = self._hw
        ins = self.instr
        m = Module()
        running, primed = Signal(), Signal()
        m.d.comb += self.run.busy.eq(running)
        t = Signal.like(ins.timesteps)
        i = Signal(range(hw.accumulator.accumulator_depth + 1))
        dst_t, res_t = Signal(self._aw), Signal(self._aw)

        take = self.sums.valid & self.sums.ready
        last = self.sums.payload.last
        next_i = Mux(take, Mux(last, 0, i + 1), i)
        next_res = Mux(take & last, res_t + ins.b_step, res_t)
        final = take & last & (t == ins.timesteps - 1)
        fwd = self.forward
        m.d.comb += [
            fwd.valid.eq(running & primed & ins.chain & self.sums.valid),
            fwd.payload.eq(self.out.data),
            self.sums.ready.eq(running & primed & (~ins.chain | fwd.ready)),
            # the residual word of the next sum: first when priming, then after each sum but the last
            self.residual.addr.eq(next_res + next_i),
            self.residual.en.eq(running & ins.residual & (~primed | (take & ~final))),
            self.out.en.eq(take),
            self.out.addr.eq(dst_t + i),
        ]
        for lane in range(hw.accumulator.lanes):
            m.d.comb += self.out.data[lane].eq(
                self.sums.payload.data[lane] + Mux(ins.residual, self.residual.data[lane], 0))

        with m.If(running):
            m.d.sync += primed.eq(1)
        with m.If(take):
            m.d.sync += i.eq(next_i)
            with m.If(last):
                m.d.sync += [t.eq(t + 1), res_t.eq(res_t + ins.b_step), dst_t.eq(dst_t + ins.dst_step)]
                with m.If(t == ins.timesteps - 1):
                    m.d.sync += running.eq(0)
                    m.d.comb += self.run.done.eq(1)
        with m.If(self.run.start):
            m.d.sync += [running.eq(1), primed.eq(0), i.eq(0), t.eq(0),
                         dst_t.eq(ins.dst_base), res_t.eq(ins.b_base)]
        return m


class LifStreamer(_Engine):
    """int memory words -> LIF currents (shifted by ``input_shift``), spikes -> spike memory.
    The tensor's T timesteps are contiguous: ``count`` = T x beats words in, the same out.
    With ``chain`` the words come from ``drained`` (the drain writer's ``forward``: the CONV's
    sums as they are written) instead of the int memory, which it then does not read."""

    def __init__(self, hw: HwConfig):
        lif = hw.lif
        aw = address_width(hw)
        super().__init__(hw, {
            "source": read_port(aw, int_word(hw)),
            "drained": In(stream.Signature(int_word(hw))),
            "currents": Out(stream.Signature(currents_layout(lif))),
            "spikes": In(stream.Signature(lif_output_layout(lif))),
            "out": write_port(aw, lif.lanes),
        })

    def elaborate(self, platform):
        ins = self.instr
        m = Module()
        running, primed = Signal(), Signal()
        m.d.comb += self.run.busy.eq(running)
        j, k = Signal.like(ins.count), Signal.like(ins.count)

        cur, drained = self.currents, self.drained
        m.d.comb += cur.valid.eq(Mux(ins.chain, running & drained.valid, running & primed & (j != ins.count)))
        take = cur.valid & cur.ready
        m.d.comb += drained.ready.eq(running & ins.chain & cur.ready)
        # the word of the next beat: first when priming, then after each beat but the last
        m.d.comb += [self.source.addr.eq(ins.a_base + j + take),
                     self.source.en.eq(running & ~ins.chain & (~primed | (take & (j != ins.count - 1))))]
        word = Signal(int_word(self._hw))
        m.d.comb += word.eq(Mux(ins.chain, drained.payload, self.source.data))
        for lane in range(self._hw.lif.lanes):
            m.d.comb += cur.payload[lane].eq(word[lane] << ins.input_shift)

        m.d.comb += [
            self.spikes.ready.eq(1),
            self.out.en.eq(self.spikes.valid & running),
            self.out.addr.eq(ins.dst_base + k),
            self.out.data.eq(self.spikes.payload.spikes),
        ]
        with m.If(running):
            m.d.sync += primed.eq(1)
        with m.If(take):
            m.d.sync += j.eq(j + 1)
        with m.If(self.spikes.valid & running):
            m.d.sync += k.eq(k + 1)
            with m.If(k == ins.count - 1):
                m.d.sync += running.eq(0)
                m.d.comb += self.run.done.eq(1)
        with m.If(self.run.start):
            m.d.sync += [running.eq(1), primed.eq(0), j.eq(0), k.eq(0)]
        return m


class TokenGatherer(_Engine):
    """Spike words of one token (``in_words`` per field) -> one SDSA input beat.

    Per timestep: SDSA-3/4 two passes over the tokens (the unit reads k, v in the first and q in
    the second), SDSA-1/2 one. Word ``w`` of a token belongs to head ``w // head_words`` and
    lands at bit ``head * head_dim + (w % head_words) * lanes`` of the beat (generation-time
    head_dim). The next beat is gathered while the unit works on the current one. ``done``
    pulses when the last beat has been taken (the sequencer waits for the unit's own ``done``)."""

    def __init__(self, hw: HwConfig):
        aw = address_width(hw)
        L = hw.sdsa.lanes
        super().__init__(hw, {
            "q": read_port(aw, L), "k": read_port(aw, L), "v": read_port(aw, L),
            "beat": Out(stream.Signature(sdsa_input_layout(hw.sdsa))),
        })

    def elaborate(self, platform):
        cfg = self._hw.sdsa
        L = cfg.lanes
        per_head = cfg.head_dim // L
        passes = 2 if cfg.attention_matrix else 1
        fields = input_fields(cfg.variant)
        ins = self.instr
        m = Module()

        running, exhausted = Signal(), Signal()
        m.d.comb += self.run.busy.eq(running)
        t = Signal.like(ins.timesteps)
        pss = Signal(range(passes + 1))
        n = Signal.like(ins.tokens)
        w = Signal.like(ins.in_words)
        j = Signal.like(ins.head_words)
        head_slot = Signal(range(cfg.heads * per_head + 1))   # first word slot of the current head
        off, pass_base = Signal(self._aw), Signal(self._aw)

        beat_bits = cfg.heads * cfg.head_dim
        nxt = {f: Signal(beat_bits, name=f"next_{f}") for f in fields}
        cur = {f: Signal(beat_bits, name=f"cur_{f}") for f in fields}
        next_full, cur_valid = Signal(), Signal()
        pend, pend_last = Signal(), Signal()
        pend_slot = Signal.like(head_slot)

        ports = {"q": (self.q, ins.a_base), "k": (self.k, ins.b_base), "v": (self.v, ins.c_base)}
        issue = running & ~exhausted & ~next_full & ~(pend & pend_last)
        for f, (port, base) in ports.items():
            # the variant's fields only (SDSA-3/4 read q, k, v in both passes: the unit takes k, v
            # in the first and q in the second)
            m.d.comb += [port.addr.eq(base + off), port.en.eq(issue if f in fields else 0)]

        with m.If(issue):
            m.d.sync += [pend.eq(1), pend_slot.eq(head_slot + j), pend_last.eq(w == ins.in_words - 1),
                         off.eq(off + 1)]
            with m.If(j == ins.head_words - 1):
                m.d.sync += [j.eq(0), head_slot.eq(head_slot + per_head)]
            with m.Else():
                m.d.sync += j.eq(j + 1)
            with m.If(w == ins.in_words - 1):
                m.d.sync += [w.eq(0), j.eq(0), head_slot.eq(0)]
                with m.If(n == ins.tokens - 1):
                    m.d.sync += n.eq(0)
                    with m.If(pss == passes - 1):
                        m.d.sync += [pss.eq(0), pass_base.eq(pass_base + ins.a_step), off.eq(pass_base + ins.a_step)]
                        with m.If(t == ins.timesteps - 1):
                            m.d.sync += exhausted.eq(1)
                        with m.Else():
                            m.d.sync += t.eq(t + 1)
                    with m.Else():
                        m.d.sync += [pss.eq(pss + 1), off.eq(pass_base)]
                with m.Else():
                    m.d.sync += n.eq(n + 1)
            with m.Else():
                m.d.sync += w.eq(w + 1)
        with m.Elif(pend):
            m.d.sync += pend.eq(0)

        with m.If(pend):
            for f in fields:
                m.d.sync += nxt[f].word_select(pend_slot, L).eq(ports[f][0].data)
            with m.If(pend_last):
                m.d.sync += next_full.eq(1)

        beat = self.beat
        m.d.comb += beat.valid.eq(cur_valid)
        for f in fields:
            m.d.comb += getattr(beat.payload, f).eq(cur[f])
        with m.If(next_full & (~cur_valid | beat.ready)):
            m.d.sync += [cur_valid.eq(1), next_full.eq(0)]
            m.d.sync += [cur[f].eq(nxt[f]) for f in fields]
        with m.Elif(beat.ready):
            m.d.sync += cur_valid.eq(0)

        with m.If(running & exhausted & ~pend & ~next_full & ~cur_valid):
            m.d.sync += running.eq(0)
            m.d.comb += self.run.done.eq(1)
        with m.If(self.run.start):
            m.d.sync += [running.eq(1), exhausted.eq(0), t.eq(0), pss.eq(0), n.eq(0), w.eq(0), j.eq(0),
                         head_slot.eq(0), off.eq(0), pass_base.eq(0), pend.eq(0), next_full.eq(0),
                         cur_valid.eq(0)]
        return m


class StreamWriter(_Engine):
    """SDSA attention beats (unsigned) -> consecutive int memory words from ``dst_base``."""

    def __init__(self, hw: HwConfig):
        super().__init__(hw, {
            "beats": In(stream.Signature(sdsa_output_layout(hw.sdsa))),
            "out": write_port(address_width(hw), int_word(hw)),
        }, runs=False)

    def elaborate(self, platform):
        ins = self.instr
        m = Module()
        k = Signal(self._aw)
        m.d.comb += [
            self.beats.ready.eq(1),
            self.out.en.eq(self.beats.valid),
            self.out.addr.eq(ins.dst_base + k),
        ]
        for lane in range(self._hw.sdsa.lanes):
            m.d.comb += self.out.data[lane].eq(self.beats.payload[lane])   # zero-extends
        with m.If(self.beats.valid):
            m.d.sync += k.eq(k + 1)
        with m.If(self.start):
            m.d.sync += k.eq(0)
        return m


class MaskEngine(_Engine):
    """``out[t, n, g] = v[t, n, g] & mask[t, g]`` over ``count`` = T x tokens x in_words words."""

    def __init__(self, hw: HwConfig):
        aw, L = address_width(hw), hw.lif.lanes
        super().__init__(hw, {
            "v": read_port(aw, L), "mask": read_port(aw, L), "out": write_port(aw, L),
        })

    def elaborate(self, platform):
        ins = self.instr
        m = Module()
        running = Signal()
        m.d.comb += self.run.busy.eq(running)
        s = Signal.like(ins.count)
        g, n = Signal.like(ins.in_words), Signal.like(ins.tokens)
        mask_t = Signal(self._aw)
        pend, pend_last = Signal(), Signal()
        pend_s = Signal.like(s)

        issue = running & (s != ins.count)
        m.d.comb += [
            self.v.addr.eq(ins.a_base + s), self.v.en.eq(issue),
            self.mask.addr.eq(mask_t + g), self.mask.en.eq(issue),
            self.out.en.eq(pend), self.out.addr.eq(ins.dst_base + pend_s),
            self.out.data.eq(self.v.data & self.mask.data),
        ]
        m.d.sync += [pend.eq(issue), pend_s.eq(s), pend_last.eq(s == ins.count - 1)]
        with m.If(issue):
            m.d.sync += s.eq(s + 1)
            with m.If(g == ins.in_words - 1):
                m.d.sync += g.eq(0)
                with m.If(n == ins.tokens - 1):
                    m.d.sync += [n.eq(0), mask_t.eq(mask_t + ins.b_step)]
                with m.Else():
                    m.d.sync += n.eq(n + 1)
            with m.Else():
                m.d.sync += g.eq(g + 1)
        with m.If(pend & pend_last):
            m.d.sync += running.eq(0)
            m.d.comb += self.run.done.eq(1)
        with m.If(self.run.start):
            m.d.sync += [running.eq(1), s.eq(0), g.eq(0), n.eq(0), mask_t.eq(ins.b_base)]
        return m


class ReduceEngine(_Engine):
    """``dst[o * in_words + g] = sum_{i < count} a[o * a_step + i * in_stride + g]``: the token
    sum (i over positions) and the readout (i over timesteps). Sums wrap at the accumulator
    width, like every accumulator."""

    def __init__(self, hw: HwConfig):
        aw, word = address_width(hw), int_word(hw)
        super().__init__(hw, {"source": read_port(aw, word), "out": write_port(aw, word)})

    def elaborate(self, platform):
        ins = self.instr
        m = Module()
        running, exhausted = Signal(), Signal()
        m.d.comb += self.run.busy.eq(running)
        o = Signal.like(ins.outer)
        g = Signal.like(ins.in_words)
        i = Signal.like(ins.count)
        o_base, row, addr = Signal(self._aw), Signal(self._aw), Signal(self._aw)
        w = Signal(self._aw)
        pend, pend_first, pend_last, pend_final = Signal(), Signal(), Signal(), Signal()
        acc = Signal(int_word(self._hw))

        issue = running & ~exhausted
        m.d.comb += [self.source.addr.eq(addr), self.source.en.eq(issue)]
        m.d.sync += [pend.eq(issue), pend_first.eq(i == 0), pend_last.eq(i == ins.count - 1),
                     pend_final.eq((i == ins.count - 1) & (g == ins.in_words - 1) & (o == ins.outer - 1))]
        with m.If(issue):
            with m.If(i == ins.count - 1):
                m.d.sync += i.eq(0)
                with m.If(g == ins.in_words - 1):
                    m.d.sync += [g.eq(0), o.eq(o + 1), o_base.eq(o_base + ins.a_step),
                                 row.eq(o_base + ins.a_step), addr.eq(o_base + ins.a_step)]
                    with m.If(o == ins.outer - 1):
                        m.d.sync += exhausted.eq(1)
                with m.Else():
                    m.d.sync += [g.eq(g + 1), row.eq(row + 1), addr.eq(row + 1)]
            with m.Else():
                m.d.sync += [i.eq(i + 1), addr.eq(addr + ins.in_stride)]

        total = Signal(int_word(self._hw))
        for lane in range(self._hw.accumulator.lanes):
            m.d.comb += total[lane].eq(Mux(pend_first, 0, acc[lane]) + self.source.data[lane])
        m.d.comb += [self.out.en.eq(pend & pend_last), self.out.addr.eq(ins.dst_base + w), self.out.data.eq(total)]
        with m.If(pend):
            m.d.sync += acc.eq(total)
            with m.If(pend_last):
                m.d.sync += w.eq(w + 1)
            with m.If(pend_final):
                m.d.sync += running.eq(0)
                m.d.comb += self.run.done.eq(1)
        with m.If(self.run.start):
            m.d.sync += [running.eq(1), exhausted.eq(0), o.eq(0), g.eq(0), i.eq(0), w.eq(0),
                         o_base.eq(ins.a_base), row.eq(ins.a_base), addr.eq(ins.a_base)]
        return m


#: every engine, in the order of the module docstring
ENGINES = (EventFeeder, DrainWriter, LifStreamer, TokenGatherer, StreamWriter, MaskEngine, ReduceEngine)
