"""Quantizer and integer engine on a small random Meta-SpikeFormer (all four stages, T = 4).

Exactness of the engine (same integers twice, across batch sizes, and layer by layer from
exported traces), the width proofs, and the error report of a configuration that is too narrow.
"""
import dataclasses

import numpy as np
import pytest
import torch

from contract.config import load_config
from contract.program import load_program
from golden.export import export_program, load_model, load_traces, replay
from golden.fold import fold_model
from golden.intsim import IntegerEngine
from golden.quantize import QuantizationError, quantize, signed_bits

HW = load_config("configs/hw/digits.yaml")
SHAPE = [1, 32, 32]


@pytest.fixture(scope="module")
def folded():
    model = load_model(None, model_name="metaspikeformer_tiny", random_init=3, T=4)
    # strong positive BN shifts so that most layers fire
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.bias.data.uniform_(0.3, 1.2)
    return fold_model(model)


@pytest.fixture(scope="module")
def program(folded):
    return quantize(folded, HW, input_scale=1 / 16, input_shape=SHAPE, model_name="tiny")


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 17, (6, *SHAPE), generator=gen).float() / 16


def test_signed_bits():
    assert [signed_bits(0, 0), signed_bits(-1, 0), signed_bits(0, 1), signed_bits(-128, 127), signed_bits(0, 128)] == [1, 1, 2, 8, 9]


def test_program_shape_and_thresholds(program):
    kinds = [layer.kind for layer in program.layers]
    assert kinds[0] == "conv" and kinds[-1] == "readout"
    assert {"conv", "lif", "sdsa", "token_sum", "linear"} <= set(kinds)
    for layer in program.layers:
        if layer.kind == "conv":
            w = program.array(layer, "weight")
            assert np.abs(w).max() <= 127
            assert layer.attrs["acc_bits"] <= HW.accumulator.accumulator_width
        if layer.kind == "lif" and layer.name.endswith("attn_lif"):
            # SDSA-3: 0.125 * A >= 0.5  <=>  A >= 4, exactly
            assert program.array(layer, "threshold").tolist() == [4] * layer.attrs["channels"]
            assert layer.attrs["input_shift"] == 0 and layer.attrs["exact_threshold"]


def test_shortcut_streams_share_scales(program):
    """Convs adding into one membrane shortcut use one per-channel scale."""
    by = {layer.name: layer for layer in program.layers}
    for layer in program.layers:
        if layer.kind == "conv" and layer.attrs["residual"]:
            assert layer.attrs["scale"] == by[layer.attrs["residual"]].attrs["scale"], layer.name


def test_engine_is_deterministic_and_batch_independent(program, images):
    eng = IntegerEngine(program)
    px = eng.encode(images)
    a = eng.run(px)
    b = eng.run(px)
    singles = [eng.run(px[i:i + 1]) for i in range(len(px))]
    for name, t in a.items():
        assert torch.equal(t, b[name]), name
        if name == "input":
            continue
        axis = 0 if name == program.output else 1
        stacked = torch.cat([s[name] for s in singles], dim=axis)
        assert torch.equal(t, stacked), f"{name}: batch of {len(px)} differs from single images"
    rates = [a[layer.name].float().mean().item() for layer in program.layers if layer.kind == "lif"]
    assert np.mean([r > 0 for r in rates]) > 0.5, f"too few layers fire: {rates}"


def test_engine_tracks_float_model(folded, program, images):
    eng = IntegerEngine(program)
    env = eng.run(eng.encode(images))
    with torch.no_grad():
        ref = folded.trace(images)
    for layer in program.layers:
        if layer.kind == "lif":
            agree = (env[layer.name].float() == ref[layer.name]).float().mean().item()
            assert agree > 0.9, f"{layer.name}: only {agree:.3f} of spikes agree with the float model"


def test_export_replays_layer_by_layer(tmp_path, program, images):
    out = export_program(program, tmp_path / "prog", images=images[:3], log=lambda m: None)
    reloaded = load_program(out)
    traces = load_traces(out)
    assert replay(reloaded, traces) == []
    # the reloaded program computes the same logits as the in-memory one
    eng = IntegerEngine(reloaded)
    assert torch.equal(eng.logits(eng.encode(images[:3])), torch.from_numpy(traces["logits"].astype(np.int64)))
    # a corrupted trace value is found and named
    name = next(layer.name for layer in program.layers if layer.kind == "lif")
    traces[f"{name}.membrane"][0, 0, 0, 0, 0] += 1
    problems = replay(reloaded, traces)
    assert problems and problems[0].startswith(f"{name}.membrane: at {{'timestep': 0, 'image': 0, 'channel': 0, 'y': 0, 'x': 0}}")


def test_too_narrow_hardware_is_reported_per_layer(folded):
    narrow = dataclasses.replace(HW, accumulator=dataclasses.replace(HW.accumulator, accumulator_width=12, bias_width=12))
    with pytest.raises(QuantizationError) as info:
        quantize(folded, narrow, input_scale=1 / 16, input_shape=SHAPE)
    msg = str(info.value)
    assert "downsample1_1.encode_conv: accumulator needs" in msg
    assert "the hardware has 12:" in msg and "bit(s) short" in msg


def test_weight_bits_change_precision(folded):
    p4 = quantize(folded, HW, weight_bits=4, input_scale=1 / 16, input_shape=SHAPE)
    for layer in p4.layers:
        if layer.kind in ("conv", "linear"):
            w = p4.array(layer, "weight")
            assert -8 <= w.min() and w.max() <= 7, layer.name


def test_mse_clipping_never_increases_weight_error():
    """The per-channel search includes the no-clipping threshold, so its squared weight error is
    never larger; on heavy-tailed weights it is smaller."""
    from golden.quantize import _channel_thresholds

    rng = np.random.default_rng(0)
    w = 0.01 * rng.standard_t(2, size=(16, 200))  # weights are small against the threshold 1.0
    for bits in (4, 6, 8):
        qmax = (1 << (bits - 1)) - 1

        def err(th):
            q = np.clip(np.rint(w * th[:, None]), -qmax - 1, qmax) / th[:, None]
            return ((q - w) ** 2).sum(1)

        plain = _channel_thresholds(w, qmax, 1 << 15, search=False)
        searched = _channel_thresholds(w, qmax, 1 << 15, search=True)
        assert np.all(err(searched) <= err(plain) + 1e-12)
        if bits == 4:
            assert err(searched).sum() < 0.9 * err(plain).sum()


def test_random_init_is_reproducible():
    """`--random-init SEED` names one model: weights and BatchNorm statistics alike, whatever
    the global RNG did before (the seed must be set before the model is built)."""
    torch.manual_seed(12345)
    a = load_model(None, model_name="metaspikeformer_tiny", random_init=3, T=4).state_dict()
    torch.rand(17)
    b = load_model(None, model_name="metaspikeformer_tiny", random_init=3, T=4).state_dict()
    c = load_model(None, model_name="metaspikeformer_tiny", random_init=4, T=4).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
