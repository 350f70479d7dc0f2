"""The core compiler: instructions, tensor placement, and refusals that name what is short."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contract.config import ConfigError, HwConfig, load_config
from contract.program import load_program
from hwgen.compiler import CoreFitError, Region, compile_program, from_words, to_words
from hwgen.core.isa import Op, instruction_layout, pack

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "configs" / "hw" / "digits.yaml"


@pytest.fixture
def program(digits_t4_program):
    return digits_t4_program


def _with_core(**changes) -> HwConfig:
    hw = load_config(DIGITS)
    return dataclasses.replace(hw, core=dataclasses.replace(hw.core, **changes))


def test_pack_agrees_with_the_amaranth_layout():
    layout = instruction_layout(load_config(DIGITS))
    fields = {"op": Op.CONV, "timesteps": 4, "a_base": 1234, "dst_step": 77, "pixels": 1,
              "desc": {"kernel": 7, "padding": 3, "w_offset": 40000, "signed_planes": 1}}
    assert pack(layout, fields) == layout.const(fields).as_value().value
    with pytest.raises(ValueError, match="timesteps = 9999 does not fit"):
        pack(layout, {"timesteps": 9999})


def test_one_instruction_per_layer_and_live_tensors_never_overlap(program):
    prog = load_program(program)
    image = compile_program(prog, load_config(DIGITS))
    assert [layer.name for layer in image.layers] == [layer.name for layer in prog.layers]
    assert len(image.instruction_words()) == len(prog.layers) + 1
    # a tensor is live from the layer that writes it to its last reader
    born = {name: i for i, name in enumerate(image.outputs)}
    dies = dict(born)
    for i, layer in enumerate(image.layers):
        for n in layer.inputs:
            if n in dies:
                dies[n] = i
    for i in range(len(image.layers)):
        live = [image.regions[n] for n in image.outputs if born[n] <= i <= dies[n]]
        for memory in ("ints", "spikes"):
            spans = sorted((r.base, r.base + r.size) for r in live if r.memory == memory)
            for (_, end), (start, _) in zip(spans, spans[1:]):
                assert end <= start, f"overlapping tensors at instruction {i} in {memory}"
    assert image.peak["ints"] <= 16384 and image.peak["spikes"] <= 16384


def test_words_round_trip_in_position_major_order():
    r = Region("ints", 0, 2, 6, 2, 12, (12, 2, 3))
    value = np.arange(2 * 12 * 6).reshape(2, 12, 2, 3)
    words = to_words(value, r, 8)
    assert words.shape == (2 * 6 * 2, 8)
    assert words[1, 0] == value[0, 8, 0, 0] and words[2, 0] == value[0, 0, 0, 1]
    assert (words[1, 4:] == 0).all()                     # channels 12..15 are padding
    assert np.array_equal(from_words(words, r, 8), value)


def test_a_full_int_memory_is_refused_naming_the_shortfall(program):
    with pytest.raises(CoreFitError, match=r"the ints memory is full: \d+ more words needed with \d+ of 2000 "
                                           r"in use: \d+ words short \(core.int_depth\)"):
        compile_program(load_program(program), _with_core(int_depth=2000))


def test_too_few_instructions_are_refused(program):
    with pytest.raises(CoreFitError, match=r"73 layers \+ END need 74 instructions, the core holds 64: "
                                           r"10 short \(core.program_depth\)"):
        compile_program(load_program(program), _with_core(program_depth=64))


def test_a_program_quantized_for_other_widths_is_refused(program):
    hw = load_config(DIGITS)
    other = dataclasses.replace(hw, lif=dataclasses.replace(hw.lif, frac_bits=5))
    with pytest.raises(CoreFitError, match=r"lif.frac_bits: the program was quantized for 6, the core has 5"):
        compile_program(load_program(program), other)


def test_core_config_needs_matching_lanes():
    raw = load_config(DIGITS).to_dict()
    raw["sdsa"]["lanes"] = 4
    with pytest.raises(ConfigError, match=r"sdsa.lanes = 4: must equal lif.lanes \(8\) in a core"):
        HwConfig.from_dict(raw, "x.yaml")
    raw = load_config(DIGITS).to_dict()
    raw["sdsa"]["out_blocks"] = 2
    with pytest.raises(ConfigError, match=r"sdsa.out_blocks = 2: must be 1 in a core"):
        HwConfig.from_dict(raw, "x.yaml")
    raw = load_config(DIGITS).to_dict()
    del raw["sdsa"]
    with pytest.raises(ConfigError, match="needs the sections sdsa"):
        HwConfig.from_dict(raw, "x.yaml")


def test_build_refuses_a_program_that_does_not_fit(program, tmp_path):
    raw = load_config(DIGITS).to_dict()
    raw["core"]["spike_depth"] = 1000
    import yaml
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "hwgen", "build", str(cfg), "--program", str(program), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2
    assert "does not fit" in res.stderr and "spikes memory is full" in res.stderr and "core.spike_depth" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()


def _hwgen(*args):
    return subprocess.run([sys.executable, "-m", "hwgen", *args], cwd=REPO, capture_output=True, text=True)


def test_sim_needs_a_core_config(program):
    res = _hwgen("sim", str(program), "--config", "configs/hw/lif_small.yaml")
    assert res.returncode == 2
    assert "configs/hw/lif_small.yaml: no 'core' section" in res.stderr and "Traceback" not in res.stderr


def test_sim_names_a_missing_program(tmp_path):
    res = _hwgen("sim", str(tmp_path / "nothing"), "--config", str(DIGITS))
    assert res.returncode == 2
    assert str(tmp_path / "nothing") in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
