"""The paper's three Meta-SpikeFormers as layer geometry, without weights: what the energy model
needs to reproduce the paper's figures without quantizing a 31M model first.

:func:`meta_spikeformer` returns the layers (:class:`contract.program.Layer`, names, kinds,
inputs, shapes and the geometry attributes; no arrays) that ``hwgen quantize`` writes for the
same model: the fused SepConv as one 7x7 conv 2C -> C, RepConv as its folded 3x3 conv, the token
mean as a token sum. ``tests/test_energy.py`` holds it equal to a quantized program's layers.
:data:`PAPER_MODELS` are the scales of the paper's Table 1 (embedding dimensions from its
Table 7; depths, 8 heads and mlp ratio 4 as in the reference code).
"""
from __future__ import annotations

from dataclasses import dataclass

from contract.program import INPUT, Layer

__all__ = ["PaperModel", "PAPER_MODELS", "meta_spikeformer", "paper_layers"]


@dataclass(frozen=True)
class PaperModel:
    """One scale of the paper, with its Table 1 energy (mJ per image) at T = 1 and T = 4."""

    name: str
    embed_dim: tuple[int, int, int, int]
    params_m: float
    energy_mj: dict[int, float]
    depths: tuple[int, ...] = (1, 1, 1, 1, 6, 2)
    num_heads: int = 8
    kd: bool = False


#: Table 1 of the paper (ImageNet-1K, 224 x 224): parameters and energy per image
PAPER_MODELS = {
    "15M": PaperModel("metaspikeformer_15m", (64, 128, 256, 360), 15.1, {1: 4.0, 4: 16.7}),
    "31M": PaperModel("metaspikeformer_31m", (96, 192, 384, 480), 31.3, {1: 7.8, 4: 32.8}),
    "55M": PaperModel("metaspikeformer_55m", (128, 256, 512, 640), 55.4, {1: 13.0, 4: 52.4}),
}


def _out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class _Builder:
    def __init__(self):
        self.layers: list[Layer] = []

    def conv(self, name, src, shape, c_out, kernel, stride=1, residual=None, pixels=False) -> tuple[str, list[int]]:
        c, h, w = shape
        padding = kernel // 2
        out = [c_out, _out(h, kernel, stride, padding), _out(w, kernel, stride, padding)]
        attrs = dict(in_shape=list(shape), in_channels=c, out_channels=c_out, kernel=kernel, stride=stride,
                     padding=padding, groups=1, residual=residual, input="pixels" if pixels else "spikes")
        self.layers.append(Layer(name, "conv", [src] + ([residual] if residual else []), out, attrs))
        return name, out

    def lif(self, name, src, shape) -> str:
        self.layers.append(Layer(name, "lif", [src], list(shape), dict(channels=shape[0])))
        return name


def _conv_block(b: _Builder, p: str, x: str, shape: list[int], mlp_ratio: int) -> tuple[str, list[int]]:
    c = shape[0]
    s = b.lif(f"{p}.Conv.lif1", x, shape)
    y, ys = b.conv(f"{p}.Conv.pwconv1", s, shape, 2 * c, 1)
    s = b.lif(f"{p}.Conv.lif2", y, ys)
    x, _ = b.conv(f"{p}.Conv.dwconv_pwconv2", s, ys, c, 7, residual=x)     # SepConv fused: 7x7, 2C -> C
    s = b.lif(f"{p}.lif1", x, shape)
    y, ys = b.conv(f"{p}.conv1", s, shape, mlp_ratio * c, 3)
    s = b.lif(f"{p}.lif2", y, ys)
    return b.conv(f"{p}.conv2", s, ys, c, 3, residual=x)


