"""Synaptic operations and energy per layer, in two counting conventions and two energy models
(docs/energy.md).

Counting conventions, both per image and summed over the T timesteps:

* **paper** (Yao et al., Spike-driven Transformer V2, Appendix B.2): a layer that consumes
  spikes costs ``FLOPs x R`` additions per timestep, ``R`` the firing rate of its input and
  ``FLOPs`` the dense operation count of the layer (:func:`paper_flops`: ``k^2 H_out W_out C_in
  C_out / groups`` for a conv, ``in x out`` for a linear layer, ``2 N d C`` for SDSA-3's ``K^T V``
  and ``Q (K^T V)``, at the rates of K and Q). The program's layers are the counted layers, so
  SepConv is the fused 7x7 conv 2C -> C at the rate of the spikes entering the depthwise conv and
  RepConv is its folded 3x3 conv, as in the paper. The encoding conv (pixels, not spikes) costs
  ``FLOPs`` multiply-accumulates, once per image.
* **datapath**: the additions the core's spike-driven datapath performs (what its ``additions``
  counters count): per input spike of a conv, ``C_out / groups`` additions for every kernel
  offset that lands on the output map (taps outside the map are not issued); the encoding conv as
  pixel bit planes, one ``C_out`` word of shifted weights per set bit and landing offset, at every
  timestep (the pixel memory is read again each timestep); SDSA-3/4 ``d`` additions per K spike
  (``K^T V``) and per live Q spike (``Q (K^T V)``; a Q spike whose ``K^T V`` row was never written
  this timestep is skipped); SDSA-1/2 one counter word of ``L`` additions per lane block with a
  spike. Padded attention heads (``hwgen.compiler.padding``) are counted as the core runs them.

Each count is computed from the exact spike maps of one image (``*_exact``) or expected from
firing rates (``*_expected``: spikes spread uniformly over the map; the expected count of a
conv is then ``FLOPs x R`` minus the taps outside the map).

Energy models:

* **paper's** (45 nm, Horowitz ISSCC 2014 as the paper uses it): ``E_AC = 0.9 pJ`` per addition,
  ``E_MAC = 4.6 pJ`` per multiply-accumulate (a 32-bit float add, and mult + add). Only synaptic
  operations cost energy.
* **memory-aware** (:mod:`hwgen.perf.memory`): integer additions and multiplies at Horowitz's
  45 nm integer figures plus every access to every on-chip memory at an energy per access
  interpolated from Horowitz's SRAM figures by size and word width.

:class:`Work` is one layer's operations; :func:`paper_work` and :func:`datapath_work` compute it
from rates or from tensors; :func:`paper_model_pj` prices it in the paper's model.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from contract.program import Layer
from hwgen.layout import ConvGeometry, fold_slots
from hwgen.perf.rates import LayerRates

__all__ = ["E_AC_PJ", "E_MAC_PJ", "Work", "reach", "conv_geometry", "paper_flops", "conv_additions_exact",
           "conv_additions_expected", "encoding_additions_exact", "sdsa_additions_exact", "paper_work",
           "datapath_work", "paper_model_pj", "Counting", "accumulate_paper_work", "sdsa_paper_work",
           "accumulate_datapath_work", "sdsa_datapath_work"]

#: the paper's energy per addition (AC) and per multiply-accumulate (MAC), pJ (45 nm, Horowitz 2014)
E_AC_PJ = 0.9
E_MAC_PJ = 4.6


@dataclass
class Work:
    """One layer's operations for one image, summed over its timesteps.

    ``additions`` are synaptic additions (the paper's SOPs in the paper counting), ``macs`` the
    encoding conv's multiply-accumulates (paper counting only). The rest drive the memory
    traffic (:func:`hwgen.perf.memory.layer_traffic`): ``events`` input spikes (set pixel bits
    for the bit-plane encoding), ``weight_words`` accumulator operations (one weight word read
    and one accumulator word read-modify-write each), ``kv_updates`` / ``kv_reads`` SDSA memory
    word read-modify-writes / reads, ``neuron_updates`` LIF neurons x timesteps (padding lanes
    included), ``vector_adds`` the reduce engine's integer additions; ``chained``: a LIF that
    takes its currents from the CONV before it as they drain (docs/core.md, "Overlap"), reading
    no int memory."""

    additions: float = 0.0
    macs: float = 0.0
    events: float = 0.0
    weight_words: float = 0.0
    kv_updates: float = 0.0
    kv_reads: float = 0.0
    neuron_updates: float = 0.0
    vector_adds: float = 0.0
    chained: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- geometry
def reach(size_in: int, size_out: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Per input coordinate (along one axis): how many kernel offsets put it on an output
    coordinate inside the map, i.e. ``(i + padding - k) / stride`` whole and in ``[0, size_out)``."""
    t = np.arange(size_in)[:, None] + padding - np.arange(kernel)[None, :]
    return ((t % stride == 0) & (t >= 0) & (t // stride < size_out)).sum(axis=1)


def _kind(layer: Layer):
    """The layer's kind in the hardware-side registry, whose hooks hold the per-kind counting."""
    from hwgen.compiler.kinds import core_kind      # amaranth: only when something is counted

    return core_kind(layer.kind)


def conv_geometry(layer: Layer) -> ConvGeometry:
    """The accumulator geometry of a layer on the accumulator array (a linear layer: a 1x1 conv
    on one position): its kind's ``geometry`` hook."""
    return _kind(layer).geometry(layer)


def _offsets(geo: ConvGeometry) -> np.ndarray:
    """``[h, w]``: landing kernel offsets per input position."""
    ny = reach(geo.h, geo.out_h, geo.kernel, geo.stride, geo.padding)
    nx = reach(geo.w, geo.out_w, geo.kernel, geo.stride, geo.padding)
    return ny[:, None] * nx[None, :]


def paper_flops(layer: Layer) -> dict[str, float]:
    """Dense operations per timestep by the paper's formulas, by the spike input they are
    counted at: ``{"input": FLOPs}`` for a conv or linear layer (the encoding conv's are its
    MACs), ``{"k": N d C, "q": N d C}`` for SDSA-3/4, ``{}`` for the rest (the kind's
    ``paper_flops`` hook)."""
    return _kind(layer).paper_flops(layer)


def _words_per_offset(geo: ConvGeometry, lanes: int, pixels: bool) -> tuple[int, int]:
    """(full weight words per landing offset, fold slots S): G words, or G - 1 plus a parked
    last word that S of share one operation (docs/accumulator.md, folded remainder)."""
    G = math.ceil(geo.cg_out / lanes)
    S = 0 if pixels else fold_slots(geo, lanes)
    return (G - 1 if S else G), S


def _weight_words(parks_per_timestep: Sequence[float], geo: ConvGeometry, lanes: int, pixels: bool) -> float:
    """Accumulator operations from the landing (event, offset) pairs of each timestep."""
    full, S = _words_per_offset(geo, lanes, pixels)
    total = 0.0
    for parks in parks_per_timestep:
        total += parks * full + (math.ceil(parks / S) if S else 0)     # parked words flush at the timestep's end
    return total


# ---------------------------------------------------------------------------- exact counts
def conv_additions_exact(layer: Layer, spikes: np.ndarray) -> tuple[int, list[int]]:
    """(additions, landing (spike, offset) pairs per timestep) of a conv or linear layer on its
    input spikes ``[T, C_in, H, W]`` (or ``[T, C_in]`` for a linear layer)."""
    geo = conv_geometry(layer)
    s = np.asarray(spikes).reshape(spikes.shape[0], geo.c_in, geo.h, geo.w)
    offsets = _offsets(geo)
    # per timestep and group: spikes weighted by their landing offsets
    per_group = (s.reshape(s.shape[0], geo.groups, geo.cg_in, geo.h, geo.w).sum(axis=2, dtype=np.int64)
                 * offsets[None, None]).sum(axis=(2, 3))
    parks = [int(v) for v in per_group.sum(axis=1)]
    return int(per_group.sum()) * geo.cg_out, parks


def encoding_additions_exact(layer: Layer, pixels: np.ndarray, bits: int, T: int) -> tuple[int, int, int]:
    """(additions, set pixel bits, landing (bit, offset) pairs) of the bit-plane encoding conv
    over ``T`` timesteps, pixels ``[C, H, W]`` (the same image every timestep)."""
    geo = conv_geometry(layer)
    p = np.asarray(pixels, dtype=np.int64) & ((1 << bits) - 1)
    ones = sum((p >> i) & 1 for i in range(bits))                      # set bit planes per pixel
    parks = int((ones.sum(axis=0) * _offsets(geo)).sum())
    return T * parks * geo.cg_out, T * int(ones.sum()), parks


def sdsa_additions_exact(layer: Layer, q: np.ndarray, k: np.ndarray | None, lanes: int) -> dict[str, int]:
    """Additions and SDSA memory operations of an SDSA layer on its spikes ``[T, C, H, W]``
    (docs/sdsa.md): ``additions``, ``kv_updates``, ``kv_reads``, ``events`` (K and Q spikes, or
    the summed spikes of SDSA-1/2)."""
    a = layer.attrs
    heads, d = a["heads"], a["head_dim"]
    T = q.shape[0]
    B = math.ceil(d / lanes)

    def split(s):        # [T, C, H, W] -> [T, N, heads, d]
        return np.asarray(s).reshape(T, heads, d, -1).transpose(0, 3, 1, 2).astype(np.int64)

    if a["variant"] in (3, 4):
        qs, ks = split(q), split(k)
        touched = ks.any(axis=1)                                   # [T, heads, d]: K^T V row written
        live = int((qs * touched[:, None]).sum())
        k_spikes = int(ks.sum())
        return {"additions": d * (k_spikes + live), "kv_updates": B * k_spikes, "kv_reads": B * live,
                "events": k_spikes + int(qs.sum())}
    s = split(q) * (split(k) if a["variant"] == 1 else 1)
    pad = np.zeros((*s.shape[:3], B * lanes - d), dtype=np.int64)
    blocks = np.concatenate([s, pad], axis=3).reshape(*s.shape[:3], B, lanes).any(axis=4)   # [T, N, heads, B]
    lanes_of_block = np.minimum(lanes, d - lanes * np.arange(B))
    # the counter blocks read out per timestep: those a token wrote (the others are zero blocks)
    return {"additions": int((blocks * lanes_of_block).sum()), "kv_updates": int(blocks.sum()),
            "kv_reads": int(blocks.any(axis=1).sum()), "events": int(s.sum())}


# ---------------------------------------------------------------------------- expected counts
def conv_additions_expected(layer: Layer, rates: Sequence[float], *, real_channels: int | None = None
                            ) -> tuple[float, list[float]]:
    """(additions, landing pairs per timestep) of a conv or linear layer whose input fires at
    ``rates[t]``, spikes spread uniformly over the input map. ``real_channels``: input channels
    that can fire (the rest are padding), default all."""
    geo = conv_geometry(layer)
    c = geo.c_in if real_channels is None else real_channels
    mean_offsets = float(_offsets(geo).mean())
    parks = [r * c * geo.h * geo.w * mean_offsets for r in rates]
    return sum(parks) * geo.cg_out, parks


# ---------------------------------------------------------------------------- per layer
def paper_work(layer: Layer, rates: LayerRates | None, T: int, lanes: int) -> Work:
    """The paper's counting for one layer (``rates``: its input firing rates, T per role): the
    kind's ``paper_work`` hook."""
    return _kind(layer).paper_work(layer, rates, T, lanes)


def datapath_work(layer: Layer, T: int, lanes: int, *, rates: LayerRates | None = None,
                  tensors: Mapping[str, np.ndarray] | None = None, pixels: np.ndarray | None = None,
                  input_bits: int = 8, pixel_ones: float | None = None, real: Layer | None = None) -> Work:
    """What the core does for one layer (``layer`` as the core runs it, padded heads included;
    ``real``: the program's layer before padding, for the channels that can fire): the kind's
    ``datapath_work`` hook.

    From ``tensors`` (name -> ``[T, ...]`` of one image, real channels) and ``pixels``
    (``[C, H, W]``) when given, else expected from ``rates``. ``pixel_ones``: mean set bits per
    pixel for the expected bit-plane encoding (default ``input_bits / 2``: uniform pixels)."""
    return _kind(layer).datapath_work(layer, T, lanes, Counting(rates, tensors, pixels, input_bits, pixel_ones,
                                                                real or layer))


@dataclass(frozen=True)
class Counting:
    """What :func:`datapath_work` counts from: ``tensors`` and ``pixels`` of one image (exact), or
    ``rates`` (expected); the program's ``real`` layer (before padding)."""

    rates: LayerRates | None
    tensors: Mapping[str, np.ndarray] | None
    pixels: np.ndarray | None
    input_bits: int
    pixel_ones: float | None
    real: Layer


# ---------------------------------------------------------------------------- per kind
# The kinds' hooks (hwgen.compiler.kinds) call these; they know one unit's counting each.
def accumulate_paper_work(layer: Layer, geo: ConvGeometry, pixels: bool, flops: float, rates: LayerRates | None,
                          lanes: int) -> Work:
    """The paper's counting for a layer on the accumulator array: the encoding conv's MACs, or
    FLOPs x input rate additions."""
    w = Work()
    if pixels:
        w.macs = flops
        w.weight_words = w.macs / geo.cg_out * math.ceil(geo.cg_out / lanes)
        return w
    if rates is None:
        return w
    w.additions = flops * sum(rates.roles["input"])
    w.events = sum(rates.roles["input"]) * geo.c_in * geo.h * geo.w
    w.weight_words = w.additions / geo.cg_out * math.ceil(geo.cg_out / lanes)
    return w


def sdsa_paper_work(layer: Layer, flops: dict[str, float], rates: LayerRates | None, lanes: int) -> Work:
    """The paper's counting for SDSA-3/4: ``N d C`` at the rates of K and of Q."""
    w = Work()
    if not flops or rates is None:
        return w
    a = layer.attrs
    B = math.ceil(a["head_dim"] / lanes)
    rk, rq = sum(rates.roles["k"]), sum(rates.roles["q"])
    w.additions = flops["k"] * rk + flops["q"] * rq
    spikes = a["tokens"] * a["heads"] * a["head_dim"]
    w.events = (rk + rq) * spikes
    w.kv_updates, w.kv_reads = rk * spikes * B, rq * spikes * B
    return w


def accumulate_datapath_work(layer: Layer, geo: ConvGeometry, pixels_in: bool, T: int, lanes: int,
                             c: Counting) -> Work:
    """The accumulator array's work: additions, events and operations (weight words)."""
    w = Work()
    if pixels_in:
        if c.pixels is not None:
            w.additions, w.events, parks = encoding_additions_exact(layer, c.pixels, c.input_bits, T)
        else:
            ones = c.input_bits / 2 if c.pixel_ones is None else c.pixel_ones
            parks = ones * geo.c_in * float(_offsets(geo).sum())
            w.additions, w.events = T * parks * geo.cg_out, T * ones * geo.c_in * geo.h * geo.w
        w.weight_words = _weight_words([parks] * T, geo, lanes, pixels=True)
        return w
    src = layer.inputs[0]
    if c.tensors is not None:
        s = np.asarray(c.tensors[src])
        s = _pad_channels(s, c.real, layer)
        w.additions, parks = conv_additions_exact(layer, s)
        w.events = float(s.sum())
    else:
        c_real = conv_geometry(c.real).c_in
        w.additions, parks = conv_additions_expected(layer, c.rates.roles["input"], real_channels=c_real)
        w.events = sum(c.rates.roles["input"]) * c_real * geo.h * geo.w
    w.weight_words = _weight_words(parks, geo, lanes, pixels=False)
    return w


def sdsa_datapath_work(layer: Layer, T: int, lanes: int, c: Counting) -> Work:
    """The SDSA unit's work: additions, events, K^T V (or counter) updates and reads."""
    w = Work()
    a, real = layer.attrs, c.real
    if c.tensors is not None:
        q = c.tensors[a["q"]]
        k = c.tensors[a["k"]] if a.get("k") else None
        # the padded layer's head_dim: the real spikes re-laid per padded head
        got = sdsa_additions_exact(layer, _pad_heads(q, real, layer), None if k is None else
                                   _pad_heads(k, real, layer), lanes)
        w.additions, w.kv_updates, w.kv_reads, w.events = (got["additions"], got["kv_updates"],
                                                           got["kv_reads"], got["events"])
        return w
    rates = c.rates
    d, B = a["head_dim"], math.ceil(a["head_dim"] / lanes)
    spikes = real.attrs["tokens"] * real.attrs["heads"] * real.attrs["head_dim"]
    if a["variant"] in (3, 4):
        rk, rq = sum(rates.roles["k"]), sum(rates.roles["q"])
        # every Q spike counted live: an upper bound (a K channel silent over all tokens
        # of a timestep leaves its row unwritten and its Q spikes skipped)
        w.additions = d * (rk + rq) * spikes
        w.kv_updates, w.kv_reads, w.events = B * rk * spikes, B * rq * spikes, (rk + rq) * spikes
    else:
        rq = np.asarray(rates.roles["q"])
        r = rq * np.asarray(rates.roles["k"]) if a["variant"] == 1 else rq   # independence assumed
        n_blocks = a["tokens"] * a["heads"] * B
        lanes_in_block = spikes / (a["tokens"] * a["heads"] * B)
        p_any = 1 - (1 - r) ** lanes_in_block                      # per timestep: a block holds a spike
        w.kv_updates = float((p_any * n_blocks).sum())
        w.additions = w.kv_updates * lanes_in_block
        # the counter blocks read out: those written in the timestep (by one of the tokens)
        w.kv_reads = float(((1 - (1 - p_any) ** a["tokens"]) * a["heads"] * B).sum())
        w.events = float(r.sum() * spikes)
    return w


def _pad_channels(s: np.ndarray, real: Layer, layer: Layer) -> np.ndarray:
    """Real input spikes of a conv whose input channels the core pads: zeros on the padding
    channels (their position does not change any count, only the channel total)."""
    c_real, c_hw = conv_geometry(real).c_in, conv_geometry(layer).c_in
    if c_real == c_hw:
        return s
    out = np.zeros((s.shape[0], c_hw, *s.shape[2:]), dtype=s.dtype)
    out[:, :c_real] = s
    return out


def _pad_heads(s: np.ndarray, real: Layer, layer: Layer) -> np.ndarray:
    """Real SDSA spikes ``[T, heads * d, ...]`` laid out for the padded head dimension."""
    heads, d, d_hw = real.attrs["heads"], real.attrs["head_dim"], layer.attrs["head_dim"]
    s = np.asarray(s)
    if d == d_hw:
        return s
    T, rest = s.shape[0], s.shape[2:]
    out = np.zeros((T, heads, d_hw, *rest), dtype=s.dtype)
    out[:, :, :d] = s.reshape(T, heads, d, *rest)
    return out.reshape(T, heads * d_hw, *rest)


def paper_model_pj(work: Work, *, encoding_timesteps: int = 1) -> float:
    """Energy in the paper's model: ``E_AC`` per synaptic addition, ``E_MAC`` per MAC (the
    encoding conv's MACs ``encoding_timesteps`` times: 1 as the paper's formula writes it)."""
    return E_AC_PJ * work.additions + E_MAC_PJ * work.macs * encoding_timesteps
