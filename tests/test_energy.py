"""hwgen.perf and hwgen estimate: operation counts, the paper's energy figures, the memory-aware
model, the rate table, the estimate record (docs/energy.md)."""
import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from contract.config import load_config
from contract.program import Layer
from hwgen.perf.architecture import PAPER_MODELS, meta_spikeformer, paper_layers
from hwgen.perf.energy import (
    E_AC_PJ,
    E_MAC_PJ,
    Work,
    conv_additions_exact,
    conv_additions_expected,
    datapath_work,
    encoding_additions_exact,
    paper_flops,
    paper_model_pj,
    paper_work,
    sdsa_additions_exact,
)
from hwgen.perf.memory import SramModel, int_add_pj, int_mult_pj, layer_traffic
from hwgen.perf.rates import LayerRates, RateError, load_rate_table

REPO = Path(__file__).resolve().parents[1]
RATES = REPO / "configs" / "rates" / "paper_31m_t4.yaml"
DIGITS = REPO / "configs" / "hw" / "digits.yaml"


def conv(c_in, c_out, h, w, k, s=1, p=None, groups=1, pixels=False, residual=None):
    p = k // 2 if p is None else p
    out = [c_out, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1]
    attrs = dict(in_shape=[c_in, h, w], in_channels=c_in, out_channels=c_out, kernel=k, stride=s, padding=p,
                 groups=groups, residual=residual, input="pixels" if pixels else "spikes")
    return Layer("c", "conv", ["input" if pixels else "x"] + ([residual] if residual else []), out, attrs)


# ---------------------------------------------------------------------------- FLOPs by hand
@pytest.mark.parametrize("layer, flops", [
    (conv(2, 5, 4, 4, 3), 9 * 4 * 4 * 2 * 5),                 # 3x3 s1 p1: 16 outputs x 9 taps x 2 x 5
    (conv(2, 5, 5, 5, 3, s=2), 9 * 3 * 3 * 2 * 5),            # 3x3 s2 p1 on 5x5: 3x3 outputs
    (conv(8, 4, 6, 6, 1), 6 * 6 * 8 * 4),                     # pointwise
    (conv(4, 6, 4, 4, 3, groups=2), 9 * 4 * 4 * 2 * 6),       # grouped: C_in / groups per output
    (conv(3, 4, 8, 8, 7, s=2, pixels=True), 49 * 4 * 4 * 3 * 4),   # encoding 7x7 s2 p3: MACs
    (Layer("fc", "linear", ["x"], [3], dict(in_features=7, out_features=3)), 21),
])
def test_paper_flops_of_small_layers(layer, flops):
    assert paper_flops(layer) == {"input": flops}


def test_paper_flops_of_sdsa3_count_kv_and_q_kv():
    layer = Layer("a", "sdsa", ["q", "k", "v"], [6, 2, 2], dict(variant=3, heads=2, head_dim=3, tokens=4,
                                                               q="q", k="k", v="v"))
    # K^T V per head: N x d x d = 4 x 3 x 3, two heads: 72; Q (K^T V) the same
    assert paper_flops(layer) == {"k": 72.0, "q": 72.0}


def test_paper_work_is_flops_times_rate_summed_over_timesteps():
    layer = conv(2, 5, 4, 4, 3)
    w = paper_work(layer, LayerRates({"input": [0.5, 0.25]}), 2, lanes=8)
    assert w.additions == 1440 * 0.75 and w.macs == 0
    enc = paper_work(conv(3, 4, 8, 8, 7, s=2, pixels=True), None, 4, lanes=8)
    assert enc.macs == 9408 and enc.additions == 0      # once per image, however many timesteps
    assert paper_model_pj(enc) == pytest.approx(9408 * 4.6)
    assert paper_model_pj(enc, encoding_timesteps=4) == pytest.approx(4 * 9408 * 4.6)


