"""The neuromorphic core runs whole programs: image in, every layer and the logits out, bit-exact.

Each run simulates the generated core (configs/hw/*.yaml with a ``core`` section) on real test
images and compares every layer's output, at every timestep, with the golden integer engine
(``hwgen.sim.simulate.check_image``). Around that: the per-layer counters against counts
computed independently from the golden spikes, and a corrupted golden value that must be
caught and located.
"""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.config import load_config
from contract.program import load_program
from golden.intsim import IntegerEngine
from hwgen.compiler import compile_program
from hwgen.sim.core import run_core
from hwgen.sim.runner import folder_lock
from hwgen.sim.simulate import MismatchError, check_image, load_images, simulate

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "hw"
#: the tests reading the T = 4 run share one xdist worker, so the run is simulated once
T4_RUN = pytest.mark.xdist_group("digits_t4_run")


@pytest.fixture(scope="session")
def digits_t4_run(digits_program, tmp_path_factory, worker_id):
    """The digits model at T = 4 on 10 held-out images: (core image, results, golden, pixels).
    Every memory and register without a reset value starts random (seed logged), so the run
    also shows that nothing depends on power-up contents. Simulated once per test session: under
    xdist the first worker to ask runs it and leaves the results for the others (pytest-xdist's
    once-per-session pattern; the group mark alone still let two workers run it)."""
    hw = load_config(CONFIGS / "digits.yaml")
    program = load_program(digits_program)
    image = compile_program(program, hw)
    pixels, _, _ = load_images(program, digits_program, 10)
    golden = {k: v.numpy() for k, v in IntegerEngine(program, hw).run(torch.from_numpy(pixels)).items()}
    seed = 20261128
    print(f"random initial state: Verilator seed {seed}")
    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if worker_id != "master" else shared      # one folder for all workers
    with folder_lock(shared):
        cache = shared / "digits_t4_run.pkl"
        if cache.exists():
            results = pickle.loads(cache.read_bytes())
        else:
            results = run_core(image, pixels, work=tmp_path_factory.mktemp("core_t4"), random_init=seed)
            cache.write_bytes(pickle.dumps(results))
    return image, results, golden, pixels


@T4_RUN
def test_digits_t4_every_layer_and_timestep_exact(digits_t4_run):
    image, results, golden, _ = digits_t4_run
    assert len(results) == 10
    for b, result in enumerate(results):
        check_image(image, result, golden, b)
    assert image.program.T == 4


@pytest.mark.slow   # ~110 s; T = 1 runs in the default suite in test_sim_runs.py and test_waves.py
def test_digits_t1_fifty_images_exact_with_accuracy(digits_t1_program, tmp_path):
    """The acceptance run: 50 held-out images at T = 1, every layer checked, classes printed."""
    hw = load_config(CONFIGS / "digits.yaml")
    run = simulate(digits_t1_program, hw, count=50, out=tmp_path / "run", log=lambda m: None)
    totals = run["totals"]
    assert totals["exact_images"] == 50
    predicted = [i["predicted"] for i in run["images"]]
    assert predicted == [i["golden_predicted"] for i in run["images"]]
    labels = np.array([i["label"] for i in run["images"]])
    assert totals["accuracy"] == pytest.approx(float((np.array(predicted) == labels).mean()))
    assert totals["accuracy"] >= 0.9
    assert (tmp_path / "run" / "report.md").exists() and (tmp_path / "run" / "report.png").exists()


def test_digits_sdsa1_with_mask_exact(digits_sdsa1_program, tmp_path):
    """SDSA-1: the per-channel counts, the attention neuron and the V mask (MASK instruction)."""
    hw = load_config(CONFIGS / "digits_sdsa1.yaml")
    run = simulate(digits_sdsa1_program, hw, count=6, out=tmp_path / "run", log=lambda m: None)
    kinds = {layer["kind"] for layer in run["layers"]}
    assert {"mask", "sdsa", "token_sum", "readout"} <= kinds
    assert run["totals"]["exact_images"] == 6


def test_digits_on_16_lanes_with_padded_heads_exact(digits16_program, tmp_path):
    """16 lanes: 8-channel stage-1 tensors fill half a word, and block 4's heads of 24 are
    head-padded to 32 (hwgen/compiler/padding.py); the padding channels must stay zero."""
    hw = load_config(CONFIGS / "digits16.yaml")
    image = compile_program(load_program(digits16_program), hw)
    assert image.regions["block4.0.attn.sdsa"].index is not None
    run = simulate(digits16_program, hw, count=8, out=tmp_path / "run", log=lambda m: None)
    assert run["totals"]["exact_images"] == 8 and run["lanes"] == 16


