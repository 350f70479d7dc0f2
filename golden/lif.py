"""Integer LIF neuron: the executable form of docs/arithmetic.md, section "LIF".

Every width and semantic comes from :class:`contract.config.LifConfig`; the RTL LIF core
(``hwgen.units.lif``) implements the same function.

Per timestep t, for every neuron (``F = frac_bits``, ``k = leak_shift``, ``V[-1] = 0``)::

    H[t] = V[t-1] + (((X[t] << F) - V[t-1]) >> k)      # >> is floor (arithmetic) shift
    S[t] = H[t] >= (th << F)
    V[t] = 0 if S[t] else H[t]                           # reset = hard
    V[t] = H[t] - (th << F) if S[t] else H[t]            # reset = subtract

The code computes the charge in the equivalent form ``H[t] = (W[t-1] + (X[t] << F)) >> k`` with
``W = (2^k - 1) V`` (``V + floor((A - V) / 2^k) = floor((A + (2^k - 1) V) / 2^k)`` for integer
``V``): one add and one shift per timestep; for tau = 2, ``W = V`` and ``H = (V + (X << F)) >> 1``.

**Integer type.** The recurrence runs in int32 when every intermediate provably fits 32 bits,
else in int64. The proof is the one of docs/arithmetic.md ("No overflow"): every ``V`` and ``H``
lies between 0 and ``X << F`` of some timestep, so with ``M`` the largest ``|X << F|`` of the
input, ``|V|, |H| <= M`` and ``|W + (X << F)| <= 2^k M``. ``M`` is measured on the
currents (the same pass that checks them against ``current_width``), so the choice is exact for
every input, not only for the widths of the configuration.
"""
from __future__ import annotations

import torch

from contract.config import LifConfig

__all__ = ["check_currents", "constant_over_t", "lif_integer", "lif_run", "thresholds_per_neuron"]

_INT32_LIMIT = 1 << 31


def check_currents(currents: torch.Tensor, cfg: LifConfig) -> None:
    """Raise if any current does not fit the signed current width (the RTL would wrap it)."""
    lo, hi = -(1 << (cfg.current_width - 1)), (1 << (cfg.current_width - 1)) - 1
    if currents.numel() and (currents.min() < lo or currents.max() > hi):
        bad = ((currents < lo) | (currents > hi)).nonzero()[0].tolist()
        raise ValueError(f"current {currents[tuple(bad)].item()} at index {bad} does not fit "
                         f"signed {cfg.current_width} bits [{lo}, {hi}]")


