"""The integer LIF (golden.lif) against the float spikingjelly-style neuron (golden.neuron).

Wherever the float inputs are exactly representable in the fixed-point format (currents are
multiples of the current LSB 2**-s, and T <= frac_bits so no fractional bit is ever dropped),
the integer neuron must reproduce the float one exactly: same spikes, and membranes equal to
the float membrane times 2**(s + frac_bits).
"""
import dataclasses

import pytest
import torch

from contract.config import LifConfig
from golden.lif import lif_integer, thresholds_per_neuron
from golden.neuron import multistep_lif

CFG = LifConfig(lanes=4, neurons=1024, channels=64, current_width=12, membrane_width=18,
                frac_bits=6, threshold_width=11, leak_shift=1, reset="hard", max_timesteps=16)
S = 4  # current LSB = 2**-4, so threshold 1.0 -> 16 and 0.5 -> 8


def _float_inputs(gen, T, n, cfg=CFG):
    lo, hi = -(1 << (cfg.current_width - 1)), (1 << (cfg.current_width - 1)) - 1
    ints = torch.randint(lo, hi + 1, (T, n), generator=gen)
    # Concentrate half of them near the threshold so both outcomes are common.
    near = torch.randint(-40, 41, (T, n), generator=gen)
    ints = torch.where(torch.rand(T, n, generator=gen) < 0.5, near, ints)
    return ints, ints.double() / 2**S


@pytest.mark.parametrize("v_threshold", [1.0, 0.5])
@pytest.mark.parametrize("T", [1, 2, 4, 6])
def test_integer_lif_equals_float_lif_when_representable(v_threshold, T):
    gen = torch.Generator().manual_seed(1000 * T + int(v_threshold * 10))
    ints, x = _float_inputs(gen, T, 4096)
    spikes_f, h_f = multistep_lif(x, v_threshold=v_threshold, return_membrane=True)
    th = torch.full((4096,), int(v_threshold * 2**S))
    spikes_i, h_i = lif_integer(ints, th, CFG)
    assert torch.equal(spikes_i, spikes_f.to(torch.int64))
    assert torch.equal(h_i, (h_f * 2 ** (S + CFG.frac_bits)).to(torch.int64))
    assert torch.equal(h_i.double() / 2 ** (S + CFG.frac_bits), h_f)  # exact, not rounded
    assert 0.05 < spikes_i.double().mean() < 0.95


def test_floor_shift_below_representable_precision():
    """Beyond frac_bits the integer neuron floors (arithmetic shift), it does not round."""
    cfg = dataclasses.replace(CFG, frac_bits=0, membrane_width=12)
    h = lif_integer(torch.tensor([[3], [0]]), torch.tensor([100]), cfg)[1]
    assert h.flatten().tolist() == [1, 0]  # 3 >> 1 = 1; then (0 - 1) >> 1 = -1 -> 1 + -1 = 0
    h = lif_integer(torch.tensor([[-3]]), torch.tensor([100]), cfg)[1]
    assert h.item() == -2  # floor(-1.5)


def test_subtract_reset_keeps_the_excess():
    cfg = dataclasses.replace(CFG, reset="subtract", frac_bits=0, membrane_width=12)
    s, h = lif_integer(torch.tensor([[30], [0], [0]]), torch.tensor([10]), cfg)
    # H0 = 15 >= 10: spike, V = 5; H1 = 5 + (0 - 5) >> 1 = 2; H2 = 2 + (-2 >> 1) = 1
    assert s.flatten().tolist() == [1, 0, 0]
    assert h.flatten().tolist() == [15, 2, 1]


def test_tau_four_leak_shift_two():
    cfg = dataclasses.replace(CFG, leak_shift=2, frac_bits=0, membrane_width=12)
    s, h = lif_integer(torch.tensor([[40], [40]]), torch.tensor([100]), cfg)
    assert h.flatten().tolist() == [10, 17]  # 0 + 40>>2 = 10; 10 + (30 >> 2) = 17


def test_per_channel_thresholds_are_position_major():
    th = thresholds_per_neuron(torch.tensor([1, 2, 3]), 9)
    assert th.tolist() == [1, 2, 3, 1, 2, 3, 1, 2, 3]
    with pytest.raises(ValueError, match="multiple of channels"):
        thresholds_per_neuron(torch.tensor([1, 2]), 9)


def test_out_of_range_inputs_are_rejected():
    with pytest.raises(ValueError, match="does not fit signed 12 bits"):
        lif_integer(torch.tensor([[2048]]), torch.tensor([1]), CFG)
    with pytest.raises(ValueError, match="unsigned 11 bits"):
        lif_integer(torch.tensor([[0]]), torch.tensor([2048]), CFG)


def test_membrane_never_leaves_its_width():
    """The config's proof (membrane_width >= current_width + frac_bits) holds on the worst
    sequences: the membrane stays inside its signed range."""
    lo, hi = -(1 << 11), (1 << 11) - 1
    seq = torch.tensor([[hi], [lo], [hi], [hi], [lo], [lo]] * 3)
    _, h = lif_integer(seq.repeat(1, 2), torch.tensor([2047, 0]), CFG)
    assert h.min() >= -(1 << 17) and h.max() < (1 << 17)
