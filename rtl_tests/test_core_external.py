"""The core with external weights (``accumulator.weights: external``, docs/core.md "Weights from
external memory") runs whole programs bit-exactly while its weights stream in from the harness's
memory model (templates/harness_extmem.sv) at a given latency and bandwidth.

Every layer's output, additions, events and memory traffic (the ``weights`` reads: the words
received from outside) are held with ``==`` by ``check_image``; the cycles are not (the cycle model
does not cover the prefetch pipeline, ``hwgen.compiler.cycles.cycles_modelled``): they and the
weight stalls are printed. The default run is one digits image at latency 100, 1 word per cycle;
the latency x bandwidth matrix, the 15M block slice and the slowdown measurement are ``-m slow``.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.config import HwConfig, load_config
from contract.program import load_program
from golden.intsim import IntegerEngine
from hwgen.compiler import compile_program
from hwgen.compiler.cycles import cycles_modelled, instruction_cycles
from hwgen.core.isa import Op
from hwgen.sim.core import TRACE_NONE, run_core
from hwgen.sim.simulate import check_image, load_images, simulate

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "hw"


def _digits(program_dir, config: str, count: int):
    hw = load_config(CONFIGS / f"{config}.yaml")
    program = load_program(program_dir)
    image = compile_program(program, hw)
    pixels, _, _ = load_images(program, program_dir, count)
    golden = {k: v.numpy() for k, v in IntegerEngine(program, hw).run(torch.from_numpy(pixels)).items()}
    return image, pixels, golden


def _check_all(image, results, golden, pixels):
    assert len(results) == len(pixels)
    for b, result in enumerate(results):
        check_image(image, result, golden, b)       # raises at the first mismatching layer / counter


def _stalls(image, result) -> dict[str, int]:
    return {layer.name: stats.weight_stalls for layer, stats in zip(image.layers, result.layers)}


def _print_stalls(image, results, latency, bandwidth):
    for b, r in enumerate(results):
        stalls = sum(_stalls(image, r).values())
        print(f"latency {latency}, {bandwidth} word(s)/cycle, image {b}: {r.cycles:,} cycles, {stalls:,} weight stall "
              f"cycles ({100 * stalls / r.cycles:.2f}%), {r.weight_requests:,} requests")


@pytest.fixture(scope="module")
def digits_at_100(digits_t1_program, tmp_path_factory):
    """The default run, shared by the tests below: ``hwgen sim``'s own path (``simulate``: every
    layer checked as the core finishes it, the first mismatch raised) on one image with the memory
    100 cycles away at 1 word per cycle; one simulator build, one run. Returns run.json."""
    hw = load_config(CONFIGS / "digits_external.yaml")
    run = simulate(digits_t1_program, hw, out=tmp_path_factory.mktemp("core_ext") / "run", count=1,
                   mem_latency=100, mem_bandwidth=1, log=print)
    return hw, run


def test_digits_external_weights_exact_at_latency_100(digits_at_100):
    """Every layer bit-exact, and every counter but the cycles (additions, events, traffic: the
    weight words received) equal to the model's."""
    hw, run = digits_at_100
    assert hw.accumulator.external_weights and not cycles_modelled(hw)
    assert run["totals"]["exact_images"] == run["totals"]["images"] == 1, run["images"]


def test_digits_weight_stalls_are_reported_on_conv_layers_only(digits_at_100):
    """The per-instruction weight stalls (the log's last L field, LayerStats.weight_stalls, the
    layers' weight_stalls in run.json): some on the CONV layers at latency 100, none elsewhere."""
    _, run = digits_at_100
    others = {r["name"]: r["weight_stalls"] for r in run["layers"] if r["unit"] != "accumulator" and r["weight_stalls"]}
    assert not others, f"weight stalls outside the accumulator's layers: {others}"
    stalls = sum(r["weight_stalls"] for r in run["layers"])
    assert stalls > 0, "no weight stall at latency 100: the counter is not wired"
    assert run["totals"]["weight_stalls_per_image"] == stalls


