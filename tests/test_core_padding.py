"""Head padding (hwgen/compiler/padding.py): the padded program computes the same integers on the
real channels and zeros on the padding channels, layer by layer, on real images."""
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.config import load_config
from golden.intsim import IntegerEngine
from hwgen.compiler.padding import PaddingError, pad_heads

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def program():
    from golden.digits import PIXEL_LEVELS
    from golden.export import load_model
    from golden.fold import fold_model
    from golden.quantize import quantize

    model = load_model(REPO / "checkpoints" / "digits_sdsa3_t4.pth")
    return quantize(fold_model(model), load_config(REPO / "configs" / "hw" / "digits16.yaml"),
                    input_scale=1 / PIXEL_LEVELS, input_shape=[1, 32, 32])


def test_padded_program_equals_the_original_on_real_channels(program):
    from golden.digits import load_digits_split

    padded, maps = pad_heads(program, 16, 65535)
    # block4 has 2 heads of 24: padded to 32 (block3's heads of 16 need nothing)
    assert set(maps) == {f"block4.0.attn.{n}" for n in ("q_conv", "k_conv", "v_conv", "q_lif", "k_lif", "v_lif",
                                                          "sdsa", "attn_lif")}
    assert list(maps["block4.0.attn.sdsa"]) == [*range(24), *range(32, 56)]
    assert padded.layer("block4.0.attn.sdsa").attrs["head_dim"] == 32
    assert padded.layer("block4.0.attn.proj_conv").attrs["in_channels"] == 64
    _, _, x_test, _ = load_digits_split(size=32)
    engine = IntegerEngine(program)
    pixels = engine.encode(x_test[:6])
    want = engine.run(pixels)
    got = IntegerEngine(padded).run(pixels)
    for name, value in want.items():
        g = got[name]
        base = name.removesuffix(".membrane")
        if base in maps:
            index = maps[base]
            rest = np.delete(g.numpy(), index, axis=2)
            assert np.array_equal(g[:, :, index].numpy(), value.numpy()), name
            if not name.endswith(".membrane"):
                assert not rest.any(), f"{name}: padding channels not zero"
        else:
            assert torch.equal(g, value), name


def test_nothing_to_pad_returns_the_program(program):
    same, maps = pad_heads(program, 8, 65535)
    assert same is program and maps == {}


def test_a_padded_tensor_with_another_reader_is_refused(program):
    import copy
    bad = copy.deepcopy(program)
    proj = bad.layer("block4.0.attn.proj_conv")     # the attention values as its residual
    proj.inputs[1] = proj.attrs["residual"] = "block4.0.attn.sdsa"
    with pytest.raises(PaddingError, match="block4.0.attn.proj_conv: reads the padded block4.0.attn.sdsa other than"):
        pad_heads(bad, 16, 65535)
