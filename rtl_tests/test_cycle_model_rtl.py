"""The cycle model (hwgen/compiler/cycles.py) against the RTL's counters, and what a wrong term does.

Every core test already holds the model to the RTL: ``hwgen.sim.simulate.check_image`` compares
the cycles, additions and events of every instruction after the values. Here, on one simulated
run of the digits model at T = 4 (two held-out images; every op of the core, four timesteps,
the folded head), the comparison is shown per instruction kind and per memory (the traffic
counters), and deliberately wrong model terms (and an RTL counter off by one) must be caught by
that same check, naming image, instruction, model and RTL. Under
``-m slow``: single layers on spike maps chosen to stress the feeder and the accumulator.
"""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.config import load_config
from contract.program import INPUT, load_program
from golden.intsim import IntegerEngine
from hwgen.compiler import compile_program, cycles
from hwgen.compiler.cycles import CycleMismatchError, check_cycles, instruction_cycles
from hwgen.sim.core import run_core
from hwgen.sim.simulate import MismatchError, check_image, load_images

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "hw"


@pytest.fixture(scope="module")
def t4_run(digits_program, tmp_path_factory):
    """(core image, results, golden) of the digits model at T = 4 on two test images."""
    hw = load_config(CONFIGS / "digits.yaml")
    program = load_program(digits_program)
    image = compile_program(program, hw)
    pixels, _, _ = load_images(program, digits_program, 2)
    golden = {k: v.numpy() for k, v in IntegerEngine(program, hw).run(torch.from_numpy(pixels)).items()}
    results = run_core(image, pixels, work=tmp_path_factory.mktemp("cycles_t4"))
    return image, results, golden


def test_model_equals_the_rtl_on_every_instruction(t4_run):
    image, results, golden = t4_run
    for b, result in enumerate(results):
        model = check_cycles(image, result.layers, golden, b)
        assert [m.cycles for m in model] == [s.cycles for s in result.layers]
        by_kind: dict[str, list[int]] = {}
        for m in model:
            by_kind.setdefault(m.kind, []).append(m.cycles)
        print(f"image {b}: " + ", ".join(f"{k} {len(v)} x, {sum(v):,d} cycles" for k, v in by_kind.items()))
    assert image.program.T == 4 and any(f["desc"]["fold_slots"] for f in image.instructions if "desc" in f)


def _first(image, kind: str, *, folded: bool = False) -> tuple[int, str]:
    for pc, (layer, fields) in enumerate(zip(image.layers, image.instructions)):
        if layer.kind == kind and (not folded or fields["desc"]["fold_slots"]):
            return pc, layer.name
    raise AssertionError(kind)


@pytest.mark.parametrize("term, change, kind, folded, diff", [
    # the handover to the other accumulator bank: off by one per timestep (3 of them at T = 4);
    # with two banks the drain's own turnaround (DRAIN_RESTART) is hidden on every digits CONV
    ("BANK_SWITCH", +1, "conv", False, -3),
    # the folded remainder's parked operations cost nothing: only the folded head is wrong
    ("PARKED_OP", -1, "linear", True, None),
    # the gatherer's latency: every beat of the first SDSA layer that waits for its words
    ("GATHER_LATENCY", +1, "sdsa", False, None),
])
def test_a_wrong_model_term_is_caught_by_check_image(t4_run, monkeypatch, term, change, kind, folded, diff):
    image, results, golden = t4_run
    monkeypatch.setattr(cycles, term, getattr(cycles, term) + change)
    pc, name = _first(image, kind, folded=folded)
    want = instruction_cycles(image, golden, 1)[pc].cycles
    got = results[1].layers[pc].cycles
    assert want != got
    delta = rf"\({diff:+d};" if diff is not None else r"\([+-]\d+;"
    message = rf"image 1, instruction {pc} {name} \({kind}\): cycle model {want} cycles, RTL {got} {delta}"
    with pytest.raises(MismatchError, match=message):
        check_image(image, results[1], golden, 1)
    with pytest.raises(CycleMismatchError, match=message):
        check_cycles(image, results[1].layers, golden, 1)


def test_traffic_model_equals_the_rtl_on_every_memory(t4_run):
    """Every memory and direction of every instruction: the counters the core reports equal
    ``layer_traffic`` of the cycle model's work (check_cycles compares them; here spelled out)."""
    image, results, golden = t4_run
    for b, result in enumerate(results):
        model = check_cycles(image, result.layers, golden, b)
        for m, stats in zip(model, result.layers):
            assert {k: v for k, v in m.traffic.items() if v != (0, 0)} == \
                {k: v for k, v in stats.traffic.items() if v != (0, 0)}, (b, m.pc, m.name)
    totals = {}
    for stats in results[0].layers:
        for memory, (r, w) in stats.traffic.items():
            t = totals.setdefault(memory, [0, 0])
            t[0], t[1] = t[0] + r, t[1] + w
    print("image 0, words read / written: " + ", ".join(f"{k} {r:,d}/{w:,d}" for k, (r, w) in totals.items()))


