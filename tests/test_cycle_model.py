"""The core's cycle model (hwgen/compiler/cycles.py, docs/core.md "Cycle model") on hand-made cases.

The model is held to the RTL's counters in every core test (``hwgen.sim.simulate.check_image``,
rtl_tests/test_cycle_model_rtl.py). Here, without a simulator:

* hand-derived counts of small CONV and SDSA instructions, worked out cycle by cycle from the
  engines' handshakes in the docstrings (and the folded remainder's saving from
  docs/accumulator.md);
* SDSA against the unit's own cycle model (``hwgen.sim.sdsa.cycle_model``, docs/sdsa.md) where
  the gatherer keeps the unit fed;
* the vectorised recurrences against a cycle-stepped transcription of the RTL's registers
  (EventFeeder, AccumulatorArray, DrainWriter; TokenGatherer, SdsaUnit), on random layers;
* the whole digits program: additions and events against counts from the spikes, terms that
  add up, and the time per image.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.config import load_config
from hwgen.compiler import cycles
from hwgen.compiler.cycles import ConvTiming, conv_cycles, instruction_cycles, maxplus_chain, sdsa_cycles

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "configs" / "hw" / "digits.yaml"


def _timing(*, D, words, offsets, in_words=1, T=1, slots=0, buffers=1):
    return ConvTiming(timesteps=T, drain_words=D, words=words, slots=slots, in_words=in_words,
                      offsets=np.asarray(offsets, dtype=np.int64), buffers=buffers)


# ---- max-plus products ----------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [None, 4])
def test_maxplus_chain_is_the_steps_applied_in_order(chunk, monkeypatch):
    if chunk:     # long chains are multiplied chunk by chunk
        monkeypatch.setattr(cycles, "_CHUNK", chunk)
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 7, 64, 100):
        mats = rng.integers(-5, 20, size=(n, 3, 3))
        mats[rng.random(mats.shape) < 0.3] = cycles.NEG
        state = rng.integers(0, 10, size=3)
        want = state.copy()
        for mat in mats:
            want = np.array([max(mat[i, j] + want[j] for j in range(3)) for i in range(3)])
            want = np.maximum(want, cycles.NEG)
        got = np.maximum((maxplus_chain(mats) + state[None, :]).max(axis=1), cycles.NEG)
        assert got.tolist() == want.tolist(), n


# ---- CONV by hand ---------------------------------------------------------------------------

def test_conv_without_spikes_scans_every_word_once():
    """No spike: the feeder reads W zero words in cycles 1..W (each consumed the next cycle),
    raises its flush in cycle W + 2, offers it in W + 3; the accumulator (clean, taking events
    from cycle 1) takes it then. ACCUM ends the cycle after the flush is seen; the drain writes
    its last word D + 1 cycles later. Plus FETCH, DECODE, LAUNCH: W + 3 + 1 + D + 1 + 3."""
    for W, D in [(16, 4), (4, 16), (7, 7)]:
        cyc, terms = conv_cycles(_timing(D=D, words=1, offsets=np.ones(W)), np.zeros((1, W), dtype=np.int64))
        assert cyc == W + D + 8, (W, D)
        assert sum(terms.values()) == cyc and terms["operations"] == 0


def test_conv_one_spike():
    """One word, one spike, 1x1 kernel, G = 2 words per position, D = 2: read in cycle 1, in
    the slot from 2, offered and taken in 3 (the accumulator takes events from cycle 1), in S0
    and the loop at 4, operations in 5 and 6. The flush is raised in 4 (slot empty), offered in
    5, taken in 5 (S0 free); the last write of the loop is in 7, so ACCUM ends in 8 (2 cycles
    after the last operation); the drain's last write is in 8 + D + 1 = 11: 11 + 3 = 14 cycles."""
    cyc, terms = conv_cycles(_timing(D=2, words=2, offsets=[1]), np.array([[1]]))
    assert cyc == 14
    assert terms["operations"] == 2


def test_conv_feeder_bound_spike_behind_zero_words():
    """1x1 conv, G = 1, D = 1; six words, a spike in words 0 and 5. Word 0: read in 1, in the
    slot in 2, taken in 3 (events from cycle 1), into the loop in 4, its operation in 5. Words 1-4
    are read in 2-5 and done a cycle later each; word 5 is read in 6 and in the slot in 7,
    offered and taken in 8, in the loop in 9, operation in 10: the accumulator waited for the
    feeder. The flush is raised in 9 (slot empty), taken in 10; ACCUM ends in 12 (2 after the
    last operation), the drain's last write is in 12 + D + 1 = 14: 17 cycles."""
    events = np.array([[1, 0, 0, 0, 0, 1]])
    cyc, terms = conv_cycles(_timing(D=1, words=1, offsets=np.ones(6)), events)
    assert cyc == 17 and terms["operations"] == 2


