"""The three units whole, in amaranth.sim, against the golden engine on small layers of the
test configs (the Verilator testbenches in rtl_tests/ are the integration proof)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.compare import assert_exact
from contract.config import load_config
from hwgen.layout import ConvGeometry
from tests.gateware.units import golden_acc, golden_lif, golden_sdsa, run_acc, run_lif, run_sdsa

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "hw"


@pytest.mark.parametrize("name", ["lif_small", "lif_subtract"])
def test_lif_core_matches_golden(name):
    cfg = load_config(CONFIGS / f"{name}.yaml").lif
    rng = np.random.default_rng(11)
    L, top = cfg.lanes, 1 << (cfg.current_width - 1)
    currents = rng.integers(-top, top, size=(3, 4 * L))
    thresholds = rng.integers(0, 1 << min(cfg.threshold_width, cfg.current_width - 1), size=2 * L)
    spikes, membranes = run_lif(cfg, currents, thresholds)
    exp_s, exp_h = golden_lif(cfg, currents, thresholds)
    assert_exact("membrane", exp_h, membranes, ("timestep", "neuron"))
    assert_exact("spike", exp_s, spikes, ("timestep", "neuron"))


@pytest.mark.parametrize("name, geo, x_lanes, fold", [
    ("acc_small", ConvGeometry(3, 6, 5, 4, 3, 2, 1), False, True),
    ("acc_small", ConvGeometry(4, 4, 5, 6, 3, 1, 1, 4), True, False),
    ("acc_odd", ConvGeometry(2, 4, 4, 4, 3, 1, 1, 2), False, False),
])
def test_accumulator_array_matches_golden(name, geo, x_lanes, fold):
    cfg = load_config(CONFIGS / f"{name}.yaml").accumulator
    rng = np.random.default_rng(12)
    w = rng.integers(-20, 21, size=(geo.c_out, geo.cg_in, geo.kernel, geo.kernel))
    b = rng.integers(-50, 51, size=geo.c_out)
    x = (rng.random((2, geo.c_in, geo.h, geo.w)) < 0.4).astype(np.int64)
    got = run_acc(cfg, geo, w, b, x, x_lanes=x_lanes, fold=fold)
    assert_exact("accumulator", golden_acc(cfg, geo, w, b, x), got, ("timestep", "channel", "y", "x"))


@pytest.mark.parametrize("name", ["sdsa3_l4", "sdsa1_l8", "sdsa2_l1"])
def test_sdsa_unit_matches_golden(name):
    cfg = load_config(CONFIGS / f"{name}.yaml").sdsa
    rng = np.random.default_rng(13)
    heads, d, N = min(2, cfg.heads), min(5, cfg.head_dim), min(6, cfg.max_tokens)
    q, k, v = ((rng.random((2, heads * d, N)) < 0.4).astype(np.int64) for _ in range(3))
    got = run_sdsa(cfg, q, k, v, heads=heads, head_dim=d)
    axes = ("timestep", "channel", "token") if cfg.attention_matrix else ("timestep", "channel")
    assert_exact("attention", golden_sdsa(cfg, q, k, v, heads=heads, head_dim=d), got, axes)
