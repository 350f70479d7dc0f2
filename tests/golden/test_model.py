"""Tests for golden.neuron and golden.model.

Big models are built on the ``meta`` device (shapes only, no memory), so the whole file stays fast.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from golden.model import (
    MODEL_REGISTRY,
    MetaSpikeFormer,
    MSAttention,
    create_model,
    list_models,
    metaspikeformer_55m,
    metaspikeformer_tiny,
    randomize_statistics,
)
from golden.neuron import (
    LearnableThresholdLIFNode,
    MultiStepLIFNode,
    iter_lif_nodes,
    multistep_lif,
    set_record,
)

F64 = torch.float64


def sigmoid_surrogate(x: float, alpha: float = 4.0) -> float:
    """d/dx sigmoid(alpha x), computed independently of the code under test."""
    sg = 1.0 / (1.0 + math.exp(-alpha * x))
    return alpha * sg * (1.0 - sg)




def test_lif_hand_computed_subthreshold():
    # H0 = 0 + (1.5 - 0)/2 = 0.75; H1 = 0.75 + (0.2 - 0.75)/2 = 0.475; H2 = 0.475 + (0.9 - 0.475)/2 = 0.6875
    x = torch.tensor([1.5, 0.2, 0.9], dtype=F64)
    s, h = multistep_lif(x, v_threshold=1.0, return_membrane=True)
    assert torch.equal(s, torch.zeros(3, dtype=F64))
    assert torch.allclose(h, torch.tensor([0.75, 0.475, 0.6875], dtype=F64), rtol=0, atol=1e-12)


def test_lif_hand_computed_fire_reset_and_equality():
    # H0 = 1.0 >= 1 fires (equality fires), V0 = 0; H1 = 0 + (1 - 0)/2 = 0.5, V1 = 0.5;
    # H2 = 0.5 + (3 - 0.5)/2 = 1.75 fires, V2 = 0; H3 = 0 + (0 - 0)/2 = 0.
    x = torch.tensor([2.0, 1.0, 3.0, 0.0])
    s, h = multistep_lif(x, return_membrane=True)
    assert torch.equal(s, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert torch.equal(h, torch.tensor([1.0, 0.5, 1.75, 0.0]))
    assert s.dtype == x.dtype and s.shape == x.shape


def test_lif_attention_threshold_fires_at_integer_eight():
    # SDSA-3 at t=0: attn_lif(0.125 * A) with threshold 0.5 fires iff A >= 8.
    a = torch.tensor([[7.0, 8.0, 9.0]]) * 0.125
    assert torch.equal(multistep_lif(a, v_threshold=0.5), torch.tensor([[0.0, 1.0, 1.0]]))


def test_lif_elementwise_over_trailing_dims():
    x = torch.randn(3, 2, 4, 5, 5)
    s = multistep_lif(x)
    for idx in [(0, 1, 2, 3), (1, 3, 4, 0)]:
        col = x[(slice(None),) + idx]
        assert torch.equal(s[(slice(None),) + idx], multistep_lif(col))


def test_lif_surrogate_gradient_single_step():
    x = torch.tensor([1.5], dtype=F64, requires_grad=True)
    multistep_lif(x).sum().backward()
    # dS/dx = sigma'(H - 1) * dH/dx = sigma'(0.75 - 1) * 0.5
    assert x.grad.item() == pytest.approx(0.5 * sigmoid_surrogate(-0.25), rel=1e-12)
    assert x.grad.item() > 0


def test_lif_gradient_through_membrane_and_detached_reset():
    # No spike at t=0: S1 depends on x0 through V0 = H0: dH1/dx0 = 0.5 * 0.5.
    x = torch.tensor([0.5, 1.0], dtype=F64, requires_grad=True)
    multistep_lif(x)[1].backward()
    h1 = 0.25 + (1.0 - 0.25) / 2
    assert x.grad[0].item() == pytest.approx(0.25 * sigmoid_surrogate(h1 - 1.0), rel=1e-12)
    assert x.grad[1].item() == pytest.approx(0.5 * sigmoid_surrogate(h1 - 1.0), rel=1e-12)
    # Spike at t=0: V0 = H0 * (1 - S0.detach()) = 0, so no gradient reaches x0 (detach_reset).
    x = torch.tensor([2.0, 1.0], dtype=F64, requires_grad=True)
    multistep_lif(x)[1].backward()
    assert x.grad[0].item() == 0.0
    assert x.grad[1].item() == pytest.approx(0.5 * sigmoid_surrogate(0.5 - 1.0), rel=1e-12)


def test_lif_module_records_only_when_asked():
    node = MultiStepLIFNode(v_threshold=1.0)
    x = torch.randn(4, 3, 7)
    s = node(x)
    assert node.last_membrane is None and node.last_spikes is None
    node.record = True
    s2 = node(x)
    ref_s, ref_h = multistep_lif(x, return_membrane=True)
    assert torch.equal(s, s2) and torch.equal(node.last_spikes, ref_s) and torch.equal(node.last_membrane, ref_h)
    assert list(node.state_dict()) == []  # membranes are never state


def test_set_record_reaches_every_node_and_clears():
    model = metaspikeformer_tiny()
    set_record(model, True)
    assert all(n.record for _, n in iter_lif_nodes(model))
    model.eval()(torch.randn(1, 1, 32, 32))
    assert all(n.last_membrane is not None for _, n in iter_lif_nodes(model))
    set_record(model, False)
    assert all(n.last_membrane is None and not n.record for _, n in iter_lif_nodes(model))


def test_learnable_threshold_is_a_trained_parameter():
    node = LearnableThresholdLIFNode()
    assert isinstance(node.v_threshold, nn.Parameter) and node.v_threshold.item() == 0.5
    assert list(node.state_dict()) == ["v_threshold"]
    x = torch.full((1, 5), 0.9, requires_grad=True)  # H = 0.45, just below 0.5
    node(x).sum().backward()
    assert node.v_threshold.grad is not None and node.v_threshold.grad.item() < 0  # lower th -> more spikes


# ------------------------------------------------------------------------------------------
# Model structure, keys and parameter counts (meta device)
# ------------------------------------------------------------------------------------------


def _meta(name: str, **kwargs) -> MetaSpikeFormer:
    with torch.device("meta"):
        return create_model(name, **kwargs)


@pytest.fixture(scope="module")
def meta_55m() -> MetaSpikeFormer:
    return _meta("metaspikeformer_55m")


@pytest.fixture(scope="module")
def meta_55m_kd() -> MetaSpikeFormer:
    return _meta("metaspikeformer_55m", kd=True)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, kwargs, millions",
    [
        ("metaspikeformer_15m", {}, 15.11),
        ("metaspikeformer_31m", {}, 31.33),
        ("metaspikeformer_55m", {}, 55.35),
        ("metaspikeformer_55m", {"kd": True}, 55.99),
    ],
)
def test_param_counts_match_reference(name, kwargs, millions):
    assert round(n_params(_meta(name, **kwargs)) / 1e6, 2) == millions


def expected_param_count(cfg: dict) -> int:
    """Parameter count from the architecture description (meta-spikeformer.md), not from the code."""
    e0, e1, e2, e3 = cfg["embed_dim"]
    r, k, variant = cfg["mlp_ratio"], cfg["num_classes"], cfg["sdsa_variant"]

    def down(ci, co, ks):  # conv with bias + BN
        return ci * co * ks * ks + co + 2 * co

    def conv_block(c):
        sep = c * 2 * c + 2 * 2 * c + 2 * c * 49 + 2 * c * c + 2 * c
        return sep + c * r * c * 9 + 2 * r * c + r * c * c * 9 + 2 * c

    def ms_block(c):
        repconv = 2 * c * c + 15 * c  # 1x1, BNpad, dw3x3, 1x1, BN, outer BN
        n_rep = 3 if variant == 2 else 4
        mlp = c * r * c + r * c + 2 * r * c + r * c * c + c + 2 * c
        return n_rep * repconv + mlp + (1 if variant == 4 else 0)

    d = cfg["depths"]
    total = down(cfg["in_channels"], e0 // 2, 7) + down(e0 // 2, e0, 3) + down(e0, e1, 3)
    total += down(e1, e2, 3) + down(e2, e3, 3)
    total += d[0] * conv_block(e0 // 2) + d[1] * conv_block(e0) + (d[2] + d[3]) * conv_block(e1)
    total += d[4] * ms_block(e2) + d[5] * ms_block(e3)
    total += (e3 * k + k) * (2 if cfg["kd"] else 1)
    return total


@pytest.mark.parametrize("name", sorted(MODEL_REGISTRY))
@pytest.mark.parametrize("variant", [1, 2, 3, 4])
@pytest.mark.parametrize("kd", [False, True])
def test_every_registered_model_has_the_described_parameter_count(name, variant, kd):
    model = _meta(name, sdsa_variant=variant, kd=kd)
    assert n_params(model) == expected_param_count(model.config)


def test_sdsa2_drops_k_conv_parameters():
    m3, m2 = _meta("metaspikeformer_31m"), _meta("metaspikeformer_31m", sdsa_variant=2)
    drop = 6 * (2 * 384**2 + 15 * 384) + 2 * (2 * 480**2 + 15 * 480)
    assert n_params(m3) - n_params(m2) == drop
    assert round(n_params(m2) / 1e6, 1) == 28.6  # paper Table 5


def test_55m_state_dict_key_count(meta_55m, meta_55m_kd):
    assert len(meta_55m.state_dict()) == 825
    assert len(meta_55m_kd.state_dict()) == 827
    assert set(meta_55m_kd.state_dict()) - set(meta_55m.state_dict()) == {"head_kd.weight", "head_kd.bias"}


BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def test_55m_reference_key_names_and_shapes(meta_55m):
    sd = meta_55m.state_dict()
    shapes = {
        # the downsampling (encoding) convs
        "downsample1_1.encode_conv.weight": (64, 3, 7, 7),
        "downsample1_1.encode_conv.bias": (64,),
        "downsample1_2.encode_conv.weight": (128, 64, 3, 3),
        "downsample4.encode_conv.weight": (640, 512, 3, 3),
        # a conv block: SepConv (pw 1x1, dw 7x7, pw 1x1), then the channel convs 3x3
        "ConvBlock1_1.0.Conv.pwconv1.weight": (128, 64, 1, 1),
        "ConvBlock1_1.0.Conv.dwconv.weight": (128, 1, 7, 7),
        "ConvBlock1_1.0.Conv.pwconv2.weight": (64, 128, 1, 1),
        "ConvBlock1_1.0.conv1.weight": (256, 64, 3, 3),
        "ConvBlock1_1.0.conv2.weight": (64, 256, 3, 3),
        "ConvBlock2_2.0.conv2.weight": (256, 1024, 3, 3),            # stage 2: mlp ratio 4
        # a transformer block: RepConv q/k/v/proj (1x1, BN-and-pad, dw 3x3, 1x1)
        "block3.0.attn.q_conv.0.body.0.weight": (512, 512, 1, 1),
        "block3.0.attn.q_conv.0.body.2.0.weight": (512, 1, 3, 3),
        "block3.0.attn.q_conv.0.body.2.1.weight": (512, 512, 1, 1),
        "block3.5.attn.proj_conv.0.body.2.1.weight": (512, 512, 1, 1),
        "block4.1.attn.k_conv.0.body.0.weight": (640, 640, 1, 1),
        # the transformer block's channel MLP (Conv1d 1x1), and the head
        "block3.0.mlp.fc1_conv.weight": (2048, 512, 1),
        "block3.0.mlp.fc1_conv.bias": (2048,),
        "block3.0.mlp.fc2_conv.weight": (512, 2048, 1),
        "block4.1.mlp.fc2_conv.bias": (640,),
        "head.weight": (1000, 640),                                  # classes x stage-4 width
        "head.bias": (1000,),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    bn_prefixes = [
        "downsample1_1.encode_bn", "downsample3.encode_bn", "ConvBlock1_1.0.Conv.bn1", "ConvBlock1_1.0.Conv.bn2",
        "ConvBlock1_2.0.bn1", "ConvBlock2_1.0.bn2", "block3.0.attn.q_conv.0.body.1.bn",
        "block3.0.attn.q_conv.0.body.2.2", "block3.0.attn.q_conv.1", "block3.0.attn.v_conv.1",
        "block4.1.attn.proj_conv.1", "block3.0.mlp.fc1_bn", "block4.1.mlp.fc2_bn",
    ]
    for prefix in bn_prefixes:
        for leaf in BN:
            assert f"{prefix}.{leaf}" in sd, f"{prefix}.{leaf}"
    assert not any("lif" in k for k in sd)  # neurons hold no state
    assert "block3.6.attn.q_conv.1.weight" not in sd and "block4.2.mlp.fc1_bn.weight" not in sd
    assert isinstance(meta_55m.block3[0].mlp.fc1_conv, nn.Conv1d)
    assert isinstance(meta_55m.block3[0].mlp.fc1_bn, nn.BatchNorm1d)


def test_reference_geometry(meta_55m):
    m = meta_55m
    assert m.downsample1_1.encode_conv.stride == (2, 2) and m.downsample1_1.encode_conv.padding == (3, 3)
    assert not hasattr(m.downsample1_1, "encode_lif") and hasattr(m.downsample1_2, "encode_lif")
    assert m.downsample4.encode_conv.stride == (1, 1)
    assert [len(getattr(m, n)) for n in ("ConvBlock1_1", "ConvBlock1_2", "ConvBlock2_1", "ConvBlock2_2",
                                         "block3", "block4")] == [1, 1, 1, 1, 6, 2]
    thresholds = {name: node.threshold_value() for name, node in iter_lif_nodes(m)}
    assert {n for n, th in thresholds.items() if th != 1.0} == {f"block3.{i}.attn.attn_lif" for i in range(6)} | {
        f"block4.{i}.attn.attn_lif" for i in range(2)}
    assert all(th == 0.5 for n, th in thresholds.items() if n.endswith("attn_lif"))
    assert all(node.tau == 2.0 for _, node in iter_lif_nodes(m))


@pytest.mark.parametrize("name", sorted(MODEL_REGISTRY))
def test_every_registered_model_runs_at_its_size(name):
    model = _meta(name).eval()
    cfg = model.config
    x = torch.zeros(2, cfg["in_channels"], cfg["img_size_h"], cfg["img_size_w"], device="meta")
    feats = model.forward_features(model.encode_input(x))
    assert tuple(feats.shape) == (1, 2, cfg["embed_dim"][3], cfg["img_size_h"] // 16, cfg["img_size_w"] // 16)
    assert tuple(model(x).shape) == (2, cfg["num_classes"])


def test_registry_and_reference_names():
    assert set(list_models()) >= {"metaspikeformer_15m", "metaspikeformer_31m", "metaspikeformer_55m",
                                  "metaspikeformer_tiny"}
    with torch.device("meta"):
        assert create_model("metaspikformer_8_512").embed_dim == (128, 256, 512, 640)
        assert metaspikeformer_55m(num_classes=10, T=4).head.out_features == 10  # kwargs override
    with pytest.raises(KeyError, match="nope"):
        create_model("nope")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sdsa_variant": 5}, "sdsa_variant must be one of .*not 5"),
        ({"embed_dim": (16, 32, 60, 64)}, "divisible by num_heads .*not 60"),
        ({"embed_dim": (15, 32, 64, 64)}, "must be even.*not 15"),
        ({"depths": (1, 2, 3)}, "4 .* or 6 .*not \\(1, 2, 3\\)"),
        ({"head_input": "spikes"}, "head_input must be one of"),
        ({"T": 0}, "T must be >= 1"),
    ],
)
def test_bad_configuration_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        metaspikeformer_tiny(**kwargs)


def test_depths_per_stage_split_over_reference_lists():
    with torch.device("meta"):
        assert metaspikeformer_tiny(depths=(2, 2, 6, 2)).depths == (1, 1, 1, 1, 6, 2)
        assert metaspikeformer_tiny(depths=(3, 0, 1, 1)).depths == (2, 1, 0, 0, 1, 1)


# ------------------------------------------------------------------------------------------
# Forward behaviour (small real model)
# ------------------------------------------------------------------------------------------


def _tiny(seed: int = 0, **kwargs) -> MetaSpikeFormer:
    torch.manual_seed(seed)
    model = metaspikeformer_tiny(**kwargs)
    randomize_statistics(model, seed)
    return model.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(123))


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_each_sdsa_variant_runs_and_trains(variant, images):
    model = _tiny(sdsa_variant=variant, T=2)
    attn = model.block3[0].attn
    assert hasattr(attn, "k_conv") == (variant != 2) and hasattr(attn, "k_lif") == (variant != 2)
    assert any(".attn.k_conv." in k for k in model.state_dict()) == (variant != 2)
    assert isinstance(attn.attn_lif, LearnableThresholdLIFNode) == (variant == 4)
    model.train()
    out = model(images)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert attn.q_conv[0].body[0].weight.grad.abs().sum() > 0  # gradient reaches through attention
    if variant == 4:
        assert attn.attn_lif.v_threshold.grad is not None


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_sdsa_operator_matches_its_definition(variant):
    """attn_lif's input, checked against the paper's formulas on the recorded Q/K/V spikes."""
    torch.manual_seed(1)
    attn = MSAttention(dim=16, num_heads=4, sdsa_variant=variant)
    randomize_statistics(attn, seed=1)
    with torch.no_grad():  # push Q/K/V to ~50% firing so the counts cross 8 both ways
        for conv in (attn.q_conv, attn.v_conv) + ((attn.k_conv,) if variant != 2 else ()):
            conv[1].bias.fill_(2.5)
    attn.eval()
    set_record(attn, True)
    attn(torch.randn(1, 2, 16, 4, 4) * 2)  # T = 1: attn_lif's H[0] is half its input
    q = attn.q_lif.last_spikes.flatten(3)[0]  # [B, C, N]
    v = attn.v_lif.last_spikes.flatten(3)[0]
    x = 2 * attn.attn_lif.last_membrane[0]
    if variant == 3:
        k = attn.k_lif.last_spikes.flatten(3)[0]
        b, c, n = q.shape
        expected = torch.zeros(b, c, n)
        d = c // 4
        for h in range(4):  # A[c = h*d + j, n] = sum_i sum_m q[h*d+i, n] k[h*d+i, m] v[h*d+j, m]
            sl = slice(h * d, (h + 1) * d)
            expected[:, sl, :] = torch.einsum("bin,bim,bjm->bjn", q[:, sl], k[:, sl], v[:, sl])
        assert torch.equal(x, 0.125 * expected)
        assert (expected >= 8).any() and (expected < 8).any()  # both outcomes exercised
    else:
        k = attn.k_lif.last_spikes.flatten(3)[0] if variant == 1 else torch.ones_like(q)
        assert torch.equal(x[..., 0], (q * k).sum(-1))


def test_head_sees_spikes_by_default_and_membrane_on_request(images):
    seen = {}
    for head_input in ("spike", "membrane"):
        model = _tiny(head_input=head_input, T=2)
        handle = model.head.register_forward_hook(lambda m, i, o, key=head_input: seen.__setitem__(key, i[0]))
        model(images)
        handle.remove()
    assert set(seen["spike"].unique().tolist()) <= {0.0, 1.0} and seen["spike"].sum() > 0
    assert not set(seen["membrane"].unique().tolist()) <= {0.0, 1.0}
    assert seen["spike"].shape == (2, 2, 64)  # [T, B, e3]: Linear before the mean over T


def test_kd_head_average_at_eval_and_pair_in_training(images):
    model = _tiny(kd=True, T=2)
    feats = model.forward_features(model.encode_input(images))
    s = multistep_lif(feats.flatten(3).mean(3))
    expected = (model.head(s).mean(0) + model.head_kd(s).mean(0)) / 2
    assert torch.equal(model(images), expected)
    model.train()
    out = model(images)
    assert isinstance(out, tuple) and len(out) == 2 and out[0].shape == out[1].shape == (2, 10)


def test_eval_is_deterministic_and_time_encoding_is_repetition(images):
    model = _tiny(T=3)
    a, b = model(images), model(images)
    assert torch.equal(a, b)
    assert torch.equal(a, model(images.unsqueeze(0).repeat(3, 1, 1, 1, 1)))
    assert a.abs().sum() > 0
