"""Spike-driven self-attention unit (SDSA-1/2/3/4): the attention integers A, by additions only.

Arithmetic is docs/arithmetic.md, rows ``sdsa``; ``golden.intsim.IntegerEngine._sdsa`` is the
reference. Interface, event format, output order, cycle model and counters: docs/sdsa.md.

Per timestep, with binary ``Q, K, V`` of shape ``[C, N]``, ``C = heads * d`` (channel
``h*d + i`` is dimension ``i`` of head ``h``):

* SDSA-3/4: per head ``KV = K_h^T V_h`` (``d x d`` counts), then ``A[h*d+j, n] = sum_i Q[h*d+i, n]
  KV[i, j]``. Both are spike-addressed accumulations: a K spike ``(n, i)`` adds V's spike row
  (``V_h[:, n]``) into KV row ``i``; a Q spike ``(n, i)`` adds KV row ``i`` into ``A[h, :, n]``.
  Each row addition is ``d`` lane-additions, ``lanes`` per cycle. No multiplier anywhere.
* SDSA-1: ``A[c] = sum_n Q[c,n] AND K[c,n]``; SDSA-2: ``A[c] = sum_n Q[c,n]`` (one value per
  channel). A block of ``lanes`` channels that holds a spike at token ``n`` adds its bits into
  its ``lanes`` counters. The ``V AND mask`` after the attention LIF is not done here: it is the
  program's ``mask`` layer, left to the core.

The unit is stateless across timesteps: K^T V and the counters are cleared at the start of every
timestep by per-row "touched" flags (a row that is first written in a timestep reads as zero), so
clearing costs no cycle.
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from contract.config import SdsaConfig
from hwgen.units.bits import lowest_onehot, onehot_index

__all__ = ["SdsaConfig", "SdsaUnit", "sdsa_input_layout", "sdsa_output_layout", "input_fields",
           "PERF_COUNTERS"]

PERF_COUNTERS = ("cycles", "additions", "in_beats", "out_beats", "stall_cycles", "starve_cycles")


def _bits(n: int) -> int:
    """Bits of an unsigned integer that holds ``n``."""
    return max(1, int(n).bit_length())


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


class _Phase(enum.Enum, shape=3):
    IDLE = 0
    KV = 1      # SDSA-3/4: K, V beats -> K^T V
    QA = 2      # SDSA-3/4: Q beats -> A, streamed out
    COUNT = 3   # SDSA-1/2: Q(, K) beats -> per-channel counters
    DRAIN = 4   # SDSA-1/2: counters streamed out


class _Op(enum.Enum, shape=3):
    """What stage 1 does with the word read in stage 0."""
    KV_ADD = 0      # KV row block += V bits, write back
    A_ADD = 1       # A block accumulator += KV row block; out on `last`
    ZERO = 2        # all-zero output blocks (no Q spike / untouched counters)
    COUNT_ADD = 3   # counter block += spike bits, write back
    READ_OUT = 4    # the counter block is an output block


class SdsaUnit(wiring.Component):
    """Spike-driven self-attention: integer A from binary Q, K, V, one timestep after another.

    Ports
    -----
    spikes : In(stream)
        One beat per token, payload :func:`sdsa_input_layout`: fields ``q, k, v`` (SDSA-3/4),
        ``q, k`` (SDSA-1), ``q`` (SDSA-2), each ``heads x head_dim`` bits (generation-time
        maxima), head ``h`` dimension ``i`` at bit ``h*head_dim + i``; bits of heads >= ``heads``
        or dimensions >= ``head_dim`` (the run-time values) are ignored. Per timestep, SDSA-3/4 take ``tokens`` beats in the
        K^T V pass (``k, v`` read, ``q`` ignored), then ``tokens`` beats in the A pass (``q``
        read, ``k, v`` ignored); SDSA-1/2 take ``tokens`` beats. Tokens in order 0 .. N-1.
        A beat is held (ready low) while its spikes are being added: the payload must stay
        stable while ``valid`` is high (stream rule). ``ready`` rises only while ``valid`` is
        high (it depends combinationally on ``valid`` and the payload).
    out : Out(stream)
        ``out_blocks`` blocks of ``lanes`` unsigned ``acc_width`` values of A,
        :func:`sdsa_output_layout`. The blocks of a timestep, in order: SDSA-3/4 for token n,
        head h, block b, lane l is ``A[h*d + b*lanes + l, n]`` (``b < ceil(d / lanes)``; lanes
        with ``b*lanes + l >= d`` are 0); SDSA-1/2 for head h, block b, lane l is
        ``A[h*d + b*lanes + l]``. A beat carries ``out_blocks`` consecutive blocks; the last
        beat of a timestep is padded with zero blocks. When ``lanes`` divides ``d`` this is the
        LIF core's position-major neuron order with C = heads * d.
    start : In(1)
        One-cycle pulse: sample the run-time registers and begin a run (``timesteps`` timesteps
        of one image). A pulse during a run restarts it.
    tokens, heads, head_dim, timesteps : In
        Run-time geometry, sampled at ``start``: N (1 .. max_tokens), heads (1 .. heads),
        d (1 .. head_dim), T (1 .. max_timesteps).
    busy, done : Out(1)
        ``busy`` from the cycle after ``start`` until the last output beat is taken; ``done``
        pulses once, in the first cycle ``busy`` is low again.
    perf : Out
        ``counter_width`` counters, cleared at ``start``, counting during ``busy``: ``cycles``,
        ``additions`` (lane-additions on real channels), ``in_beats``, ``out_beats``,
        ``stall_cycles`` (an output beat waits for ``out.ready``: the pipeline is held),
        ``starve_cycles`` (the unit waits for an input beat).

    Timing (docs/sdsa.md): SDSA-3/4 per timestep ``sum_n max(1, |K_n| * B) + sum_{n,h} A_{n,h}``
    cycles plus 2 for the pipeline, where ``B = ceil(d / lanes)``, ``|K_n|`` the K spikes of
    token n, ``A_{n,h} = B * |Q_{n,h}|`` with ``|Q_{n,h}|`` the Q spikes of head h at token n
    whose K^T V row is not all zero, or, when there is none, the number of output beats the
    head's B zero blocks touch (one zero operation fills a beat's share of them); SDSA-1/2
    ``sum_n max(1, spiking blocks of token n) + heads * B`` plus 2.
    """

    def __init__(self, *, cfg: SdsaConfig):
        if not isinstance(cfg, SdsaConfig):
            raise TypeError(f"cfg must be an SdsaConfig, not {cfg!r}")
        bad = next(iter(cfg.inconsistencies()), None)
        if bad is not None:
            raise ValueError(f"sdsa.{bad[0]} = {bad[1]!r}: {bad[2]}")
        self._cfg = cfg
        w = cfg.counter_width
        super().__init__({
            "spikes": In(stream.Signature(sdsa_input_layout(cfg))),
            "out": Out(stream.Signature(sdsa_output_layout(cfg))),
            "start": In(1),
            "tokens": In(range(cfg.max_tokens + 1)),
            "heads": In(range(cfg.heads + 1)),
            "head_dim": In(range(cfg.head_dim + 1)),
            "timesteps": In(range(cfg.max_timesteps + 1)),
            "busy": Out(1),
            "done": Out(1),
            "perf": Out(wiring.Signature({name: Out(w) for name in PERF_COUNTERS})),
        })

    @property
    def cfg(self) -> SdsaConfig:
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        L, H, D, NB, P = cfg.lanes, cfg.heads, cfg.head_dim, cfg.blocks, cfg.out_blocks
        m = Module()
        block = data.ArrayLayout(unsigned(cfg.acc_width), L)     # one lane block of A

        # One memory of `lanes`-wide count words: the K^T V matrix (row (h, i), block b at
        # address (h*D + i)*NB + b) or the SDSA-1/2 counters (block (h, b) at h*NB + b).
        word = data.ArrayLayout(unsigned(cfg.count_width), L)
        m.submodules.mem = mem = memory.Memory(shape=word, depth=cfg.memory_depth, init=[])
        wr = mem.write_port()
        # Transparent: a read of the word written back in the same cycle (the same row hit by
        # consecutive events) sees the new value, so read-modify-write runs at one per cycle.
        rd = mem.read_port(transparent_for=(wr,))

        # ---- run-time geometry, sampled at start -------------------------------------------
        n_tok = Signal(range(cfg.max_tokens + 1))
        n_heads = Signal(range(H + 1))
        d = Signal(range(D + 1))
        n_steps = Signal(range(cfg.max_timesteps + 1))
        n_blk = Signal(range(NB + 1))    # B = ceil(d / lanes)
        head_on = Signal(H)      # head h < heads
        dim_on = Signal(D)       # dimension i < d: input bits beyond are masked off here
        with m.If(self.start):
            m.d.sync += [
                n_tok.eq(self.tokens), n_heads.eq(self.heads), d.eq(self.head_dim),
                n_steps.eq(self.timesteps),
                n_blk.eq(sum(self.head_dim > b * L for b in range(NB))),
                head_on.eq(Cat(*[self.heads > h for h in range(H)])),
                dim_on.eq(Cat(*[self.head_dim > i for i in range(D)])),
            ]

        phase = Signal(_Phase)
        tok = Signal(range(cfg.max_tokens + 1))
        step = Signal(range(cfg.max_timesteps + 1))
        head = Signal(range(max(H, 2)))           # head of the block being emitted (QA, DRAIN)
        blk = Signal(range(max(NB, 2)))           # block b of the row being processed
        blk_base = Signal(range(NB * L + 1))      # b * lanes, kept beside b (no multiplier)

        # Lane-additions of a block that starts at dimension `base`: the lanes below d.
        def lanes_below_d(base):
            left = d - base
            return Mux(left >= L, L, left)

        last_blk = blk_base + L >= d

        # Output blocks are packed P to a beat. `slot` is where the next finished block goes;
        # a zero operation may finish `span` > 1 blocks (the rest of a zero head, up to the end
        # of the beat), every other finishing operation one.
        slot = Signal(range(max(P, 2)))
        span = Signal(range(P + 1))
        emit = Signal()           # the finished block(s) complete a beat, or end the timestep
        m.d.comb += span.eq(1)

        # ---- stage 1 registers: one operation per cycle ---------------------------------
        s1_valid = Signal()
        s1_op = Signal(_Op)
        s1_addr = Signal.like(wr.addr)
        s1_bits = Signal(L)       # spike bits to add (KV_ADD, COUNT_ADD)
        s1_fresh = Signal()       # first write of this word in the timestep: read it as zero
        s1_first = Signal()       # first KV row of an A block: the accumulator starts from it
        s1_last = Signal()        # the block is finished with this operation
        s1_slot = Signal.like(slot)
        s1_span = Signal.like(span)
        s1_emit = Signal()

        out_valid = Signal()
        # Output backpressure holds the whole two-stage pipeline (read port included), so no
        # operation is ever lost or repeated.
        advance = ~out_valid | self.out.ready

        issue = Signal()
        op = Signal(_Op)
        addr = Signal.like(wr.addr)
        bits = Signal(L)
        fresh = Signal()
        first = Signal()
        last = Signal()
        adds = Signal(range(L + 1))
        take = Signal()           # the input beat is consumed this cycle (spikes.ready)
        wants_input = Signal()    # this phase needs an input beat to make progress

        payload = self.spikes.payload

        def next_block(end_of_token, last_token):
            """Advance (head, block) by `span` blocks in output order; `end_of_token` runs after
            the last head. Files the finished blocks into the output beat."""
            head_done = blk + span >= n_blk
            timestep_done = head_done & (head == n_heads - 1) & last_token
            m.d.comb += emit.eq((slot + span == P) | timestep_done)
            m.d.sync += slot.eq(Mux(emit, 0, slot + span))
            with m.If(head_done):
                m.d.sync += [blk.eq(0), blk_base.eq(0)]
                with m.If(head == n_heads - 1):
                    m.d.sync += head.eq(0)
                    end_of_token()
                with m.Else():
                    m.d.sync += head.eq(head + 1)
            with m.Else():
                m.d.sync += [blk.eq(blk + span), blk_base.eq(blk_base + span * L)]

        def end_of_timestep(next_phase, clear):
            with m.If(step == n_steps - 1):
                m.d.sync += phase.eq(_Phase.IDLE)
            with m.Else():
                m.d.sync += [step.eq(step + 1), phase.eq(next_phase), clear.eq(0)]

        if cfg.attention_matrix:
            # Rows of K^T V written in this timestep / K spikes of the held beat already issued.
            touched = Signal(data.ArrayLayout(unsigned(D), H))
            cleared = Signal(data.ArrayLayout(unsigned(D), H))
            done_i = Signal(D)    # Q spikes of the current A block already issued
            started = Signal()    # the current A block has issued a KV row

            # -- KV pass: each K spike (h, i) adds V_h's block b into KV row (h, i), b = 0..B-1.
            kmask = Signal(data.ArrayLayout(unsigned(D), H))
            for h in range(H):
                m.d.comb += kmask[h].eq(payload.k[h] & dim_on & ~cleared[h] & head_on[h].replicate(D))
            k_heads = Signal(H)
            m.d.comb += k_heads.eq(Cat(*[kmask[h].any() for h in range(H)]))
            # Lowest head with a K spike, then the lowest spiking dimension in it: two small
            # priority picks instead of one over every channel, and (h, i) come out directly.
            h_oh = lowest_onehot(m, k_heads, "kv_head_onehot")
            k_h = onehot_index(m, h_oh, "kv_head")
            k_row = Signal(D)
            m.d.comb += k_row.eq(kmask[k_h])
            i_oh = lowest_onehot(m, k_row, "kv_dim_onehot")
            k_i = onehot_index(m, i_oh, "kv_dim")
            k_single = ((k_heads & ~h_oh) == 0) & ((k_row & ~i_oh) == 0)
            v_row = Signal(NB * L)   # V_h at this token, padded to whole blocks
            m.d.comb += v_row.eq(payload.v[k_h] & dim_on)
            kv_addr = (k_h * D + k_i) * NB + blk

            # -- A pass: for the current (head, block), each Q spike i whose KV row was written
            # adds KV row (head, i) block b into the block's accumulator.
            q_row = Signal(D)
            m.d.comb += q_row.eq(payload.q[head] & dim_on & touched[head] & ~done_i)
            q_oh = lowest_onehot(m, q_row, "qa_dim_onehot")
            q_i = onehot_index(m, q_oh, "qa_dim")
            q_single = (q_row & ~q_oh) == 0
            qa_addr = (head * D + q_i) * NB + blk

            with m.Switch(phase):
                with m.Case(_Phase.KV):
                    m.d.comb += wants_input.eq(1)
                    with m.If(self.spikes.valid & advance):
                        with m.If(k_heads.any()):
                            m.d.comb += [
                                issue.eq(1), op.eq(_Op.KV_ADD), addr.eq(kv_addr),
                                bits.eq(v_row.word_select(blk, L)),
                                fresh.eq(~(touched[k_h] & i_oh).any()),
                                adds.eq(lanes_below_d(blk_base)),
                            ]
                            with m.If(last_blk):
                                m.d.sync += [blk.eq(0), blk_base.eq(0)]
                                for h in range(H):
                                    with m.If(h_oh[h]):
                                        m.d.sync += [cleared[h].eq(cleared[h] | i_oh),
                                                     touched[h].eq(touched[h] | i_oh)]
                                m.d.comb += take.eq(k_single)
                            with m.Else():
                                m.d.sync += [blk.eq(blk + 1), blk_base.eq(blk_base + L)]
                        with m.Else():
                            m.d.comb += take.eq(1)     # no K spike left (or none at all)
                        with m.If(take):
                            m.d.sync += cleared.eq(0)
                            with m.If(tok == n_tok - 1):
                                m.d.sync += [tok.eq(0), phase.eq(_Phase.QA)]
                            with m.Else():
                                m.d.sync += tok.eq(tok + 1)
                with m.Case(_Phase.QA):
                    m.d.comb += wants_input.eq(1)
                    with m.If(self.spikes.valid & advance):
                        m.d.comb += [issue.eq(1), last.eq(q_single)]
                        with m.If(q_row.any()):
                            m.d.comb += [op.eq(_Op.A_ADD), addr.eq(qa_addr), first.eq(~started),
                                         adds.eq(lanes_below_d(blk_base))]
                            m.d.sync += [done_i.eq(done_i | q_oh), started.eq(1)]
                        with m.Else():
                            # No Q spike on a written row in this head: its blocks are all zero.
                            # One operation finishes those that go into the current beat.
                            m.d.comb += op.eq(_Op.ZERO)
                            if P > 1:
                                room, left = P - slot, n_blk - blk
                                m.d.comb += span.eq(Mux(room < left, room, left))
                        with m.If(q_single):   # also true when no spike is left at all
                            m.d.sync += [done_i.eq(0), started.eq(0)]

                            def end_of_token():
                                m.d.comb += take.eq(1)
                                with m.If(tok == n_tok - 1):
                                    m.d.sync += tok.eq(0)
                                    end_of_timestep(_Phase.KV, touched)
                                with m.Else():
                                    m.d.sync += tok.eq(tok + 1)
                            next_block(end_of_token, tok == n_tok - 1)
        else:
            # Rows of counters written in this timestep / spiking blocks of the held beat done.
            touched = Signal(data.ArrayLayout(unsigned(NB), H))
            cleared = Signal(data.ArrayLayout(unsigned(NB), H))

            spk = Signal(data.ArrayLayout(unsigned(NB * L), H))   # per head, padded to blocks
            for h in range(H):
                row = payload.q[h] & payload.k[h] if cfg.variant == 1 else payload.q[h]
                m.d.comb += spk[h].eq(row & dim_on & head_on[h].replicate(D))
            blk_any = Signal(data.ArrayLayout(unsigned(NB), H))
            for h in range(H):
                m.d.comb += blk_any[h].eq(Cat(*[spk[h].word_select(b, L).any() for b in range(NB)]) & ~cleared[h])
            c_heads = Signal(H)
            m.d.comb += c_heads.eq(Cat(*[blk_any[h].any() for h in range(H)]))
            h_oh = lowest_onehot(m, c_heads, "cnt_head_onehot")
            c_h = onehot_index(m, h_oh, "cnt_head")
            c_row = Signal(NB)
            m.d.comb += c_row.eq(blk_any[c_h])
            b_oh = lowest_onehot(m, c_row, "cnt_block_onehot")
            c_b = onehot_index(m, b_oh, "cnt_block")
            c_single = ((c_heads & ~h_oh) == 0) & ((c_row & ~b_oh) == 0)
            c_words = Signal(NB * L)
            m.d.comb += c_words.eq(spk[c_h])

            with m.Switch(phase):
                with m.Case(_Phase.COUNT):
                    m.d.comb += wants_input.eq(1)
                    with m.If(self.spikes.valid & advance):
                        with m.If(c_heads.any()):
                            m.d.comb += [
                                issue.eq(1), op.eq(_Op.COUNT_ADD), addr.eq(c_h * NB + c_b),
                                bits.eq(c_words.word_select(c_b, L)),
                                fresh.eq(~(touched[c_h] & b_oh).any()),
                                adds.eq(lanes_below_d(c_b * L)),
                                take.eq(c_single),
                            ]
                            for h in range(H):
                                with m.If(h_oh[h]):
                                    m.d.sync += [cleared[h].eq(cleared[h] | b_oh),
                                                 touched[h].eq(touched[h] | b_oh)]
                        with m.Else():
                            m.d.comb += take.eq(1)
                        with m.If(take):
                            m.d.sync += cleared.eq(0)
                            with m.If(tok == n_tok - 1):
                                m.d.sync += [tok.eq(0), phase.eq(_Phase.DRAIN)]
                            with m.Else():
                                m.d.sync += tok.eq(tok + 1)
                with m.Case(_Phase.DRAIN):
                    with m.If(advance):
                        written = touched[head].bit_select(blk, 1)
                        m.d.comb += [issue.eq(1), last.eq(1),
                                     op.eq(Mux(written, _Op.READ_OUT, _Op.ZERO)),
                                     addr.eq(head * NB + blk)]
                        next_block(lambda: end_of_timestep(_Phase.COUNT, touched), 1)

        m.d.comb += [
            self.spikes.ready.eq(take),
            rd.addr.eq(addr),
            rd.en.eq(advance),
        ]

        with m.If(advance):
            m.d.sync += [s1_valid.eq(issue), s1_op.eq(op), s1_addr.eq(addr), s1_bits.eq(bits),
                         s1_fresh.eq(fresh), s1_first.eq(first), s1_last.eq(last),
                         s1_slot.eq(slot), s1_span.eq(span), s1_emit.eq(emit)]

        # ---- stage 1: the word read in stage 0 is on rd.data --------------------------------
        old = Signal(word)
        m.d.comb += old.eq(Mux(s1_fresh, 0, rd.data))
        new = Signal(word)
        for lane in range(L):
            # Counts stay <= N < 2**count_width (SdsaConfig): the + 1 cannot wrap.
            m.d.comb += new[lane].eq(old[lane] + s1_bits[lane])
        m.d.comb += [
            wr.addr.eq(s1_addr),
            wr.data.eq(new),
            wr.en.eq(s1_valid & advance & ((s1_op == _Op.KV_ADD) | (s1_op == _Op.COUNT_ADD))),
        ]

        acc = Signal(block)
        acc_next = Signal(block)
        for lane in range(L):
            # A <= d * N < 2**acc_width (SdsaConfig): no partial sum can wrap.
            m.d.comb += acc_next[lane].eq(Mux(s1_first, 0, acc[lane]) + rd.data[lane])
        result = Signal(block)
        with m.Switch(s1_op):
            with m.Case(_Op.A_ADD):
                m.d.comb += result.eq(acc_next)
            with m.Case(_Op.READ_OUT):
                for lane in range(L):
                    m.d.comb += result[lane].eq(rd.data[lane])
            with m.Default():
                m.d.comb += result.eq(0)

        # The beat being filled: finished blocks wait here until the beat is complete.
        out_payload = Signal(sdsa_output_layout(cfg))
        filled = Signal(sdsa_output_layout(cfg))
        beat = Signal(sdsa_output_layout(cfg))
        if P == 1:
            m.d.comb += filled.eq(result)
        else:
            for j in range(P):
                mine = j < s1_slot + s1_span
                if j < P - 1:   # slot <= P - 1 always: no constant comparison for lint
                    mine &= s1_slot <= j
                for lane in range(L):
                    m.d.comb += filled[j * L + lane].eq(Mux(mine, result[lane], beat[j * L + lane]))
        with m.If(self.out.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(s1_valid & advance):
            with m.If(s1_op == _Op.A_ADD):
                m.d.sync += acc.eq(acc_next)
            with m.If(s1_last & s1_emit):
                m.d.sync += [out_valid.eq(1), out_payload.eq(filled)]
                if P > 1:
                    m.d.sync += beat.eq(0)
            if P > 1:
                with m.Elif(s1_last):
                    m.d.sync += beat.eq(filled)
        m.d.comb += [self.out.valid.eq(out_valid), self.out.payload.eq(out_payload)]

        # ---- run control ---------------------------------------------------------------
        running = (phase != _Phase.IDLE) | s1_valid | out_valid
        was_running = Signal()
        m.d.sync += was_running.eq(running)
        m.d.comb += [self.busy.eq(running), self.done.eq(was_running & ~running)]

        # ---- performance counters ------------------------------------------------------
        perf = {name: Signal(cfg.counter_width, name=f"perf_{name}") for name in PERF_COUNTERS}
        with m.If(running):
            m.d.sync += perf["cycles"].eq(perf["cycles"] + 1)
            with m.If(issue):
                m.d.sync += perf["additions"].eq(perf["additions"] + adds)
            with m.If(take):
                m.d.sync += perf["in_beats"].eq(perf["in_beats"] + 1)
            with m.If(out_valid & self.out.ready):
                m.d.sync += perf["out_beats"].eq(perf["out_beats"] + 1)
            with m.If(~advance):
                m.d.sync += perf["stall_cycles"].eq(perf["stall_cycles"] + 1)
            with m.If(advance & wants_input & ~self.spikes.valid):
                m.d.sync += perf["starve_cycles"].eq(perf["starve_cycles"] + 1)
        for name in PERF_COUNTERS:
            m.d.comb += getattr(self.perf, name).eq(perf[name])

        # start comes last: it overrides every other update of this cycle.
        with m.If(self.start):
            m.d.sync += [
                phase.eq(_Phase.KV if cfg.attention_matrix else _Phase.COUNT),
                tok.eq(0), step.eq(0), head.eq(0), blk.eq(0), blk_base.eq(0), slot.eq(0),
                touched.eq(0), cleared.eq(0), s1_valid.eq(0), out_valid.eq(0),
                *[p.eq(0) for p in perf.values()],
            ]
            if cfg.attention_matrix:
                m.d.sync += [done_i.eq(0), started.eq(0)]
            if P > 1:
                m.d.sync += beat.eq(0)
        return m