def test_run_json_records_the_memory_model_and_the_cycle_model_status(digits_at_100):
    _, run = digits_at_100
    memory = run["memory"]
    assert (memory["weights"], memory["latency"], memory["bandwidth"]) == ("external", 100, 1)
    assert memory["requests_per_image"] > 0
    assert memory["cycle_model"].startswith("does not cover external weights")


MATRIX = [(latency, bandwidth) for latency in (20, 100, 400) for bandwidth in (1, 2)]


@pytest.mark.slow   # six runs of 3 images on one simulator build
@pytest.mark.parametrize("latency, bandwidth", MATRIX, ids=[f"lat{lat}-bw{bw}" for lat, bw in MATRIX])
def test_digits_external_weights_exact_matrix(digits_t1_program, tmp_path, latency, bandwidth):
    image, pixels, golden = _digits(digits_t1_program, "digits_external", 3)
    results = run_core(image, pixels, work=tmp_path / "sim", trace=TRACE_NONE, latency=latency, bandwidth=bandwidth)
    _check_all(image, results, golden, pixels)
    _print_stalls(image, results, latency, bandwidth)


def _external(config: str, name: str, **changes) -> HwConfig:
    """``configs/hw/<config>.yaml`` with external weights (``changes`` into its accumulator)."""
    import yaml

    raw = yaml.safe_load((CONFIGS / f"{config}.yaml").read_text())
    raw["name"] = name
    raw["accumulator"].update({"weights": "external", "weight_buffer": 512, "weight_burst": 16,
                               "weight_port_words": 2, **changes})
    return HwConfig.from_dict(raw, f"{config}.yaml + accumulator.weights: external")


@pytest.mark.slow   # the 15M quantization at 224 x 224 and two runs of the block: several minutes
@pytest.mark.parametrize("latency, bandwidth", [(100, 1), (400, 2)], ids=["lat100-bw1", "lat400-bw2"])
def test_15m_block_external_weights_exact(tmp_path, latency, bandwidth):
    """The stage-3 block slice of rtl_tests/test_core_block.py on metaspikeformer.yaml with
    external weights: every layer bit-exact, the weight stalls printed."""
    import test_core_block as blk
    from golden.export import load_traces

    out = tmp_path / "m15"
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "hwgen", "quantize", "--model", "metaspikeformer_15m",
                          "--img-size", "224", "--random-init", "1", "--T", "1",
                          "--hw", "configs/hw/metaspikeformer.yaml", "--out", str(out), "--samples", "1"],
                         cwd=blk.REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    program = load_program(out)
    hw = _external("metaspikeformer", "metaspikeformer_external")
    names = [layer.name for layer in program.layers]
    first, last = names.index(f"{blk.BLOCK}.attn.head_lif"), names.index(f"{blk.BLOCK}.mlp.fc2_conv")
    image = compile_program(program, hw, layers=slice(first, last + 1))
    golden = blk._golden_block(image, hw, seed=7)
    preload = [{name: golden[name][:, 0] for name in image.preloaded}]
    pixels = load_traces(out)["input"][:1].astype(np.int64)
    result = run_core(image, pixels, work=tmp_path / "sim", preload=preload, latency=latency, bandwidth=bandwidth)[0]
    check_image(image, result, golden, 0)
    # on-chip weights for comparison: the cycle model (exact there) on the same slice and tensors
    onchip = compile_program(program, load_config(CONFIGS / "metaspikeformer.yaml"), layers=slice(first, last + 1))
    model = instruction_cycles(onchip, golden, 0)
    for layer, stats, want in zip(image.layers, result.layers, model):
        if layer.kind == "conv":
            print(f"{layer.name:28s} {stats.cycles:>10,d} cycles (on-chip {want.cycles:>10,d}, "
                  f"{100 * (stats.cycles - want.cycles) / want.cycles:+.3f}%) {stats.weight_stalls:>8,d} weight stalls")
    total, rtl = sum(m.cycles for m in model), sum(s.cycles for s in result.layers)
    print(f"block at latency {latency}, {bandwidth} word(s)/cycle: instructions {rtl:,d} cycles (on-chip {total:,d}, "
          f"{100 * (rtl - total) / total:+.3f}%), {sum(s.weight_stalls for s in result.layers):,d} weight stall cycles")