def test_a_wrong_traffic_term_is_caught_by_check_image(t4_run, monkeypatch):
    """A wrong model term (the gatherer reading only q and k, as if v cost nothing) is caught at
    the first SDSA instruction, naming image, instruction, memory, direction, model and RTL."""
    from hwgen.compiler import kinds

    image, results, golden = t4_run
    pc, name = _first(image, "sdsa")
    got = results[1].layers[pc].traffic["spikes"][0]
    monkeypatch.setattr(kinds, "input_fields", lambda variant: ("q", "k"))
    want = instruction_cycles(image, golden, 1)[pc].traffic["spikes"][0]
    assert want * 3 == got * 2
    message = rf"image 1, instruction {pc} {name} \(sdsa\): traffic model {want} spikes reads, RTL {got} \(\+{got - want}\)"
    with pytest.raises(MismatchError, match=message):
        check_image(image, results[1], golden, 1)


def test_an_rtl_traffic_counter_off_by_one_is_caught(t4_run):
    """One counter of the RTL's result off by one (the folded head's accumulator writes) is named."""
    image, results, golden = t4_run
    pc, name = _first(image, "linear", folded=True)
    stats = results[1].layers[pc]
    reads, writes = stats.traffic["accumulators"]
    wrong = dataclasses.replace(stats, traffic={**stats.traffic, "accumulators": (reads, writes + 1)})
    result = dataclasses.replace(results[1], layers=[*results[1].layers[:pc], wrong, *results[1].layers[pc + 1:]])
    message = rf"image 1, instruction {pc} {name} \(linear\): traffic model {writes} accumulators writes, RTL {writes + 1} \(\+1\)"
    with pytest.raises(MismatchError, match=message):
        check_image(image, result, golden, 1)


def _spike_map(rng, shape, kind: str):
    """Spike maps that stress the feeder and the accumulator differently."""
    T, C = shape[:2]
    if kind == "none":
        return np.zeros(shape, np.int8)
    if kind == "all":
        return np.ones(shape, np.int8)
    if kind.startswith("rate"):
        return (rng.random(shape) < float(kind[4:])).astype(np.int8)
    flat = np.zeros((T, C, int(np.prod(shape[2:]))), np.int8)
    if kind == "bursts":        # a few dense positions between long runs of zero words
        at = rng.choice(flat.shape[2], size=max(1, flat.shape[2] // 10), replace=False)
        flat[:, :, at] = rng.random((T, C, len(at))) < 0.8
    elif kind == "one_channel":  # one event per word: the feeder's pace
        flat[:, rng.integers(C)] = rng.random((T, flat.shape[2])) < 0.5
    elif kind == "per_timestep":  # a different rate at every timestep
        for t, p in enumerate(rng.choice([0.0, 0.01, 0.1, 0.5, 0.9], T)):
            flat[t] = rng.random(flat.shape[1:]) < p
    return flat.reshape(shape)


MAPS = ["none", "all", "rate0.003", "rate0.03", "rate0.3", "bursts", "one_channel", "per_timestep"]


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["downsample1_1.encode_conv", "ConvBlock1_1.0.Conv.dwconv_pwconv2",
                                   "downsample1_2.encode_conv", "ConvBlock1_2.0.Conv.pwconv1", "block3.0.attn.sdsa",
                                   "block4.0.mlp.fc1_conv", "head"])
def test_model_equals_the_rtl_on_adversarial_spike_maps(digits_program, tmp_path, layer):
    """One layer of the digits model (T = 4) as a slice, its inputs preloaded with spike maps from
    empty to dense, bursts, one channel and a rate per timestep (pixels: black, white, random,
    sparse): the model equals the RTL on every map (a minute per layer)."""
    hw = load_config(CONFIGS / "digits.yaml")
    program = load_program(digits_program)
    names = [x.name for x in program.layers]
    image = compile_program(program, hw, layers=slice(names.index(layer), names.index(layer) + 1))
    by_name = {x.name: x for x in program.layers}
    rng = np.random.default_rng(20261201)
    T, n = program.T, len(MAPS)
    preload, tensors = [], []
    for kind in MAPS:
        values = {}
        for name in image.preloaded:
            src = by_name[name]
            shape = (T, *src.shape)
            values[name] = (_spike_map(rng, shape, kind) if src.kind in ("lif", "mask")
                            else rng.integers(-5, 5, size=shape))
        preload.append(values)
        tensors.append({k: v[:, None] for k, v in values.items()})
    pixels = rng.integers(0, 256, size=(n, *program.header["input"]["shape"]))
    pixels[0], pixels[1], pixels[3] = 0, 255, pixels[3] * (rng.random(pixels.shape[1:]) < 0.05)
    results = run_core(image, pixels, work=tmp_path / "sim", preload=preload)
    for b, (kind, result) in enumerate(zip(MAPS, results)):
        tensors[b][INPUT] = np.broadcast_to(pixels[b][None, None], (T, 1, *pixels.shape[1:]))
        check_cycles(image, result.layers, tensors[b], 0, index=b)