def _transformer_block(b: _Builder, p: str, x: str, shape: list[int], heads: int, mlp_ratio: int,
                       variant: int) -> tuple[str, list[int]]:
    c, h, w = shape
    s = b.lif(f"{p}.attn.head_lif", x, shape)
    qkv = {}
    for t in ("q", "k", "v"):
        y, _ = b.conv(f"{p}.attn.{t}_conv", s, shape, c, 3)                # RepConv folded: one 3x3 conv
        qkv[t] = b.lif(f"{p}.attn.{t}_lif", y, shape)
    attrs = dict(variant=variant, heads=heads, tokens=h * w, head_dim=c // heads,
                 q=qkv["q"], k=qkv["k"], v=qkv["v"])
    b.layers.append(Layer(f"{p}.attn.sdsa", "sdsa", [qkv["q"], qkv["k"], qkv["v"]], list(shape), attrs))
    a = b.lif(f"{p}.attn.attn_lif", f"{p}.attn.sdsa", shape)
    x, _ = b.conv(f"{p}.attn.proj_conv", a, shape, c, 3, residual=x)
    s = b.lif(f"{p}.mlp.fc1_lif", x, shape)
    y, ys = b.conv(f"{p}.mlp.fc1_conv", s, shape, mlp_ratio * c, 1)
    s = b.lif(f"{p}.mlp.fc2_lif", y, ys)
    return b.conv(f"{p}.mlp.fc2_conv", s, ys, c, 1, residual=x)


def meta_spikeformer(embed_dim, *, depths=(1, 1, 1, 1, 6, 2), num_heads: int = 8, mlp_ratio: int = 4,
                     num_classes: int = 1000, in_channels: int = 3, img_size: int = 224, kd: bool = False,
                     sdsa_variant: int = 3) -> list[Layer]:
    """The program layers of a Meta-SpikeFormer (SDSA-3/4), as ``hwgen quantize`` names them."""
    if sdsa_variant not in (3, 4):
        raise ValueError(f"sdsa_variant must be 3 or 4 here (SDSA-1/2 add mask layers), not {sdsa_variant}")
    if len(depths) != 6:
        raise ValueError(f"depths must list six block counts (ConvBlock1_1 .. block4), not {depths}")
    e0, e1, e2, e3 = embed_dim
    b = _Builder()
    x, shape = b.conv("downsample1_1.encode_conv", INPUT, [in_channels, img_size, img_size], e0 // 2, 7, 2,
                      pixels=True)
    stages = [(None, e0 // 2, 2, "ConvBlock1_1", "conv"), ("downsample1_2", e0, 2, "ConvBlock1_2", "conv"),
              ("downsample2", e1, 2, "ConvBlock2_1", "conv"), (None, e1, 1, "ConvBlock2_2", "conv"),
              ("downsample3", e2, 2, "block3", "attn"), ("downsample4", e3, 1, "block4", "attn")]
    for (down, c, stride, blocks, kind), depth in zip(stages, depths):
        if down is not None:
            s = b.lif(f"{down}.encode_lif", x, shape)
            x, shape = b.conv(f"{down}.encode_conv", s, shape, c, 3, stride)
        for i in range(depth):
            if kind == "conv":
                x, shape = _conv_block(b, f"{blocks}.{i}", x, shape, mlp_ratio)
            else:
                x, shape = _transformer_block(b, f"{blocks}.{i}", x, shape, num_heads, mlp_ratio, sdsa_variant)
    c, h, w = shape
    b.layers.append(Layer("token_mean", "token_sum", [x], [c], dict(tokens=h * w)))
    s = b.lif("lif", "token_mean", [c])
    heads = ["head"] + (["head_kd"] if kd else [])
    for name in heads:
        b.layers.append(Layer(name, "linear", [s], [num_classes], dict(in_features=c, out_features=num_classes)))
    b.layers.append(Layer("logits", "readout", heads, [num_classes], {}))
    return b.layers


def paper_layers(scale: str, *, img_size: int = 224) -> list[Layer]:
    """The layers of one of the paper's scales (``"15M"``, ``"31M"``, ``"55M"``)."""
    m = PAPER_MODELS[scale]
    return meta_spikeformer(m.embed_dim, depths=m.depths, num_heads=m.num_heads, img_size=img_size, kd=m.kd)
