"""The whole 15M Meta-SpikeFormer at 224 x 224 on the simulated core (issue 14): one real photo,
every layer of every instruction checked against the golden engine, every instruction's counters
against the cycle model (tools/run_whole.py; docs/core.md, "Verification")."""
from __future__ import annotations

import json

import pytest

from hwgen.sim.runner import REPO_ROOT


@pytest.mark.slow   # about 6 minutes on 2 cores: 72 M cycles on 64 lanes, the golden engine, the build
def test_whole_15m_at_224_t1_on_64_lanes_every_layer_exact(tmp_path):
    from tools.run_whole import main

    config = REPO_ROOT / "configs" / "hw" / "metaspikeformer64.yaml"
    assert main(["--config", str(config), "--out", str(tmp_path)]) == 0   # a mismatch raises, naming it
    run = json.loads((tmp_path / "metaspikeformer_15m_t1_metaspikeformer64" / "run" / "run.json").read_text())
    t = run["totals"]
    assert t["exact_images"] == t["images"] == 1
    assert len(run["layers"]) == 157
    # the firing rates the random weights were calibrated to are realistic, not silent or saturated
    rates = [r["input_rate"] for r in run["layers"] if r["input_rate"] is not None]
    assert 0.02 < min(rates) and max(rates) < 0.6
