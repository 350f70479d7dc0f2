"""Meta-SpikeFormer (Spike-driven Transformer V2), float golden model.

Paper: M. Yao, J. Hu, T. Hu, Y. Xu, Z. Zhou, Y. Tian, B. Xu, G. Li, "Spike-driven Transformer V2:
Meta Spiking Neural Network Architecture Inspiring the Design of Next-generation Neuromorphic
Chips", ICLR 2024.
Reference code: https://github.com/BICLab/Spike-Driven-Transformer-V2, ``classification/models.py``
(classes ``Spiking_vit_MetaFormer``, ``MS_ConvBlock``, ``SepConv``, ``MS_Block``,
``MS_Attention_RepConv_qkv_id``, ``MS_MLP``, ``MS_DownSampling``, ``RepConv``, ``BNAndPadLayer``).

This is an independent re-implementation without spikingjelly or timm. It keeps the reference's
module names, so its ``state_dict`` keys (and parameter counts) are the reference ones and the
released checkpoints load unchanged (see :mod:`golden.checkpoint`).

Tensors are ``[T, B, C, H, W]``: the image ``[B, C, H, W]`` is repeated ``T`` times (direct
encoding). Every residual adds BN outputs (membrane potentials, "membrane shortcut"); every branch
starts with a LIF neuron. Each LIF is a module attribute (``encode_lif``, ``lif1``, ``lif2``,
``head_lif``, ``q_lif``, ``k_lif``, ``v_lif``, ``attn_lif``, ``fc1_lif``, ``fc2_lif``, and the
classifier neuron ``lif``), so a quantizer can find every neuron by its reference path.
Note the reference's naming: ``attn.head_lif`` is the neuron at the *input* of the attention
(attention heads), the neuron in front of the classifier is the top-level ``lif``.

Head (per the paper, the repository maintainers and the design doc)::

    x = features.flatten(3).mean(3)      # mean membrane over tokens, [T, B, C]
    s = lif(x)                           # spikes, [T, B, C]
    logits = head(s).mean(0)             # Linear, then mean over T
    with kd: eval -> (logits + head_kd(s).mean(0)) / 2, train -> (logits, logits_kd)

The stored reference commit (03cc73e) feeds ``head`` the pre-LIF mean ``x`` and only ``head_kd``
the spikes; ``head_input="membrane"`` reproduces that variant exactly.

Spike-driven self-attention (``sdsa_variant``; ``q, k, v`` are binary ``[T, B, C, N]``):

- 3 (default, SDSA-3): per head, ``A = Q (K^T V)`` (integers), ``attn_lif(0.125 * A)``
  with threshold 0.5 (at t=0 it fires iff ``A >= 8``).
- 4 (SDSA-4): SDSA-3 with a learnable ``attn_lif`` threshold (``nn.Parameter``, init 0.5; extra
  state-dict key ``...attn.attn_lif.v_threshold``).
- 1 (SDSA-1): ``attn_lif(SUM_tokens(Q AND K))`` gives a per-channel mask ``[T, B, C, 1]`` that
  multiplies ``V``. 2 (SDSA-2): the same from ``SUM_tokens(Q)``; no ``k_conv``/``k_lif``
  (2 C^2 + 15 C fewer parameters per block). For both, ``attn_lif`` keeps threshold 0.5 on the
  unscaled integer sum, as ``talking_heads_lif`` does in Spike-driven Transformer V1: at t=0 a
  channel passes when its count is >= 1; over time the neuron integrates the counts.
  The result ``V * mask`` is binary and goes to ``proj_conv`` directly. ``num_heads`` plays no role.

The meta architecture as configuration (paper Sec. 4.5, Table 5; :data:`ABLATIONS` names one
variant per row, docs/table5.md). Every option's default is the reference model, whose keys and
parameters do not change:

- ``sepconv=False``: conv blocks without the SepConv token mixer (``x += channel_conv(x)`` only).
- ``channel_mixer="mlp"``: the conv block's channel conv ``3x3 C -> rC -> C`` becomes the channel
  MLP of MetaFormer's ConvFormer, ``1x1 C -> rC -> C`` (same keys, kernel 1).
- ``qkv_proj="linear"`` / ``attn_proj="linear"``: Q, K, V (RepConv-1/2/3) / the output projection
  (RepConv-4) as a linear layer, a 1x1 conv without bias and its BN (Spike-driven Transformer V1),
  ``q_conv.0.weight`` ``[C, C, 1, 1]`` and ``q_conv.1.*`` instead of the RepConv body.
- ``shortcut``: how every residual branch joins its stream (Sec. 3.1, Fig. 4). Each branch is a
  neuron ``lif`` and a body (convs and the neurons inside, ending in a BN):

  ``"membrane"`` (MS, default)  ``x = x + body(lif(x))``: membranes add, the stream is a membrane.
  ``"vanilla"`` (VS)            ``s = lif(x); x = s + body(s)``: the branch's input *spikes* add to
  its output membrane, as ``ReLU(F(x) + x)`` in Res-CNN (the next neuron reads the sum).
  ``"sew"`` (SEW)               ``x = x + lif(body(x))``: spikes add to spikes; the stream holds
  integers (0 .. the number of branches since the stage began) and every body starts from them
  with a conv ("integer-driven"). The branch's neuron (same module, same name) sits at its end;
  every downsampler ends with its ``encode_lif`` (the first one gets one too), so a stage starts
  from spikes, and the head's token mean reads the integers.
- ``pyramid=False``: stage 4 = stage 3: no ``downsample4``, ``block4`` at ``e2`` channels
  (``embed_dim[3]`` is not used; ``model.embed_dim`` reports ``e2`` there), head ``Linear(e2, K)``.
- ``blocks``: ``"hybrid"`` (default: conv blocks in stages 1-2, transformer blocks in 3-4),
  ``"conv"`` or ``"transformer"`` (every block list holds that block, at its own width and depth;
  the lists keep their reference names).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from golden.neuron import LearnableThresholdLIFNode, MultiStepLIFNode

__all__ = [
    "direct_encoding",
    "randomize_statistics",
    "BNAndPadLayer",
    "RepConv",
    "SepConv",
    "MSConvBlock",
    "MSMLP",
    "MSAttention",
    "MSBlock",
    "MSDownSampling",
    "MetaSpikeFormer",
    "SDSA_VARIANTS",
    "SHORTCUTS",
    "BLOCK_LAYOUTS",
    "PROJECTIONS",
    "CHANNEL_MIXERS",
    "ARCHITECTURE_OPTIONS",
    "ABLATIONS",
    "residual_branch",
    "MODEL_REGISTRY",
    "REFERENCE_MODEL_NAMES",
    "register_model",
    "create_model",
    "list_models",
    "metaspikeformer_tiny",
    "metaspikeformer_15m",
    "metaspikeformer_31m",
    "metaspikeformer_55m",
]

SDSA_VARIANTS = (1, 2, 3, 4)
#: threshold of ``attn_lif`` (reference: ``v_threshold=0.5``; SDSA-4 uses it as the initial value).
ATTN_THRESHOLD = 0.5
#: SDSA-3 scale (a constant in the reference, not ``1 / sqrt(head_dim)``).
ATTN_SCALE = 0.125
#: how a residual branch joins its stream (see the module docstring and :func:`residual_branch`)
SHORTCUTS = ("membrane", "vanilla", "sew")
#: which block every block list holds: the reference mix, or one kind throughout
BLOCK_LAYOUTS = ("hybrid", "conv", "transformer")
#: Q, K, V and the output projection of the attention: RepConv (reference) or a linear layer
PROJECTIONS = ("repconv", "linear")
#: the conv block's channel mixer: 3x3 convs (reference) or 1x1 (a channel MLP)
CHANNEL_MIXERS = ("conv", "mlp")

#: the architecture options beyond the reference's arguments, with their defaults (the reference
#: model); checkpoints written by this project store them in ``args``
ARCHITECTURE_OPTIONS = dict(sepconv=True, channel_mixer="conv", qkv_proj="repconv", attn_proj="repconv",
                            shortcut="membrane", pyramid=True, blocks="hybrid")

#: the paper's Table 5 ablations (Sec. 4.5) as constructor arguments, one name per row
ABLATIONS: dict[str, dict] = {
    "baseline": {},
    "no_sepconv": {"sepconv": False},
    "channel_mlp": {"channel_mixer": "mlp"},
    "qkv_linear": {"qkv_proj": "linear"},
    "proj_linear": {"attn_proj": "linear"},
    "sdsa1": {"sdsa_variant": 1},
    "sdsa2": {"sdsa_variant": 2},
    "sdsa4": {"sdsa_variant": 4},
    "vanilla_shortcut": {"shortcut": "vanilla"},
    "sew_shortcut": {"shortcut": "sew"},
    "no_pyramid": {"pyramid": False},
    "fully_conv": {"blocks": "conv"},
    "fully_transformer": {"blocks": "transformer"},
}


def direct_encoding(x: Tensor, T: int) -> Tensor:
    """Direct encoding: ``[B, C, H, W]`` -> ``[T, B, C, H, W]``, the image at every timestep (a
    5-D input, one frame per timestep, passes through)."""
    if x.dim() == 4:
        return x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    if x.dim() == 5:
        return x
    raise ValueError(f"input must be [B, C, H, W] or [T, B, C, H, W], not shape {tuple(x.shape)}")


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, not {value!r}")


def _flat(x: Tensor) -> Tensor:
    """``[T, B, ...] -> [T*B, ...]`` for the per-timestep (stateless) layers."""
    return x.flatten(0, 1)


def residual_branch(shortcut: str, lif: nn.Module, body: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """One residual branch (a neuron ``lif`` and a ``body`` ending in a BN) on the stream ``x``:
    ``"membrane"`` ``x + body(lif(x))``; ``"vanilla"`` ``lif(x) + body(lif(x))``; ``"sew"``
    ``x + lif(body(x))`` (see the module docstring)."""
    if shortcut == "membrane":
        return x + body(lif(x))
    if shortcut == "vanilla":
        s = lif(x)
        return s + body(s)
    if shortcut == "sew":
        return x + lif(body(x))
    raise ValueError(f"shortcut must be one of {SHORTCUTS}, not {shortcut!r}")


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------


class BNAndPadLayer(nn.Module):
    """BatchNorm2d, then pad ``pad_pixels`` on each side with the BN image of zero.

    The pad value per channel is ``bias - running_mean * weight / sqrt(running_var + eps)``, i.e.
    what BN outputs for a zero input, so ``BNAndPad(x) == BN(zero_pad(x))`` in eval mode. That is
    what lets RepConv fold into a single zero-padded 3x3 conv. As in the reference, the pad value
    always uses the running statistics (also in training mode).

    Shapes: ``[N, C, H, W] -> [N, C, H + 2p, W + 2p]``. State-dict keys: ``bn.*``.
    """

    def __init__(self, pad_pixels: int, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps, momentum)
        self.pad_pixels = pad_pixels

    def pad_values(self) -> Tensor:
        """Per-channel pad value ``[C]`` (no gradient, as in the reference)."""
        bn = self.bn
        inv_std = torch.sqrt(bn.running_var + bn.eps)
        if bn.affine:
            return bn.bias.detach() - bn.running_mean * bn.weight.detach() / inv_std
        return -bn.running_mean / inv_std

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn(x)
        p = self.pad_pixels
        if p <= 0:
            return out
        n, c, h, w = out.shape
        padded = self.pad_values().to(out.dtype).view(1, c, 1, 1).expand(n, c, h + 2 * p, w + 2 * p)
        padded = padded.clone()
        padded[:, :, p:-p, p:-p] = out
        return padded

    # Reference accessors (BNAndPadLayer exposes its BN's tensors directly).
    weight = property(lambda self: self.bn.weight)
    bias = property(lambda self: self.bn.bias)
    running_mean = property(lambda self: self.bn.running_mean)
    running_var = property(lambda self: self.bn.running_var)
    eps = property(lambda self: self.bn.eps)


class RepConv(nn.Module):
    """Re-parameterisable 3x3 conv: ``conv1x1 -> BNAndPad(1) -> dw3x3 (pad 0) -> conv1x1 -> BN``.

    All stages are linear at inference and fold into one 3x3 conv (padding 1) with bias
    (:func:`golden.fold.fold_repconv`). No conv has a bias (reference ``bias=False``).

    Shapes: ``[N, in, H, W] -> [N, out, H, W]``. Keys: ``body.0`` (1x1, in->in), ``body.1.bn``,
    ``body.2.0`` (depthwise 3x3), ``body.2.1`` (1x1, in->out), ``body.2.2`` (BN).
    """

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        conv1x1 = nn.Conv2d(in_channel, in_channel, 1, 1, 0, bias=False)
        bn = BNAndPadLayer(pad_pixels=1, num_features=in_channel)
        conv3x3 = nn.Sequential(
            nn.Conv2d(in_channel, in_channel, 3, 1, 0, groups=in_channel, bias=False),
            nn.Conv2d(in_channel, out_channel, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channel),
        )
        self.body = nn.Sequential(conv1x1, bn, conv3x3)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class SepConv(nn.Module):
    """Inverted separable conv (MobileNetV2 style), the token mixer of the conv blocks.

    ``x -> lif1 -> pwconv1 (C->2C) -> bn1 -> lif2 -> dwconv 7x7 (2C) -> pwconv2 (2C->C) -> bn2``.
    No neuron sits between ``dwconv`` and ``pwconv2``, so they fuse into one dense 7x7 conv
    2C->C (:func:`golden.fold.fuse_dw_pw`). Convs have no bias.

    Shapes: ``[T, B, C, H, W] -> [T, B, C, H, W]`` (a membrane; the caller adds the shortcut).
    """

    def __init__(self, dim: int, expansion_ratio: int = 2, kernel_size: int = 7, padding: int = 3):
        super().__init__()
        med_channels = int(expansion_ratio * dim)
        self.lif1 = MultiStepLIFNode()
        self.pwconv1 = nn.Conv2d(dim, med_channels, kernel_size=1, stride=1, bias=False)
        self.bn1 = nn.BatchNorm2d(med_channels)
        self.lif2 = MultiStepLIFNode()
        self.dwconv = nn.Conv2d(
            med_channels, med_channels, kernel_size=kernel_size, padding=padding,
            groups=med_channels, bias=False,
        )
        self.pwconv2 = nn.Conv2d(med_channels, dim, kernel_size=1, stride=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def body(self, s: Tensor) -> Tensor:
        """Everything after ``lif1``: ``pwconv1 -> bn1 -> lif2 -> dwconv -> pwconv2 -> bn2``."""
        t, b, _, h, w = s.shape
        x = self.bn1(self.pwconv1(_flat(s))).reshape(t, b, -1, h, w)
        x = self.lif2(x)
        x = self.dwconv(_flat(x))
        return self.bn2(self.pwconv2(x)).reshape(t, b, -1, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.lif1(x))


class MSConvBlock(nn.Module):
    """Conv-based SNN block (reference ``MS_ConvBlock``), membrane shortcuts::

        x = Conv(x) + x                                    # SepConv branch
        x = x + bn2(conv2(lif2(bn1(conv1(lif1(x))))))      # 3x3 C -> rC -> C, no conv bias

    ``sepconv=False`` drops the SepConv branch; ``channel_mixer="mlp"`` makes ``conv1``/``conv2``
    1x1 (a channel MLP); ``shortcut`` joins both branches as :func:`residual_branch` says.

    Shapes: ``[T, B, C, H, W] -> [T, B, C, H, W]``.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4, *, sepconv: bool = True, channel_mixer: str = "conv",
                 shortcut: str = "membrane"):
        super().__init__()
        _choice("channel_mixer", channel_mixer, CHANNEL_MIXERS)
        _choice("shortcut", shortcut, SHORTCUTS)
        hidden = int(dim * mlp_ratio)
        self.sepconv = bool(sepconv)
        self.shortcut = shortcut
        if self.sepconv:
            self.Conv = SepConv(dim=dim)
        k = 3 if channel_mixer == "conv" else 1
        self.lif1 = MultiStepLIFNode()
        self.conv1 = nn.Conv2d(dim, hidden, kernel_size=k, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.lif2 = MultiStepLIFNode()
        self.conv2 = nn.Conv2d(hidden, dim, kernel_size=k, padding=k // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def channel_body(self, s: Tensor) -> Tensor:
        """The channel mixer after ``lif1``: ``conv1 -> bn1 -> lif2 -> conv2 -> bn2``."""
        t, b, c, h, w = s.shape
        x = self.bn1(self.conv1(_flat(s))).reshape(t, b, -1, h, w)
        return self.bn2(self.conv2(_flat(self.lif2(x)))).reshape(t, b, c, h, w)

    def forward(self, x: Tensor) -> Tensor:
        if self.sepconv:
            x = residual_branch(self.shortcut, self.Conv.lif1, self.Conv.body, x)
        return residual_branch(self.shortcut, self.lif1, self.channel_body, x)


class MSMLP(nn.Module):
    """Channel MLP of the transformer block (reference ``MS_MLP``), on tokens ``N = H*W``::

        x -> fc1_lif -> fc1_conv (Conv1d 1x1, C->hidden, bias) -> fc1_bn (BN1d)
          -> fc2_lif -> fc2_conv (hidden->C, bias) -> fc2_bn

    Shapes: ``[T, B, C, H, W] -> [T, B, C, H, W]`` (computed as ``[T*B, C, N]``).
    """

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = MultiStepLIFNode()
        self.fc2_conv = nn.Conv1d(hidden_features, out_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(out_features)
        self.fc2_lif = MultiStepLIFNode()
        self.c_hidden = hidden_features
        self.c_output = out_features

    def body(self, s: Tensor) -> Tensor:
        """Everything after ``fc1_lif``."""
        t, b, _, h, w = s.shape
        n = h * w
        x = self.fc1_bn(self.fc1_conv(_flat(s.flatten(3)))).reshape(t, b, self.c_hidden, n)
        x = self.fc2_lif(x)
        return self.fc2_bn(self.fc2_conv(_flat(x))).reshape(t, b, self.c_output, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.fc1_lif(x))


def _projection(dim: int, kind: str) -> nn.Sequential:
    """Q, K, V or the output projection, with its BN: ``RepConv`` (reference keys ``.0.body.*``,
    ``.1.*``) or a linear layer, a 1x1 conv without bias (keys ``.0.weight``, ``.1.*``)."""
    if kind == "repconv":
        return nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
    return nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))


class MSAttention(nn.Module):
    """Spike-driven self-attention with RepConv Q/K/V (reference ``MS_Attention_RepConv_qkv_id``).

    ``x -> head_lif -> {q,k,v}_conv (RepConv + BN) -> {q,k,v}_lif -> SDSA -> attn_lif``
    ``-> proj_conv (RepConv + BN)``; see the module docstring for ``sdsa_variant`` 1..4.

    Shapes: ``[T, B, C, H, W] -> [T, B, C, H, W]`` (a membrane; the caller adds the shortcut).
    """

    def __init__(self, dim: int, num_heads: int = 8, sdsa_variant: int = 3, *, qkv_proj: str = "repconv",
                 attn_proj: str = "repconv"):
        super().__init__()
        _choice("qkv_proj", qkv_proj, PROJECTIONS)
        _choice("attn_proj", attn_proj, PROJECTIONS)
        if sdsa_variant not in SDSA_VARIANTS:
            raise ValueError(f"sdsa_variant must be one of {SDSA_VARIANTS}, not {sdsa_variant!r}")
        if dim % num_heads != 0:
            raise ValueError(f"dim must be divisible by num_heads ({num_heads}), not {dim}")
        self.dim = dim
        self.num_heads = num_heads
        self.sdsa_variant = sdsa_variant
        self.scale = ATTN_SCALE

        self.qkv_proj, self.attn_proj = qkv_proj, attn_proj

        self.head_lif = MultiStepLIFNode()
        self.q_conv = _projection(dim, qkv_proj)
        if sdsa_variant != 2:  # SDSA-2 builds its mask from Q alone: no K at all
            self.k_conv = _projection(dim, qkv_proj)
        self.v_conv = _projection(dim, qkv_proj)
        self.q_lif = MultiStepLIFNode()
        if sdsa_variant != 2:
            self.k_lif = MultiStepLIFNode()
        self.v_lif = MultiStepLIFNode()
        if sdsa_variant == 4:
            self.attn_lif = LearnableThresholdLIFNode(v_threshold=ATTN_THRESHOLD)
        else:
            self.attn_lif = MultiStepLIFNode(v_threshold=ATTN_THRESHOLD)
        self.proj_conv = _projection(dim, attn_proj)

    @property
    def has_k(self) -> bool:
        return self.sdsa_variant != 2

    def _heads(self, s: Tensor) -> Tensor:
        """Spikes ``[T, B, C, N] -> [T, B, heads, N, C/heads]`` (channel c = head * d + j)."""
        t, b, c, n = s.shape
        return s.transpose(-1, -2).reshape(t, b, n, self.num_heads, c // self.num_heads).permute(0, 1, 3, 2, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.head_lif(x))

    def body(self, s: Tensor) -> Tensor:
        """Everything after ``head_lif``: Q, K, V, the SDSA operator, ``attn_lif``, ``proj_conv``."""
        t, b, c, h, w = s.shape
        n = h * w
        x = _flat(s)
        q = self.q_lif(self.q_conv(x).reshape(t, b, c, h, w)).flatten(3)  # [T, B, C, N] binary
        v = self.v_lif(self.v_conv(x).reshape(t, b, c, h, w)).flatten(3)
        k = self.k_lif(self.k_conv(x).reshape(t, b, c, h, w)).flatten(3) if self.has_k else None

        if self.sdsa_variant in (3, 4):
            kv = self._heads(k).transpose(-2, -1) @ self._heads(v)  # [T, B, heads, d, d], integers
            a = (self._heads(q) @ kv) * self.scale  # [T, B, heads, N, d]
            a = a.transpose(3, 4).reshape(t, b, c, n)
            out = self.attn_lif(a)
        else:
            qk = q * k if self.sdsa_variant == 1 else q  # Hadamard product of spikes = AND
            mask = self.attn_lif(qk.sum(dim=-1, keepdim=True))  # [T, B, C, 1]: count over tokens
            out = v * mask  # binary: masks V per channel
        out = out.reshape(t * b, c, h, w)
        return self.proj_conv(out).reshape(t, b, c, h, w)


class MSBlock(nn.Module):
    """Transformer-based SNN block (reference ``MS_Block``): ``x += attn(x); x += mlp(x)`` (with
    membrane shortcuts; ``shortcut`` joins both branches as :func:`residual_branch` says).

    Shapes: ``[T, B, C, H, W] -> [T, B, C, H, W]``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4, sdsa_variant: int = 3, *,
                 qkv_proj: str = "repconv", attn_proj: str = "repconv", shortcut: str = "membrane"):
        super().__init__()
        _choice("shortcut", shortcut, SHORTCUTS)
        self.shortcut = shortcut
        self.attn = MSAttention(dim, num_heads=num_heads, sdsa_variant=sdsa_variant, qkv_proj=qkv_proj,
                                attn_proj=attn_proj)
        self.mlp = MSMLP(in_features=dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = residual_branch(self.shortcut, self.attn.head_lif, self.attn.body, x)
        return residual_branch(self.shortcut, self.mlp.fc1_lif, self.mlp.body, x)


class MSDownSampling(nn.Module):
    """Downsampling: ``[encode_lif ->] encode_conv (with bias) -> encode_bn``.

    The first layer (``first_layer=True``) sees real-valued pixels and has no LIF. With the SEW
    shortcut (``spike_output=True``) the neuron sits after the BN instead, the first layer's too:
    ``encode_conv -> encode_bn -> encode_lif`` (the conv reads the stream's integers).
    Shapes: ``[T, B, C_in, H, W] -> [T, B, C_out, H', W']``.
    """

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int = 3, stride: int = 2,
                 padding: int = 1, first_layer: bool = True, spike_output: bool = False):
        super().__init__()
        self.encode_conv = nn.Conv2d(in_channels, embed_dims, kernel_size=kernel_size,
                                     stride=stride, padding=padding)
        self.encode_bn = nn.BatchNorm2d(embed_dims)
        self.first_layer = first_layer
        self.spike_output = spike_output
        if spike_output or not first_layer:
            self.encode_lif = MultiStepLIFNode()

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        if not (self.first_layer or self.spike_output):
            x = self.encode_lif(x)
        x = self.encode_conv(_flat(x))
        x = self.encode_bn(x).reshape(t, b, *x.shape[1:])
        return self.encode_lif(x) if self.spike_output else x


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------

#: the six block lists of the reference, in execution order (their key prefixes).
STAGE_LISTS = ("ConvBlock1_1", "ConvBlock1_2", "ConvBlock2_1", "ConvBlock2_2", "block3", "block4")
HEAD_INPUTS = ("spike", "membrane")


def _expand_depths(depths: Sequence[int]) -> tuple[int, ...]:
    """Blocks per reference list ``STAGE_LISTS``.

    ``depths`` is either six counts, one per list, or four counts per stage
    ``(stage1 conv, stage2 conv, stage3 transformer, stage4 transformer)``; a conv stage's count
    is split over its two lists, the first getting the larger half (``(2, 2, 6, 2)`` ->
    ``(1, 1, 1, 1, 6, 2)``, the reference).
    """
    depths = tuple(int(d) for d in depths)
    if any(d < 0 for d in depths):
        raise ValueError(f"depths must be non-negative, not {depths}")
    if len(depths) == 6:
        return depths
    if len(depths) == 4:
        s1, s2, s3, s4 = depths
        return (math.ceil(s1 / 2), s1 // 2, math.ceil(s2 / 2), s2 // 2, s3, s4)
    raise ValueError(f"depths must have 4 (per stage) or 6 (per block list) entries, not {depths}")


class MetaSpikeFormer(nn.Module):
    """Meta-SpikeFormer classifier (reference ``Spiking_vit_MetaFormer``).

    Layout (stride / resolution for a 224 input)::

        downsample1_1  7x7 s2, C_in -> e0/2   (pixels, no LIF)    112
        ConvBlock1_1   MSConvBlock(e0/2) x d[0]
        downsample1_2  3x3 s2, e0/2 -> e0                         56
        ConvBlock1_2   MSConvBlock(e0) x d[1]
        downsample2    3x3 s2, e0 -> e1                           28
        ConvBlock2_1, ConvBlock2_2  MSConvBlock(e1) x d[2], d[3]
        downsample3    3x3 s2, e1 -> e2                           14
        block3         MSBlock(e2) x d[4]
        downsample4    3x3 s1, e2 -> e3                           14
        block4         MSBlock(e3) x d[5]
        head: token mean -> lif -> Linear(e3, num_classes) -> mean over T (+ head_kd)

    Args:
        img_size_h, img_size_w: nominal input size (recorded only: the model is size-agnostic).
        in_channels: image channels.
        num_classes: classes; 0 gives ``nn.Identity`` heads (features ``[B, e3]``).
        embed_dim: ``(e0, e1, e2, e3)``; e0 must be even.
        depths: see :func:`_expand_depths`; default is the reference ``(1, 1, 1, 1, 6, 2)``.
        num_heads: attention heads (8 in the reference); must divide e2 and e3.
        mlp_ratio: hidden expansion of the conv blocks and MLPs (4).
        T: timesteps (the reference sets ``model.T`` after construction; ``T`` may be changed).
        sdsa_variant: 1, 2, 3 (default) or 4.
        kd: add the distillation head ``head_kd``.
        head_input: ``"spike"`` (head sees ``lif`` spikes) or ``"membrane"`` (see module docstring).
        sepconv, channel_mixer, qkv_proj, attn_proj, shortcut, pyramid, blocks: the architecture
            options of the paper's Table 5 (module docstring; defaults :data:`ARCHITECTURE_OPTIONS`,
            the reference model; :data:`ABLATIONS` names each row).

    ``forward`` takes ``[B, C, H, W]`` (repeated ``T`` times) or ``[T, B, C, H, W]`` and returns
    logits ``[B, num_classes]`` (with ``kd`` in training mode: ``(logits, logits_kd)``).
    """

    def __init__(
        self,
        img_size_h: int = 224,
        img_size_w: int = 224,
        in_channels: int = 3,
        num_classes: int = 1000,
        embed_dim: Sequence[int] = (64, 128, 256, 360),
        depths: Sequence[int] = (1, 1, 1, 1, 6, 2),
        num_heads: int = 8,
        mlp_ratio: float = 4,
        T: int = 1,
        sdsa_variant: int = 3,
        kd: bool = False,
        head_input: str = "spike",
        sepconv: bool = True,
        channel_mixer: str = "conv",
        qkv_proj: str = "repconv",
        attn_proj: str = "repconv",
        shortcut: str = "membrane",
        pyramid: bool = True,
        blocks: str = "hybrid",
    ):
        super().__init__()
        embed_dim = tuple(int(e) for e in embed_dim)
        if len(embed_dim) != 4:
            raise ValueError(f"embed_dim must have 4 entries (e0, e1, e2, e3), not {embed_dim}")
        if embed_dim[0] % 2:
            raise ValueError(f"embed_dim[0] must be even (stage 1 starts at e0/2), not {embed_dim[0]}")
        _choice("blocks", blocks, BLOCK_LAYOUTS)
        _choice("shortcut", shortcut, SHORTCUTS)
        _choice("channel_mixer", channel_mixer, CHANNEL_MIXERS)
        _choice("qkv_proj", qkv_proj, PROJECTIONS)
        _choice("attn_proj", attn_proj, PROJECTIONS)
        if not pyramid:     # stage 4 = stage 3 (Table 5, "remove pyramid")
            embed_dim = (*embed_dim[:3], embed_dim[2])
        e0, e1, e2, e3 = embed_dim
        widths = (e0 // 2, e0, e1, e1, e2, e3)               # of the block lists STAGE_LISTS
        layout = {"hybrid": ("conv",) * 4 + ("transformer",) * 2, "conv": ("conv",) * 6,
                  "transformer": ("transformer",) * 6}[blocks]
        for lst, width, kind in zip(STAGE_LISTS, widths, layout):
            if kind == "transformer" and width % num_heads:
                which = ("embed_dim[2] and embed_dim[3]" if lst in ("block3", "block4")
                         else f"the width of {lst} (transformer blocks)")
                raise ValueError(f"{which} must be divisible by num_heads ({num_heads}), not {width}")
        if sdsa_variant not in SDSA_VARIANTS:
            raise ValueError(f"sdsa_variant must be one of {SDSA_VARIANTS}, not {sdsa_variant!r}")
        if head_input not in HEAD_INPUTS:
            raise ValueError(f"head_input must be one of {HEAD_INPUTS}, not {head_input!r}")
        if int(T) < 1:
            raise ValueError(f"T must be >= 1, not {T!r}")
        d = _expand_depths(depths)

        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.depths = d
        self.T = int(T)
        self.sdsa_variant = sdsa_variant
        self.kd = kd
        self.head_input = head_input
        self.shortcut = shortcut
        self.pyramid = bool(pyramid)
        self.blocks = blocks
        #: builder arguments, enough to rebuild this model (written into checkpoints' ``args``).
        self.config = dict(
            img_size_h=img_size_h, img_size_w=img_size_w, in_channels=in_channels,
            num_classes=num_classes, embed_dim=embed_dim, depths=d, num_heads=num_heads,
            mlp_ratio=mlp_ratio, T=self.T, sdsa_variant=sdsa_variant, kd=kd, head_input=head_input,
            sepconv=bool(sepconv), channel_mixer=channel_mixer, qkv_proj=qkv_proj, attn_proj=attn_proj,
            shortcut=shortcut, pyramid=self.pyramid, blocks=blocks,
        )

        def block_list(kind: str, dim: int, n: int) -> nn.ModuleList:
            if kind == "conv":
                return nn.ModuleList(MSConvBlock(dim, mlp_ratio=mlp_ratio, sepconv=sepconv, channel_mixer=channel_mixer,
                                                 shortcut=shortcut) for _ in range(n))
            return nn.ModuleList(MSBlock(dim, num_heads, mlp_ratio, sdsa_variant, qkv_proj=qkv_proj,
                                         attn_proj=attn_proj, shortcut=shortcut) for _ in range(n))

        def blocks_of(i: int) -> nn.ModuleList:      # list i of STAGE_LISTS
            return block_list(layout[i], widths[i], d[i])

        # built in the reference's order: a seeded random init draws the same weights
        sew = shortcut == "sew"
        self.downsample1_1 = MSDownSampling(in_channels, e0 // 2, 7, 2, 3, first_layer=True, spike_output=sew)
        self.ConvBlock1_1 = blocks_of(0)
        self.downsample1_2 = MSDownSampling(e0 // 2, e0, 3, 2, 1, first_layer=False, spike_output=sew)
        self.ConvBlock1_2 = blocks_of(1)
        self.downsample2 = MSDownSampling(e0, e1, 3, 2, 1, first_layer=False, spike_output=sew)
        self.ConvBlock2_1 = blocks_of(2)
        self.ConvBlock2_2 = blocks_of(3)
        self.downsample3 = MSDownSampling(e1, e2, 3, 2, 1, first_layer=False, spike_output=sew)
        self.block3 = blocks_of(4)
        if self.pyramid:
            self.downsample4 = MSDownSampling(e2, e3, 3, 1, 1, first_layer=False, spike_output=sew)
        self.block4 = blocks_of(5)

        self.lif = MultiStepLIFNode()
        self.head = nn.Linear(e3, num_classes) if num_classes > 0 else nn.Identity()
        if kd:
            self.head_kd = nn.Linear(e3, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    # -- weight init (reference: only Linear layers are re-initialised) --
    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """Top-level modules in execution order (downsamplers and block lists), with names."""
        names = ("downsample1_1", "ConvBlock1_1", "downsample1_2", "ConvBlock1_2", "downsample2",
                 "ConvBlock2_1", "ConvBlock2_2", "downsample3", "block3", "downsample4", "block4")
        return [(n, getattr(self, n)) for n in names if self.pyramid or n != "downsample4"]

    def encode_input(self, x: Tensor) -> Tensor:
        return direct_encoding(x, self.T)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, C_in, H, W]`` -> last-stage membrane ``[T, B, e3, H/16, W/16]``."""
        for _, stage in self.stages():
            if isinstance(stage, nn.ModuleList):
                for blk in stage:
                    x = blk(x)
            else:
                x = stage(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Features ``[T, B, C, H, W]`` -> logits ``[B, K]`` (or ``(logits, logits_kd)`` when training with kd)."""
        x = x.flatten(3).mean(3)  # mean membrane (SEW: the integers) over tokens, [T, B, C]
        x_lif = self.lif(x)
        logits = self.head(x_lif if self.head_input == "spike" else x).mean(0)
        if not self.kd:
            return logits
        logits_kd = self.head_kd(x_lif).mean(0)
        if self.training:
            return logits, logits_kd
        return (logits + logits_kd) / 2

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return self.forward_head(self.forward_features(self.encode_input(x)))


def randomize_statistics(module: nn.Module, seed: int = 0, *, negative_scales: float = 0.1) -> None:
    """Give every BatchNorm non-trivial eval statistics and affine parameters (a fraction
    ``negative_scales`` of the scales negative) and every Linear random weights: a randomly
    initialised model whose folding and quantization are not trivial (tests, ``--random-init``)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                sign = torch.where(torch.rand(c, generator=g) < negative_scales, -1.0, 1.0)
                m.weight.copy_((torch.rand(c, generator=g) + 0.5) * sign)
                m.bias.copy_(torch.randn(c, generator=g) * 0.5 + 0.3)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.3, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)


# ----------------------------------------------------------------------------------------------
# Builder, registry and named constructors
# ----------------------------------------------------------------------------------------------

MODEL_REGISTRY: dict[str, Callable[..., MetaSpikeFormer]] = {}

#: reference constructor names (``args.model`` in reference checkpoints) -> registry names.
REFERENCE_MODEL_NAMES = {
    "metaspikformer_8_256": "metaspikeformer_15m",
    "metaspikformer_8_384": "metaspikeformer_31m",
    "metaspikformer_8_512": "metaspikeformer_55m",
}


def register_model(fn: Callable[..., MetaSpikeFormer]) -> Callable[..., MetaSpikeFormer]:
    """Decorator: add a named constructor to :data:`MODEL_REGISTRY`."""
    MODEL_REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(MODEL_REGISTRY)


def create_model(name: str, **kwargs) -> MetaSpikeFormer:
    """Build a registered model (reference names such as ``metaspikformer_8_512`` accepted)."""
    key = REFERENCE_MODEL_NAMES.get(name, name)
    if key not in MODEL_REGISTRY:
        raise KeyError(f"model must be one of {list_models()} (or {sorted(REFERENCE_MODEL_NAMES)}), "
                       f"not {name!r}")
    return MODEL_REGISTRY[key](**kwargs)


def _create_metaspikeformer(defaults: dict, **kwargs) -> MetaSpikeFormer:
    """Builder: named-constructor defaults, overridden by user kwargs."""
    return MetaSpikeFormer(**{**defaults, **kwargs})


_IMAGENET = dict(img_size_h=224, img_size_w=224, in_channels=3, num_classes=1000,
                 depths=(1, 1, 1, 1, 6, 2), num_heads=8, mlp_ratio=4)


@register_model
def metaspikeformer_tiny(**kwargs) -> MetaSpikeFormer:
    """Small model for tests and the digits demo (1-channel 32x32 input, 10 classes, one block per list)."""
    return _create_metaspikeformer(dict(
        img_size_h=32, img_size_w=32, in_channels=1, num_classes=10, embed_dim=(16, 32, 64, 64),
        depths=(1, 1, 1, 1, 1, 1), num_heads=8, mlp_ratio=4), **kwargs)


@register_model
def metaspikeformer_15m(**kwargs) -> MetaSpikeFormer:
    """15.1M parameters (reference ``metaspikformer_8_256``)."""
    return _create_metaspikeformer(dict(_IMAGENET, embed_dim=(64, 128, 256, 360)), **kwargs)


@register_model
def metaspikeformer_31m(**kwargs) -> MetaSpikeFormer:
    """31.3M parameters (reference ``metaspikformer_8_384``)."""
    return _create_metaspikeformer(dict(_IMAGENET, embed_dim=(96, 192, 384, 480)), **kwargs)


@register_model
def metaspikeformer_55m(**kwargs) -> MetaSpikeFormer:
    """55.4M parameters (reference ``metaspikformer_8_512``); the released weights use ``kd=True``."""
    return _create_metaspikeformer(dict(_IMAGENET, embed_dim=(128, 256, 512, 640)), **kwargs)