def test_conv_accumulator_bound_layer_costs_its_operations():
    """Every event issues n >= 2 operations, so the feeder (one event per cycle) is never the
    limit: the loop issues back to back. Timestep 0: the first event is taken in cycle 3 (read
    in 1, in the feeder's slot in 2; the clean accumulator takes events from 1), in the loop from
    4, operations from 5, ACCUM ends 2 cycles after the last; every later timestep: the feeder
    has its first word in the slot already, so operations start 2 cycles after the accumulator
    takes events again (D + 3 after ACCUM ended). docs/accumulator.md: 'cycles per timestep ~
    ops + drain_words + 3'."""
    rng = np.random.default_rng(4)
    W, T, D, G = 12, 3, 5, 3
    offsets = rng.integers(1, 5, size=W)
    events = rng.integers(1, 4, size=(T, W))
    ops = (events * offsets[None]).sum(axis=1) * G
    cyc, _ = conv_cycles(_timing(D=D, words=G, offsets=offsets, T=T), events)
    want = 3 + 3 + sum(o + 3 for o in ops) + (T - 1) * (D + 3) + (D + 1)
    assert cyc == want


def test_two_banks_hide_every_drain_but_the_last_behind_accumulation():
    """Two accumulator banks: timestep t + 1 accumulates (from the cycle after t's bank went to
    the walker) while t drains, so when each timestep's operations outlast a drain (D + 3), the
    layer costs (T - 1) x (D + 3 - 1) cycles less: only the last drain is exposed."""
    W, T, D, G = 12, 3, 5, 3
    rng = np.random.default_rng(4)
    offsets = rng.integers(1, 5, size=W)
    events = rng.integers(1, 4, size=(T, W))
    one, one_terms = conv_cycles(_timing(D=D, words=G, offsets=offsets, T=T), events)
    two, two_terms = conv_cycles(_timing(D=D, words=G, offsets=offsets, T=T, buffers=2), events)
    assert one - two == (T - 1) * (D + 3 - 1)
    # exposed: the last drain (D + 1) and a cycle per bank switch
    assert two_terms["drain"] == (T - 1) + D + 1 and one_terms["drain"] == T * D + 3 * (T - 1) + 1


def test_folded_remainder_saves_the_last_words_but_one_per_s():
    """A linear layer (one position, one kernel offset) with G = 2 words, the last one folded
    S = 4 to an operation: each of 8 events issues 1 full word and parks its last word; a parked
    operation goes out after every 4th park and holds the loop a cycle. docs/accumulator.md:
    '(G - 1) words per position hit plus ceil(last words / S) per timestep, instead of G':
    8 + 2 operations instead of 16."""
    events = np.array([[8]])
    folded, terms = conv_cycles(_timing(D=2, words=1, offsets=[1], slots=4), events)
    plain, plain_terms = conv_cycles(_timing(D=2, words=2, offsets=[1]), events)
    assert terms["operations"] == 8 + 2 and plain_terms["operations"] == 16
    assert plain - folded == 16 - (8 + 2)
    # 6 events: one parked operation after the 4th park, the last two slots go out after the flush
    six, terms6 = conv_cycles(_timing(D=2, words=1, offsets=[1], slots=4), np.array([[6]]))
    plain6, _ = conv_cycles(_timing(D=2, words=2, offsets=[1]), np.array([[6]]))
    assert terms6["operations"] == 6 + 2 and plain6 - six == 12 - (6 + 2)


# ---- SDSA by hand and against the unit's model ----------------------------------------------

def test_sdsa_gatherer_bound_when_the_unit_is_faster():
    """Every beat needs W reads; with beats of 1 operation the unit waits: beat 0 is on its input
    in cycle W + 3 (reads in 1..W, the data, the gather buffer full, the move), each next beat
    W + 2 cycles later (its reads start when the previous beat moves on). The last is taken the
    cycle it arrives; done 3 cycles later; plus the sequencer's 3."""
    W, beats = 5, 6
    cyc, terms = sdsa_cycles(np.zeros((1, beats), dtype=np.int64), words=W)
    assert cyc == (W + 3) + (beats - 1) * (W + 2) + 3 + 3
    assert sum(terms.values()) == cyc


