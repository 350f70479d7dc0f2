"""The stages of the SDSA unit (``hwgen.units.sdsa``), each a small component.

::

    spikes --> front end of the pass (stage 0: picks the next spike, one operation per cycle)
                 KvPass     SDSA-3/4, K^T V: a K spike (h, i) adds V_h's block into KV row (h, i)
                 QaPass     SDSA-3/4, A: a Q spike i adds KV row (head, i)'s block into A's block
                 CountPass  SDSA-1/2: a block of lanes channels with a spike adds its bits
                 DrainPass  SDSA-1/2: the counters, block by block
           --> Accumulate (stage 1: the count memory read-modify-write, the A block accumulator)
           --> BeatPacker (finished blocks -> output beats of out_blocks blocks) --> out

``BlockCursor`` keeps the (head, block) position in output order and the next block's slot in
the beat; the K^T V pass uses its block counter for the block of the V row. Every operation and
the output order are in docs/sdsa.md; the cycle model is ``hwgen.sim.sdsa.cycle_model``.
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from contract.config import SdsaConfig
from hwgen.units.bits import lowest_onehot, onehot_index
from hwgen.units.signatures import addr_width, memory_words

__all__ = ["Phase", "OpKind", "writes_back", "reads_word", "input_fields", "sdsa_input_layout", "sdsa_output_layout", "op_layout",
           "stage1_layout", "BlockCursor", "KvPass", "QaPass", "CountPass", "DrainPass", "Accumulate",
           "BeatPacker"]


def input_fields(variant: int) -> tuple[str, ...]:
    """Spike fields of an input beat, least significant first."""
    return {1: ("q", "k"), 2: ("q",), 3: ("q", "k", "v"), 4: ("q", "k", "v")}[variant]


def sdsa_input_layout(cfg: SdsaConfig) -> data.StructLayout:
    """One token's spikes: per field ``heads x head_dim`` bits, head ``h`` dimension ``i`` at bit
    ``h*head_dim + i`` (generation-time ``head_dim``; bits beyond a layer's ``d`` or ``heads`` are
    ignored)."""
    head_row = data.ArrayLayout(unsigned(cfg.head_dim), cfg.heads)
    return data.StructLayout({f: head_row for f in input_fields(cfg.variant)})


def sdsa_output_layout(cfg: SdsaConfig) -> data.ArrayLayout:
    """``out_blocks * lanes`` unsigned attention values per beat (``out_blocks`` lane blocks,
    block 0 and lane 0 in the least significant bits)."""
    return data.ArrayLayout(unsigned(cfg.acc_width), cfg.out_lanes)


class Phase(enum.Enum, shape=3):
    IDLE = 0
    KV = 1      # SDSA-3/4: K, V beats -> K^T V
    QA = 2      # SDSA-3/4: Q beats -> A, streamed out
    COUNT = 3   # SDSA-1/2: Q(, K) beats -> per-channel counters
    DRAIN = 4   # SDSA-1/2: counters streamed out


class OpKind(enum.Enum, shape=3):
    """What stage 1 does with the word read in stage 0."""
    KV_ADD = 0      # KV row block += V bits, write back
    A_ADD = 1       # A block accumulator += KV row block; out on `last`
    ZERO = 2        # all-zero output blocks (no Q spike / untouched counters)
    COUNT_ADD = 3   # counter block += spike bits, write back
    READ_OUT = 4    # the counter block is an output block


def op_layout(cfg: SdsaConfig) -> data.StructLayout:
    """An operation issued by a front end: kind, memory word, the spike bits to add
    (KV_ADD, COUNT_ADD), ``fresh`` (first write of the word this timestep: read it as zero),
    ``first`` (first KV row of an A block), ``last`` (the block is finished with it)."""
    return data.StructLayout({"kind": OpKind, "addr": addr_width(cfg.memory_depth), "bits": cfg.lanes,
                              "fresh": 1, "first": 1, "last": 1})


def stage1_layout(cfg: SdsaConfig) -> data.StructLayout:
    """Stage 1's register: the operation, and where its finished block(s) go in the beat."""
    P = cfg.out_blocks
    return data.StructLayout({"valid": 1, "op": op_layout(cfg), "slot": range(max(P, 2)), "span": range(P + 1),
                              "emit": 1})


