"""A Meta-SpikeFormer 15M transformer block (stage 3: 256 channels, 8 heads of 32, 16 lanes,
32-bit accumulators) runs through the core bit-exactly.

The 15M model is quantized with random weights and non-trivial BatchNorm statistics for
configs/hw/metaspikeformer.yaml, and the first stage-3 block is compiled as a slice of its
program. The residual stream entering the block is drawn so that the block's first neuron fires
at about 17% (random weights leave the trace's own stage-3 input nearly silent); it is preloaded
into the int memory, the golden engine runs the block's layers on it, and every layer is checked.
At 224 x 224 the block sees 14 x 14 tokens.
The test prints each layer's input firing rate and cycles (about 80 s: the quantization of the
whole model at 224 x 224 is most of it).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.config import load_config
from contract.program import load_program
from golden.export import load_traces
from golden.intsim import IntegerEngine
from hwgen.compiler import compile_program
from hwgen.sim.core import run_core
from hwgen.sim.simulate import check_image

REPO = Path(__file__).resolve().parents[1]
BLOCK = "block3.0"


def _run_block(tmp_path: Path, img_size: int, block: str = BLOCK):
    out = tmp_path / "m15"
    res = subprocess.run([sys.executable, "-m", "hwgen", "quantize", "--model", "metaspikeformer_15m",
                          "--img-size", str(img_size), "--random-init", "1", "--T", "1",
                          "--hw", "configs/hw/metaspikeformer.yaml", "--out", str(out), "--samples", "1"],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    program = load_program(out)
    hw = load_config(REPO / "configs" / "hw" / "metaspikeformer.yaml")
    names = [layer.name for layer in program.layers]
    first, last = names.index(f"{block}.attn.head_lif"), names.index(f"{block}.mlp.fc2_conv")
    image = compile_program(program, hw, layers=slice(first, last + 1))
    golden = _golden_block(image, hw, seed=7)
    preload = [{name: golden[name][:, 0] for name in image.preloaded}]
    pixels = load_traces(out)["input"][:1].astype(np.int64)     # unused by the slice
    results = run_core(image, pixels, work=tmp_path / "sim", preload=preload)
    return image, results[0], golden


def _golden_block(image, hw, seed: int) -> dict:
    """The block's input currents X (fires its first LIF, X >= 2 th, with probability 1/6) and
    every layer's golden output on them, ``[T, 1, ...]``, on the real channels (the slice's
    program may be head-padded)."""
    program, layers = image.program, image.layers
    engine = IntegerEngine(program, hw)
    head = layers[0]
    entry = head.inputs[0]
    th = torch.from_numpy(np.asarray(program.array(head, "threshold"), dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    shape = (program.T, 1, *image.regions[entry].shape)
    u = torch.rand(shape, generator=gen, dtype=torch.float64) * 1.2
    env = {entry: torch.round(2 * th[:, None, None] * u).to(torch.int64)}
    for layer in layers:
        out = engine.run_layer(layer, *(env[n] for n in layer.inputs))
        env[layer.name] = out[0] if layer.kind == "lif" else out
    real = {k: v.numpy() for k, v in env.items()}
    for name, r in image.regions.items():
        if r.index is not None:
            real[name] = real[name][:, :, r.index]
    return real


def _report(image, result, traces):
    for pc, layer in enumerate(image.layers):
        stats = result.layers[pc]
        rate = ""
        if layer.kind in ("conv", "sdsa"):
            rate = f" input rate {float(np.mean(traces[layer.inputs[0]][:, 0])):.3f}"
        print(f"{layer.name:28s} {layer.kind:5s} {stats.cycles:>10,d} cycles {stats.additions:>11,d} additions{rate}")
    print(f"block: {result.cycles:,d} cycles")
    totals: dict[str, list[int]] = {}
    for stats in result.layers:          # the RTL's traffic counters (check_image holds them to the model)
        for memory, (r, w) in stats.traffic.items():
            t = totals.setdefault(memory, [0, 0])
            t[0], t[1] = t[0] + r, t[1] + w
    print("words read / written: " + ", ".join(f"{k} {r:,d} / {w:,d}" for k, (r, w) in totals.items()))


def _check(image, result, traces, tokens: int):
    sdsa = next(layer for layer in image.layers if layer.kind == "sdsa")
    assert sdsa.attrs["tokens"] == tokens and sdsa.attrs["heads"] == 8 and sdsa.attrs["head_dim"] == 32
    assert image.lanes == 16 and image.preloaded == ["downsample3.encode_conv"]
    check_image(image, result, traces, 0)
    rates = {layer.name: float(np.mean(traces[layer.inputs[0]][:, 0]))
             for layer in image.layers if layer.kind in ("conv", "sdsa")}
    # every layer sees spikes (the attention output is sparse: random weights), none saturates
    assert all(0 < r < 0.9 for r in rates.values()), rates
    assert 0.1 < rates[f"{BLOCK}.attn.q_conv"] < 0.25 and 0.05 < rates[f"{BLOCK}.mlp.fc1_conv"] < 0.6, rates
    assert result.layers[image.layers.index(sdsa)].additions > 0


@pytest.mark.slow   # ~4 min; the digits core runs (test_core.py) are the default run
def test_15m_block_at_14x14_tokens(tmp_path):
    image, result, traces = _run_block(tmp_path, 224)
    _report(image, result, traces)
    _check(image, result, traces, 196)


@pytest.mark.slow
def test_15m_stage4_block_with_padded_heads(tmp_path):
    """Stage 4: 360 channels in 8 heads of 45, head-padded to 48 on 16 lanes (a few minutes)."""
    image, result, golden = _run_block(tmp_path, 224, "block4.0")
    _report(image, result, golden)
    sdsa = next(layer for layer in image.layers if layer.kind == "sdsa")
    assert sdsa.attrs["head_dim"] == 48 and image.regions[sdsa.name].index is not None
    check_image(image, result, golden, 0)
