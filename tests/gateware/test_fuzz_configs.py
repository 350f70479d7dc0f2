"""Fuzzed hardware configurations (hypothesis).

* Random *valid* configurations per unit are built (``hwgen build``: Verilog and
  ``verilator --lint-only -Wall``) and simulated bit-exact (``amaranth.sim``) on a random small
  layer against the golden engine: 10 per unit in the default run, 50 under ``-m slow``.
* Random *invalid* configurations (a key out of range, of the wrong type, unknown, missing, or
  inconsistent with another) make ``hwgen check`` and ``hwgen build`` exit 2 with one line that
  names the key, never a traceback: 200 examples.

Runs are derandomized (the same examples every run); a failure prints the falsifying
configuration, shrunk to a minimal one, and hypothesis' reproduction blob (``print_blob``).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from contract.compare import assert_exact
from contract.config import AccumulatorConfig, HwConfig, LifConfig, SdsaConfig
from hwgen.build import build
from hwgen.cli import main as hwgen
from hwgen.layout import ConvGeometry
from tests.gateware.units import golden_acc, golden_lif, golden_sdsa, run_acc, run_lif, run_sdsa

FUZZ = dict(deadline=None, derandomize=True, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


@st.composite
def lif_configs(draw):
    lanes = draw(st.integers(1, 8))
    rows = draw(st.integers(1, 4))
    beats = rows * draw(st.integers(1, 4))
    current = draw(st.integers(2, 14))
    frac = draw(st.integers(0, 6))
    return {"lanes": lanes, "neurons": lanes * beats, "channels": lanes * rows, "current_width": current,
            "membrane_width": current + frac + draw(st.integers(0, 2)), "frac_bits": frac,
            "threshold_width": draw(st.integers(1, 12)), "leak_shift": draw(st.integers(1, 4)),
            "reset": draw(st.sampled_from(["hard", "subtract"])), "max_timesteps": draw(st.integers(1, 4)),
            "threshold_depth": rows + draw(st.integers(0, 3))}


@st.composite
def acc_configs(draw):
    lanes = draw(st.integers(1, 8))
    acc_width = draw(st.integers(10, 24))
    return {"lanes": lanes, "weight_width": draw(st.integers(2, 8)), "accumulator_width": acc_width,
            "bias_width": draw(st.integers(2, acc_width)), "weight_depth": draw(st.sampled_from([256, 512, 1000])),
            "accumulator_depth": draw(st.sampled_from([64, 128, 200])), "bias_depth": draw(st.sampled_from([16, 40])),
            "input_bits": draw(st.integers(1, 4)), "max_kernel": draw(st.sampled_from([1, 3, 5])),
            "max_channels": draw(st.integers(1, 6)), "max_size": draw(st.integers(2, 6)),
            "weight_bank_depth": draw(st.sampled_from([0, 0, 64])), "buffers": draw(st.sampled_from([1, 2])),
            "kinds": ["conv"] + draw(st.lists(st.sampled_from(["grouped", "encoding"]), unique=True))}


@st.composite
def sdsa_configs(draw):
    variant = draw(st.sampled_from([1, 2, 3, 4]))
    head_dim, tokens = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    top = tokens * head_dim if variant in (3, 4) else tokens
    return {"variant": variant, "lanes": draw(st.integers(1, 6)), "heads": draw(st.integers(1, 3)),
            "head_dim": head_dim, "max_tokens": tokens, "count_width": _bits(tokens) + draw(st.integers(0, 2)),
            "acc_width": _bits(top) + draw(st.integers(0, 2)), "max_timesteps": draw(st.integers(1, 2)),
            "out_blocks": draw(st.integers(1, 3))}


SECTIONS = {"lif": lif_configs(), "accumulator": acc_configs(), "sdsa": sdsa_configs()}


def _built(section: str, raw: dict, tmp_path_factory):
    """The unit's config, after `hwgen build` (Verilog, lint clean) of a config with it alone."""
    hw = HwConfig.from_dict({"name": f"fuzz_{section}", section: raw})
    note(f"config {hw.to_dict()}")
    result = build(hw, tmp_path_factory.mktemp("fuzz") / hw.name, run_lint=True, run_synth=False)
    assert result.lint_clean, (result.out / "lint.txt").read_text()
    return getattr(hw, section)


