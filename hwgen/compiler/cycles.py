"""The core's cycle model: per instruction, the cycles, synaptic additions and input events the
RTL's counters report, computed from the golden engine's tensors of one image.

It is a second implementation of the core's timing contract (docs/core.md, "Cycle model"),
held to the RTL with ``==`` per instruction on every simulated image, as the golden engine is
held to the RTL's values: :func:`check_cycles` raises naming the image, the instruction and
both counts.

Where the work depends on the data (a CONV's spike words, an SDSA layer's Q and K), the model
follows the engines' and units' handshakes: the cycle at which each word, event and token beat
moves is a max-plus linear recurrence (``t' = max(t + a, u + b, ...)``) with one step per
non-zero input word (CONV) or per token beat (SDSA). Each step is a small max-plus matrix and
the steps are multiplied in a pairwise tree (:func:`maxplus_chain`), so a layer costs a few
vectorised passes over its spike map and no Python loop per event: the 15M model at 224 x 224
takes about a second per image. LIF, MASK and REDUCE cost a fixed number of cycles per word.

The same walk gives the exact work the memory traffic depends on (a CONV's accumulator
operations, an SDSA layer's K^T V or counter reads and updates): per instruction, the words
read and written per memory are :func:`hwgen.perf.memory.layer_traffic` of that work, held to
the core's traffic counters like the cycles. The model reads only the compiled image (instruction fields,
descriptors, tensor placement) and the tensors; it imports neither the gateware's top, nor the
simulation, nor the golden engine.

**External weights** (``accumulator.weights: external``, docs/core.md "Weights from external
memory"): the cycles then depend on the prefetch pipeline and the memory's latency and
bandwidth, which this model does not follow. :func:`check_cycles` compares the additions, the
events and the traffic (the ``weights`` reads are the words received from outside: ``G`` words
per kernel offset of an event, the folded remainder's parked word included) and leaves the
cycles out (:func:`cycles_modelled` is False); the RTL's cycles and weight stalls are recorded,
never held to a tolerance.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from contract.program import INPUT
from hwgen.compiler.image import CoreImage, chained_lif, to_words
from hwgen.core.isa import Op
from hwgen.perf.energy import Work
from hwgen.perf.memory import MEMORIES, layer_traffic

__all__ = ["cycles_modelled", "NEG", "ConvTiming", "CycleMismatchError", "InstructionCycles", "check_cycles", "conv_cycles", "conv_timing",
           "instruction_cycles", "maxplus_chain", "network_bounds", "sdsa_cycles"]

#: minus infinity in max-plus arithmetic (no such path); products are clamped back to it, so
#: sums of it never leave the int64 range
NEG = -(1 << 60)

# ---- fixed latencies (docs/core.md, "Cycle model"); cycles counted from the LAUNCH cycle = 0 ----
#: FETCH, DECODE, LAUNCH: the sequencer's cycles around every instruction (hwgen/core/top.py)
SEQUENCER = 3
#: LIF: the streamer's read port primes (1 cycle), the LIF core's output register (1)
LIF_LATENCY = 2
#: LIF chained to the CONV before it: the cycles after the CONV's last sum is taken (the LIF
#: core's output register, the last spike written)
CHAINED_LIF_TAIL = 1
#: MASK, REDUCE: the last word read is answered one cycle later and written then
VECTOR_LATENCY = 1
#: CONV, SDSA: the feeder and the gatherer read their first word in the cycle after launch (the
#: feeder also in the cycle after it took a timestep's flush)
FIRST_READ = 1
#: CONV: a word read is in the feeder's slot at the earliest 1 cycle after its read; an event in
#: the slot enters S0 when taken and the loop (S1) one cycle later: C + 2 for the word's first
SLOT_TO_LOOP = 2
#: CONV, folded layers: a parked-slot operation (the last words of S kernel offsets at once) holds
#: the loop for one cycle, in the cycle after the S-th park (docs/accumulator.md, "Folded remainder")
PARKED_OP = 1
#: CONV: the accumulators are clean (zero) between layers, so the array accumulates from the
#: cycle after its start: events are taken from cycle 1
ACC_START = 1
#: CONV: cycles from the last issued operation to "pipeline empty" (S2's add and write, then
#: the empty test), which ends the timestep's ACCUM phase
ACC_PIPELINE_DRAIN = 2
#: CONV: the drain's last sum is written D + 1 cycles after ACCUM ends (D reads, one read
#: latency); the next timestep's events are taken D + 3 cycles after it (walker done, ACCUM)
DRAIN_LAST_WRITE = 1
DRAIN_RESTART = 3
#: CONV, two accumulator banks: the next timestep's events are taken the cycle after its bank
#: went to the walker
BANK_SWITCH = 1
#: SDSA: a gathered beat is on the unit's input 3 cycles after its last word is read (the read's
#: data lands in the gather buffer, the buffer is flagged full, it moves to the output register)
GATHER_LATENCY = 3
#: SDSA: the unit's stage 1 and output register drain after its last operation, and ``done``
#: is the cycle after (docs/sdsa.md: 2 pipeline cycles, plus the done pulse)
SDSA_TAIL = 3


@dataclass(frozen=True)
class InstructionCycles:
    """The model's counts for one instruction, as the core reports them on ``layer``: ``cycles``
    (fetch to done), synaptic ``additions``, input ``events`` (spikes, or SDSA token beats), and
    ``terms``, a breakdown of the cycles (they sum to ``cycles``), and ``traffic``, the words it
    reads and writes per memory ``{memory: (reads, writes)}`` (every memory of
    ``hwgen.perf.memory.MEMORIES``), as ``layer.traffic`` counts them."""

    pc: int
    name: str
    kind: str
    cycles: int
    additions: int
    events: int
    terms: dict[str, int] = field(default_factory=dict)
    traffic: dict[str, tuple[int, int]] = field(default_factory=dict)


def cycles_modelled(hw) -> bool:
    """Whether the model's cycles hold for ``hw`` with ``==``: not with external weights (their
    prefetch pipeline and the memory's latency are not modelled)."""
    return not hw.accumulator.external_weights