@T4_RUN
def test_write_digests_equal_the_golden_words(digits_t4_run):
    """What the harness reports of each instruction's writes (count, address range, digest: the
    check of long runs, hwgen/sim/digest.py) equals the same computed from the golden tensors, on
    every instruction of every image of the traced T = 4 run."""
    from hwgen.sim.simulate import expected_writes

    image, results, golden, _ = digits_t4_run
    for b, result in enumerate(results):
        for pc, stats in enumerate(result.layers):
            got = (stats.memory, stats.writes, stats.lowest, stats.highest, stats.digest)
            assert got == expected_writes(image, golden, pc, b), f"image {b}, instruction {pc} ({image.outputs[pc]})"
    # one flipped golden spike changes the expected digest of its layer, and only that
    pc = image.outputs.index("block3.0.attn.attn_lif")
    bad = {k: v.copy() for k, v in golden.items()}
    bad["block3.0.attn.attn_lif"][2, 1, 5, 1, 0] ^= 1
    assert expected_writes(image, bad, pc, 1)[4] != results[1].layers[pc].digest
    assert expected_writes(image, bad, pc, 0)[4] == results[0].layers[pc].digest


@T4_RUN
def test_corrupted_golden_value_is_located(digits_t4_run):
    image, results, golden, _ = digits_t4_run
    name = "block3.0.attn.attn_lif"   # the attention neuron, timestep 2
    bad = {k: v.copy() for k, v in golden.items()}
    bad[name][2, 1, 5, 1, 0] ^= 1
    with pytest.raises(MismatchError, match=rf"image 1, layer {name} \(lif\): first mismatch at "
                                            r"timestep=2, channel=5, y=1, x=0"):
        check_image(image, results[1], bad, 1)


def _expected_additions(layer, spikes: np.ndarray) -> int:
    """Synaptic additions of a conv for input spikes ``[T, C, H, W]`` (or pixel bit counts):
    every spike adds one weight into each output channel of each output position its kernel
    window reaches. Counted per axis: the taps k with (t + p - k) a multiple of the stride
    landing inside the output."""
    a = layer.attrs
    k, s, p = a["kernel"], a["stride"], a["padding"]
    _, h_out, w_out = layer.shape

    def reach(size_in, size_out):
        out = np.zeros(size_in, dtype=np.int64)
        for t in range(size_in):
            out[t] = sum(1 for kk in range(k) if (t + p - kk) % s == 0 and 0 <= (t + p - kk) // s < size_out)
        return out

    per_position = np.outer(reach(spikes.shape[2], h_out), reach(spikes.shape[3], w_out))
    return int((spikes.sum(axis=(0, 1)) * per_position).sum()) * (a["out_channels"] // a["groups"])


@T4_RUN
def test_layer_counters_match_independent_counts(digits_t4_run):
    image, results, golden, pixels = digits_t4_run
    T = image.program.T
    for pc, layer in enumerate(image.layers):
        stats = results[0].layers[pc]
        if layer.kind == "conv":
            if layer.attrs["input"] == "pixels":
                planes = np.stack([(pixels[0] >> b) & 1 for b in range(8)])        # [bits, C, H, W]
                spikes = np.broadcast_to(planes.sum(0), (T, *planes.shape[1:]))
            else:
                spikes = golden[layer.inputs[0]][:, 0].astype(np.int64)
            assert stats.additions == _expected_additions(layer, spikes), layer.name
            assert stats.events == int(spikes.sum()), layer.name
        elif layer.kind == "linear":
            spikes = golden[layer.inputs[0]][:, 0].astype(np.int64)
            assert stats.additions == int(spikes.sum()) * layer.attrs["out_features"], layer.name
        assert stats.cycles > 0
    # the instructions' cycles cover the image's run (plus the END fetch)
    assert 0 <= results[0].cycles - sum(s.cycles for s in results[0].layers) <= 8


@pytest.mark.parametrize("config", ["digits", "digits_sdsa1", "digits16", "metaspikeformer"])
def test_core_and_harness_lint_clean(config, tmp_path):
    """`verilator --lint-only -Wall`: the generated core with the Amaranth waivers scoped to it,
    and the hand-written harness around it with none, at the simulation's parameters."""
    from hwgen.build import emit_verilog
    from hwgen.core.top import NeuromorphicCore
    from hwgen.lint import lint, write_waivers
    from hwgen.sim.core import TEMPLATES, core_sim_run

    hw = load_config(CONFIGS / f"{config}.yaml")
    core = tmp_path / "core.v"
    core.write_text(emit_verilog(NeuromorphicCore(hw), "core"))
    (tmp_path / "core_harness.sv").write_text((TEMPLATES / "core_harness.sv").read_text())
    waivers = write_waivers(tmp_path / "amaranth_waivers.vlt", [core])
    ok, report = lint(["./core.v"], "core", f"./{waivers.name}", tmp_path)
    assert ok, report
    params = core_sim_run(hw, work=tmp_path, script=tmp_path / "s", log=tmp_path / "l", watchdog=1).parameters
    ok, report = lint([*(f"-G{k}={v}" for k, v in params.items()), "./core_harness.sv", "./core.v"],
                      "core_harness", f"./{waivers.name}", tmp_path)
    assert ok, report