def thresholds_per_neuron(thresholds: torch.Tensor, neurons: int) -> torch.Tensor:
    """Expand per-channel thresholds to neurons in position-major order (neuron n has channel
    ``n % channels``), the order in which the LIF core reads its threshold rows."""
    channels = thresholds.shape[0]
    if neurons % channels:
        raise ValueError(f"neurons ({neurons}) must be a multiple of channels ({channels})")
    return thresholds.repeat(neurons // channels)


def constant_over_t(x: torch.Tensor) -> bool:
    """True when ``x[t]`` is one tensor for every t (``expand`` over T: stride 0, or T = 1)."""
    return x.shape[0] == 1 or x.stride(0) == 0


def lif_integer(currents: torch.Tensor, thresholds: torch.Tensor, cfg: LifConfig):
    """Run the integer LIF over T timesteps.

    Args:
        currents: ``[T, ...]`` integer currents (any integer dtype), each within
            ``current_width`` signed bits.
        thresholds: integer thresholds, unsigned ``threshold_width`` bits, broadcastable to
            ``currents.shape[1:]`` (per neuron, or per channel along a trailing axis).
        cfg: the LIF section of the hardware configuration.

    Returns:
        ``(spikes, membranes)``: int64 ``[T, ...]``; ``membranes`` is the pre-reset membrane
        ``H[t]`` (``frac_bits`` fractional bits), the value the RTL reports on its output.
    """
    spikes, membranes = lif_run(currents, thresholds, cfg, spike_dtype=torch.int64)
    return spikes, membranes.to(torch.int64)


def _empty_over_t(like: torch.Tensor, T: int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised ``[T, *like.shape[1:]]`` tensor whose timesteps have the memory layout of
    ``like[0]`` (channels-last currents give channels-last membranes and spikes)."""
    step = torch.empty_like(like[0], dtype=dtype)
    return torch.empty_strided((T, *step.shape), (step.numel(), *step.stride()), dtype=dtype)


def lif_run(currents: torch.Tensor, thresholds: torch.Tensor, cfg: LifConfig, *, input_shift: int = 0,
            spike_dtype: torch.dtype = torch.bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lif_integer` on ``X = currents << input_shift``, in the narrowest exact integer type.

    ``currents`` may be any dtype that holds integers exactly (an integer type, or the float32 /
    float64 output of an exact float convolution); when it is the same tensor at every
    timestep (``expand`` over T, as the encoding layer's current is) it is read once. Returns
    ``(spikes, membranes)``: spikes 0/1 in ``spike_dtype`` (bool by default: one byte, written
    by the comparison itself; an int8 convolution reads it as uint8 without a copy), membranes ``H[t]`` in int32 or
    int64 (see the module docstring), both in the memory layout of the currents.
    """
    thresholds = torch.as_tensor(thresholds).to(torch.int64)
    if thresholds.numel() and (thresholds.min() < 0 or thresholds.max() >= (1 << cfg.threshold_width)):
        raise ValueError(f"thresholds must be in [0, {(1 << cfg.threshold_width) - 1}] "
                         f"(unsigned {cfg.threshold_width} bits), got [{thresholds.min()}, {thresholds.max()}]")
    T = currents.shape[0]
    once = constant_over_t(currents)
    x = currents[:1] if once else currents
    f, k, q = cfg.frac_bits, cfg.leak_shift, input_shift

    # the current check (one pass) also gives M, the largest |X << F|, which picks the type
    lo, hi = (int(v) for v in torch.aminmax(_flat(x))) if x.numel() else (0, 0)
    cmin, cmax = -(1 << (cfg.current_width - 1)), (1 << (cfg.current_width - 1)) - 1
    if lo << q < cmin or hi << q > cmax:
        check_currents(x.to(torch.int64) << q, cfg)     # names the first current that does not fit
    shift = q + f                                        # A = X << F = currents << (input_shift + F)
    m = max(-lo, hi) << shift
    th_max = int(thresholds.max()) << f if thresholds.numel() else 0
    dt = torch.int32 if (m << k) < _INT32_LIMIT and th_max < _INT32_LIMIT else torch.int64

    x = x.to(dt)
    th = thresholds.to(dt) << f
    leak = (1 << k) - 1
    membranes = _empty_over_t(x, T, dt)
    spikes = _empty_over_t(x, T, torch.bool)
    w = None                                             # W = (2^k - 1) V[t-1]; V[-1] = 0
    for t in range(T):
        xt, h, s = x[0] if once else x[t], membranes[t], spikes[t]
        if w is None and shift >= k:
            torch.bitwise_left_shift(xt, shift - k, out=h)             # H[0] = A >> k, exactly
        else:
            if w is None:
                torch.bitwise_left_shift(xt, shift, out=h)
            else:
                torch.add(w, xt, alpha=1 << shift, out=h)              # W + A
            h.bitwise_right_shift_(k)                                  # H = (W + A) >> k
        torch.ge(h, th, out=s)                                         # S = H >= th << F
        if t + 1 < T:                                    # V = H - H S (hard) or H - (th << F) S (subtract)
            w = torch.addcmul(h, h if cfg.reset == "hard" else th, s, value=-1)
            if leak != 1:
                w.mul_(leak)
    return (spikes if spike_dtype == torch.bool else spikes.to(spike_dtype)), membranes


def _flat(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a 1-D view when its elements are dense in memory in any axis order (a
    channels-last tensor), so that a reduction reads it without a copy."""
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))
    p = x.permute(order)
    return p.view(-1) if p.is_contiguous() else x