# ---------------------------------------------------------------------------- datapath, brute force
def _brute_force_additions(layer, spikes):
    """Per spike, per kernel offset: one C_out / groups word if it lands inside the output map."""
    a = layer.attrs
    k, s, p = a["kernel"], a["stride"], a["padding"]
    _, H, W = layer.shape
    per = a["out_channels"] // a["groups"]
    total = 0
    for t, c, y, x in zip(*np.nonzero(spikes)):
        for ky in range(k):
            for kx in range(k):
                oy, ox = y + p - ky, x + p - kx
                if oy % s == 0 and ox % s == 0 and 0 <= oy // s < H and 0 <= ox // s < W:
                    total += per
    return total


@pytest.mark.parametrize("layer", [
    conv(3, 5, 5, 5, 3), conv(4, 3, 5, 6, 7), conv(3, 4, 6, 6, 3, s=2), conv(3, 4, 7, 7, 3, s=2),
    conv(4, 6, 5, 5, 3, groups=2), conv(5, 2, 4, 4, 1), conv(2, 3, 3, 3, 7),
], ids=["3x3", "7x7-border", "s2-even", "s2-odd", "grouped", "1x1", "7x7-on-3x3"])
def test_conv_additions_equal_a_brute_force_count_with_border_taps(layer):
    rng = np.random.default_rng(7)
    spikes = (rng.random((2, *layer.attrs["in_shape"])) < 0.3).astype(np.int8)
    additions, parks = conv_additions_exact(layer, spikes)
    assert additions == _brute_force_additions(layer, spikes)
    assert sum(parks) * (layer.attrs["out_channels"] // layer.attrs["groups"]) == additions
    # every input spiking: the expected count at rate 1 is the exact one, and it is FLOPs minus
    # the taps that fall outside the map (fewer than FLOPs for every kernel above 1x1)
    ones = np.ones((1, *layer.attrs["in_shape"]), dtype=np.int8)
    expected, _ = conv_additions_expected(layer, [1.0])
    assert expected == pytest.approx(conv_additions_exact(layer, ones)[0])
    if layer.attrs["kernel"] > 1:
        assert expected < paper_flops(layer)["input"]


def test_encoding_additions_are_bit_planes_at_every_timestep():
    layer = conv(1, 4, 4, 4, 3, pixels=True)
    pixels = np.array([[[0, 1, 2, 3], [255, 0, 0, 0], [7, 0, 0, 0], [0, 0, 0, 128]]])
    additions, set_bits, _ = encoding_additions_exact(layer, pixels, bits=8, T=3)
    ones = np.zeros((1, 1, 4, 4), dtype=np.int8)
    total = 0
    for y in range(4):
        for x in range(4):
            ones[:] = 0
            ones[0, 0, y, x] = 1
            total += bin(int(pixels[0, y, x])).count("1") * _brute_force_additions(layer, ones)
    assert additions == 3 * total
    assert set_bits == 3 * (1 + 1 + 2 + 8 + 3 + 1)


def test_sdsa3_additions_count_k_spikes_and_live_q_spikes():
    rng = np.random.default_rng(3)
    heads, d, n, T = 2, 4, 6, 2
    layer = Layer("a", "sdsa", ["q", "k", "v"], [heads * d, 2, 3], dict(variant=3, heads=heads, head_dim=d,
                                                                       tokens=n, q="q", k="k", v="v"))
    q = (rng.random((T, heads * d, 2, 3)) < 0.4).astype(np.int8)
    k = (rng.random((T, heads * d, 2, 3)) < 0.2).astype(np.int8)
    k[0, 1] = 0                          # a K channel silent at t = 0: its Q spikes are skipped then
    want = 0
    for t in range(T):
        for c in range(heads * d):
            kc = k[t, c].sum()
            want += d * kc                                            # K^T V: add V's d bits per K spike
            if kc:
                want += d * q[t, c].sum()                             # Q (K^T V): a written row, per Q spike
    got = sdsa_additions_exact(layer, q, k, lanes=4)
    assert got["additions"] == want
    assert got["kv_updates"] == k.sum()                               # one block of 4 lanes per K spike


def test_padded_heads_count_the_padding_lanes():
    real = Layer("a", "sdsa", ["q", "k", "v"], [6, 2, 2], dict(variant=3, heads=2, head_dim=3, tokens=4,
                                                              q="q", k="k", v="v"))
    padded = copy.deepcopy(real)
    padded.attrs["head_dim"] = 4
    padded.shape = [8, 2, 2]
    rng = np.random.default_rng(0)
    t = {"q": (rng.random((1, 6, 2, 2)) < 0.5).astype(np.int8), "k": (rng.random((1, 6, 2, 2)) < 0.5).astype(np.int8)}
    w_real = datapath_work(real, 1, 4, tensors=t)
    w_pad = datapath_work(padded, 1, 4, tensors=t, real=real)
    assert w_pad.additions * 3 == w_real.additions * 4                # d additions per spike: 4 instead of 3


# ---------------------------------------------------------------------------- the paper's figures
@pytest.fixture(scope="module")
def table():
    return load_rate_table(RATES)


def _paper_mj(layers, rates, T, encoding_timesteps=1):
    return sum(paper_model_pj(paper_work(l, rates.get(l.name), T, 16), encoding_timesteps=encoding_timesteps)
               for l in layers) / 1e9


def test_paper_rate_table_gives_the_31m_t4_energy_within_5_percent(table):
    layers = paper_layers("31M")
    mj = _paper_mj(layers, table.for_program(layers, 4), 4)
    assert abs(mj / 32.8 - 1) < 0.05, mj
    assert PAPER_MODELS["31M"].energy_mj[4] == 32.8


@pytest.mark.parametrize("scale, giga", [("15M", 3.99), ("31M", 8.68), ("55M", 15.44)])
def test_additions_per_timestep_at_the_tables_rates(table, scale, giga):
    """shared/reference/meta-spikeformer.md: 15M 3.99 G, 31M 8.68 G, 55M 15.44 G per timestep."""
    layers = paper_layers(scale)
    rates = table.for_program(layers, 4)
    sops = sum(paper_work(l, rates.get(l.name), 4, 16).additions for l in layers) / 4
    assert sops / 1e9 == pytest.approx(giga, rel=0.005)


def test_unfused_counting_does_not_reproduce_the_paper(table):
    """The convention matters: counting SepConv's depthwise and pointwise convs separately (at the
    same rate) lands far from 32.8 mJ."""
    from tools.paper_energy import energy_mj

    layers = paper_layers("31M")
    rates = table.for_program(layers, 4)
    assert energy_mj(layers, rates, 4) == pytest.approx(_paper_mj(layers, rates, 4))
    assert abs(energy_mj(layers, rates, 4, unfused=True) / 32.8 - 1) > 0.3


def test_rate_table_rows_average_their_timesteps(table):
    for row in table.rows:
        assert abs(np.mean(row.rates) - row.average) <= 1e-4, row.row
    assert len(table.rows) == 94 and table.timesteps == 4


def test_rate_table_with_a_typo_is_refused_naming_the_row(tmp_path):
    doc = yaml.safe_load(RATES.read_text())
    doc["rows"][5]["rates"][2] = 0.9                      # the average no longer matches
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(RateError, match=r"rows\[5\] \(Stage 1 / Downsampling / Conv\)\.average"):
        load_rate_table(bad)


def test_rate_table_names_a_layer_the_program_does_not_have(table):
    small = meta_spikeformer((16, 16, 32, 48), depths=(1,) * 6, num_heads=2, num_classes=10, in_channels=1,
                             img_size=32)
    with pytest.raises(RateError, match=r"block3\.1\.attn"):
        table.for_program(small, 4)


# ---------------------------------------------------------------------------- memory-aware model
def test_sram_energy_at_horowitz_points_and_between():
    m = SramModel()
    assert m.access_pj(8 * 1024, 64) == pytest.approx(10.0)
    assert m.access_pj(32 * 1024, 64) == pytest.approx(20.0)
    assert m.access_pj(1024 * 1024, 64) == pytest.approx(100.0)
    assert m.access_pj(16 * 1024, 64) == pytest.approx(10 * 2 ** 0.5)         # log-log between 8 and 32 KB
    assert m.access_pj(32 * 1024, 16) == pytest.approx(5.0)                   # linear in the width
    assert m.access_pj(2 * 1024, 64) == pytest.approx(5.0)                    # 8 KB segment extended below
    assert not m.extrapolated(64 * 1024) and m.extrapolated(4 * 1024 * 1024)
    assert int_add_pj(32) == pytest.approx(0.1) and int_add_pj(8) == pytest.approx(0.03)
    assert int_mult_pj(8) == pytest.approx(0.2) and int_mult_pj(32) == pytest.approx(3.1)


def test_conv_traffic_by_hand():
    layer = conv(16, 16, 4, 4, 3, residual="r")
    w = Work(weight_words=100)
    got = layer_traffic(layer, w, T=2, lanes=8, inputs={})
    D = 4 * 4 * 2                                         # output positions x words of 8 lanes
    assert got == {"program": [1, 0], "spikes": [2 * 16 * 2, 0], "weights": [100, 0],
                   "accumulators": [100 + 2 * D, 100 + 2 * D], "biases": [2 * D, 0], "ints": [2 * D, 2 * D]}


def test_energy_constants_are_the_simulators():
    from hwgen.sim.simulate import E_AC_PJ as sim_ac, E_MAC_PJ as sim_mac

    assert (E_AC_PJ, E_MAC_PJ) == (sim_ac, sim_mac) == (0.9, 4.6)


# ---------------------------------------------------------------------------- against a real program
GEOMETRY = ("in_shape", "in_channels", "out_channels", "kernel", "stride", "padding", "groups", "residual", "input",
            "variant", "heads", "tokens", "head_dim", "q", "k", "v", "in_features", "out_features", "channels")


def _geometry(layer):
    return (layer.name, layer.kind, list(layer.inputs), list(layer.shape),
            {k: layer.attrs[k] for k in GEOMETRY if k in layer.attrs})


def test_architecture_equals_a_quantized_programs_layers(digits_t4_program):
    from contract.program import load_program

    program = load_program(digits_t4_program)
    arch = meta_spikeformer((16, 16, 32, 48), depths=(1,) * 6, num_heads=2, num_classes=10, in_channels=1,
                            img_size=32)
    assert [_geometry(l) for l in arch] == [_geometry(l) for l in program.layers]


def test_estimate_on_images_matches_the_cycle_models_counts(digits_t4_program):
    """The datapath's additions and events per layer from the spike maps equal the core's cycle
    model's (which the RTL's counters are held to with ==)."""
    cycles = pytest.importorskip("hwgen.compiler.cycles")
    from contract.program import load_program
    from hwgen.estimate import estimate

    seen = []

    def model(image, tensors, b):
        got = cycles.instruction_cycles(image, tensors, b)
        seen.append(got)
        return got

    run = estimate(digits_t4_program, images="digits:test", count=2, cycle_model=model, log=lambda m: None)
    program = load_program(digits_t4_program)
    assert len(seen) == 2
    for i, layer in enumerate(program.layers):
        want = np.mean([s[i].additions for s in seen])
        assert run["layers"][i]["additions"] == want, layer.name
        assert run["layers"][i]["cycles"] == np.mean([s[i].cycles for s in seen])


def test_hwgen_estimate_writes_a_run_and_a_report(digits_t4_program, tmp_path, capsys):
    from hwgen.cli import main
    from hwgen.report import load_run

    out = tmp_path / "est"
    assert main(["estimate", str(digits_t4_program), "--images", "digits:test", "--count", "1", "--out", str(out)]) == 0
    run = load_run(out)                                     # validates as a run.json
    assert run["kind"] == "estimate" and run["estimate"]["fit"]["fits"]
    e = run["estimate"]["energy_mj"]
    assert e["paper_model"]["datapath"] == pytest.approx(sum(r["energy_datapath_pj"] for r in run["layers"]) / 1e9)
    assert e["memory_aware"]["datapath"] > e["paper_model"]["datapath"]
    md = (out / "report.md").read_text()
    assert "## Energy in two models, two countings" in md and "## Memory traffic" in md
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "fits the core" in capsys.readouterr().out


def test_hwgen_estimate_names_the_memories_that_are_short(digits_t4_program, tmp_path):
    from contract.program import load_program
    from hwgen.compiler import compile_program
    from hwgen.estimate import core_fit

    raw = yaml.safe_load(DIGITS.read_text())
    raw["core"]["spike_depth"] = 1000
    raw["accumulator"]["weight_depth"] = 20000
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(raw))
    program = load_program(digits_t4_program)
    full = compile_program(program, load_config(DIGITS))
    fit = core_fit(program, load_config(small))
    assert not fit["fits"]
    need_spikes, need_weights = full.peak["spikes"], full.placement.words("weights")
    assert fit["problems"] == [
        f"the weights memory: the program needs {need_weights:,} words, the core has 20,000: "
        f"{need_weights - 20000:,} short (accumulator.weight_depth)",
        f"the spikes memory: the program needs {need_spikes:,} words, the core has 1,000: "
        f"{need_spikes - 1000:,} short (core.spike_depth)"]