def _geometry(cfg: SdsaConfig) -> dict:
    """Run-time geometry the front ends read (registers of the unit, sampled at start)."""
    return {"dim_on": In(cfg.head_dim), "head_on": In(cfg.heads), "d": In(range(cfg.head_dim + 1)),
            "n_blk": In(range(cfg.blocks + 1))}


def _pick_lowest(m: Module, rows, name: str):
    """The lowest head with a set bit in ``rows`` (per head), then its lowest set bit: two small
    priority picks instead of one over every channel, and (head, bit) come out directly.
    Returns (head one-hot, head, the head's bits, bit one-hot, bit, whether it is the only one)."""
    n = len(rows)
    any_row = Signal(n, name=f"{name}_heads")
    m.d.comb += any_row.eq(Cat(*[rows[h].any() for h in range(n)]))
    h_oh = lowest_onehot(m, any_row, f"{name}_head_onehot")
    h = onehot_index(m, h_oh, f"{name}_head")
    row = Signal(len(rows[0]), name=f"{name}_row")
    m.d.comb += row.eq(rows[h])
    b_oh = lowest_onehot(m, row, f"{name}_bit_onehot")
    b = onehot_index(m, b_oh, f"{name}_bit")
    single = ((any_row & ~h_oh) == 0) & ((row & ~b_oh) == 0)
    return h_oh, h, row, b_oh, b, single


def _lanes_below_d(cfg: SdsaConfig, d, base):
    """Lane-additions of a block that starts at dimension ``base``: the lanes below d."""
    left = d - base
    return Mux(left >= cfg.lanes, cfg.lanes, left)