@pytest.mark.slow   # two runs of 3 images (on-chip and external): a measurement, nothing timed is asserted
def test_digits_conv_slowdown_at_latency_100(digits_t1_program, tmp_path):
    """The cycles the external weights cost at latency 100, 1 word per cycle, against on-chip
    weights, per CONV layer and in total (issue 14's target: <= 10%). Prints, asserts only the
    values (both runs exact)."""
    on_image, pixels, golden = _digits(digits_t1_program, "digits", 3)
    ext_image, _, _ = _digits(digits_t1_program, "digits_external", 3)
    onchip = run_core(on_image, pixels, work=tmp_path / "onchip", trace=TRACE_NONE)
    external = run_core(ext_image, pixels, work=tmp_path / "external", trace=TRACE_NONE, latency=100, bandwidth=1)
    _check_all(on_image, onchip, golden, pixels)
    _check_all(ext_image, external, golden, pixels)
    print(f"{'layer':36s} {'on-chip':>10s} {'external':>10s} {'stalls':>8s} {'slowdown':>8s}")
    for pc, layer in enumerate(ext_image.layers):
        if ext_image.instructions[pc]["op"] != Op.CONV:
            continue
        a = sum(r.layers[pc].cycles for r in onchip)
        e = sum(r.layers[pc].cycles for r in external)
        s = sum(r.layers[pc].weight_stalls for r in external)
        print(f"{layer.name[:36]:36s} {a:10,d} {e:10,d} {s:8,d} {100 * (e - a) / a:+7.2f}%")
    conv = [pc for pc, f in enumerate(ext_image.instructions) if f["op"] == Op.CONV]
    a = sum(r.layers[pc].cycles for r in onchip for pc in conv)
    e = sum(r.layers[pc].cycles for r in external for pc in conv)
    ta, te = sum(r.cycles for r in onchip), sum(r.cycles for r in external)
    print(f"conv layers: {a:,} -> {e:,} cycles ({100 * (e - a) / a:+.2f}%); whole network: {ta:,} -> {te:,} "
          f"({100 * (te - ta) / ta:+.2f}%)")


def test_core_and_harness_lint_clean_with_external_weights(tmp_path):
    """`verilator --lint-only -Wall` on the core with external weights (the Amaranth waivers
    scoped to it) and on the harness with the define file and the memory model, at the
    simulation's parameters, with no waiver (as rtl_tests/test_core.py does for on-chip weights)."""
    from hwgen.build import emit_verilog
    from hwgen.core.top import NeuromorphicCore
    from hwgen.lint import lint, write_waivers
    from hwgen.sim.core import TEMPLATES, core_sim_run

    hw = load_config(CONFIGS / "digits_external.yaml")
    core = tmp_path / "core.v"
    core.write_text(emit_verilog(NeuromorphicCore(hw), "core"))
    run = core_sim_run(hw, work=tmp_path, script=tmp_path / "s", log=tmp_path / "l", watchdog=1)
    templates = [Path(src).name for src in run.sources if Path(src).parent == TEMPLATES]
    assert templates == ["core_weights_external.sv", "harness_extmem.sv", "core_harness.sv"]
    for name in templates:
        (tmp_path / name).write_text((TEMPLATES / name).read_text())
    waivers = write_waivers(tmp_path / "amaranth_waivers.vlt", [core])
    ok, report = lint(["./core.v"], "core", f"./{waivers.name}", tmp_path)
    assert ok, report
    ok, report = lint([*(f"-G{k}={v}" for k, v in run.parameters.items()), *(f"./{n}" for n in templates), "./core.v"],
                      "core_harness", f"./{waivers.name}", tmp_path)
    assert ok, report