def test_sdsa_unit_bound_equals_the_units_cycle_model():
    """Dense Q, K: every beat holds the unit longer than the next takes to gather, so the core
    adds only the first beat's gathering (W + 2 cycles before the unit's first operation), the
    done pulse and the sequencer to the unit's own count (docs/sdsa.md, hwgen.sim.sdsa)."""
    from hwgen.sim.sdsa import cycle_model

    cfg = load_config(DIGITS).sdsa
    heads, d, N, T = 2, 2 * cfg.lanes, 5, 2
    rng = np.random.default_rng(3)
    q = (rng.random((T, heads * d, N)) < 0.8).astype(np.int64)
    k = (rng.random((T, heads * d, N)) < 0.8).astype(np.int64)
    k[:, :, 0] = 1                                      # every token has K spikes
    B = d // cfg.lanes
    kh = k.reshape(T, heads, d, N)
    kv_ops = B * kh.sum(axis=(1, 2))
    live = (q.reshape(T, heads, d, N) * kh.any(axis=3, keepdims=True)).sum(axis=2)   # [T, heads, N]
    qa_ops = np.where(live > 0, B * live, B).sum(axis=1)
    ops = np.concatenate([kv_ops, qa_ops], axis=1)
    W = heads * d // cfg.lanes
    assert ops.min() >= W + 2
    cyc, _ = sdsa_cycles(ops, words=W)
    unit = cycle_model(cfg, q, k, heads=heads, head_dim=d)["cycles"]
    assert cyc == unit + W + 6


# ---- cycle-stepped transcriptions of the RTL's registers ------------------------------------

def _stepped_conv(timing: ConvTiming, events: np.ndarray) -> int:
    """Cycle by cycle, the registers of EventFeeder, AccumulatorArray (its control) and
    DrainWriter that decide when anything moves, read off the RTL's combinational conditions
    and sync updates (hwgen/core/engines.py, hwgen/units/accumulator.py). Cycle 0 is LAUNCH,
    where every start pulses; returns the fetch-to-done cycles."""
    T, W = events.shape
    D, S, G = timing.drain_words, timing.slots, timing.words
    r = {"running": True, "exhausted": False, "flushing": False, "t": 0, "w": 0,              # feeder
         "pend": False, "pend_n": 0, "pend_pos": 0, "slot_valid": False, "slot_left": 0, "slot_pos": 0,
         "draining": False, "d_addr": 0, "d1_valid": False, "d1_last": False, "flush_seen": False,  # accumulator
         "s0_valid": False, "s0_off": 0, "s1_valid": False, "o_left": 0, "g": 0, "n_slots": 0, "s2_valid": False}
    drained = 0
    for cycle in range(1, 10 ** 6):
        x = dict(r)
        # combinational
        rem_issue = bool(S) and r["n_slots"] != 0 and (
            r["n_slots"] == S or (r["flush_seen"] and not r["s0_valid"] and not r["s1_valid"]))
        s1_issue = r["s1_valid"] and not rem_issue
        last_word = r["g"] == G - 1
        last_op = last_word and r["o_left"] == 1
        s0_take = r["s0_valid"] and (not r["s1_valid"] or (last_op and not rem_issue))
        ready = (not r["flush_seen"] and (not r["s0_valid"] or s0_take)
                 and (timing.buffers == 2 or not r["draining"]))
        take = (r["slot_valid"] or r["flushing"]) and ready
        slot_frees = not r["slot_valid"] or (take and r["slot_left"] == 1)
        consume = r["pend"] and (r["pend_n"] == 0 or slot_frees)
        issue = r["running"] and not r["exhausted"] and not r["flushing"] and (not r["pend"] or consume)
        d_issue = r["draining"] and r["d_addr"] != D
        pipeline_empty = not (r["s0_valid"] or r["s1_valid"] or r["s2_valid"]) and r["n_slots"] == 0
        walk_done = r["d_addr"] == D and not r["d1_valid"]
        if r["draining"] and r["d1_valid"] and r["d1_last"]:    # the drain writer takes a last sum
            drained += 1
            if drained == T:
                return cycle + 3
        # feeder
        if issue:
            x.update(pend=True, pend_n=int(events[r["t"], r["w"]]), pend_pos=r["w"] // timing.in_words,
                     w=r["w"] + 1, exhausted=r["w"] + 1 == W)
        elif consume:
            x["pend"] = False
        if consume and r["pend_n"] != 0:
            x.update(slot_valid=True, slot_left=r["pend_n"], slot_pos=r["pend_pos"])
        elif r["slot_valid"] and take:
            x.update(slot_left=r["slot_left"] - 1, slot_valid=r["slot_left"] != 1)
        if r["running"] and r["exhausted"] and not r["pend"] and not r["slot_valid"] and not r["flushing"]:
            x["flushing"] = True
        if r["flushing"] and take:
            x["flushing"] = False
            if r["t"] == T - 1:
                x["running"] = False
            else:
                x.update(t=r["t"] + 1, w=0, exhausted=False)
        # accumulator: S0, the loop, the parked slots, S2
        if take and r["slot_valid"]:
            x.update(s0_valid=True, s0_off=int(timing.offsets[r["slot_pos"]]))
        elif s0_take:
            x["s0_valid"] = False
        if s0_take:
            x.update(s1_valid=r["s0_off"] > 0, o_left=r["s0_off"], g=0)
        elif s1_issue:
            if not last_word:
                x["g"] = r["g"] + 1
            elif r["o_left"] != 1:
                x.update(g=0, o_left=r["o_left"] - 1)
            else:
                x["s1_valid"] = False
        if rem_issue:
            x["n_slots"] = 0
        elif s1_issue and last_word and S:
            x["n_slots"] = r["n_slots"] + 1
        x["s2_valid"] = s1_issue or rem_issue
        # the drain walker and the mode
        if d_issue:
            x.update(d_addr=r["d_addr"] + 1, d1_valid=True, d1_last=r["d_addr"] == D - 1)
        else:
            x["d1_valid"] = False
        if take and not r["slot_valid"]:
            x["flush_seen"] = True
        if r["flush_seen"] and pipeline_empty and not r["draining"]:     # the bank goes to the walker
            x.update(draining=True, d_addr=0, flush_seen=False)
        if r["draining"] and walk_done:
            x["draining"] = False
        r = x
    raise AssertionError("the stepped CONV never finished")


