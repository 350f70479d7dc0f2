"""The stages of the accumulator array (``hwgen.units.accumulator``), each a small component.

::

    events --> KernelWindow --window--> OperationLoop --op--> FoldSlots --issue--> AdderLanes
               (S0: window,             (S1: one weight       (parks last words,   (S2: weights +
                base addresses)          word per cycle)       per-lane addresses)   accumulators, add)
                                                                                        |
    sums <---- Walker (drain: every accumulator word + its bias, zero written back) <-- accumulators

Every stage reads the latched layer descriptor on ``desc`` (``hwgen.layout.Descriptor``). The
accumulator memories belong to the array, which gives their ports to ``AdderLanes`` while
accumulating and to ``Walker`` while initialising or draining. Layouts and addresses are in
``hwgen.layout`` and docs/accumulator.md.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from contract.config import AccumulatorConfig
from hwgen.layout import FOLD_SLOTS, descriptor_layout
from hwgen.units.signatures import addr_width, memory_words, memory_write, read_port, sums_layout

__all__ = ["event_layout", "window_layout", "op_layout", "issue_signature", "descriptor_signature", "address_bits", "fold_capacity",
           "KernelWindow", "OperationLoop", "FoldSlots", "WeightMemory", "AdderLanes", "Walker"]


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def address_bits(cfg: AccumulatorConfig) -> int:
    """Width of the internal address arithmetic: any weight, bias or accumulator word, plus a
    sign bit (the loop steps backwards through the accumulators)."""
    return _bits(max(cfg.weight_depth, cfg.accumulator_depth, cfg.bias_depth) + 1) + 1


def _index(n: int) -> range:
    """The shape of an index below ``n``: at least one bit (a 0-bit signal is a `[-1:0]` wire in
    Verilog, which lint rejects; configs with one channel, one pixel bit or one lane have them)."""
    return range(max(n, 2))


def fold_capacity(cfg: AccumulatorConfig) -> int:
    """K: most slots a folded operation can carry on this many lanes (0: no folding)."""
    return min(FOLD_SLOTS, cfg.lanes) if cfg.lanes >= 2 else 0


def event_layout(cfg: AccumulatorConfig) -> data.StructLayout:
    """One input event: a spike address, or ``flush`` (end of the timestep's events)."""
    return data.StructLayout({
        "flush": 1,
        "ci": _index(cfg.max_channels),
        "y": _index(cfg.max_size),
        "x": _index(cfg.max_size),
        "plane": _index(cfg.input_bits),
    })


def window_layout(cfg: AccumulatorConfig) -> data.StructLayout:
    """An event's kernel window: first weight and accumulator word, kernel rows and columns
    that land on an output, and (lanes over x) its first lane, columns and operations per row."""
    aw = address_bits(cfg)
    return data.StructLayout({
        "w_base": unsigned(aw), "a_base": unsigned(aw), "plane": _index(cfg.input_bits),
        "ky_n": range(cfg.max_kernel + 1), "kx_n": range(cfg.max_kernel + 1), "empty": 1,
        "x_shift": range(max(cfg.lanes, 2)), "x_n": range(cfg.max_kernel + 1),
        "x_segs": range(-(-cfg.max_kernel // cfg.lanes) + 1)})


def op_layout(cfg: AccumulatorConfig) -> data.StructLayout:
    """One operation of the loop: its weight and accumulator word, the plane, and for lanes over
    x the lane shift and columns left in the row; ``last_word``: the position's last word."""
    aw = address_bits(cfg)
    return data.StructLayout({
        "w_addr": unsigned(aw), "a_addr": unsigned(aw), "plane": _index(cfg.input_bits),
        "x_shift": range(max(cfg.lanes, 2)), "x_left": range(cfg.max_kernel + 1), "last_word": 1})


def issue_signature(cfg: AccumulatorConfig) -> wiring.Signature:
    """The operation the lanes run this cycle (from the fold stage's side): per lane its weight
    and accumulator word, the active lanes, the plane and the lane shift (lanes over x). Separate
    members rather than one wide struct: 2 x lanes addresses are hundreds of bits, and a
    simulator handles them far faster as words of their own."""
    aw, L = address_bits(cfg), cfg.lanes
    return wiring.Signature({
        "valid": Out(1), "w_addr": Out(unsigned(aw)).array(L), "a_addr": Out(unsigned(aw)).array(L),
        "active": Out(L), "plane": Out(_index(cfg.input_bits)), "x_shift": Out(range(max(L, 2)))})


def descriptor_signature(cfg: AccumulatorConfig) -> wiring.Signature:
    """The latched descriptor as the stages read it: one member per field of
    ``hwgen.layout.descriptor_layout`` (the same names and widths), each a word of its own for the
    simulator rather than slices of one wide vector."""
    return wiring.Signature({name: Out(field.shape) for name, field in descriptor_layout(cfg)})


def _x_mode(cfg: AccumulatorConfig, desc):
    """Lanes over output columns: only where the config has grouped convs."""
    return desc.x_lanes if "grouped" in cfg.kinds else Const(0)


def _fold(cfg: AccumulatorConfig, desc):
    return (desc.fold_slots != 0) if fold_capacity(cfg) else Const(0)


def _by_slots(cfg: AccumulatorConfig, desc, pick):
    """A per-lane choice among the slot counts S the descriptor may set (few, constant)."""
    options = [S for S in (2, 4, 8, 16) if S <= fold_capacity(cfg)]   # what hwgen.layout.fold_slots may pick
    value = pick(options[0])
    for S in options[1:]:
        value = Mux(desc.fold_slots == S, pick(S), value)
    return value


def _x_rel(m: Module, L: int, lane: int, shift, stage: str):
    """Lanes over x: the lane's column offset from the operation's first column."""
    rel = Signal(range(max(L, 2)), name=f"x_rel_{stage}_{lane}")
    if lane == L - 1:      # shift <= L - 1: no wrap (and no constant comparison for lint)
        m.d.comb += rel.eq(lane - shift)
    else:
        m.d.comb += rel.eq(Mux(shift <= lane, lane - shift, lane + L - shift))
    return rel


class KernelWindow(wiring.Component):
    """S0: accepts one event and computes its kernel window (docs/accumulator.md, "Pipeline").

    Ports
    -----
    events : In(stream of event_layout)
        Taken while ``accept`` is high and the window register is free (or being taken).
    desc : In(descriptor_signature)
    accept : In(1)
        The array is accumulating and no flush is pending.
    flush : Out(1)
        A flush event is taken this cycle (it goes no further).
    window : Out(stream of window_layout)
        The window of the last spike event, valid the cycle after it was taken; one register:
        the next event is prepared while the loop runs the current one.
    """

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        super().__init__({
            "events": In(stream.Signature(event_layout(cfg))),
            "desc": In(descriptor_signature(cfg)),
            "accept": In(1),
            "flush": Out(1),
            "window": Out(stream.Signature(window_layout(cfg))),
        })

    def elaborate(self, platform):
        cfg, desc = self._cfg, self.desc
        L = cfg.lanes
        grouped = "grouped" in cfg.kinds
        m = Module()
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
            m.d.comb += [hi.eq(hi0 - (s & (hi0[0] ^ t[0]))), lo.eq(lo0 + (s & (lo0[0] ^ t[0])))]
            return lo, hi

        ky_lo, ky_hi = window(ty, desc.lim_y)
        kx_lo, kx_hi = window(tx, desc.lim_x)
        oy0 = Signal(range(cfg.max_size + 1))
        ox0 = Signal(range(cfg.max_size + 1))
        m.d.comb += [oy0.eq((ty - ky_lo) >> s), ox0.eq((tx - kx_lo) >> s)]
        # Lanes over x (depthwise, stride 1): the kernel row's output columns ox_lo .. ox_lo + n - 1
        # are spread over the lanes from lane ox_lo mod L on, ceil(n / L) operations per row.
        x_mode = _x_mode(cfg, desc)
        x_segs_max = -(-cfg.max_kernel // L)
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
            gi = Signal(_index(cfg.max_channels))
            ci_local = Signal(_index(cfg.max_channels))
            m.d.comb += [gi.eq(Mux(desc.grouped, ev.ci >> desc.cin_shift, 0)),
                         ci_local.eq(ev.ci - (gi << desc.cin_shift))]
            w_group, a_group = gi * desc.w_stride_group, gi * desc.group_words
        else:
            ci_local, w_group, a_group = ev.ci, 0, 0
        # with lanes over x, the first operation reads the row's window word o = kx_hi
        w_col0 = Mux(x_mode, kx_hi, kx_lo * desc.group_words)
        w_base = desc.w_offset + w_group + ci_local * desc.w_stride_ci + ky_lo * desc.w_stride_ky + w_col0
        a_base = Mux(x_mode, ev.ci * desc.chan_words + oy0 * desc.x_words + x_word,
                     (oy0 * desc.out_w + ox0) * desc.words + a_group)
        span = lambda lo, hi: (hi - lo >> s) + 1  # offsets in the window (valid when lo <= hi)

        out, held = self.window, Signal()
        m.d.comb += out.valid.eq(held)
        taken = out.valid & out.ready
        m.d.comb += self.events.ready.eq(self.accept & (~held | taken))
        ev_take = self.events.valid & self.events.ready
        m.d.comb += self.flush.eq(ev_take & ev.flush)
        w = out.payload
        with m.If(ev_take & ~ev.flush):
            m.d.sync += [
                held.eq(1),
                w.w_base.eq(w_base), w.a_base.eq(a_base), w.plane.eq(ev.plane if "encoding" in cfg.kinds else 0),
                w.ky_n.eq(span(ky_lo, ky_hi)), w.kx_n.eq(Mux(x_mode, 1, span(kx_lo, kx_hi))),
                w.empty.eq((ky_lo > ky_hi) | (kx_lo > kx_hi)),
                w.x_shift.eq(x_shift), w.x_n.eq(x_n), w.x_segs.eq(x_segs),
            ]
        with m.Elif(taken):
            m.d.sync += held.eq(0)
        return m


class OperationLoop(wiring.Component):
    """S1: the loop over an event's window, one weight word per cycle: (ky, kx, g), with lanes
    over x (ky, column segment).

    Ports
    -----
    window : In(stream of window_layout)
        Taken when the loop is free or issues its last operation this cycle (back to back:
        no bubble between events); an ``empty`` window is taken and issues nothing.
    desc : In(descriptor_signature)
    op : Out(stream of op_layout)
        The current operation; it advances when ``op.ready`` (the fold stage may hold it).
        With folding on, a position's last word is issued too: FoldSlots parks it.
    """

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        super().__init__({
            "window": In(stream.Signature(window_layout(cfg))),
            "desc": In(descriptor_signature(cfg)),
            "op": Out(stream.Signature(op_layout(cfg))),
        })

    def elaborate(self, platform):
        cfg, desc = self._cfg, self.desc
        L, aw = cfg.lanes, address_bits(cfg)
        m = Module()
        valid = Signal()
        ky_left = Signal(range(cfg.max_kernel + 1))
        kx_left = Signal(range(cfg.max_kernel + 1))
        g = Signal(range(cfg.accumulator_depth + 1))
        w_addr, a_addr = Signal(aw), Signal(aw)
        w_row, a_row = Signal(aw), Signal(aw)      # (ky, kx = first, g = 0)
        w_col, a_col = Signal(aw), Signal(aw)      # (ky, kx, g = 0)
        kx_n = Signal.like(kx_left)                # window width: kx_left restarts from it
        plane = Signal(_index(cfg.input_bits))
        g_last = Signal.like(g)                    # group_words - 1, or x_segs - 1
        x_sh = Signal(range(max(L, 2)))            # lanes over x: this event's shift,
        x_cols = Signal(range(cfg.max_kernel + 1))  # its columns per row,
        x_left = Signal(range(cfg.max_kernel + 1))  # and columns left in this row
        last_word = g == g_last
        last_op = last_word & (kx_left == 1) & (ky_left == 1)
        s = desc.stride2
        w_kx_step = Mux(s, desc.group_words << 1, desc.group_words)
        w_ky_step = Mux(s, desc.w_stride_ky << 1, desc.w_stride_ky)
        x_mode, fold = _x_mode(cfg, desc), _fold(cfg, desc)

        op = self.op
        m.d.comb += [op.valid.eq(valid), op.payload.w_addr.eq(w_addr), op.payload.a_addr.eq(a_addr),
                     op.payload.plane.eq(plane), op.payload.x_shift.eq(x_sh), op.payload.x_left.eq(x_left),
                     op.payload.last_word.eq(last_word)]
        issued = op.valid & op.ready
        win = self.window.payload
        m.d.comb += self.window.ready.eq(~valid | (last_op & op.ready))
        with m.If(self.window.valid & self.window.ready):
            m.d.sync += kx_n.eq(win.kx_n)
            with m.If(win.empty):
                m.d.sync += valid.eq(0)
            with m.Else():
                m.d.sync += [
                    valid.eq(1), ky_left.eq(win.ky_n), kx_left.eq(win.kx_n), g.eq(0), plane.eq(win.plane),
                    w_addr.eq(win.w_base), a_addr.eq(win.a_base), w_row.eq(win.w_base), a_row.eq(win.a_base),
                    w_col.eq(win.w_base), a_col.eq(win.a_base),
                    g_last.eq(Mux(x_mode, win.x_segs - 1, Mux(fold, desc.group_words - 2, desc.group_words - 1))),
                    x_sh.eq(win.x_shift), x_cols.eq(win.x_n), x_left.eq(win.x_n),
                ]
        with m.Elif(issued):
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
                m.d.sync += valid.eq(0)
        return m


class FoldSlots(wiring.Component):
    """Folded remainder (descriptor ``fold_slots`` = S), and the per-lane view of the operation.

    The loop's full words go straight through; each position's last word (at most half full)
    is parked in a slot. S parked words, or the last ones once ``flush`` says the timestep's
    events are all issued, go out as one operation, slot j on lanes ``c*S + j``
    (docs/accumulator.md, "Folded remainder"). While the parked words go out the loop is held.

    Ports
    -----
    op : In(stream of op_layout)
    desc : In(descriptor_signature)
    flush : In(1)
        A flush is pending and no event is left in the window or the loop.
    issue : Out(issue_signature)
        This cycle's operation for the lanes (combinational).
    parked : Out(1)
        Words are parked (the pipeline is not empty).
    word, park_word : In(lanes weights); issue_word : Out(lanes weights)
        External weights only (``accumulator.weights: external``): the op's streamed word and,
        for an op that parks, the parked word's (``w_addr + 1``). A slot keeps the lanes of the
        word it parked that it uses in the folded op (slot j: lanes ``l`` with ``l mod S = j``;
        one word of registers for all slots); ``issue_word`` is the issued op's weights.
    """

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        word = data.ArrayLayout(signed(cfg.weight_width), cfg.lanes)
        streamed = {"word": In(word), "park_word": In(word), "issue_word": Out(word)} if cfg.external_weights else {}
        super().__init__({
            "op": In(stream.Signature(op_layout(cfg))),
            "desc": In(descriptor_signature(cfg)),
            "flush": In(1),
            "issue": Out(issue_signature(cfg)),
            "parked": Out(1),
            **streamed,
        })

    def elaborate(self, platform):
        cfg, desc = self._cfg, self.desc
        L, aw, K = cfg.lanes, address_bits(cfg), fold_capacity(cfg)
        m = Module()
        op, issue = self.op.payload, self.issue
        x_mode, fold = _x_mode(cfg, desc), _fold(cfg, desc)
        n_slots = Signal(_index(K + 1))
        slot_w = [Signal(aw, name=f"slot_w{j}") for j in range(K)]
        slot_a = [Signal(aw, name=f"slot_a{j}") for j in range(K)]
        rem_issue = Signal()       # the parked words go out this cycle; the loop holds
        m.d.comb += [self.op.ready.eq(~rem_issue), self.parked.eq(n_slots != 0)]
        from_loop = self.op.valid & self.op.ready
        if K:
            m.d.comb += rem_issue.eq(fold & (n_slots != 0) & ((n_slots == desc.fold_slots) | self.flush))
            with m.If(rem_issue):
                m.d.sync += n_slots.eq(0)
            with m.Elif(from_loop & op.last_word & fold):
                m.d.sync += n_slots.eq(n_slots + 1)
                for j in range(K):
                    with m.If(n_slots == j):
                        m.d.sync += [slot_w[j].eq(op.w_addr + 1), slot_a[j].eq(op.a_addr + 1)]

        def slot_of(lane):
            """The slot that owns this lane in a folded operation: lane mod S."""
            return _by_slots(cfg, desc, lambda S: lane % S)

        r = desc.last_lanes
        x_active = Cat(*[_x_rel(m, L, lane, op.x_shift, "s1") < op.x_left for lane in range(L)])
        rem_active = Cat(*[_by_slots(cfg, desc, lambda S: Const(lane % S, range(K)) < n_slots)
                           & (_by_slots(cfg, desc, lambda S: lane // S) < r) for lane in range(L)]) if K else Const(0, L)
        m.d.comb += issue.active.eq(Mux(rem_issue, rem_active, Mux(x_mode, x_active, Mux(
            op.last_word & ~fold, (Const(1, L + 1) << desc.last_lanes) - 1, (1 << L) - 1))))
        for lane in range(L):
            # the op's word; with lanes over x the next one for lanes below the shift
            a = op.a_addr if lane == L - 1 else op.a_addr + (x_mode & (lane < op.x_shift))   # shift <= L - 1
            w = op.w_addr
            if K:
                parked_a = Signal(aw, name=f"slot_a_lane{lane}")
                m.d.comb += parked_a.eq(Array(slot_a)[slot_of(lane)])
                a, w = Mux(rem_issue, parked_a, a), Mux(rem_issue, Array(slot_w)[slot_of(lane)], w)
            m.d.comb += [issue.a_addr[lane].eq(a), issue.w_addr[lane].eq(w)]
        m.d.comb += [issue.valid.eq(from_loop | rem_issue), issue.plane.eq(op.plane), issue.x_shift.eq(op.x_shift)]
        if cfg.external_weights:
            # the streamed weights: the op's word, or in a folded op each lane from its slot's word
            held = Signal.like(self.word, name="slot_weights")
            for lane in range(L):
                w = self.word[lane]
                if K:
                    with m.If(from_loop & op.last_word & fold & (slot_of(lane) == n_slots)):
                        m.d.sync += held[lane].eq(self.park_word[lane])
                    w = Mux(rem_issue, held[lane], w)
                m.d.comb += self.issue_word[lane].eq(w)
        return m


class WeightMemory(wiring.Component):
    """The weight memory: one memory per lane (a folded operation reads each slot's lanes at its
    own address), each in banks of ``weight_bank_words`` where one memory would exceed what
    synthesis holds (the address's high bits pick the bank; the read data is selected by the
    bank registered with the read: timing and contents are those of one memory).

    Ports
    -----
    write : memory_write
        Loads: one word of ``lanes`` weights, every lane's memory at once.
    read : Out(ReadPort.Signature).array(lanes)
        Lane l's read port: data the cycle after ``en``.
    """

    def __init__(self, cfg: AccumulatorConfig):
        self._cfg = cfg
        aw = addr_width(cfg.weight_depth)
        super().__init__({
            "write": memory_write(aw, data.ArrayLayout(signed(cfg.weight_width), cfg.lanes)),
            "read": Out(memory.ReadPort.Signature(addr_width=aw, shape=signed(cfg.weight_width))).array(cfg.lanes),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        bank_words = cfg.weight_bank_words
        n_banks = -(-cfg.weight_depth // bank_words)
        k = bank_words.bit_length() - 1
        wr = self.write
        for lane in range(cfg.lanes):
            rd = self.read[lane]
            if n_banks > 1:
                selected = Signal(range(n_banks), name=f"weight_bank_{lane}")   # bank on the read data
                with m.If(rd.en):
                    m.d.sync += selected.eq(rd.addr >> k)
            for i in range(n_banks):
                depth = memory_words(min(bank_words, cfg.weight_depth - i * bank_words))
                mem = memory.Memory(shape=signed(cfg.weight_width), depth=depth, init=[])
                m.submodules[f"weights_{lane}" if n_banks == 1 else f"weights_{lane}_{i}"] = mem
                port_r, port_w = mem.read_port(), mem.write_port()
                hit = (wr.addr >> k) == i if n_banks > 1 else 1
                low = wr.addr[:max(k, 1)], rd.addr[:max(k, 1)]
                m.d.comb += [port_w.en.eq(wr.en & hit), port_w.addr.eq(wr.addr if n_banks == 1 else low[0]),
                             port_w.data.eq(wr.data[lane]),
                             port_r.addr.eq(rd.addr if n_banks == 1 else low[1]), port_r.en.eq(rd.en)]
                if n_banks == 1:
                    m.d.comb += rd.data.eq(port_r.data)
                else:
                    with m.If(selected == i):
                        m.d.comb += rd.data.eq(port_r.data)
        return m


def _acc_port(cfg: AccumulatorConfig, kind):
    return kind(addr_width(cfg.accumulator_depth), signed(cfg.accumulator_width))


class AdderLanes(wiring.Component):
    """S2: reads each lane's weight and accumulator word for the issued operation, adds the
    weight (shifted by the pixel plane, negated on the top plane of signed pixels; rotated by
    the lane shift with lanes over x) and writes the sum back the cycle after.

    The accumulator read ports must be transparent to the write ports: an operation that reads
    the word the previous one writes sees the new value, so back-to-back updates never stall.

    Ports
    -----
    issue : In(issue_signature)
    desc : In(descriptor_signature)
    weights : read_port.array(lanes)
    acc_read : read_port.array(lanes), acc_write : write_port.array(lanes)
        Lane l's accumulator memory (the array lends it while accumulating).
    writing : Out(1)
        An operation is in S2 this cycle (its active lanes write).
    """

    def __init__(self, cfg: AccumulatorConfig):
        from hwgen.units.signatures import write_port

        self._cfg = cfg
        super().__init__({
            "issue": In(issue_signature(cfg)),
            "desc": In(descriptor_signature(cfg)),
            "weights": read_port(addr_width(cfg.weight_depth), signed(cfg.weight_width)).array(cfg.lanes),
            "acc_read": _acc_port(cfg, read_port).array(cfg.lanes),
            "acc_write": _acc_port(cfg, write_port).array(cfg.lanes),
            "writing": Out(1),
        })

    def elaborate(self, platform):
        cfg, desc, issue = self._cfg, self.desc, self.issue
        L, aw = cfg.lanes, address_bits(cfg)
        m = Module()
        s2_addr = [Signal(aw, name=f"s2_addr{lane}") for lane in range(L)]   # each lane's word
        s2_plane = Signal(_index(cfg.input_bits))
        s2_active = Signal(L)
        s2_sh = Signal(range(max(L, 2)))
        m.d.sync += [self.writing.eq(issue.valid), s2_plane.eq(issue.plane), s2_active.eq(issue.active),
                     s2_sh.eq(issue.x_shift), *[s2_addr[lane].eq(issue.a_addr[lane]) for lane in range(L)]]
        x_mode = _x_mode(cfg, desc)
        for lane in range(L):
            m.d.comb += [self.weights[lane].addr.eq(issue.w_addr[lane]), self.weights[lane].en.eq(issue.valid),
                         self.acc_read[lane].addr.eq(issue.a_addr[lane]), self.acc_read[lane].en.eq(issue.valid)]
            w = self.weights[lane].data
            if "grouped" in cfg.kinds:
                w = Mux(x_mode, Array(port.data for port in self.weights)[_x_rel(m, L, lane, s2_sh, "s2")], w)
            if "encoding" in cfg.kinds:
                shifted = Signal(signed(cfg.weight_width + cfg.input_bits + 1), name=f"wshift{lane}")
                top = desc.signed_planes & (s2_plane == cfg.input_bits - 1)
                m.d.comb += shifted.eq(Mux(top, -(w << s2_plane), w << s2_plane))
                w = shifted
            port = self.acc_write[lane]
            m.d.comb += [port.en.eq(self.writing & s2_active[lane]), port.addr.eq(s2_addr[lane]),
                         port.data.eq(self.acc_read[lane].data + Mux(s2_active[lane], w, 0))]
        return m


class Walker(wiring.Component):
    """Walks accumulator words in address order, leaving each one zero ("clean accumulators":
    a layer starts accumulating at once, with no bias-initialisation pass). ``drain`` streams
    each of the layer's words out on ``sums`` with its bias added; ``clear`` zeroes every word
    of the memories (once, after reset: nothing else writes a word the layers have not drained).
    A folded position's last word leaves as the sums of its slots' lanes (bias included).

    Ports
    -----
    desc : In(descriptor_signature)
    clear, drain : In(1)
        The array's mode: zero all ``accumulator_depth`` words / drain the layer's
        ``drain_words`` (at most one is high).
    restart : In(1)
        The next walk starts from word 0 (wins over this cycle's step).
    bias : read_port
        The bias memory (word ``b_offset + d_word``; ``bias_repeat`` words share one).
    acc_read, acc_write : read_port / write_port .array(lanes)
        The accumulator memories (lent while walking).
    sums : Out(stream of sums_layout)
        Drained words, ``last`` on the layer's final word; a word is read one cycle ahead.
    done : Out(1)
        Every word has been walked (and, draining, taken).
    """

    def __init__(self, cfg: AccumulatorConfig):
        from hwgen.units.signatures import write_port

        self._cfg = cfg
        super().__init__({
            "desc": In(descriptor_signature(cfg)),
            "clear": In(1), "drain": In(1), "restart": In(1),
            "bias": read_port(addr_width(cfg.bias_depth), data.ArrayLayout(signed(cfg.bias_width), cfg.lanes)),
            "acc_read": _acc_port(cfg, read_port).array(cfg.lanes),
            "acc_write": _acc_port(cfg, write_port).array(cfg.lanes),
            "sums": Out(stream.Signature(sums_layout(cfg))),
            "done": Out(1),
        })

    def elaborate(self, platform):
        cfg, desc = self._cfg, self.desc
        L, K = cfg.lanes, fold_capacity(cfg)
        m = Module()
        d_addr = Signal(range(cfg.accumulator_depth + 1))
        d_word = Signal(range(cfg.accumulator_depth + 1))   # bias word of the accumulator word
        d_rep = Signal(range(cfg.accumulator_depth + 1))    # words walked on this bias word
        d1_valid, d1_addr, d1_last = Signal(), Signal.like(d_addr), Signal()
        d1_fold = Signal()    # the word read is a folded position's last word
        end = Mux(self.clear, cfg.accumulator_depth, desc.drain_words)
        advance = ~d1_valid | self.sums.ready | self.clear
        issue = (self.clear | self.drain) & (d_addr != end) & advance
        m.d.comb += [self.bias.addr.eq(desc.b_offset + d_word), self.bias.en.eq(issue & self.drain),
                     self.done.eq((d_addr == end) & ~d1_valid)]
        for port in self.acc_read:      # clearing writes zeros over words it need not read
            m.d.comb += [port.addr.eq(d_addr), port.en.eq(issue & self.drain)]
        with m.If(issue):
            m.d.sync += [d_addr.eq(d_addr + 1), d1_valid.eq(1), d1_addr.eq(d_addr),
                         d1_last.eq(d_addr == desc.drain_words - 1),
                         d1_fold.eq(_fold(cfg, desc) & (d_word == desc.words - 1))]
            with m.If(d_rep == desc.bias_repeat - 1):
                m.d.sync += [d_rep.eq(0), d_word.eq(Mux(d_word == desc.words - 1, 0, d_word + 1))]
            with m.Else():
                m.d.sync += d_rep.eq(d_rep + 1)
        with m.Elif(advance):
            m.d.sync += d1_valid.eq(0)
        with m.If(self.restart):
            m.d.sync += [d_addr.eq(0), d_word.eq(0), d_rep.eq(0)]

        # each lane's sum: its accumulator plus its bias (the word of the layer's bias memory)
        total = Signal(data.ArrayLayout(signed(cfg.accumulator_width), L))
        for lane, port in enumerate(self.acc_read):
            m.d.comb += total[lane].eq(port.data + self.bias.data[lane])
        out = Signal(data.ArrayLayout(signed(cfg.accumulator_width), L))
        m.d.comb += out.eq(total)
        if K:
            # a folded position's last word: lane c < r is the sum of its slots' lanes c*S .. c*S + S-1
            r = desc.last_lanes
            with m.If(d1_fold):
                for lane in range(L // 2):
                    folded = _by_slots(cfg, desc, lambda S: sum(total[lane * S + j] for j in range(S))
                                       if (lane + 1) * S <= L else 0)
                    m.d.comb += out[lane].eq(Mux(lane < r, folded, 0))
                for lane in range(L // 2, L):
                    m.d.comb += out[lane].eq(0)
        m.d.comb += [self.sums.valid.eq(self.drain & d1_valid), self.sums.payload.data.eq(out),
                     self.sums.payload.last.eq(d1_last)]
        # the word just walked starts the next timestep (or layer) at zero
        for port in self.acc_write:
            m.d.comb += [port.en.eq(d1_valid & (self.clear | self.sums.ready)), port.addr.eq(d1_addr),
                         port.data.eq(0)]
        return m
