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

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from contract.config import SdsaConfig
from hwgen.units.sdsa_stages import (
    Accumulate,
    BeatPacker,
    BlockCursor,
    CountPass,
    DrainPass,
    KvPass,
    Phase,
    QaPass,
    input_fields,
    op_layout,
    reads_word,
    sdsa_input_layout,
    sdsa_output_layout,
    stage1_layout,
    writes_back,
)
from hwgen.units.signatures import CounterBank, Counters, RunControl, accesses_layout

__all__ = ["SdsaConfig", "SdsaUnit", "sdsa_input_layout", "sdsa_output_layout", "input_fields",
           "PERF_COUNTERS", "ACCESSES"]

PERF_COUNTERS = ("cycles", "additions", "in_beats", "out_beats", "stall_cycles", "starve_cycles")
#: the unit's memory accesses (its ``accesses`` attribute): K^T V rows (SDSA-3/4) or counter
#: blocks (SDSA-1/2) read by every operation but ZERO, written back by KV_ADD / COUNT_ADD
ACCESSES = ("kv_read", "kv_write")


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
    run : In(RunControl)
        ``start``: one-cycle pulse: sample the run-time registers and begin a run (``timesteps``
        timesteps of one image); a pulse during a run restarts it. ``busy`` from the cycle after
        ``start`` until the last output beat is taken; ``done`` pulses once, in the first cycle
        ``busy`` is low again.
    tokens, heads, head_dim, timesteps : In
        Run-time geometry, sampled at ``start``: N (1 .. max_tokens), heads (1 .. heads),
        d (1 .. head_dim), T (1 .. max_timesteps).
    perf : Out(Counters)
        ``COUNTER_WIDTH`` counters, cleared at ``start``, counting during ``busy``: ``cycles``,
        ``additions`` (lane-additions on real channels), ``in_beats``, ``out_beats``,
        ``stall_cycles`` (an output beat waits for ``out.ready``: the pipeline is held),
        ``starve_cycles`` (the unit waits for an input beat).

    ``accesses`` (an attribute, :func:`~hwgen.units.signatures.accesses_layout` of
    :data:`ACCESSES`): this cycle's reads and writes of the unit's count memory, for the core's
    traffic counters.

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
        super().__init__({
            "spikes": In(stream.Signature(sdsa_input_layout(cfg))),
            "out": Out(stream.Signature(sdsa_output_layout(cfg))),
            "run": In(RunControl()),
            "tokens": In(range(cfg.max_tokens + 1)),
            "heads": In(range(cfg.heads + 1)),
            "head_dim": In(range(cfg.head_dim + 1)),
            "timesteps": In(range(cfg.max_timesteps + 1)),
            "perf": Out(Counters(PERF_COUNTERS)),
        })
        self.accesses = Signal(accesses_layout(ACCESSES), name="sdsa_accesses")

    @property
    def cfg(self) -> SdsaConfig:
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        L, H, D, NB = cfg.lanes, cfg.heads, cfg.head_dim, cfg.blocks
        m = Module()
        start = self.run.start
        m.submodules.cursor = cursor = BlockCursor(cfg)
        m.submodules.accumulate = accumulate = Accumulate(cfg)
        m.submodules.packer = packer = BeatPacker(cfg)
        m.submodules.counter_bank = bank = CounterBank({n: L if n == "additions" else 1 for n in PERF_COUNTERS})
        if cfg.attention_matrix:
            m.submodules.kv = first = KvPass(cfg)
            m.submodules.qa = second = QaPass(cfg)
            passes = {Phase.KV: first, Phase.QA: second}
        else:
            m.submodules.count = first = CountPass(cfg)
            m.submodules.drain = second = DrainPass(cfg)
            passes = {Phase.COUNT: first, Phase.DRAIN: second}
        wiring.connect(m, packer.out, wiring.flipped(self.out))
        wiring.connect(m, bank.counters, wiring.flipped(self.perf))

        # ---- run-time geometry, sampled at start -------------------------------------------
        n_tok = Signal(range(cfg.max_tokens + 1))
        n_heads = Signal(range(H + 1))
        d = Signal(range(D + 1))
        n_steps = Signal(range(cfg.max_timesteps + 1))
        n_blk = Signal(range(NB + 1))    # B = ceil(d / lanes)
        head_on = Signal(H)      # head h < heads
        dim_on = Signal(D)       # dimension i < d: input bits beyond are masked off here
        with m.If(start):
            m.d.sync += [
                n_tok.eq(self.tokens), n_heads.eq(self.heads), d.eq(self.head_dim), n_steps.eq(self.timesteps),
                n_blk.eq(sum(self.head_dim > b * L for b in range(NB))),
                head_on.eq(Cat(*[self.heads > h for h in range(H)])),
                dim_on.eq(Cat(*[self.head_dim > i for i in range(D)])),
            ]
        m.d.comb += [cursor.n_heads.eq(n_heads), cursor.n_blk.eq(n_blk), cursor.d.eq(d), cursor.clear.eq(start)]

        # Rows of K^T V (SDSA-3/4) or counter blocks (SDSA-1/2) written in this timestep: a row
        # first written in a timestep reads as zero, so clearing costs no cycle.
        touched = Signal(first.flags_layout(cfg))
        phase = Signal(Phase)
        tok = Signal(range(cfg.max_tokens + 1))
        step = Signal(range(cfg.max_timesteps + 1))
        advance = packer.advance
        for stage in passes.values():
            m.d.comb += [stage.payload.eq(self.spikes.payload), stage.clear.eq(start), stage.touched.eq(touched),
                         stage.dim_on.eq(dim_on), stage.head_on.eq(head_on), stage.d.eq(d), stage.n_blk.eq(n_blk)]
            for port in ("head", "blk", "blk_base", "last_blk", "slot"):
                if port in stage.signature.members:
                    m.d.comb += getattr(stage, port).eq(getattr(cursor, port))
        m.d.sync += touched.eq(touched.as_value() | first.touch.as_value())

        # ---- stage 0: the phase's front end issues one operation per cycle ------------------
        issue, take, wants_input = Signal(), Signal(), Signal()
        op, span = Signal(op_layout(cfg)), Signal(range(cfg.out_blocks + 1))
        adds = Signal(range(L + 1))
        m.d.comb += span.eq(1)

        def end_of_timestep(next_phase):
            with m.If(step == n_steps - 1):
                m.d.sync += phase.eq(Phase.IDLE)
            with m.Else():
                m.d.sync += [step.eq(step + 1), phase.eq(next_phase), touched.eq(0)]

        def next_token(after_last):
            """The beat is taken: the next token, or after the last one ``after_last()``."""
            with m.If(tok == n_tok - 1):
                m.d.sync += tok.eq(0)
                after_last()
            with m.Else():
                m.d.sync += tok.eq(tok + 1)

        def to_second_pass():
            m.d.sync += phase.eq(list(passes)[1])

        with m.Switch(phase):
            for code, stage in passes.items():
                with m.Case(code):
                    reads_input = stage is first or cfg.attention_matrix
                    m.d.comb += [stage.go.eq(advance & (self.spikes.valid if reads_input else 1)),
                                 issue.eq(stage.issue), op.eq(stage.op), adds.eq(stage.adds),
                                 wants_input.eq(reads_input)]
                    if stage is first:
                        m.d.comb += [take.eq(stage.take), cursor.next_row_block.eq(getattr(stage, "next_row_block", 0))]
                        with m.If(take):
                            next_token(to_second_pass)
                    else:
                        m.d.comb += [cursor.advance.eq(stage.file),
                                     cursor.last_token.eq((tok == n_tok - 1) if cfg.attention_matrix else 1)]
                        if cfg.attention_matrix:
                            m.d.comb += [span.eq(stage.span), take.eq(cursor.token_done)]
                            with m.If(take):
                                next_token(lambda: end_of_timestep(Phase.KV))
                        else:
                            with m.If(cursor.token_done):
                                end_of_timestep(Phase.COUNT)

        read = advance & issue & reads_word(op)
        m.d.comb += [self.spikes.ready.eq(take), cursor.span.eq(span), accumulate.read_addr.eq(op.addr),
                     accumulate.read_en.eq(read), accumulate.advance.eq(advance)]

        # ---- stage 1 and the output -----------------------------------------------------------
        s1 = Signal(stage1_layout(cfg))
        with m.If(advance):
            m.d.sync += [s1.valid.eq(issue), s1.op.eq(op), s1.slot.eq(cursor.slot), s1.span.eq(span),
                         s1.emit.eq(cursor.emit)]
        m.d.comb += [accumulate.s1.eq(s1), packer.s1.eq(s1), packer.result.eq(accumulate.result),
                     packer.clear.eq(start)]
        m.d.comb += [self.accesses.kv_read.eq(read), self.accesses.kv_write.eq(advance & writes_back(s1))]

        # ---- run control and performance counters -------------------------------------------
        running = (phase != Phase.IDLE) | s1.valid | self.out.valid
        was_running = Signal()
        m.d.sync += was_running.eq(running)
        m.d.comb += [self.run.busy.eq(running), self.run.done.eq(was_running & ~running)]
        m.d.comb += [
            bank.clear.eq(start),
            bank.step.cycles.eq(running),
            bank.step.additions.eq(Mux(running & issue, adds, 0)),
            bank.step.in_beats.eq(running & take),
            bank.step.out_beats.eq(running & self.out.valid & self.out.ready),
            bank.step.stall_cycles.eq(running & ~advance),
            bank.step.starve_cycles.eq(running & advance & wants_input & ~self.spikes.valid),
        ]

        # start comes last: it overrides every other update of this cycle.
        with m.If(start):
            m.d.sync += [phase.eq(Phase.KV if cfg.attention_matrix else Phase.COUNT), tok.eq(0), step.eq(0),
                         touched.eq(0), s1.valid.eq(0)]
        return m
