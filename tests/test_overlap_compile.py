"""The compiler's side of the overlap (docs/core.md, "Overlap"): which CONV and LIF pairs chain,
where their tensors go, and the network bound with overlapped units."""
from __future__ import annotations

from contract.config import load_config
from contract.program import load_program
from hwgen.compiler import compile_program
from hwgen.compiler.cycles import network_bounds
from hwgen.compiler.image import chain_conv_lif, chained_lif
from hwgen.core.isa import Op
from hwgen.sim.runner import REPO_ROOT


def _image(program_dir, chain=True):
    return compile_program(load_program(program_dir), load_config(REPO_ROOT / "configs" / "hw" / "digits.yaml"),
                           chain=chain)


def test_each_conv_chains_with_the_lif_reading_its_output_apart_from_its_inputs(digits_t4_program):
    image = _image(digits_t4_program)
    ins = image.instructions
    pairs = [(pc - 1, pc) for pc, f in enumerate(ins) if chained_lif(f)]
    assert len(pairs) == 32 and sum(f["op"] == Op.CONV for f in ins) == 34     # 33 convs and the head
    for c, l in pairs:
        conv, lif = ins[c], ins[l]
        assert conv["op"] == Op.CONV and conv["chain"] and lif["a_base"] == conv["dst_base"]
        assert lif["count"] == conv["timesteps"] * conv["desc"]["drain_words"]
        if not conv["pixels"]:      # the LIF writes spikes while the CONV still reads its later timesteps
            read = range(conv["a_base"], conv["a_base"] + conv["timesteps"] * conv["a_step"])
            written = range(lif["dst_base"], lif["dst_base"] + lif["count"])
            assert read.stop <= written.start or written.stop <= read.start, (c, image.layers[c].name)
    # off: nothing chained; placed without the rule, most LIFs land on their CONV's input, and the
    # pass's own address check refuses to chain those
    plain = _image(digits_t4_program, chain=False)
    assert not any(f.get("chain") for f in plain.instructions)
    assert 0 < chain_conv_lif(plain.instructions) < 32


def test_a_lif_over_its_convs_input_is_not_chained():
    conv = {"op": Op.CONV, "timesteps": 2, "a_base": 100, "a_step": 10, "dst_base": 0, "dst_step": 4,
            "pixels": 0, "desc": {"drain_words": 4}}
    lif = {"op": Op.LIF, "timesteps": 2, "a_base": 0, "beats": 4, "count": 8, "dst_base": 200}
    assert chain_conv_lif([dict(conv), dict(lif)]) == 1
    assert chain_conv_lif([dict(conv), {**lif, "dst_base": 115}]) == 0      # spikes over timestep 1's input
    assert chain_conv_lif([dict(conv), {**lif, "a_base": 4}]) == 0          # not the CONV's output


def test_network_bounds_count_a_chained_pair_once_by_its_busier_unit():
    rows = [{"bound": 100, "unit": "accumulator"}, {"bound": 30, "unit": "lif"},
            {"bound": 50, "unit": "sdsa"}, {"bound": 20, "unit": "lif"}]
    ins = [{"op": Op.CONV, "chain": 1}, {"op": Op.LIF, "chain": 1}, {"op": Op.SDSA}, {"op": Op.LIF}]
    assert network_bounds(rows, ins) == {"overlapped": 170.0, "serial": 200.0, "additions": 150.0}
    assert network_bounds(rows, None)["overlapped"] == 200.0