def test_hwgen_estimate_refuses_a_rate_table_that_does_not_fit_the_program(digits_t4_program, capsys):
    from hwgen.cli import main

    assert main(["estimate", str(digits_t4_program), "--rates", str(RATES), "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwgen estimate: ") and "block3.1" in err and "the program does not have" in err


def test_estimate_from_a_rate_table(digits_t4_program, tmp_path):
    """The rates path end to end: a table for the digits model (every conv input at 0.25, q/k/v
    at 0.1); cycles are not modelled from rates, the bound is."""
    from contract.program import load_program
    from hwgen.estimate import estimate, write_estimate

    rows = []
    for layer in load_program(digits_t4_program).layers:
        if layer.kind in ("conv", "linear") and layer.attrs.get("input") != "pixels":
            rows.append({"row": layer.name, "rates": [0.25] * 4, "average": 0.25, "layers": [layer.name]})
        if layer.kind == "sdsa":
            rows += [{"row": f"{layer.name} {t}", "rates": [0.1] * 4, "average": 0.1, "sdsa": layer.name, "tensor": t}
                     for t in ("q", "k", "v")]
    path = tmp_path / "rates.yaml"
    path.write_text(yaml.safe_dump({"format": "spikeforge-rates", "version": 1, "timesteps": 4, "rows": rows}))
    run = estimate(digits_t4_program, rates=path, log=lambda m: None)
    by_name = {r["name"]: r for r in run["layers"]}
    # ConvBlock1_1.0.conv1: 3x3, 8 -> 32 channels at 16 x 16: 9 x 256 x 8 x 32 FLOPs, rate 0.25 x 4 timesteps
    assert by_name["ConvBlock1_1.0.conv1"]["sops"] == pytest.approx(9 * 256 * 8 * 32 * 1.0)
    # SDSA-3, 2 heads of 16 over 4 tokens: N d C = 4 x 16 x 32 at K and at Q, rate 0.1 x 4 timesteps each
    assert by_name["block3.0.attn.sdsa"]["sops"] == pytest.approx(2 * 4 * 16 * 32 * 0.4)
    assert run["totals"]["cycles_per_image"] is None and all(r["cycles"] is None for r in run["layers"])
    assert run["totals"]["bound_per_image"] > 0
    e = run["estimate"]["energy_mj"]["paper_model"]["paper"]
    assert e == pytest.approx((0.9 * run["estimate"]["sops_per_image"] + 4.6 * run["totals"]["macs_per_image"]) / 1e9)
    write_estimate(run, tmp_path / "out")
    assert "**Cycles/image:** not modelled yet" in (tmp_path / "out" / "report.md").read_text()
