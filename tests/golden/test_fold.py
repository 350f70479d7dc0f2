"""Tests for golden.fold: each folding function, and the folded program against the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from golden.fold import (
    INPUT,
    AttentionStep,
    ConvStep,
    FoldedModel,
    LIFStep,
    fold_bn,
    fold_model,
    fold_repconv,
    fuse_dw_pw,
)
from golden.model import RepConv, SepConv, metaspikeformer_tiny, randomize_statistics
from golden.neuron import iter_lif_nodes, set_record


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the reference's largest magnitude."""
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


# ------------------------------------------------------------------------------------------
# Pure functions
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2])
def test_fold_bn_conv(dim):
    torch.manual_seed(0)
    conv = (nn.Conv1d(6, 5, 3, padding=1) if dim == 1 else nn.Conv2d(6, 5, 3, padding=1)).double()
    bn = (nn.BatchNorm1d(5) if dim == 1 else nn.BatchNorm2d(5)).double()
    randomize_statistics(bn, 1)
    bn.eval()
    x = torch.randn(2, 6, *([9] * dim), dtype=torch.float64)
    w, b = fold_bn(conv.weight, conv.bias, bn)
    conv_fn = F.conv1d if dim == 1 else F.conv2d
    assert max_rel(bn(conv(x)), conv_fn(x, w, b, padding=1)) < 1e-12
    assert w.shape == conv.weight.shape and b.shape == (5,)


def test_fold_bn_without_bias_and_dtype_kept():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1, bias=False)
    bn = nn.BatchNorm2d(4)
    randomize_statistics(bn, 2)
    bn.eval()
    w, b = fold_bn(conv.weight, None, bn)
    assert w.dtype == torch.float32 and b.dtype == torch.float32
    x = torch.randn(2, 3, 5, 5)
    assert max_rel(bn(conv(x)), F.conv2d(x, w, b)) < 1e-6
    assert conv.weight.grad is None and not w.requires_grad  # pure: a new, detached tensor


@pytest.mark.parametrize("binary", [False, True])
def test_fold_repconv_matches_module(binary):
    torch.manual_seed(0)
    rep, bn = RepConv(6, 8).double(), nn.BatchNorm2d(8).double()
    randomize_statistics(rep, 3)
    randomize_statistics(bn, 4)
    rep.eval(), bn.eval()
    x = torch.randn(3, 6, 7, 5, dtype=torch.float64)
    if binary:
        x = (x > 0.3).double()
    w, b = fold_repconv(rep, bn)
    assert w.shape == (8, 6, 3, 3) and b.shape == (8,)
    assert max_rel(bn(rep(x)), F.conv2d(x, w, b, padding=1)) < 1e-12
    # The border pixels carry the BN pad value: a fold that ignored it would fail here.
    assert max_rel(bn(rep(x))[..., 0, :], F.conv2d(x, w, b, padding=1)[..., 0, :]) < 1e-12


def test_fold_repconv_float32_within_1e5():
    torch.manual_seed(0)
    rep, bn = RepConv(16, 16), nn.BatchNorm2d(16)
    randomize_statistics(rep, 5)
    randomize_statistics(bn, 6)
    rep.eval(), bn.eval()
    x = (torch.rand(2, 16, 6, 6) > 0.5).float()
    w, b = fold_repconv(rep, bn)
    assert max_rel(bn(rep(x)), F.conv2d(x, w, b, padding=1)) < 1e-5


def test_fuse_dw_pw_with_bn2_matches_sepconv_tail():
    torch.manual_seed(0)
    sep = SepConv(dim=5).double()
    randomize_statistics(sep, 7)
    sep.eval()
    s = (torch.rand(2, 10, 9, 9, dtype=torch.float64) > 0.6).double()  # lif2 spikes, 2C channels
    w, b = fuse_dw_pw(sep.dwconv.weight, sep.pwconv2.weight, sep.bn2)
    assert w.shape == (5, 10, 7, 7)
    # pw2[o, i] * dw[i] is the fused kernel, checked directly on one entry
    assert torch.allclose(w[2, 3] / sep.bn2.weight[2] * torch.sqrt(sep.bn2.running_var[2] + sep.bn2.eps),
                          sep.pwconv2.weight[2, 3, 0, 0] * sep.dwconv.weight[3, 0])
    expected = sep.bn2(sep.pwconv2(sep.dwconv(s)))
    assert max_rel(expected, F.conv2d(s, w, b, padding=3)) < 1e-12


def test_fuse_dw_pw_biases():
    torch.manual_seed(0)
    dw = nn.Conv2d(4, 4, 3, padding=1, groups=4).double()
    pw = nn.Conv2d(4, 3, 1).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w, b = fuse_dw_pw(dw.weight, pw.weight, dw_bias=dw.bias, pw_bias=pw.bias)
    assert max_rel(pw(dw(x)), F.conv2d(x, w, b, padding=1)) < 1e-12


def test_fuse_dw_pw_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="depthwise"):
        fuse_dw_pw(torch.zeros(4, 2, 3, 3), torch.zeros(3, 4, 1, 1))
    with pytest.raises(ValueError, match="pw_weight must be"):
        fuse_dw_pw(torch.zeros(4, 1, 3, 3), torch.zeros(3, 5, 1, 1))


# ------------------------------------------------------------------------------------------
# Folded model
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(11))


def _model(**kwargs):
    torch.manual_seed(0)
    model = metaspikeformer_tiny(T=2, **kwargs)
    randomize_statistics(model, 0)
    return model.eval()


