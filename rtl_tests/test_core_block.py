"""A Meta-SpikeFormer 15M transformer block (stage 3: 256 channels, 8 heads of 32, 16 lanes,
32-bit accumulators) runs through the core bit-exactly.

The 15M model is quantized with random weights and non-trivial BatchNorm statistics (realistic
firing rates: the test prints them) for configs/hw/metaspikeformer.yaml, and the first stage-3
block is compiled as a slice of its program: the residual stream entering the block is preloaded
into the int memory from the golden trace, and every layer of the block is checked. At 224 x 224
the block sees 14 x 14 tokens (slow: a few minutes; ``./run tests -m slow``); the default run
uses 64 x 64 (4 x 4 tokens), the same layers at a sixteenth of the positions.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from golden.export import load_traces
from golden.program import load_program
from hwgen.config import load_config
from hwgen.core.compiler import compile_program
from hwgen.core.simulate import check_image
from hwgen.sim.core import run_core

REPO = Path(__file__).resolve().parents[1]
BLOCK = "block3.0"


def _run_block(tmp_path: Path, img_size: int):
    out = tmp_path / "m15"
    res = subprocess.run([sys.executable, "-m", "hwgen", "quantize", "--model", "metaspikeformer_15m",
                          "--img-size", str(img_size), "--random-init", "1", "--T", "1",
                          "--hw", "configs/hw/metaspikeformer.yaml", "--out", str(out), "--samples", "1"],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    program, traces = load_program(out), load_traces(out)
    names = [layer.name for layer in program.layers]
    first, last = names.index(f"{BLOCK}.attn.head_lif"), names.index(f"{BLOCK}.mlp.fc2_conv")
    image = compile_program(program, load_config(REPO / "configs" / "hw" / "metaspikeformer.yaml"),
                            layers=slice(first, last + 1))
    preload = [{name: traces[name][:, 0] for name in image.preloaded}]
    results = run_core(image, traces["input"][:1].astype(np.int64), work=tmp_path / "sim", preload=preload)
    return image, results[0], traces


def _report(image, result, traces):
    for pc, layer in enumerate(image.layers):
        stats = result.layers[pc]
        rate = ""
        if layer.kind in ("conv", "sdsa"):
            rate = f" input rate {float(np.mean(traces[layer.inputs[0]][:, 0])):.3f}"
        print(f"{layer.name:28s} {layer.kind:5s} {stats.cycles:>10,d} cycles {stats.additions:>11,d} additions{rate}")
    print(f"block: {result.cycles:,d} cycles")


def _check(image, result, traces, tokens: int):
    sdsa = next(layer for layer in image.layers if layer.kind == "sdsa")
    assert sdsa.attrs["tokens"] == tokens and sdsa.attrs["heads"] == 8 and sdsa.attrs["head_dim"] == 32
    assert image.lanes == 16 and image.preloaded == ["downsample3.encode_conv"]
    check_image(image, result, traces, 0)
    rates = [float(np.mean(traces[layer.inputs[0]][:, 0])) for layer in image.layers if layer.kind == "conv"]
    assert 0.01 < min(rates) and max(rates) < 0.9, rates     # neither silent nor saturated


def test_15m_block_at_4x4_tokens(tmp_path):
    image, result, traces = _run_block(tmp_path, 64)
    _report(image, result, traces)
    _check(image, result, traces, 16)


@pytest.mark.slow
def test_15m_block_at_14x14_tokens(tmp_path):
    image, result, traces = _run_block(tmp_path, 224)
    _report(image, result, traces)
    _check(image, result, traces, 196)