def _stepped_sdsa(ops: np.ndarray, words: int, drain: int) -> int:
    """Cycle by cycle, TokenGatherer's registers and the SDSA unit's beat handling: a beat is
    held max(1, ops) cycles, then taken; SDSA-1/2 read their counters out (``drain``
    operations) after each timestep's beats; done 3 cycles after the last operation."""
    per_t = ops.shape[1]
    n_beats = ops.size
    held = np.maximum(1, ops).reshape(-1)
    g = {"running": True, "exhausted": False, "word": 0, "beat": 0, "pend": False, "pend_last": False,
         "next_full": False, "cur": False}
    u = {"beat": 0, "progress": 0, "draining": 0, "idle": False, "tail": -1}
    for cycle in range(1, 10 ** 6):
        x, y = dict(g), dict(u)
        take = False
        if u["idle"]:
            if cycle == u["tail"] + 3:
                return cycle + 3
        elif u["draining"]:
            y["draining"] = u["draining"] - 1
            if u["draining"] == 1 and u["beat"] == n_beats:
                y.update(idle=True, tail=cycle)
        elif g["cur"]:
            y["progress"] = u["progress"] + 1
            if y["progress"] == held[u["beat"]]:
                take = True
                y.update(progress=0, beat=u["beat"] + 1)
                if (u["beat"] + 1) % per_t == 0 and drain:
                    y["draining"] = drain
                elif u["beat"] + 1 == n_beats:
                    y.update(idle=True, tail=cycle)
        issue = g["running"] and not g["exhausted"] and not g["next_full"] and not (g["pend"] and g["pend_last"])
        if issue:
            last = g["word"] == words - 1
            x.update(pend=True, pend_last=last, word=0 if last else g["word"] + 1)
            if last:
                x["beat"] = g["beat"] + 1
                x["exhausted"] = g["beat"] + 1 == n_beats
        elif g["pend"]:
            x["pend"] = False
        if g["pend"] and g["pend_last"]:
            x["next_full"] = True
        if g["next_full"] and (not g["cur"] or take):
            x.update(cur=True, next_full=False)
        elif take:
            x["cur"] = False
        g, u = x, y
    raise AssertionError("the stepped SDSA never finished")


