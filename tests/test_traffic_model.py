"""The memory-traffic model (hwgen.perf.memory.layer_traffic, the kinds' ``traffic`` hooks) on a
real program, without a simulator: the estimate's traffic from the datapath's exact work equals
the cycle model's per instruction (which ``check_image`` holds to the RTL's traffic counters,
rtl_tests/test_cycle_model_rtl.py), and the check names the memory, the direction, model and RTL
of a counter that differs."""
import dataclasses

import numpy as np
import pytest
import torch

from contract.config import load_config
from contract.program import load_program
from golden.intsim import IntegerEngine
from hwgen.compiler import compile_program
from hwgen.compiler.cycles import CycleMismatchError, check_cycles, instruction_cycles
from hwgen.estimate import estimate
from hwgen.perf.memory import MEMORIES
from hwgen.sim.simulate import load_images
from tests.conftest import REPO


@pytest.fixture(scope="module")
def digits_image(digits_t4_program):
    """(core image, golden tensors of one test image) of the digits model at T = 4."""
    program = load_program(digits_t4_program)
    image = compile_program(program, load_config(REPO / "configs" / "hw" / "digits.yaml"))
    pixels, _, _ = load_images(program, digits_t4_program, 1)
    with torch.no_grad():
        golden = {k: v.numpy() for k, v in IntegerEngine(program).run(torch.from_numpy(pixels)).items()}
    return image, golden


def test_estimate_traffic_equals_the_cycle_models(digits_t4_program):
    """Per layer and memory, ``hwgen estimate``'s words (layer_traffic of datapath_work on the
    image's tensors) equal the cycle model's (layer_traffic of the work its walk counts)."""
    seen = []

    def model(image, tensors, b):
        got = instruction_cycles(image, tensors, b)
        seen.append(got)
        return got

    run = estimate(digits_t4_program, images="digits:test", count=1, cycle_model=model, log=lambda m: None)
    assert len(seen) == 1
    kinds = set()
    for row, m in zip(run["layers"], seen[0]):
        want = {k: v for k, v in m.traffic.items() if v != (0, 0)}
        got = {k: (int(r), int(w)) for k, (r, w) in row["memory"].items() if (r, w) != (0, 0)}
        assert all(float(r).is_integer() and float(w).is_integer() for r, w in row["memory"].values()), row["name"]
        assert got == want, row["name"]
        kinds.add(row["kind"])
    assert {"conv", "lif", "sdsa", "token_sum", "linear", "readout"} <= kinds


def test_traffic_of_every_instruction_by_hand(digits_image):
    """Hand-derived counts of one instruction per op, from its instruction fields."""
    image, golden = digits_image
    model = instruction_cycles(image, golden, 0)
    T = image.program.T
    for m, fields in zip(model, image.instructions):
        assert set(m.traffic) == set(MEMORIES) and m.traffic["program"] == (1, 0)
        if m.kind == "lif":
            n = fields["count"]
            # chained to the CONV before it: its currents come from the drain, not the int memory
            assert m.traffic["ints"] == (0 if fields.get("chain") else n, 0) and m.traffic["spikes"] == (0, n)
            assert m.traffic["membranes"] == (n, n) and m.traffic["thresholds"] == (n, 0)
        elif m.kind in ("conv", "linear"):
            D, ops = fields["desc"]["drain_words"], m.terms["operations"]
            scanned = T * fields["in_h"] * fields["in_w"] * fields["in_words"]
            assert m.traffic["pixels" if fields["pixels"] else "spikes"] == (scanned, 0)
            assert m.traffic["weights"] == (ops, 0) and m.traffic["biases"] == (T * D, 0)
            assert m.traffic["accumulators"] == (ops + T * D, ops + T * D)
            assert m.traffic["ints"] == (T * D if fields.get("residual") else 0, T * D)
        elif m.kind == "sdsa":
            words = 2 * fields["tokens"] * fields["in_words"]           # SDSA-3: two passes
            assert m.traffic["spikes"] == (T * words * 3, 0)            # q, k and v words each
            assert m.traffic["ints"] == (0, image.regions[m.name].size)
            assert m.traffic["kv"][0] >= m.traffic["kv"][1] > 0


def test_check_names_the_memory_direction_model_and_rtl(digits_image):
    """The model's own counts as the "RTL" pass; one counter off fails, naming it."""
    image, golden = digits_image
    model = instruction_cycles(image, golden, 0)
    pc = next(m.pc for m in model if m.kind == "lif")
    rtl = [dataclasses.replace(m) for m in model]
    check_cycles(image, rtl, golden, 0, model=model)
    reads, writes = rtl[pc].traffic["membranes"]
    rtl[pc] = dataclasses.replace(rtl[pc], traffic={**rtl[pc].traffic, "membranes": (reads, writes - 1)})
    name = model[pc].name
    with pytest.raises(CycleMismatchError, match=rf"image 3, instruction {pc} {name} \(lif\): traffic model "
                                                 rf"{writes} membranes writes, RTL {writes - 1} \(-1\)"):
        check_cycles(image, rtl, golden, 0, index=3, model=model)
    # a memory the RTL counts and the model does not know is a mismatch too, not ignored
    extra = [dataclasses.replace(m, traffic={**m.traffic, "dram": (1, 0)}) for m in model]
    with pytest.raises(CycleMismatchError, match=r"instruction 0 .*: traffic model 0 dram reads, RTL 1 \(\+1\)"):
        check_cycles(image, extra, golden, 0, model=model)
    assert np.array_equal([m.cycles for m in model], [m.cycles for m in rtl])
