"""Parameter placement (hwgen.compiler.placement): the memory images of an exported program.

A small random Meta-SpikeFormer's weights, biases and thresholds, placed in the hardware's word
layout: the files agree with the map, a conv's weights sit at its offset, placement leaves the
program untouched, and a program too big for a memory is refused before anything is written.
"""
import copy
import json

import numpy as np
import pytest

from contract.config import load_config
from golden.export import load_model
from golden.fold import fold_model
from golden.quantize import quantize
from hwgen.compiler.placement import (
    MemoryFitError,
    place_parameters,
    write_memory_images,
)
from hwgen.hexfile import read_words, unpack_fields
from hwgen.layout import weight_words

HW = load_config("configs/hw/digits.yaml")


@pytest.fixture(scope="module")
def program():
    model = load_model(None, model_name="metaspikeformer_tiny", random_init=3, T=2)
    return quantize(fold_model(model), HW, input_scale=1 / 16, input_shape=[1, 32, 32], model_name="tiny")


def test_memories_match_the_map(tmp_path, program):
    placement = write_memory_images(program, tmp_path / "memories")
    mems = json.loads((tmp_path / "memories" / "memory_map.json").read_text())
    for name in ("weights", "biases", "thresholds"):
        mem = mems[name]
        lines = (tmp_path / "memories" / f"{name}.hex").read_text().splitlines()
        assert len(lines) == mem["words"] == placement.words(name) and mem["fits"]
        assert all(len(line) == (mem["lanes"] * mem["width"] + 3) // 4 for line in lines[:100])
    # a conv's weights sit at its offset in the accumulator array's word layout
    layer = [layer for layer in program.layers if layer.kind == "conv"][2]
    where = mems["layers"][layer.name]
    lanes, width = mems["weights"]["lanes"], mems["weights"]["width"]
    words = unpack_fields(read_words(tmp_path / "memories" / "weights.hex", lanes * width), lanes, width, signed=True)
    expect = weight_words(program.array(layer, "weight"), layer.attrs["groups"], lanes,
                          fold=where["descriptor"]["fold_slots"])
    off = where["weight_offset"]
    assert np.array_equal(words[off:off + len(expect)], expect)
    assert where["descriptor"]["w_offset"] == off == placement.layers[layer.name].weight_offset


def test_placement_does_not_touch_the_program(program):
    before = copy.deepcopy([(layer.name, layer.attrs) for layer in program.layers])
    place_parameters(program)
    assert [(layer.name, layer.attrs) for layer in program.layers] == before


def test_program_too_big_for_memories_is_refused(tmp_path, program):
    small = copy.deepcopy(program)
    small.header["hw"]["accumulator"]["weight_depth"] = 1000
    with pytest.raises(MemoryFitError, match=r"weights memory: the program needs \d+ words, the hardware has 1000"):
        write_memory_images(small, tmp_path / "memories")
    assert not (tmp_path / "memories").exists()