def _fuzz_lif(raw, data, tmp_path_factory):
    cfg: LifConfig = _built("lif", raw, tmp_path_factory)
    rows = data.draw(st.integers(1, cfg.threshold_rows))
    beats = rows * data.draw(st.integers(1, cfg.beats // rows))
    T = data.draw(st.integers(1, cfg.max_timesteps))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    top = 1 << (cfg.current_width - 1)
    currents = rng.integers(-top, top, size=(T, beats * cfg.lanes))
    thresholds = rng.integers(0, 1 << cfg.threshold_width, size=rows * cfg.lanes)
    spikes, membranes = run_lif(cfg, currents, thresholds)
    exp_s, exp_h = golden_lif(cfg, currents, thresholds)
    assert_exact("membrane", exp_h, membranes, ("timestep", "neuron"))
    assert_exact("spike", exp_s, spikes, ("timestep", "neuron"))


def _fuzz_acc(raw, data, tmp_path_factory):
    cfg: AccumulatorConfig = _built("accumulator", raw, tmp_path_factory)
    L = cfg.lanes
    k = data.draw(st.sampled_from([s for s in (1, 3, 5) if s <= cfg.max_kernel]))
    pad = data.draw(st.integers(0, k // 2))
    stride = data.draw(st.sampled_from([1, 2]))
    h = data.draw(st.integers(max(1, k - 2 * pad), cfg.max_size))
    w = data.draw(st.integers(max(1, k - 2 * pad), cfg.max_size))
    groups = 1
    c_in = data.draw(st.integers(1, cfg.max_channels))
    c_out = data.draw(st.integers(1, L + 2))
    if "grouped" in cfg.kinds and data.draw(st.booleans()):
        groups = c_out = c_in          # depthwise
    geo = ConvGeometry(c_in, c_out, h, w, k, stride, pad, groups)
    G = -(-geo.cg_out // L)
    x_lanes = groups > 1 and stride == 1 and data.draw(st.booleans())
    fold = data.draw(st.booleans())
    words = c_out * geo.out_h * -(-geo.out_w // L) if x_lanes else geo.out_h * geo.out_w * groups * G
    weights = c_in * k * (k + L - 1) if x_lanes else geo.cg_in * k * k * G * groups
    if words > cfg.accumulator_depth or weights > cfg.weight_depth or groups * G > cfg.bias_depth:
        return                              # does not fit this config: another example will
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    wmax = (1 << (cfg.weight_width - 1)) - 1
    weight = rng.integers(-wmax - 1, wmax + 1, size=(c_out, geo.cg_in, k, k))
    bmax = min((1 << (cfg.bias_width - 1)) - 1, 200)
    bias = rng.integers(-bmax, bmax + 1, size=c_out)
    x = (rng.random((data.draw(st.integers(1, 2)), c_in, h, w)) < 0.4).astype(np.int64)
    note(f"layer {geo} x_lanes={x_lanes} fold={fold}")
    got = run_acc(cfg, geo, weight, bias, x, x_lanes=x_lanes, fold=fold)
    assert_exact("accumulator", golden_acc(cfg, geo, weight, bias, x), got, ("timestep", "channel", "y", "x"))


def _fuzz_sdsa(raw, data, tmp_path_factory):
    cfg: SdsaConfig = _built("sdsa", raw, tmp_path_factory)
    heads = data.draw(st.integers(1, cfg.heads))
    d = data.draw(st.integers(1, cfg.head_dim))
    N = data.draw(st.integers(1, cfg.max_tokens))
    T = data.draw(st.integers(1, cfg.max_timesteps))
    rate = data.draw(st.sampled_from([0.1, 0.5, 0.9]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    q, k, v = ((rng.random((T, heads * d, N)) < rate).astype(np.int64) for _ in range(3))
    got = run_sdsa(cfg, q, k, v, heads=heads, head_dim=d)
    axes = ("timestep", "channel", "token") if cfg.attention_matrix else ("timestep", "channel")
    assert_exact("attention", golden_sdsa(cfg, q, k, v, heads=heads, head_dim=d), got, axes)


FUZZERS = {"lif": _fuzz_lif, "accumulator": _fuzz_acc, "sdsa": _fuzz_sdsa}


def _property(section: str, examples: int):
    @settings(max_examples=examples, **FUZZ)
    @given(raw=SECTIONS[section], data=st.data())
    def check(tmp_path_factory, raw, data):
        FUZZERS[section](raw, data, tmp_path_factory)
    return check


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_random_valid_configs_build_lint_and_run_exact(section, tmp_path_factory):
    _property(section, 10)(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_random_valid_configs_build_lint_and_run_exact_many(section, tmp_path_factory):
    _property(section, 50)(tmp_path_factory)


# ---- invalid configurations ---------------------------------------------------------------

_CLASSES = {"lif": LifConfig, "accumulator": AccumulatorConfig, "sdsa": SdsaConfig}

#: (section, key, change) that break a consistency rule; the message names section.key
_INCONSISTENT = [
    ("lif", "neurons", lambda raw: raw["lanes"] * 3 + 1 if raw["lanes"] > 1 else None),
    ("lif", "membrane_width", lambda raw: raw["current_width"] + raw["frac_bits"] - 1
     if raw["current_width"] + raw["frac_bits"] - 1 >= 2 else None),
    ("accumulator", "bias_width", lambda raw: raw["accumulator_width"] + 1),
    ("accumulator", "weight_bank_depth", lambda raw: 48),
    ("sdsa", "count_width", lambda raw: _bits(raw["max_tokens"]) - 1 if _bits(raw["max_tokens"]) > 1 else None),
]


@st.composite
def invalid_configs(draw):
    """(raw config, the key the message must name)."""
    section = draw(st.sampled_from(sorted(SECTIONS)))
    raw = draw(SECTIONS[section])
    fields = {f.name: f for f in dataclasses.fields(_CLASSES[section])}
    how = draw(st.sampled_from(["range", "type", "unknown", "missing", "inconsistent"]))
    key = draw(st.sampled_from(sorted(raw)))
    meta = fields[key].metadata
    if how == "range" and meta["kind"] is int and (meta["min"] is not None or meta["max"] is not None):
        below = meta["min"] is not None and (meta["max"] is None or draw(st.booleans()))
        raw[key] = meta["min"] - draw(st.integers(1, 5)) if below else meta["max"] + draw(st.integers(1, 5))
    elif how == "type":
        raw[key] = draw(st.sampled_from(["eight", 2.5, True, [1, 2], {"a": 1}, None]))
        if meta["kind"] is str and isinstance(raw[key], str):
            raw[key] = 3
        if meta["kind"] is tuple and isinstance(raw[key], list):
            raw[key] = "conv"
    elif how == "unknown":
        key = draw(st.sampled_from(["lane", "width", "depth_words", "Lanes"]))
        raw[key] = 1
    elif how == "missing" and fields[key].default is dataclasses.MISSING:
        del raw[key]
    else:
        options = [(k, f) for s, k, f in _INCONSISTENT if s == section]
        key, change = draw(st.sampled_from(options))
        value = change(raw)
        if value is None:
            raw[key] = "not a number"
        else:
            raw[key] = value
    return {"name": "fuzz_bad", section: raw}, f"{section}.{key}"


@settings(max_examples=200, **FUZZ)
@given(case=invalid_configs())
def test_random_invalid_configs_exit_2_naming_the_key(case, tmp_path_factory, capsys):
    raw, key = case
    path = tmp_path_factory.mktemp("bad") / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    for argv in (["check", str(path)], ["build", str(path), "--out", str(path.parent / "out"), "--no-synth"]):
        capsys.readouterr()
        code = hwgen(argv)
        err = capsys.readouterr().err
        assert code == 2, f"hwgen {argv[0]} exited {code} for {raw}: {err}"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert key in lines[0], f"message does not name {key}: {lines[0]}"
        assert not (path.parent / "out").exists(), "a bad config wrote an output folder"
