"""A core with external weights (docs/core.md, "Weights from external memory"), without
simulating it: the ports, the memory model's options, the loads, the memories and their bits."""
from pathlib import Path

import pytest

from contract.config import load_config
from hwgen.compiler.cycles import cycles_modelled
from hwgen.core.isa import Target
from hwgen.core.top import NeuromorphicCore
from hwgen.perf.memory import EXTERNAL_PJ_PER_BIT, SramModel, core_memories, on_chip_bits
from hwgen.sim.core import memory_model, script_lines

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "hw"


@pytest.fixture(scope="module")
def ext():
    return load_config(CONFIGS / "digits_external.yaml")


@pytest.fixture(scope="module")
def onchip():
    return load_config(CONFIGS / "digits.yaml")


def test_the_core_exposes_the_weight_stream_and_reports_stalls(ext, onchip):
    members = NeuromorphicCore(ext).signature.members
    assert "weight_read" in members and "weight_stalls" in members["layer"].signature.members
    plain = NeuromorphicCore(onchip).signature.members
    assert "weight_read" not in plain and "weight_stalls" not in plain["layer"].signature.members


def test_memory_model_defaults_and_limits(ext):
    assert memory_model(ext) == {"latency": 100, "bandwidth": 1}
    assert memory_model(ext, 400, 2) == {"latency": 400, "bandwidth": 2}
    with pytest.raises(ValueError, match="latency 1: the model takes 2 .. 65535 cycles"):
        memory_model(ext, 1, 1)
    with pytest.raises(ValueError, match=r"bandwidth 3: 1 .. accumulator.weight_port_words = 2"):
        memory_model(ext, 100, 3)


def test_memory_options_refused_for_onchip_weights(onchip):
    assert memory_model(onchip) is None
    with pytest.raises(ValueError, match=r"accumulator.weights = 'onchip'.*--mem-latency"):
        memory_model(onchip, latency=100)


def test_a_weight_load_into_the_core_is_refused_naming_the_key(ext, onchip):
    loads = [(Target.WEIGHTS, 5, 0x1234), (Target.BIASES, 0, 7)]
    with pytest.raises(ValueError, match=r"accumulator.weights = 'external': the core has no weight memory"):
        script_lines(ext, loads)
    assert script_lines(ext, loads, external_memory=True) == ["3 0 5 1234", "0 2 0 7"]
    assert script_lines(onchip, loads) == ["0 1 5 1234", "0 2 0 7"]


def test_cycles_are_modelled_for_onchip_weights_only(ext, onchip):
    assert cycles_modelled(onchip) and not cycles_modelled(ext)


def test_the_weight_memory_is_external_and_the_buffer_on_chip(ext, onchip):
    mems = core_memories(ext)
    assert mems["weights"].external and mems["weights"].bits == 0
    assert mems["weight_buffer"].bits == 2 * 255 * 8 * 8     # two FIFOs of 256 words, each head in a register
    bits, plain = on_chip_bits(ext), on_chip_bits(onchip)
    assert "weights" not in bits and plain["weights"] == 131072 * 64
    assert bits["total"] == plain["total"] - plain["weights"] + bits["weight_buffer"] + bits["event_queue"]
    # a word from outside: its 64 bits at the DRAM figure, plus the buffer's write and read
    buffer = mems["weight_buffer"].access_pj(SramModel())
    assert mems["weights"].access_pj(SramModel()) == pytest.approx(64 * EXTERNAL_PJ_PER_BIT + 2 * buffer)
