"""Integer LIF neuron: the executable form of docs/arithmetic.md, section "LIF".

Every width and semantic comes from :class:`contract.config.LifConfig`; the RTL LIF core
(``hwgen.units.lif``) implements the same function. Integers are held in ``torch.int64``,
wide enough for every intermediate (widths are capped well below 63 bits by the config).

Per timestep t, for every neuron (``F = frac_bits``, ``k = leak_shift``, ``V[-1] = 0``)::

    H[t] = V[t-1] + (((X[t] << F) - V[t-1]) >> k)      # >> is floor (arithmetic) shift
    S[t] = H[t] >= (th << F)
    V[t] = 0 if S[t] else H[t]                           # reset = hard
    V[t] = H[t] - (th << F) if S[t] else H[t]            # reset = subtract
"""
from __future__ import annotations

import torch

from contract.config import LifConfig

__all__ = ["lif_integer", "thresholds_per_neuron", "check_currents"]


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
    currents = currents.to(torch.int64)
    thresholds = thresholds.to(torch.int64)
    check_currents(currents, cfg)
    if thresholds.numel() and (thresholds.min() < 0 or thresholds.max() >= (1 << cfg.threshold_width)):
        raise ValueError(f"thresholds must be in [0, {(1 << cfg.threshold_width) - 1}] "
                         f"(unsigned {cfg.threshold_width} bits), got [{thresholds.min()}, {thresholds.max()}]")
    f, k = cfg.frac_bits, cfg.leak_shift
    th = thresholds << f
    v = torch.zeros(currents.shape[1:], dtype=torch.int64)
    spikes, membranes = [], []
    for x in currents:
        h = v + (((x << f) - v) >> k)
        s = h >= th
        if cfg.reset == "hard":
            v = torch.where(s, torch.zeros_like(h), h)
        else:
            v = torch.where(s, h - th, h)
        spikes.append(s.to(torch.int64))
        membranes.append(h)
    return torch.stack(spikes), torch.stack(membranes)