@pytest.mark.parametrize("seed", range(40))
def test_conv_recurrences_equal_the_stepped_registers(seed):
    """Random small layers (kernel windows with empty events, folded and not, T = 1..3, one or
    two accumulator banks) and spike maps from empty to dense, in runs of zero words and bursts."""
    rng = np.random.default_rng(seed)
    positions, in_words = int(rng.integers(1, 7)), int(rng.integers(1, 4))
    slots = int(rng.choice([0, 0, 2, 4]))
    timing = _timing(D=int(rng.integers(1, 9)), words=int(rng.integers(1, 4)), slots=slots,
                     offsets=rng.choice([0, 1, 1, 2, 3, 4, 9], size=positions), in_words=in_words,
                     T=int(rng.integers(1, 5)), buffers=int(rng.choice([1, 2])))
    W = positions * in_words
    density = rng.choice([0.0, 0.05, 0.2, 0.5, 0.9, 1.0])
    events = rng.integers(1, 9, size=(timing.timesteps, W)) * (rng.random((timing.timesteps, W)) < density)
    got, terms = conv_cycles(timing, events)
    assert got == _stepped_conv(timing, events)
    assert sum(terms.values()) == got


@pytest.mark.parametrize("seed", range(30))
def test_sdsa_recurrences_equal_the_stepped_registers(seed):
    rng = np.random.default_rng(100 + seed)
    T, per_t, words = int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 7))
    ops = rng.integers(0, 3 * words + 6, size=(T, per_t)) * (rng.random((T, per_t)) < rng.random())
    drain = int(rng.choice([0, 0, 1, 4]))
    got, terms = sdsa_cycles(ops, words=words, drain=drain)
    assert got == _stepped_sdsa(ops, words, drain)
    assert sum(terms.values()) == got


# ---- the digits program ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The bundled digits model (T = 4) compiled for configs/hw/digits.yaml, with the golden
    tensors of three held-out test images."""
    from contract.program import load_program
    from golden.digits import PIXEL_LEVELS, load_digits_split
    from golden.export import export_program, load_model
    from golden.fold import fold_model
    from golden.intsim import IntegerEngine
    from golden.quantize import quantize
    from hwgen.compiler import compile_program

    hw = load_config(DIGITS)
    model = load_model(REPO / "checkpoints" / "digits_sdsa3_t4.pth")
    out = tmp_path_factory.mktemp("cycles") / "program"
    export_program(quantize(fold_model(model), hw, input_scale=1 / PIXEL_LEVELS, input_shape=[1, 32, 32]), out,
                   log=lambda m: None)
    program = load_program(out)
    _, _, x_test, _ = load_digits_split(size=32)
    engine = IntegerEngine(program, hw)
    with torch.no_grad():
        golden = {k: v.numpy() for k, v in engine.run(engine.encode(x_test[:3])).items()}
    return compile_program(program, hw), golden


def _reach(size_in, size_out, k, s, p):
    return np.array([sum(1 for kk in range(k) if (t + p - kk) % s == 0 and 0 <= (t + p - kk) // s < size_out)
                     for t in range(size_in)])


def test_digits_additions_and_events_from_the_spikes(digits):
    """A conv adds one weight per output channel of every output position a spike's kernel
    window reaches; a pixel's set bit planes are its events; an SDSA layer takes 2 N beats
    per timestep (K^T V pass, A pass)."""
    image, golden = digits
    model = instruction_cycles(image, golden, 1)
    T = image.program.T
    for m, layer in zip(model, image.layers):
        assert sum(m.terms.values()) == m.cycles, layer.name
        a = layer.attrs
        if layer.kind == "conv":
            x = golden[layer.inputs[0]][:, 1].astype(np.int64)
            if a["input"] == "pixels":
                x = sum((x >> bit) & 1 for bit in range(image.hw.accumulator.input_bits))
            _, h_out, w_out = layer.shape
            reach = np.outer(_reach(x.shape[2], h_out, a["kernel"], a["stride"], a["padding"]),
                             _reach(x.shape[3], w_out, a["kernel"], a["stride"], a["padding"]))
            assert m.events == int(x.sum()), layer.name
            assert m.additions == int((x.sum(axis=(0, 1)) * reach).sum()) * (a["out_channels"] // a["groups"])
        elif layer.kind == "linear":
            x = golden[layer.inputs[0]][:, 1]
            assert (m.events, m.additions) == (int(x.sum()), int(x.sum()) * a["out_features"]), layer.name
        elif layer.kind == "sdsa":
            assert m.events == T * 2 * a["tokens"], layer.name
        else:
            assert m.additions == m.events == 0, layer.name


def test_digits_model_is_fast(digits):
    import time

    image, golden = digits
    t0 = time.perf_counter()
    for b in range(3):
        instruction_cycles(image, golden, b)
    assert (time.perf_counter() - t0) / 3 < 2.0