class CycleMismatchError(AssertionError):
    """The cycle model and the RTL's counters differ; the message names image, instruction and both."""


# ---- max-plus algebra -----------------------------------------------------------------------

_CHUNK = 1 << 15    # steps multiplied at once: a tree level's temporary is at most 2^15 x k^3 words


def _identity(k: int) -> np.ndarray:
    eye = np.full((k, k), NEG, dtype=np.int64)
    np.fill_diagonal(eye, 0)
    return eye


def maxplus_chain(mats: np.ndarray) -> np.ndarray:
    """The max-plus product ``M[n-1] (x) ... (x) M[0]`` of ``mats[n, k, k]``, with
    ``(A (x) B)[i, j] = max_l A[i, l] + B[l, j]``: applied to a state ``s``
    (``s'[i] = max_j M[i, j] + s[j]``) it gives the state after all n steps. Pairwise tree:
    log2(n) vectorised levels, n - 1 products."""
    mats = np.asarray(mats, dtype=np.int64)
    k = mats.shape[1]
    if len(mats) == 0:
        return _identity(k)
    if len(mats) > _CHUNK:     # bound the temporaries: products of chunks, then of those
        return maxplus_chain(np.stack([maxplus_chain(mats[i:i + _CHUNK]) for i in range(0, len(mats), _CHUNK)]))
    while len(mats) > 1:
        if len(mats) % 2:
            mats = np.concatenate([mats, _identity(k)[None]])
        first, then = mats[0::2], mats[1::2]
        mats = np.maximum((then[:, :, :, None] + first[:, None, :, :]).max(axis=2), NEG)
    return mats[0]


def _apply(mat: np.ndarray, state: np.ndarray) -> np.ndarray:
    return np.maximum((mat + state[None, :]).max(axis=1), NEG)


# ---- CONV: event feeder -> accumulator array -> drain writer ------------------------------------