@pytest.mark.parametrize(
    "kwargs",
    [{"sdsa_variant": 1}, {"sdsa_variant": 2}, {"sdsa_variant": 3}, {"sdsa_variant": 4, "kd": True},
     {"head_input": "membrane", "kd": True}],
    ids=["sdsa1", "sdsa2", "sdsa3", "sdsa4-kd", "membrane-head-kd"],
)
def test_folded_model_equals_model(kwargs, images):
    model = _model(**kwargs)
    folded = fold_model(model)
    set_record(model, True)
    folded.set_record(True)
    with torch.no_grad():
        expected = model(images)
        got = folded(images)
    assert max_rel(expected, got) < 1e-5
    # Every neuron sees the same membrane (to float rounding) and fires identically.
    nodes = dict(iter_lif_nodes(model))
    lif_steps = [s for s in folded if s.kind == "lif"]
    assert [s.name for s in lif_steps] == list(nodes)  # same neurons, same (execution) order
    rates = []
    for step in lif_steps:
        node = nodes[step.name]
        h_model = node.last_membrane.reshape(step.last_membrane.shape)
        assert max_rel(h_model, step.last_membrane) < 1e-5, step.name
        assert torch.equal(node.last_spikes.reshape(step.last_spikes.shape), step.last_spikes), step.name
        assert step.v_threshold == node.threshold_value()
        rates.append(step.last_spikes.mean().item())
    # The comparison is not vacuous: almost every layer fires, none saturates.
    assert sum(0 < r < 1 for r in rates) >= len(rates) - 2
    assert expected.std() > 0
    folded.set_record(False)
    assert all(s.last_membrane is None and not s.record for s in lif_steps)


def test_folded_program_structure():
    model = _model(sdsa_variant=3)
    folded = fold_model(model)
    convs = [s for s in folded if isinstance(s, ConvStep)]
    # 5 downsamplers + 4 conv blocks x 4 convs + 2 transformer blocks x (4 RepConvs + 2 MLP convs)
    assert len(convs) == 5 + 4 * 4 + 2 * 6
    first = folded.steps[0]
    assert isinstance(first, ConvStep) and first.src == INPUT and not first.spike_input
    assert (first.kernel_size, first.stride, first.padding) == (7, 2, 3)
    kinds = {s.name: s.kind for s in folded}
    for conv in convs[1:]:
        assert kinds[conv.src] in ("lif", "mask"), conv.name  # spikes in
        assert conv.groups == 1  # everything dense after folding
    fused = folded.step("ConvBlock1_1.0.Conv.dwconv_pwconv2")
    assert (fused.in_channels, fused.out_channels, fused.kernel_size, fused.padding) == (16, 8, 7, 3)
    assert fused.residual == "downsample1_1.encode_conv"
    assert fused.sources == ("ConvBlock1_1.0.Conv.dwconv", "ConvBlock1_1.0.Conv.pwconv2",
                             "ConvBlock1_1.0.Conv.bn2")
    q = folded.step("block3.0.attn.q_conv")
    assert (q.kernel_size, q.padding, q.src) == (3, 1, "block3.0.attn.head_lif")
    proj = folded.step("block3.0.attn.proj_conv")
    assert proj.src == "block3.0.attn.attn_lif" and proj.residual == "downsample3.encode_conv"
    fc2 = folded.step("block3.0.mlp.fc2_conv")
    assert fc2.kernel_size == 1 and fc2.residual == "block3.0.attn.proj_conv"
    sdsa = folded.step("block3.0.attn.sdsa")
    assert isinstance(sdsa, AttentionStep) and sdsa.inputs == (
        "block3.0.attn.q_lif", "block3.0.attn.k_lif", "block3.0.attn.v_lif")
    assert [s.name for s in folded.consumers("block3.0.attn.sdsa")] == ["block3.0.attn.attn_lif"]
    attn_lif = folded.step("block3.0.attn.attn_lif")
    assert isinstance(attn_lif, LIFStep) and attn_lif.v_threshold == 0.5
    assert [(s.name, s.kind) for s in folded.steps[-4:]] == [
        ("token_mean", "token_mean"), ("lif", "lif"), ("head", "linear"), ("logits", "readout")]
    # Folding left the model alone.
    assert model.block3[0].attn.q_conv[1].running_var.min() >= 0.5


def test_sdsa2_program_has_no_k_and_masks_v():
    folded = fold_model(_model(sdsa_variant=2))
    names = {s.name for s in folded}
    assert "block3.0.attn.k_conv" not in names and "block3.0.attn.k_lif" not in names
    mask = folded.step("block3.0.attn.mask")
    assert mask.inputs == ("block3.0.attn.attn_lif", "block3.0.attn.v_lif")
    assert folded.step("block3.0.attn.proj_conv").src == "block3.0.attn.mask"


def test_trace_returns_every_tensor_in_order(images):
    folded = fold_model(_model())
    with torch.no_grad():
        env = folded.trace(images)
        logits = folded(images)
    assert list(env) == [INPUT] + [s.name for s in folded]
    assert torch.equal(env["logits"], logits)
    assert env[INPUT].shape == (2, 2, 1, 64, 64)
    assert env["block3.0.attn.q_conv"].shape == (2, 2, 64, 4, 4)


def test_folded_model_rejects_bad_programs():
    w, b = torch.zeros(2, 1, 1, 1), torch.zeros(2)
    with pytest.raises(ValueError, match="reads \\['nowhere'\\] before"):
        FoldedModel([ConvStep("c", "nowhere", w, b)], T=1, output="c")
    with pytest.raises(ValueError, match="not unique"):
        FoldedModel([ConvStep("c", INPUT, w, b), ConvStep("c", INPUT, w, b)], T=1, output="c")
    with pytest.raises(ValueError, match="output must be"):
        FoldedModel([ConvStep("c", INPUT, w, b)], T=1, output="d")
