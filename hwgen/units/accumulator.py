"""Spike-addressed accumulator array: a synaptic operation only where a spike is.

Each input event (the address ``(ci, y, x)`` of a spike, plus a pixel bit plane for the
encoding layer) selects, for every kernel offset ``(ky, kx)`` that lands on an output position,
one word of ``lanes`` weights (``lanes`` output channels) and adds it into the accumulator word
of that output position: ``lanes`` additions per cycle, no multiplier per synapse. The cost
follows the number of spikes. Layer geometry is a run-time descriptor (``hwgen.layout``), so one
instance runs every conv, pointwise, depthwise/grouped and linear layer of a network.

Pipeline (docs/accumulator.md)::

    events -> [setup: kernel window, base addresses] -> [loop: one op per cycle (ky, kx, g)]
           -> [read weight word + accumulator word] -> [add, write back]
    flush  -> drain: stream every accumulator word out, re-initialising it with its bias

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

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from contract.config import AccumulatorConfig
from hwgen.layout import FOLD_SLOTS

__all__ = ["AccumulatorArray", "descriptor_layout", "event_layout"]


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def descriptor_layout(cfg: AccumulatorConfig) -> data.StructLayout:
    """The run-time layer descriptor (fields as ``hwgen.layout.Descriptor``)."""
    big = max(cfg.weight_depth, cfg.accumulator_depth, cfg.bias_depth) + 1
    return data.StructLayout({
        "kernel": range(cfg.max_kernel + 1),
        "stride2": 1,
        "padding": range(cfg.max_kernel + 1),
        "out_h": range(cfg.max_size + 1),
        "out_w": range(cfg.max_size + 1),
        "lim_y": range(2 * cfg.max_size + 1),
        "lim_x": range(2 * cfg.max_size + 1),
        "group_words": range(cfg.accumulator_depth + 1),
        "words": range(cfg.accumulator_depth + 1),
        "last_lanes": range(cfg.lanes + 1),
        "grouped": 1,
        "cin_shift": range(_bits(cfg.max_channels) + 1),
        "w_offset": range(cfg.weight_depth + 1),
        "w_stride_group": range(cfg.weight_depth + 1),
        "w_stride_ci": range(cfg.weight_depth + 1),
        "w_stride_ky": range(cfg.weight_depth + 1),
        "b_offset": range(cfg.bias_depth + 1),
        "row_stride": range(big),
        "drain_words": range(cfg.accumulator_depth + 1),
        "signed_planes": 1,
        "fold_slots": range(FOLD_SLOTS + 1),
        "x_lanes": 1,
        "x_words": range(cfg.max_size // cfg.lanes + 2),
        "chan_words": range(cfg.accumulator_depth + 1),
        "bias_repeat": range(cfg.accumulator_depth + 1),
    })


def event_layout(cfg: AccumulatorConfig) -> data.StructLayout:
    """One input event: a spike address, or ``flush`` (end of the timestep's events)."""
    return data.StructLayout({
        "flush": 1,
        "ci": range(cfg.max_channels),
        "y": range(cfg.max_size),
        "x": range(cfg.max_size),
        "plane": range(cfg.input_bits),
    })


class AccumulatorArray(wiring.Component):
    """Event-driven conv/linear accumulation over ``lanes`` output channels per cycle.

    Ports
    -----
    events : In(stream of event_layout)
        Spike addresses of one timestep in any order, then one ``flush`` event. ``plane`` is the
        pixel bit plane (encoding layer; 0 for spikes): the weight is added shifted left by it,
        and negated for the top plane when ``desc.signed_planes``.
    sums : Out(stream of lanes x signed accumulator_width)
        After a flush: every accumulator word of the layer in address order
        (``hwgen.layout``: position-major, padded channel groups), ``last`` on the final word.
    desc : In(descriptor_layout), start : In(1)
        ``start`` latches ``desc`` and initialises every accumulator with its bias
        (``drain_words`` cycles). Pulse it only while ``idle``.
    weight_write, bias_write : In
        ``en``/``addr``/``data`` (a word of ``lanes`` values) to load the memories while idle.
    idle : Out(1)
        No layer work in flight (after reset, or a drain finished and no event is pending).
    counters : Out
        ``busy`` cycles, synaptic ``additions`` (active lanes only), spike ``events``, ``ops``
        (cycles that issued a weight word), ``starved`` (busy accumulating with no op to issue),
        ``drain`` cycles and ``drain_stalls`` (output not ready). Cleared by ``start``.
    """

    COUNTER_WIDTH = 40

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        L = cfg.lanes
        cw = self.COUNTER_WIDTH
        super().__init__({
            "events": In(stream.Signature(event_layout(cfg))),
            "sums": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(cfg.accumulator_width), L),
                "last": 1,
            }))),
            "desc": In(descriptor_layout(cfg)),
            "start": In(1),
            "idle": Out(1),
            "weight_write": In(wiring.Signature({
                "en": Out(1), "addr": Out(range(cfg.weight_depth)),
                "data": Out(data.ArrayLayout(signed(cfg.weight_width), L))})),
            "bias_write": In(wiring.Signature({
                "en": Out(1), "addr": Out(range(cfg.bias_depth)),
                "data": Out(data.ArrayLayout(signed(cfg.bias_width), L))})),
            "counters": Out(wiring.Signature({
                name: Out(cw) for name in ("busy", "additions", "events", "ops", "starved", "drain", "drain_stalls")})),
        })

    @property
    def cfg(self) -> AccumulatorConfig:
        return self._cfg

    def _weight_lanes(self, m: Module) -> list[wiring.PureInterface]:
        """The weight memory, one memory per lane (a folded operation reads each slot's lanes at
        its own address), each in banks of ``weight_bank_words`` where one memory would exceed
        what synthesis holds: per lane a read port view with ``addr``, ``en``, ``data``."""
        cfg = self._cfg
        bank_words = cfg.weight_bank_words
        n_banks = -(-cfg.weight_depth // bank_words)
        k = bank_words.bit_length() - 1
        wr = self.weight_write
        ports = []
        for lane in range(cfg.lanes):
            rd = wiring.Signature({"addr": Out(range(cfg.weight_depth)), "en": Out(1),
                                   "data": In(signed(cfg.weight_width))}).create(path=(f"weights_{lane}",))
            ports.append(rd)
            if n_banks > 1:
                selected = Signal(range(n_banks), name=f"weight_bank_{lane}")   # bank on the read data
                with m.If(rd.en):
                    m.d.sync += selected.eq(rd.addr >> k)
            for i in range(n_banks):
                depth = min(bank_words, cfg.weight_depth - i * bank_words)
                mem = memory.Memory(shape=signed(cfg.weight_width), depth=depth, init=[])
                m.submodules[f"weights_{lane}" if n_banks == 1 else f"weights_{lane}_{i}"] = mem
                port_r, port_w = mem.read_port(), mem.write_port()
                hit = (wr.addr >> k) == i if n_banks > 1 else 1
                m.d.comb += [port_w.en.eq(wr.en & hit), port_w.addr.eq(wr.addr if n_banks == 1 else wr.addr[:k]),
                             port_w.data.eq(wr.data[lane]),
                             port_r.addr.eq(rd.addr if n_banks == 1 else rd.addr[:k]), port_r.en.eq(rd.en)]
                if n_banks == 1:
                    m.d.comb += rd.data.eq(port_r.data)
                else:
                    with m.If(selected == i):
                        m.d.comb += rd.data.eq(port_r.data)
        return ports

    def elaborate(self, platform):
        cfg = self._cfg
        L = cfg.lanes
        grouped = "grouped" in cfg.kinds
        encoding = "encoding" in cfg.kinds
        m = Module()

        m.submodules.biases = b_mem = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.bias_width), L), depth=cfg.bias_depth, init=[])
        # One accumulator memory per lane: with lanes over x, lanes address different words.
        a_wr, a_rd = [], []
        for lane in range(L):
            mem = memory.Memory(shape=signed(cfg.accumulator_width), depth=cfg.accumulator_depth, init=[])
            m.submodules[f"accumulators_{lane}"] = mem
            a_wr.append(mem.write_port())
            a_rd.append(mem.read_port(transparent_for=(a_wr[-1],)))
        b_wr = b_mem.write_port()
        b_rd = b_mem.read_port()
        w_rd = self._weight_lanes(m)
        m.d.comb += [
            b_wr.en.eq(self.bias_write.en), b_wr.addr.eq(self.bias_write.addr),
            b_wr.data.eq(self.bias_write.data),
        ]

        desc = Signal(descriptor_layout(cfg))
        addr_w = _bits(max(cfg.weight_depth, cfg.accumulator_depth, cfg.bias_depth) + 1) + 1

        # ---- control state ------------------------------------------------------------
        # INIT and DRAIN share one walker over the accumulator words; only DRAIN emits.
        mode = Signal(range(4))
        IDLE, INIT, ACCUM, DRAIN = 0, 1, 2, 3
        flush_seen = Signal()

        # ---- stage S0: accept an event, compute its kernel window -----------------------
        s0_valid = Signal()
        x_segs_max = -(-cfg.max_kernel // L)
        s0 = Signal(data.StructLayout({
            "w_base": unsigned(addr_w), "a_base": unsigned(addr_w), "plane": range(cfg.input_bits),
            "ky_n": range(cfg.max_kernel + 1), "kx_n": range(cfg.max_kernel + 1), "empty": 1,
            # lanes over x: the event's first output column mod lanes, its columns, operations per row
            "x_shift": range(max(L, 2)), "x_n": range(cfg.max_kernel + 1), "x_segs": range(x_segs_max + 1)}))
        s0_take = Signal()   # S1 takes the setup this cycle

        ev = self.events.payload
        s = desc.stride2
        ty = Signal(range(cfg.max_size + cfg.max_kernel + 1))
        tx = Signal.like(ty)
        m.d.comb += [ty.eq(ev.y + desc.padding), tx.eq(ev.x + desc.padding)]

        def window(t, lim):
            """Kernel offsets k with (t - k) divisible by the stride and 0 <= (t - k) / s <= out - 1."""
            hi = Signal(signed(_bits(cfg.max_size + 2 * cfg.max_kernel) + 2))
            lo = Signal.like(hi)
            hi0 = Mux(t > desc.kernel - 1, desc.kernel - 1, t)
            lo0 = Mux(t > lim, t - lim, 0)
            # with stride 2, k must have the parity of t
            m.d.comb += [
                hi.eq(hi0 - (s & (hi0[0] ^ t[0]))),
                lo.eq(lo0 + (s & (lo0[0] ^ t[0]))),
            ]
            return lo, hi

        ky_lo, ky_hi = window(ty, desc.lim_y)
        kx_lo, kx_hi = window(tx, desc.lim_x)
        oy0 = Signal(range(cfg.max_size + 1))
        ox0 = Signal(range(cfg.max_size + 1))
        m.d.comb += [oy0.eq((ty - ky_lo) >> s), ox0.eq((tx - kx_lo) >> s)]
        # Lanes over x (depthwise, stride 1): the kernel row's output columns ox_lo .. ox_lo + n - 1
        # are spread over the lanes from lane ox_lo mod L on, ceil(n / L) operations per row.
        x_mode = desc.x_lanes if grouped else Const(0)
        x_n = Signal(range(cfg.max_kernel + 1))
        x_segs = Signal(range(x_segs_max + 1))
        x_shift = Signal(range(max(L, 2)))
        x_word = Signal(range(cfg.max_size + cfg.max_kernel + 1))
        if grouped:
            ox_lo = Signal(range(cfg.max_size + cfg.max_kernel + 1))
            m.d.comb += [ox_lo.eq(tx - kx_hi), x_n.eq(kx_hi - kx_lo + 1),
                         x_segs.eq(sum(x_n > j * L for j in range(x_segs_max)))]
            if L & (L - 1) == 0:
                m.d.comb += [x_word.eq(ox_lo >> (L.bit_length() - 1)), x_shift.eq(ox_lo & (L - 1))]
            else:
                m.d.comb += [x_word.eq(ox_lo // L), x_shift.eq(ox_lo % L)]
        if grouped:
            gi = Signal(range(cfg.max_channels))
            ci_local = Signal(range(cfg.max_channels))
            m.d.comb += [gi.eq(Mux(desc.grouped, ev.ci >> desc.cin_shift, 0)),
                         ci_local.eq(ev.ci - (gi << desc.cin_shift))]
            w_group = gi * desc.w_stride_group
            a_group = gi * desc.group_words
        else:
            ci_local, w_group, a_group = ev.ci, 0, 0
        # with lanes over x, the first operation reads the row's window word o = kx_hi
        w_col0 = Mux(x_mode, kx_hi, kx_lo * desc.group_words)
        w_base = desc.w_offset + w_group + ci_local * desc.w_stride_ci + ky_lo * desc.w_stride_ky + w_col0
        a_base = Mux(x_mode, ev.ci * desc.chan_words + oy0 * desc.x_words + x_word,
                     (oy0 * desc.out_w + ox0) * desc.words + a_group)
        span = lambda lo, hi: (hi - lo >> s) + 1  # offsets in the window (valid when lo <= hi)

        s0_free = ~s0_valid | s0_take
        m.d.comb += self.events.ready.eq((mode == ACCUM) & ~flush_seen & s0_free)
        ev_take = self.events.valid & self.events.ready
        with m.If(ev_take & ~ev.flush):
            m.d.sync += [
                s0_valid.eq(1),
                s0.w_base.eq(w_base), s0.a_base.eq(a_base), s0.plane.eq(ev.plane if encoding else 0),
                s0.ky_n.eq(span(ky_lo, ky_hi)), s0.kx_n.eq(Mux(x_mode, 1, span(kx_lo, kx_hi))),
                s0.empty.eq((ky_lo > ky_hi) | (kx_lo > kx_hi)),
                s0.x_shift.eq(x_shift), s0.x_n.eq(x_n), s0.x_segs.eq(x_segs),
            ]
        with m.Elif(s0_take):
            m.d.sync += s0_valid.eq(0)

        # ---- stage S1: the loop over (ky, kx, g), one weight word per cycle ---------------
        s1_valid = Signal()
        ky_left = Signal(range(cfg.max_kernel + 1))
        kx_left = Signal(range(cfg.max_kernel + 1))
        g = Signal(range(cfg.accumulator_depth + 1))
        w_addr, a_addr = Signal(addr_w), Signal(addr_w)
        w_row, a_row = Signal(addr_w), Signal(addr_w)      # (ky, kx = first, g = 0)
        w_col, a_col = Signal(addr_w), Signal(addr_w)      # (ky, kx, g = 0)
        kx_n = Signal.like(kx_left)                          # window width: kx_left restarts from it
        plane = Signal(range(cfg.input_bits))
        g_last = Signal.like(g)                              # group_words - 1, or x_segs - 1
        x_sh = Signal.like(x_shift)                          # lanes over x: this event's shift,
        x_cols = Signal(range(cfg.max_kernel + 1))           # its columns per row,
        x_left = Signal(range(cfg.max_kernel + 1))           # and columns left in this row
        last_word = g == g_last
        last_op = last_word & (kx_left == 1) & (ky_left == 1)
        w_kx_step = Mux(s, desc.group_words << 1, desc.group_words)
        w_ky_step = Mux(s, desc.w_stride_ky << 1, desc.w_stride_ky)

        # Folded remainder (descriptor fold_slots = S): the loop issues the full words only and
        # parks each position's last word (at most half full) in a slot; S parked words, or the
        # last ones after a flush, go out as one operation, slot j on lanes c*S + j.
        K = min(FOLD_SLOTS, L) if L >= 2 else 0
        fold_options = [S for S in (2, 4, 8, 16) if S <= K]       # what hwgen.layout.fold_slots may pick
        fold = (desc.fold_slots != 0) if K else Const(0)
        r = desc.last_lanes
        n_slots = Signal(range(K + 1))
        slot_w = [Signal(addr_w, name=f"slot_w{j}") for j in range(K)]
        slot_a = [Signal(addr_w, name=f"slot_a{j}") for j in range(K)]
        rem_issue = Signal()       # the parked words go out this cycle; the loop holds
        s1_issue = Signal()        # the loop's word goes out this cycle
        m.d.comb += s1_issue.eq(s1_valid & ~rem_issue)
        if K:
            m.d.comb += rem_issue.eq(fold & (n_slots != 0) & (
                (n_slots == desc.fold_slots) | (flush_seen & ~s0_valid & ~s1_valid)))
            with m.If(rem_issue):
                m.d.sync += n_slots.eq(0)
            with m.Elif(s1_issue & last_word & fold):
                m.d.sync += n_slots.eq(n_slots + 1)
                for j in range(K):
                    with m.If(n_slots == j):
                        m.d.sync += [slot_w[j].eq(w_addr + 1), slot_a[j].eq(a_addr + 1)]

        def by_slots(pick):
            """A per-lane choice among the slot counts S the descriptor may set (few, constant)."""
            value = pick(fold_options[0])
            for S in fold_options[1:]:
                value = Mux(desc.fold_slots == S, pick(S), value)
            return value

        def slot_of(lane):
            """The slot that owns this lane in a folded operation: lane mod S."""
            return by_slots(lambda S: lane % S)

        m.d.comb += s0_take.eq(s0_valid & (~s1_valid | (last_op & ~rem_issue)))
        with m.If(s0_take):
            with m.If(s0.empty):
                m.d.sync += s1_valid.eq(0)
            with m.Else():
                m.d.sync += [
                    s1_valid.eq(1), ky_left.eq(s0.ky_n), kx_left.eq(s0.kx_n), g.eq(0), plane.eq(s0.plane),
                    w_addr.eq(s0.w_base), a_addr.eq(s0.a_base),
                    w_row.eq(s0.w_base), a_row.eq(s0.a_base),
                    w_col.eq(s0.w_base), a_col.eq(s0.a_base),
                    g_last.eq(Mux(x_mode, s0.x_segs - 1, Mux(fold, desc.group_words - 2, desc.group_words - 1))),
                    x_sh.eq(s0.x_shift), x_cols.eq(s0.x_n), x_left.eq(s0.x_n),
                ]
        with m.Elif(s1_issue):
            with m.If(~last_word):
                # next word of the group; with lanes over x, the next lanes columns of the row
                # (the window word lanes kernel columns back)
                m.d.sync += [g.eq(g + 1), w_addr.eq(Mux(x_mode, w_addr - L, w_addr + 1)), a_addr.eq(a_addr + 1),
                             x_left.eq(x_left - L)]
            with m.Elif(kx_left != 1):
                # next kernel column: the output position moves one column left
                m.d.sync += [g.eq(0), kx_left.eq(kx_left - 1),
                             w_col.eq(w_col + w_kx_step), a_col.eq(a_col - desc.words),
                             w_addr.eq(w_col + w_kx_step), a_addr.eq(a_col - desc.words)]
            with m.Elif(ky_left != 1):
                # next kernel row: the output position moves one row up
                m.d.sync += [g.eq(0), kx_left.eq(kx_n), ky_left.eq(ky_left - 1), x_left.eq(x_cols),
                             w_row.eq(w_row + w_ky_step), a_row.eq(a_row - desc.row_stride),
                             w_col.eq(w_row + w_ky_step), a_col.eq(a_row - desc.row_stride),
                             w_addr.eq(w_row + w_ky_step), a_addr.eq(a_row - desc.row_stride)]
            with m.Else():
                m.d.sync += s1_valid.eq(0)
        with m.If(s0_take):
            m.d.sync += kx_n.eq(s0.kx_n)

        # ---- stage S2: memories answer; add and write back -------------------------------
        s2_valid = Signal()
        s2_addr = [Signal(addr_w, name=f"s2_addr{lane}") for lane in range(L)]   # each lane's word
        s2_plane = Signal(range(cfg.input_bits))
        s2_active = Signal(L)
        s2_sh = Signal.like(x_sh)
        active = Signal(L)

        def x_rel(lane, shift, stage):
            """Lanes over x: the lane's column offset from the operation's first column."""
            rel = Signal(range(max(L, 2)), name=f"x_rel_{stage}_{lane}")
            if lane == L - 1:      # shift <= L - 1: no wrap (and no constant comparison for lint)
                m.d.comb += rel.eq(lane - shift)
            else:
                m.d.comb += rel.eq(Mux(shift <= lane, lane - shift, lane + L - shift))
            return rel

        x_active = Cat(*[x_rel(lane, x_sh, "s1") < x_left for lane in range(L)])
        rem_active = Cat(*[by_slots(lambda S: Const(lane % S, range(K)) < n_slots) & (by_slots(lambda S: lane // S) < r)
                           for lane in range(L)])
        m.d.comb += active.eq(Mux(rem_issue, rem_active, Mux(x_mode, x_active,
                                  Mux(last_word & ~fold, (Const(1, L + 1) << desc.last_lanes) - 1, (1 << L) - 1))))

        def lane_addr(lane):
            """The accumulator word this lane reads in S1 (and writes in S2): the op's word; with
            lanes over x the next one for lanes below the shift; its slot's for a folded op."""
            addr = a_addr if lane == L - 1 else a_addr + (x_mode & (lane < x_sh))   # shift <= L - 1
            if K:
                parked = Signal(addr_w, name=f"slot_a_lane{lane}")
                m.d.comb += parked.eq(Array(slot_a)[slot_of(lane)])
                addr = Mux(rem_issue, parked, addr)
            return addr

        lane_a = [Signal(addr_w, name=f"s1_addr{lane}") for lane in range(L)]
        for lane in range(L):
            m.d.comb += lane_a[lane].eq(lane_addr(lane))
        issue = s1_issue | rem_issue
        m.d.sync += [s2_valid.eq(issue), s2_plane.eq(plane), s2_active.eq(active), s2_sh.eq(x_sh),
                     *[s2_addr[lane].eq(lane_a[lane]) for lane in range(L)]]

        # ---- drain / init walker -------------------------------------------------------------
        d_addr = Signal(range(cfg.accumulator_depth + 1))
        d_word = Signal(range(cfg.accumulator_depth + 1))   # bias word of the accumulator word
        d_rep = Signal(range(cfg.accumulator_depth + 1))    # words walked on this bias word
        d1_valid, d1_addr, d1_last = Signal(), Signal.like(d_addr), Signal()
        d1_fold = Signal()    # the word read is a folded position's last word
        d_advance = ~d1_valid | self.sums.ready | (mode == INIT)
        walking = ((mode == INIT) | (mode == DRAIN)) & (d_addr != desc.drain_words)
        d_issue = walking & d_advance

        m.d.comb += [b_rd.addr.eq(desc.b_offset + d_word), b_rd.en.eq(d_issue)]
        for lane in range(L):
            w_lane = w_addr
            if K:
                w_lane = Mux(rem_issue, Array(slot_w)[slot_of(lane)], w_addr)
            m.d.comb += [
                w_rd[lane].addr.eq(w_lane), w_rd[lane].en.eq(issue),
                a_rd[lane].addr.eq(Mux(mode == ACCUM, lane_a[lane], d_addr)),
                a_rd[lane].en.eq(Mux(mode == ACCUM, issue, d_issue)),
            ]
        with m.If(d_issue):
            m.d.sync += [d_addr.eq(d_addr + 1),
                         d1_valid.eq(1), d1_addr.eq(d_addr), d1_last.eq(d_addr == desc.drain_words - 1),
                         d1_fold.eq(fold & (d_word == desc.words - 1))]
            with m.If(d_rep == desc.bias_repeat - 1):
                m.d.sync += [d_rep.eq(0), d_word.eq(Mux(d_word == desc.words - 1, 0, d_word + 1))]
            with m.Else():
                m.d.sync += d_rep.eq(d_rep + 1)
        with m.Elif(d_advance):
            m.d.sync += d1_valid.eq(0)

        # the adder lanes
        summed = Signal(data.ArrayLayout(signed(cfg.accumulator_width), L))
        for lane in range(L):
            w = w_rd[lane].data
            if grouped:
                w = Mux(x_mode, Array(port.data for port in w_rd)[x_rel(lane, s2_sh, "s2")], w)
            if encoding:
                shifted = Signal(signed(cfg.weight_width + cfg.input_bits + 1), name=f"wshift{lane}")
                top = desc.signed_planes & (s2_plane == cfg.input_bits - 1)
                m.d.comb += shifted.eq(Mux(top, -(w << s2_plane), w << s2_plane))
                w = shifted
            m.d.comb += summed[lane].eq(a_rd[lane].data + Mux(s2_active[lane], w, 0))

        emitting = (mode == DRAIN) & d1_valid
        out = Signal(data.ArrayLayout(signed(cfg.accumulator_width), L))
        m.d.comb += out.eq(Cat(*[port.data for port in a_rd]))
        if K:
            # a folded position's last word: lane c < r is the sum of its slots' lanes c*S .. c*S + S-1
            with m.If(d1_fold):
                for lane in range(L // 2):
                    folded = by_slots(lambda S: sum(a_rd[lane * S + j].data for j in range(S)) if (lane + 1) * S <= L else 0)
                    m.d.comb += out[lane].eq(Mux(lane < r, folded, 0))
                for lane in range(L // 2, L):
                    m.d.comb += out[lane].eq(0)
        m.d.comb += [
            self.sums.valid.eq(emitting),
            self.sums.payload.data.eq(out),
            self.sums.payload.last.eq(d1_last),
        ]
        for lane, port in enumerate(a_wr):
            with m.If((mode == ACCUM) & s2_valid):
                m.d.comb += [port.en.eq(s2_active[lane]), port.addr.eq(s2_addr[lane]), port.data.eq(summed[lane])]
            with m.Elif(d1_valid & ((mode == INIT) | self.sums.ready)):
                # re-initialise the word just read with its bias for the next timestep
                m.d.comb += [port.en.eq(1), port.addr.eq(d1_addr), port.data.eq(b_rd.data[lane])]

        # ---- mode sequencing -----------------------------------------------------------------
        pipeline_empty = ~s0_valid & ~s1_valid & ~s2_valid & (n_slots == 0)
        walk_done = (d_addr == desc.drain_words) & ~d1_valid
        with m.If(self.start):
            m.d.sync += [desc.eq(self.desc), mode.eq(INIT), d_addr.eq(0), d_word.eq(0), d_rep.eq(0), flush_seen.eq(0)]
        with m.Else():
            with m.Switch(mode):
                with m.Case(INIT):
                    with m.If(walk_done):
                        m.d.sync += mode.eq(ACCUM)
                with m.Case(ACCUM):
                    with m.If(ev_take & ev.flush):
                        m.d.sync += flush_seen.eq(1)
                    with m.If(flush_seen & pipeline_empty):
                        m.d.sync += [mode.eq(DRAIN), d_addr.eq(0), d_word.eq(0), d_rep.eq(0), flush_seen.eq(0)]
                with m.Case(DRAIN):
                    with m.If(walk_done):
                        m.d.sync += mode.eq(ACCUM)

        m.d.comb += self.idle.eq((mode == IDLE) | ((mode == ACCUM) & ~flush_seen & pipeline_empty))

        # ---- performance counters ------------------------------------------------------------
        c = self.counters
        regs = {name: Signal(self.COUNTER_WIDTH, name=f"count_{name}")
                for name in ("busy", "additions", "events", "ops", "starved", "drain", "drain_stalls")}
        for name, reg in regs.items():
            m.d.comb += getattr(c, name).eq(reg)
        popcount = sum(active[i] for i in range(L))
        # busy: walking the accumulators, or an event / flush in flight
        working = (mode == INIT) | (mode == DRAIN) | ((mode == ACCUM) & (flush_seen | ~pipeline_empty))
        with m.If(self.start):
            m.d.sync += [reg.eq(0) for reg in regs.values()]
        with m.Else():
            with m.If(working):
                m.d.sync += regs["busy"].eq(regs["busy"] + 1)
            with m.If(issue & (mode == ACCUM)):
                m.d.sync += [regs["ops"].eq(regs["ops"] + 1), regs["additions"].eq(regs["additions"] + popcount)]
            with m.If(ev_take & ~ev.flush):
                m.d.sync += regs["events"].eq(regs["events"] + 1)
            with m.If((mode == ACCUM) & working & ~issue):
                m.d.sync += regs["starved"].eq(regs["starved"] + 1)
            with m.If(mode == DRAIN):
                m.d.sync += regs["drain"].eq(regs["drain"] + 1)
            with m.If(emitting & ~self.sums.ready):
                m.d.sync += regs["drain_stalls"].eq(regs["drain_stalls"] + 1)
        return m