class BlockCursor(wiring.Component):
    """The (head, block) position in output order and the slot of the next block in the beat.

    Ports
    -----
    n_heads, n_blk, d : In
        Run-time heads, blocks per head B and d.
    clear : In(1)
        Back to head 0, block 0, slot 0 (wins over the commands).
    next_row_block : In(1)
        K^T V pass: the row's current block is issued: next block, or block 0 after the last.
    advance, span, last_token : In
        A and drain passes: ``span`` finished blocks go out; move by them in output order
        (``last_token``: this is the timestep's last token).
    head, blk, blk_base : Out
        The position (``blk_base = blk * lanes``); ``last_blk``: the block holds dimension d-1.
    slot : Out
        Where the next finished block goes in the beat.
    emit, token_done : Out(1)
        With ``advance``: the filed blocks complete a beat or end the timestep / the token's
        last head is finished.
    """

    def __init__(self, cfg: SdsaConfig):
        self._cfg = cfg
        H, NB, P = cfg.heads, cfg.blocks, cfg.out_blocks
        super().__init__({
            "n_heads": In(range(H + 1)), "n_blk": In(range(NB + 1)), "d": In(range(cfg.head_dim + 1)),
            "clear": In(1), "next_row_block": In(1), "advance": In(1), "span": In(range(P + 1)),
            "last_token": In(1),
            "head": Out(range(max(H, 2))), "blk": Out(range(max(NB, 2))), "blk_base": Out(range(NB * cfg.lanes + 1)),
            "last_blk": Out(1), "slot": Out(range(max(P, 2))), "emit": Out(1), "token_done": Out(1),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        L, P = cfg.lanes, cfg.out_blocks
        m = Module()
        head, blk, blk_base, slot, span = self.head, self.blk, self.blk_base, self.slot, self.span
        m.d.comb += self.last_blk.eq(blk_base + L >= self.d)
        with m.If(self.next_row_block):
            with m.If(self.last_blk):
                m.d.sync += [blk.eq(0), blk_base.eq(0)]
            with m.Else():
                m.d.sync += [blk.eq(blk + 1), blk_base.eq(blk_base + L)]
        with m.If(self.advance):
            head_done = blk + span >= self.n_blk
            last_head = head == self.n_heads - 1
            m.d.comb += [self.token_done.eq(head_done & last_head),
                         self.emit.eq((slot + span == P) | (head_done & last_head & self.last_token))]
            m.d.sync += slot.eq(Mux(self.emit, 0, slot + span))
            with m.If(head_done):
                m.d.sync += [blk.eq(0), blk_base.eq(0), head.eq(Mux(last_head, 0, head + 1))]
            with m.Else():
                m.d.sync += [blk.eq(blk + span), blk_base.eq(blk_base + span * L)]
        with m.If(self.clear):
            m.d.sync += [head.eq(0), blk.eq(0), blk_base.eq(0), slot.eq(0)]
        return m


class _FrontEnd(wiring.Component):
    """Common ports of the front ends.

    ``payload`` is the held input beat; ``go``: the pass runs this cycle (its phase, the
    pipeline advances, and for the input passes a beat is valid). ``touched`` holds the rows
    (K^T V) or blocks (counters) written this timestep. Out: ``issue`` and ``op``, the lane
    ``adds`` of it, ``take`` (the beat is finished), ``touch`` (rows or blocks first written
    now, to be added to ``touched``). ``clear`` resets the pass's own state (start)."""

    def __init__(self, cfg: SdsaConfig, members: dict):
        self._cfg = cfg
        super().__init__({
            "payload": In(sdsa_input_layout(cfg)), "go": In(1), "clear": In(1), **_geometry(cfg),
            "touched": In(self.flags_layout(cfg)),
            "issue": Out(1), "op": Out(op_layout(cfg)), "adds": Out(range(cfg.lanes + 1)), "take": Out(1),
            "touch": Out(self.flags_layout(cfg)), **members,
        })

    def _op(self, m: Module):
        """The operation as one signal driving ``op`` whole (fields a pass leaves alone are 0,
        and the port has no constant-driven slices for lint to trip on)."""
        op = Signal(op_layout(self._cfg), name="op_next")
        m.d.comb += self.op.eq(op)
        return op

    @staticmethod
    def flags_layout(cfg: SdsaConfig) -> data.ArrayLayout:
        """Per head, one flag per K^T V row (SDSA-3/4) or per counter block (SDSA-1/2)."""
        return data.ArrayLayout(unsigned(cfg.head_dim if cfg.attention_matrix else cfg.blocks), cfg.heads)


class KvPass(_FrontEnd):
    """SDSA-3/4, K^T V pass: each K spike (h, i) of the beat adds V_h's block b into KV row
    (h, i), b = 0 .. B-1, one block per cycle; the beat is taken with its last K spike's last
    block (or at once when it has none). ``blk``, ``blk_base``, ``last_blk`` come from the
    cursor, which ``next_row_block`` steps."""

    def __init__(self, cfg: SdsaConfig):
        NB = cfg.blocks
        super().__init__(cfg, {"blk": In(range(max(NB, 2))), "blk_base": In(range(NB * cfg.lanes + 1)),
                               "last_blk": In(1), "next_row_block": Out(1)})

    def elaborate(self, platform):
        cfg = self._cfg
        L, H, D, NB = cfg.lanes, cfg.heads, cfg.head_dim, cfg.blocks
        m = Module()
        payload, op = self.payload, self._op(m)
        cleared = Signal(data.ArrayLayout(unsigned(D), H))   # K spikes of the held beat already issued
        kmask = Signal(data.ArrayLayout(unsigned(D), H))
        for h in range(H):
            m.d.comb += kmask[h].eq(payload.k[h] & self.dim_on & ~cleared[h] & self.head_on[h].replicate(D))
        # the next K spike (h, i): lowest head, then lowest dimension
        h_oh, k_h, k_row, i_oh, k_i, k_single = _pick_lowest(m, kmask, "kv")
        k_any = k_row.any()
        v_row = Signal(NB * L)   # V_h at this token, padded to whole blocks
        m.d.comb += v_row.eq(payload.v[k_h] & self.dim_on)

        m.d.comb += [op.kind.eq(OpKind.KV_ADD), op.addr.eq((k_h * D + k_i) * NB + self.blk),
                     op.bits.eq(v_row.word_select(self.blk, L)),
                     op.fresh.eq(~(self.touched[k_h] & i_oh).any()),
                     self.adds.eq(_lanes_below_d(cfg, self.d, self.blk_base))]
        with m.If(self.go):
            with m.If(k_any):
                m.d.comb += [self.issue.eq(1), self.next_row_block.eq(1)]
                with m.If(self.last_blk):
                    for h in range(H):
                        with m.If(h_oh[h]):
                            m.d.sync += cleared[h].eq(cleared[h] | i_oh)
                            m.d.comb += self.touch[h].eq(i_oh)
                    m.d.comb += self.take.eq(k_single)
            with m.Else():
                m.d.comb += self.take.eq(1)     # no K spike left (or none at all)
        with m.If(self.take | self.clear):
            m.d.sync += cleared.eq(0)
        return m


class QaPass(_FrontEnd):
    """SDSA-3/4, A pass: for the current (head, block), each Q spike i whose KV row was
    written adds KV row (head, i) block b into the block's accumulator, one per cycle; a head
    with none issues one ZERO operation that finishes as many of its blocks as go into the
    current beat. ``file`` asks the cursor to move on (the block(s) are finished)."""

    def __init__(self, cfg: SdsaConfig):
        H, NB, P = cfg.heads, cfg.blocks, cfg.out_blocks
        super().__init__(cfg, {"head": In(range(max(H, 2))), "blk": In(range(max(NB, 2))),
                               "blk_base": In(range(NB * cfg.lanes + 1)), "slot": In(range(max(P, 2))),
                               "file": Out(1), "span": Out(range(P + 1))})

    def elaborate(self, platform):
        cfg = self._cfg
        D, NB, P = cfg.head_dim, cfg.blocks, cfg.out_blocks
        m = Module()
        op = self._op(m)
        done_i = Signal(D)    # Q spikes of the current A block already issued
        started = Signal()    # the current A block has issued a KV row
        q_row = Signal(D)
        m.d.comb += q_row.eq(self.payload.q[self.head] & self.dim_on & self.touched[self.head] & ~done_i)
        q_oh = lowest_onehot(m, q_row, "qa_dim_onehot")
        q_i = onehot_index(m, q_oh, "qa_dim")
        q_single = (q_row & ~q_oh) == 0      # also true when no spike is left at all
        # no spike bits, no fresh words: zero, written from `go` because a bare constant comes
        # out as an `always @*` that reads nothing, which lint flags
        m.d.comb += [op.bits.eq(self.go.replicate(cfg.lanes) & 0), op.fresh.eq(self.go & 0)]
        m.d.comb += [self.span.eq(1), op.addr.eq((self.head * D + q_i) * NB + self.blk), op.last.eq(q_single),
                     self.file.eq(self.go & q_single)]
        with m.If(q_row.any()):
            m.d.comb += [op.kind.eq(OpKind.A_ADD), op.first.eq(~started),
                         self.adds.eq(_lanes_below_d(cfg, self.d, self.blk_base))]
        with m.Else():
            # No Q spike on a written row in this head: its blocks are all zero.
            # One operation finishes those that go into the current beat.
            m.d.comb += op.kind.eq(OpKind.ZERO)
            if P > 1:
                room, left = P - self.slot, self.n_blk - self.blk
                m.d.comb += self.span.eq(Mux(room < left, room, left))
        with m.If(self.go):
            m.d.comb += self.issue.eq(1)
            with m.If(q_row.any()):
                m.d.sync += [done_i.eq(done_i | q_oh), started.eq(1)]
            with m.If(q_single):
                m.d.sync += [done_i.eq(0), started.eq(0)]
        with m.If(self.clear):
            m.d.sync += [done_i.eq(0), started.eq(0)]
        return m


class CountPass(_FrontEnd):
    """SDSA-1/2: per beat, each block of ``lanes`` channels with a spike (``q AND k``, or ``q``)
    adds its bits into its counters, one block per cycle; the beat is taken with its last one."""

    def __init__(self, cfg: SdsaConfig):
        super().__init__(cfg, {})

    def elaborate(self, platform):
        cfg = self._cfg
        L, H, D, NB = cfg.lanes, cfg.heads, cfg.head_dim, cfg.blocks
        m = Module()
        payload, op = self.payload, self._op(m)
        cleared = Signal(data.ArrayLayout(unsigned(NB), H))   # spiking blocks of the held beat done
        spk = Signal(data.ArrayLayout(unsigned(NB * L), H))   # per head, padded to blocks
        blk_any = Signal(data.ArrayLayout(unsigned(NB), H))
        for h in range(H):
            row = payload.q[h] & payload.k[h] if cfg.variant == 1 else payload.q[h]
            m.d.comb += [spk[h].eq(row & self.dim_on & self.head_on[h].replicate(D)),
                         blk_any[h].eq(Cat(*[spk[h].word_select(b, L).any() for b in range(NB)]) & ~cleared[h])]
        # the next spiking block (h, b): lowest head, then lowest block
        h_oh, c_h, c_row, b_oh, c_b, c_single = _pick_lowest(m, blk_any, "cnt")
        c_words = Signal(NB * L)
        m.d.comb += c_words.eq(spk[c_h])
        m.d.comb += [op.kind.eq(OpKind.COUNT_ADD), op.addr.eq(c_h * NB + c_b), op.bits.eq(c_words.word_select(c_b, L)),
                     op.fresh.eq(~(self.touched[c_h] & b_oh).any()), self.adds.eq(_lanes_below_d(cfg, self.d, c_b * L))]
        with m.If(self.go):
            with m.If(c_row.any()):
                m.d.comb += [self.issue.eq(1), self.take.eq(c_single)]
                for h in range(H):
                    with m.If(h_oh[h]):
                        m.d.sync += cleared[h].eq(cleared[h] | b_oh)
                        m.d.comb += self.touch[h].eq(b_oh)
            with m.Else():
                m.d.comb += self.take.eq(1)
        with m.If(self.take | self.clear):
            m.d.sync += cleared.eq(0)
        return m


class DrainPass(_FrontEnd):
    """SDSA-1/2: the counters out, one block per cycle in (head, block) order: a block written
    this timestep is read out, any other is a zero block. ``file`` moves the cursor on."""

    def __init__(self, cfg: SdsaConfig):
        H, NB = cfg.heads, cfg.blocks
        super().__init__(cfg, {"head": In(range(max(H, 2))), "blk": In(range(max(NB, 2))), "file": Out(1)})

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        written = self.touched[self.head].bit_select(self.blk, 1)
        op = self._op(m)
        m.d.comb += [op.kind.eq(Mux(written, OpKind.READ_OUT, OpKind.ZERO)), op.last.eq(1),
                     op.addr.eq(self.head * cfg.blocks + self.blk),
                     self.issue.eq(self.go), self.file.eq(self.go)]
        return m


def writes_back(s1) -> Value:
    """Stage 1 writes its word back (given the pipeline advances): a KV row or counter update."""
    return s1.valid & ((s1.op.kind == OpKind.KV_ADD) | (s1.op.kind == OpKind.COUNT_ADD))


def reads_word(op) -> Value:
    """An operation stage 0 issues reads its memory word: all but ZERO."""
    return op.kind != OpKind.ZERO


class Accumulate(wiring.Component):
    """Stage 1 and the count memory: the word stage 0 addressed is on the read port now.

    KV_ADD / COUNT_ADD write ``word + bits`` back (a ``fresh`` word reads as zero); A_ADD adds
    the KV row block into the A block accumulator (from zero on ``first``); READ_OUT passes the
    counter block; ZERO gives zeros. The read port is transparent: a read of the word written
    back in the same cycle (the same row hit by consecutive events) sees the new value, so
    read-modify-write runs at one per cycle.

    Ports
    -----
    read_addr, read_en : In
        Stage 0's word; read when ``read_en`` (the unit: stage 0 issues an operation that uses the
        word and the pipeline advances; 1 when not driven).
    advance : In(1)
        The pipeline moves this cycle (output not held).
    s1 : In(stage1_layout)
        The operation in stage 1.
    result : Out(lanes x acc_width)
        The block it finishes (when ``s1.op.last``).
    """

    def __init__(self, cfg: SdsaConfig):
        self._cfg = cfg
        super().__init__({
            "read_addr": In(addr_width(cfg.memory_depth)), "read_en": In(1, init=1), "advance": In(1),
            "s1": In(stage1_layout(cfg)),
            "result": Out(data.ArrayLayout(unsigned(cfg.acc_width), cfg.lanes)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        L = cfg.lanes
        m = Module()
        word = data.ArrayLayout(unsigned(cfg.count_width), L)
        m.submodules.mem = mem = memory.Memory(shape=word, depth=memory_words(cfg.memory_depth), init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))
        s1, kind = self.s1, self.s1.op.kind
        # the data holds while not read: stage 1 uses it only for an operation that read it
        m.d.comb += [rd.addr.eq(self.read_addr), rd.en.eq(self.read_en)]
        old = Signal(word)
        m.d.comb += old.eq(Mux(s1.op.fresh, 0, rd.data))
        new = Signal(word)
        for lane in range(L):
            # Counts stay <= N < 2**count_width (SdsaConfig): the + 1 cannot wrap.
            m.d.comb += new[lane].eq(old[lane] + s1.op.bits[lane])
        m.d.comb += [wr.addr.eq(s1.op.addr), wr.data.eq(new), wr.en.eq(self.advance & writes_back(s1))]

        acc = Signal(data.ArrayLayout(unsigned(cfg.acc_width), L))
        acc_next = Signal.like(acc)
        for lane in range(L):
            # A <= d * N < 2**acc_width (SdsaConfig): no partial sum can wrap.
            m.d.comb += acc_next[lane].eq(Mux(s1.op.first, 0, acc[lane]) + rd.data[lane])
        with m.If(s1.valid & self.advance & (kind == OpKind.A_ADD)):
            m.d.sync += acc.eq(acc_next)
        with m.Switch(kind):
            with m.Case(OpKind.A_ADD):
                m.d.comb += self.result.eq(acc_next)
            with m.Case(OpKind.READ_OUT):
                for lane in range(L):
                    m.d.comb += self.result[lane].eq(rd.data[lane])
        return m


class BeatPacker(wiring.Component):
    """Files finished blocks into output beats of ``out_blocks`` blocks: a block waits in the
    beat being filled until the beat is complete (``emit``), then the beat goes out; the last
    beat of a timestep is padded with zero blocks. Output backpressure holds the whole pipeline
    (``advance`` low), so no operation is ever lost or repeated.

    Ports
    -----
    s1 : In(stage1_layout), result : In
        Stage 1's operation and the block it finishes.
    clear : In(1)
        Empty the beat and drop the output (start).
    advance : Out(1)
        The pipeline may move: no beat waits, or it is taken this cycle.
    out : Out(stream of sdsa_output_layout)
    """

    def __init__(self, cfg: SdsaConfig):
        self._cfg = cfg
        super().__init__({
            "s1": In(stage1_layout(cfg)), "result": In(data.ArrayLayout(unsigned(cfg.acc_width), cfg.lanes)),
            "clear": In(1), "advance": Out(1), "out": Out(stream.Signature(sdsa_output_layout(cfg))),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        L, P = cfg.lanes, cfg.out_blocks
        m = Module()
        s1, out = self.s1, self.out
        payload, filled, beat = (Signal(sdsa_output_layout(cfg), name=n) for n in ("out_payload", "filled", "beat"))
        m.d.comb += [self.advance.eq(~out.valid | out.ready), out.payload.eq(payload)]
        if P == 1:
            m.d.comb += filled.eq(self.result)
        else:
            for j in range(P):
                mine = j < s1.slot + s1.span
                if j < P - 1:   # slot <= P - 1 always: no constant comparison for lint
                    mine &= s1.slot <= j
                for lane in range(L):
                    m.d.comb += filled[j * L + lane].eq(Mux(mine, self.result[lane], beat[j * L + lane]))
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(s1.valid & self.advance & s1.op.last):
            with m.If(s1.emit):
                m.d.sync += [out.valid.eq(1), payload.eq(filled)]
                if P > 1:
                    m.d.sync += beat.eq(0)
            if P > 1:
                with m.Else():
                    m.d.sync += beat.eq(filled)
        with m.If(self.clear):
            m.d.sync += [out.valid.eq(0), beat.eq(0)]
        return m