def _reach(size_in: int, size_out: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Per input coordinate t: the kernel offsets k whose output ``(t + padding - k) / stride`` is
    a whole number inside the output (the accumulator's kernel window, docs/accumulator.md)."""
    t = np.arange(size_in)[:, None] + padding - np.arange(kernel)[None, :]
    return ((t % stride == 0) & (t >= 0) & (t // stride < size_out)).sum(axis=1)


@dataclass(frozen=True)
class ConvTiming:
    """What a CONV instruction's cycles depend on besides its input spikes."""

    timesteps: int
    drain_words: int       # D: accumulator words, one per cycle in bias initialisation and drain
    words: int             # operations per kernel offset of an event: G, or G - 1 when folded
    slots: int             # S: parked last words per folded operation (0: no folding)
    in_words: int          # scanned words per input position (pixel mode: channels)
    offsets: np.ndarray    # [input positions]: kernel offsets landing on the output (0: empty event)
    additions_per_offset: int = 0   # lanes * (G - 1) + last_lanes
    buffers: int = 1       # accumulator banks: with 2 a timestep drains while the next accumulates


def conv_timing(image: CoreImage, fields: dict) -> ConvTiming:
    """The :class:`ConvTiming` of a CONV instruction (its fields and accumulator descriptor)."""
    d = fields["desc"]
    if d.get("x_lanes"):
        raise ValueError("the cycle model covers the core's position-major layout (x_lanes = 0)")
    k, stride = d["kernel"], 2 if d["stride2"] else 1
    ny = _reach(fields["in_h"], d["out_h"], k, stride, d["padding"])
    nx = _reach(fields["in_w"], d["out_w"], k, stride, d["padding"])
    G, S = d["group_words"], d["fold_slots"]
    return ConvTiming(timesteps=fields["timesteps"], buffers=image.hw.accumulator.buffers,
                      drain_words=d["drain_words"], words=G - 1 if S else G,
                      slots=S, in_words=fields["in_words"], offsets=(ny[:, None] * nx[None, :]).reshape(-1),
                      additions_per_offset=image.lanes * (G - 1) + d["last_lanes"])


def _input_events(image: CoreImage, layer, fields: dict, tensors: Mapping[str, np.ndarray], b: int) -> np.ndarray:
    """Events per scanned word ``[T, words]`` in the feeder's scan order (position-major, then
    the position's words): the set bits of a spike word, or the set bit planes of a pixel."""
    T = fields["timesteps"]
    if fields.get("pixels"):
        bits = image.hw.accumulator.input_bits
        pixels = np.asarray(tensors[INPUT][0, b], dtype=np.int64)           # [C, H, W], read every timestep
        flat = pixels.transpose(1, 2, 0).reshape(-1) & ((1 << bits) - 1)   # the pixel memory's order
        planes = sum((flat >> i) & 1 for i in range(bits))
        return np.broadcast_to(planes, (T, flat.size))
    name = layer.inputs[0]
    r = image.regions[name]
    words = to_words(np.asarray(tensors[name][:, b]), r, image.lanes)     # the spike memory's words
    return (words != 0).sum(axis=1).reshape(T, r.step)


def _word_steps(m, offsets, z_next, parks_before, timing: ConvTiming, *, last: bool) -> np.ndarray:
    """Max-plus steps ``[words, 4, 4]`` of non-zero input words, state ``(C, L, G, Y)``:

    * C: the cycle the feeder moves the word into its slot (``consume``);
    * L: the first cycle the loop (S1) may take the next event: the cycle of the previous
      event's last operation, or the cycle after an event with no kernel offset;
    * G: the last cycle the loop issued an operation (parked-slot operations included);
    * Y: the cycle the previous event entered the loop.

    The m events of a word share its position, so each issues the same n operations and parks
    (``offsets``). Within a word they go back to back (S0 always holds the next one). A step
    reads the state before the word (C of this word) and gives the state after it (C of the
    next non-zero word, ``z_next`` zero words later). With ``last``, row C gives the cycle
    before the feeder raises its flush instead."""
    N = len(m)
    n = offsets * timing.words
    nonempty = offsets > 0
    S = timing.slots
    zero = np.zeros(N, dtype=np.int64)

    def rems(k):
        """Parked-slot operations within the parks of the word's first k events: a folded
        operation issues in the cycle after every S-th park."""
        return PARKED_OP * ((parks_before + k * offsets) // S - parks_before // S) if S else zero

    def tail(e):
        """1 where event e's last park is an S-th: its parked operation delays the next event."""
        if not S:
            return zero
        return PARKED_OP * (nonempty & (e >= 0) & ((parks_before + (e + 1) * offsets) % S == 0)).astype(np.int64)

    def row(**entries) -> np.ndarray:
        out = np.full((N, 4), NEG, dtype=np.int64)
        for i, key in enumerate("CLGY"):
            if key in entries:
                out[:, i] = entries[key]
        return out

    def plus(r, add):
        return np.where(r > NEG // 2, r + np.asarray(add)[:, None], NEG)

    def where(cond, a, b):
        return np.where(np.asarray(cond)[:, None], a, b)

    # the word's first event enters the loop at P = max(C + 2, L) ...
    P = row(C=SLOT_TO_LOOP, L=0)
    # ... and issues after the last parked-slot operation: from max(P, G) + 1
    start = row(C=SLOT_TO_LOOP, L=0, G=0)
    # after k events: the loop's last operation, and the last issue (a parked one may follow it)
    L_out = where(nonempty, plus(start, m * n + rems(m) - tail(m - 1)), plus(P, m))
    G_out = where(nonempty, plus(start, m * n + rems(m)), row(G=0))
    one = m == 1
    Y_out = where(one, P, where(nonempty, plus(start, (m - 1) * n + rems(m - 1) - tail(m - 2)), plus(P, m - 1)))
    # B: when the event before the word's last one entered the loop; the last one moves into S0
    # then, which frees the slot for the next non-zero word (or, for a one-event word, the
    # previous word's last event did)
    B = where(one, row(Y=0), where(m == 2, P, where(nonempty, plus(start, (m - 2) * n + rems(m - 2) - tail(m - 3)),
                                                    plus(P, m - 2))))
    if last:
        # the cycle before the flush is valid: the scan is past the trailing zero words and the
        # slot is empty (its last event taken: at B for m >= 2, at max(C + 1, B) for m = 1)
        C_out = np.maximum(row(C=np.maximum(z_next + 1, np.where(one, 2, NEG))), plus(B, np.ones(N, dtype=np.int64)))
    else:
        # the next non-zero word: read after the zero words between (one per cycle), in the slot
        # once the slot is free
        C_out = np.maximum(row(C=z_next + 1), B)
    return np.stack([C_out, L_out, G_out, Y_out], axis=1)


def conv_cycles(timing: ConvTiming, events: np.ndarray) -> tuple[int, dict[str, int]]:
    """Cycles of a CONV instruction (sequencer included) from ``events[T, words]``, the events
    of each word in the feeder's scan order, and their breakdown by term."""
    T, W = events.shape
    D, S = timing.drain_words, timing.slots
    ready = ACC_START                       # the first cycle the accumulator takes an event
    walker_free = 0                         # the first cycle the walker may start a drain
    first_read = FIRST_READ
    operations = accumulate = 0
    for t in range(T):
        m = np.asarray(events[t], dtype=np.int64)
        idx = np.flatnonzero(m)
        # before the first word: no event yet, the loop free from ready + 1, nothing issued
        state = np.array([first_read, ready + 1, NEG, ready], dtype=np.int64)
        partial = busy_last = False
        if len(idx) == 0:
            before_flush = first_read + W + 1
        else:
            state[0] = first_read + idx[0] + 1
            m, offsets = m[idx], timing.offsets[idx // timing.in_words]
            z_next = np.append(np.diff(idx) - 1, W - 1 - idx[-1])
            parks = m * offsets
            before = np.cumsum(parks) - parks
            steps = _word_steps(m[:-1], offsets[:-1], z_next[:-1], before[:-1], timing, last=False)
            final = _word_steps(m[-1:], offsets[-1:], z_next[-1:], before[-1:], timing, last=True)[0]
            state = _apply(final, _apply(maxplus_chain(steps), state))
            before_flush = int(state[0])
            partial = bool(S) and int(parks.sum()) % S != 0
            busy_last = bool(offsets[-1] > 0)
            operations += int(parks.sum()) * timing.words + (PARKED_OP * -(-int(parks.sum()) // S) if S else 0)
        _, L, G, Y = (int(v) for v in state)
        flush_taken = max(before_flush + 1, Y)          # offered the cycle after; S0 free once Y is in the loop
        if partial:
            # the parked slots left go out once the flush is seen and the loop is idle
            accum_end = max(flush_taken + 1, L + int(busy_last)) + ACC_PIPELINE_DRAIN
        else:
            accum_end = max(flush_taken + 1, L, G + ACC_PIPELINE_DRAIN)
        accumulate += accum_end - ready
        # the bank goes to the walker once the walker is free (the previous drain done)
        handover = max(accum_end, walker_free)
        walker_free = handover + D + DRAIN_RESTART
        if t < T - 1:
            # one bank: the next timestep waits for the drain; two: it accumulates in the other
            ready = walker_free if timing.buffers == 1 else handover + BANK_SWITCH
            first_read = flush_taken + 1
    done = handover + D + DRAIN_LAST_WRITE
    terms = {"sequencer": SEQUENCER, "start": ACC_START, "operations": operations,
             "accumulate_other": accumulate - operations,
             # the drains' cycles not hidden behind accumulation (one bank: T x D + 3 (T - 1) + 1)
             "drain": done - ACC_START - accumulate}
    return done + SEQUENCER, terms


# ---- SDSA: token gatherer -> SDSA unit -> stream writer --------------------------------------------

def sdsa_cycles(ops: np.ndarray, *, words: int, drain: int = 0) -> tuple[int, dict[str, int]]:
    """Cycles of an SDSA instruction (sequencer included) from the unit's operations per input
    beat ``ops[T, beats per timestep]`` (a beat is held ``max(1, ops)`` cycles, docs/sdsa.md),
    the gatherer's ``words`` per beat and SDSA-1/2's ``drain`` operations after each timestep.

    Beat b reaches the unit's input at ``V[b]``; the next is gathered once it moved there:
    ``V[b+1] = max(V[b] + words - 1 + 3, A[b] + 1)``. The unit works on beat b from
    ``U[b] = max(V[b], A[b-1] + 1 + drain)`` (drain: first beat of a timestep) and takes it at
    ``A[b] = U[b] + max(1, ops[b]) - 1``."""
    T, beats = ops.shape
    c = np.maximum(1, np.asarray(ops, dtype=np.int64)).reshape(-1)
    dr = np.zeros((T, beats), dtype=np.int64)
    dr[1:, 0] = drain
    dr = dr.reshape(-1)
    steps = np.full((len(c), 2, 2), NEG, dtype=np.int64)       # state (V[b], A[b-1]) -> (V[b+1], A[b])
    steps[:, 0, 0] = np.maximum(words - 1 + GATHER_LATENCY, c)
    steps[:, 0, 1] = dr + c + 1
    steps[:, 1, 0] = c - 1
    steps[:, 1, 1] = dr + c
    first = FIRST_READ + words - 1 + GATHER_LATENCY        # beat 0: reads in cycles 1 .. words
    _, a_last = _apply(maxplus_chain(steps), np.array([first, NEG], dtype=np.int64))
    done = int(a_last) + drain + SDSA_TAIL
    unit = int(c.sum()) + T * drain
    terms = {"sequencer": SEQUENCER, "unit": unit, "gather": done - unit - SDSA_TAIL, "tail": SDSA_TAIL}
    return done + SEQUENCER, terms


def _stored(image: CoreImage, name: str, tensors: Mapping[str, np.ndarray], b: int, heads: int, d: int) -> np.ndarray:
    """Spikes of an SDSA input as the core holds them, ``[T, tokens, heads, d]`` (padded heads)."""
    r = image.regions[name]
    words = to_words(np.asarray(tensors[name][:, b]), r, image.lanes)
    per_token = words.reshape(r.timesteps, r.positions, r.words * image.lanes)[..., :heads * d]
    return per_token.reshape(r.timesteps, r.positions, heads, d).astype(np.int64)


def _sdsa(image: CoreImage, layer, fields: dict, tensors: Mapping[str, np.ndarray], b: int):
    """(cycles, additions, events, terms, the work its traffic depends on) of an SDSA instruction
    (docs/sdsa.md, "Cycles")."""
    cfg, a = image.hw.sdsa, layer.attrs
    L, P = cfg.lanes, cfg.out_blocks
    T, N, heads, d = fields["timesteps"], fields["tokens"], fields["heads"], fields["head_dim"]
    B = -(-d // L)
    q = _stored(image, a["q"], tensors, b, heads, d)
    if cfg.attention_matrix:
        k = _stored(image, a["k"], tensors, b, heads, d)
        kv_ops = B * k.sum(axis=(2, 3))                               # [T, N]: B operations per K spike
        touched = k.any(axis=1)                                       # [T, heads, d]: K^T V row written
        live = (q * touched[:, None]).sum(axis=3)                     # [T, N, heads]: Q spikes on such rows
        first = (np.arange(N)[:, None] * heads + np.arange(heads)[None, :]) * B
        zero_ops = (first + B - 1) // P - first // P + 1              # a head without: its zero blocks
        qa_ops = np.where(live > 0, B * live, zero_ops[None]).sum(axis=2)
        ops = np.concatenate([kv_ops, qa_ops], axis=1)               # per timestep: K^T V pass, A pass
        additions = int(d * (k.sum() + live.sum()))
        drain = 0
        kv_updates, kv_reads = int(kv_ops.sum()), int(B * live.sum())      # KV_ADD, A_ADD (ZERO reads nothing)
    else:
        s = q * _stored(image, a["k"], tensors, b, heads, d) if cfg.variant == 1 else q
        padded = np.concatenate([s, np.zeros((T, N, heads, B * L - d), dtype=np.int64)], axis=3)
        blocks = padded.reshape(T, N, heads, B, L).any(axis=4)        # [T, N, heads, B]: a counter update
        ops = blocks.sum(axis=(2, 3))
        additions = int((blocks * np.minimum(L, d - L * np.arange(B))).sum())
        drain = heads * B                                             # the counters, read out per timestep
        # COUNT_ADD; READ_OUT of the blocks written in the timestep (the others go out as ZERO)
        kv_updates, kv_reads = int(blocks.sum()), int(blocks.any(axis=1).sum())
    cycles, terms = sdsa_cycles(ops, words=fields["in_words"], drain=drain)
    return cycles, additions, int(ops.size), terms, Work(kv_updates=kv_updates, kv_reads=kv_reads)


# ---- the program ----------------------------------------------------------------------------------

def instruction_cycles(image: CoreImage, tensors: Mapping[str, np.ndarray], b: int = 0) -> list[InstructionCycles]:
    """Per instruction of ``image``: the cycles, additions and events its counters report for
    image ``b`` of ``tensors`` (name -> ``[T, B, ...]``, as the integer engine returns them, on
    real channels; the pixels under ``"input"``; a slice's preloaded inputs among them)."""
    out = []
    for pc, (layer, fields) in enumerate(zip(image.layers, image.instructions)):
        op = fields["op"]
        additions = events = 0
        work = Work()
        if op == Op.CONV:
            timing = conv_timing(image, fields)
            per_word = _input_events(image, layer, fields, tensors, b)
            cycles, terms = conv_cycles(timing, per_word)
            events = int(per_word.sum())
            offsets = np.repeat(timing.offsets, timing.in_words)
            parks = int((per_word * offsets[None]).sum())      # kernel offsets landed on, all events
            additions = parks * timing.additions_per_offset
            work = Work(weight_words=terms["operations"])       # one weight word per issued operation
        elif op == Op.SDSA:
            cycles, additions, events, terms, work = _sdsa(image, layer, fields, tensors, b)
        else:
            if chained_lif(fields):     # overlapped with its CONV's drain
                terms = {"tail": CHAINED_LIF_TAIL}
                work = Work(chained=True)
            elif op == Op.LIF:      # one beat of lanes neurons per cycle through the LIF core
                terms = {"sequencer": SEQUENCER, "words": fields["count"], "latency": LIF_LATENCY}
            elif op == Op.MASK:     # one v word (and its mask word) per cycle
                terms = {"sequencer": SEQUENCER, "words": fields["count"], "latency": VECTOR_LATENCY}
            elif op == Op.REDUCE:   # one word read per cycle, summed
                words = fields["outer"] * fields["count"] * fields["in_words"]
                terms = {"sequencer": SEQUENCER, "words": words, "latency": VECTOR_LATENCY}
            else:
                raise ValueError(f"instruction {pc} ({layer.name}): op {op!r} has no cycle model")
            cycles = sum(terms.values())
        traffic = layer_traffic(layer, work, image.program.T, image.lanes, {})
        counts = {m: tuple(int(v) for v in traffic.get(m, (0, 0))) for m in MEMORIES}
        if op == Op.CONV and image.hw.accumulator.external_weights:
            # the words received: every kernel offset's G words (a folded offset's last word parked
            # with its operation), not the operations the lanes issue
            counts["weights"] = (parks * fields["desc"]["group_words"], 0)
        out.append(InstructionCycles(pc, layer.name, layer.kind, int(cycles), additions, events, terms, counts))
    return out


def network_bounds(rows: Sequence[Mapping], instructions: Sequence[Mapping] | None) -> dict[str, float]:
    """The network's bounds from per-layer rows (``bound``: the fewest cycles the layer's unit
    could take for its work; ``unit``): ``overlapped``, with each CONV and the LIF chained to it
    (``instructions``' ``chain``; None: no core, nothing chained) bounded by the busier of the two,
    since they run at once; ``serial``, every unit's bound added (one unit at a time);
    ``additions``, the accumulator array's and the SDSA unit's alone (``ceil(additions / lanes)``
    per layer)."""
    bounds = [float(r["bound"]) for r in rows]
    serial = sum(bounds)
    overlapped = serial
    for pc, fields in enumerate(instructions or ()):
        if chained_lif(fields):
            overlapped -= min(bounds[pc - 1], bounds[pc])          # max(a, b) = a + b - min(a, b)
    additions = sum(b for b, r in zip(bounds, rows) if r["unit"] in ("accumulator", "sdsa"))
    return {"overlapped": overlapped, "serial": serial, "additions": additions}


def check_cycles(image: CoreImage, measured: Sequence, tensors: Mapping[str, np.ndarray], b: int, *,
                 index: int | None = None, error: type[Exception] = CycleMismatchError,
                 model: list[InstructionCycles] | None = None) -> list[InstructionCycles]:
    """Compare the RTL's counters of one image (``measured[pc].cycles``, ``.additions``,
    ``.events`` and ``.traffic``, e.g. ``hwgen.sim.core.LayerStats``) with the model for image
    ``b`` of ``tensors``; raise ``error`` at the first instruction that differs, naming the image
    (``index``, by default ``b``), the instruction (pc and layer), the counter (for traffic: the
    memory and the direction), model and RTL. With external weights the cycles are not compared
    (:func:`cycles_modelled`). Returns the model."""
    model = model if model is not None else instruction_cycles(image, tensors, b)
    which = b if index is None else index
    if len(measured) != len(model):
        raise error(f"image {which}: the RTL reported {len(measured)} instructions, the program has {len(model)}")
    for want, got in zip(model, measured):
        for counter in ("cycles", "additions", "events") if cycles_modelled(image.hw) else ("additions", "events"):
            w, g = getattr(want, counter), int(getattr(got, counter))
            if w != g:
                terms = ", ".join(f"{k} {v}" for k, v in want.terms.items())
                raise error(f"image {which}, instruction {want.pc} {want.name} ({want.kind}): cycle model {w} "
                            f"{counter}, RTL {g} ({g - w:+d}; model terms: {terms})")
        rtl = getattr(got, "traffic", None) or {}
        for memory in dict.fromkeys([*want.traffic, *rtl]):
            for i, direction in enumerate(("reads", "writes")):
                w = want.traffic.get(memory, (0, 0))[i]
                g = int(rtl.get(memory, (0, 0))[i])
                if w != g:
                    raise error(f"image {which}, instruction {want.pc} {want.name} ({want.kind}): traffic model "
                                f"{w} {memory} {direction}, RTL {g} ({g - w:+d})")
    return model
