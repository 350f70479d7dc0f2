"""The digits model's exported traces replayed through the generated RTL, unit by unit.

Every attention operator through the SDSA unit, and every LIF layer (with its membranes carried
over the T = 4 timesteps, the attention neuron among them) through the LIF core: each output
must equal both the golden engine and the exported trace. (Conv and linear layers:
test_accumulator.py::test_digits_model_layers_replay.)
"""
from pathlib import Path

import numpy as np
import pytest

from contract.config import load_config
from contract.program import load_program
from golden.export import load_traces
from hwgen.sim.lif import lif_sim_run
from hwgen.sim.runner import run_cocotb
from hwgen.sim.sdsa import sdsa_sim_run

HERE = Path(__file__).parent
CONFIGS = HERE.parent / "configs" / "hw"


def sdsa_specs(folder: Path, image: int = 0) -> dict:
    program, traces = load_program(folder), load_traces(folder)
    spec, i = {}, 0
    for layer in program.layers:
        if layer.kind != "sdsa":
            continue
        a = layer.attrs

        def tokens(name):
            t = traces[name][:, image]
            return t.reshape(t.shape[0], t.shape[1], -1).astype(np.int64)

        q, v = tokens(a["q"]), tokens(a["v"])
        k = tokens(a["k"]) if a["k"] else np.zeros_like(q)
        att = traces[layer.name][:, image].astype(np.int64)
        att = att.reshape(att.shape[0], att.shape[1], -1) if a["variant"] in (3, 4) else att.reshape(att.shape[:2])
        spec.update({f"q{i}": q, f"k{i}": k, f"v{i}": v, f"a{i}": att, f"heads{i}": np.array(a["heads"]),
                     f"head_dim{i}": np.array(a["head_dim"]), f"label{i}": np.array(layer.name)})
        i += 1
    spec["count"] = np.array(i)
    return spec


def lif_specs(folder: Path, lanes: int, image: int = 0) -> dict:
    """Every LIF layer in the LIF core's neuron order (position-major, channels padded to lanes)."""
    program, traces = load_program(folder), load_traces(folder)
    th_max = (1 << program.header["hw"]["lif"]["threshold_width"]) - 1
    spec, i = {}, 0
    for layer in program.layers:
        if layer.kind != "lif":
            continue

        def order(x, pad=0):   # [T, C, ...] -> [T, positions * C_padded]
            x = x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1)
            c = x.shape[2]
            cp = -(-c // lanes) * lanes
            out = np.full((x.shape[0], x.shape[1], cp), pad, dtype=np.int64)
            out[:, :, :c] = x
            return out.reshape(x.shape[0], -1)

        cur = traces[layer.inputs[0]][:, image].astype(np.int64) << layer.attrs["input_shift"]
        th = program.array(layer, "threshold").astype(np.int64)
        cp = -(-len(th) // lanes) * lanes
        spec.update({f"x{i}": order(cur), f"th{i}": np.concatenate([th, np.full(cp - len(th), th_max)]),
                     f"s{i}": order(traces[layer.name][:, image].astype(np.int64)),
                     f"h{i}": order(traces[f"{layer.name}.membrane"][:, image].astype(np.int64)),
                     f"label{i}": np.array(layer.name)})
        i += 1
    spec["count"] = np.array(i)
    return spec


def _sdsa_replay(tmp_path, program_dir, config):
    hw = load_config(CONFIGS / config)
    spec = sdsa_specs(program_dir)
    assert int(spec["count"]) >= 2, "the digits model has an attention layer in stages 3 and 4"
    np.savez(tmp_path / "sdsa.npz", **spec)
    run_cocotb(sdsa_sim_run(hw.sdsa, name=hw.name, test_module="sdsa_tb", test_dir=HERE,
                            testcase="replay_traces", plan={"replay": str(tmp_path / "sdsa.npz")}))


def test_digits_attention_replays_on_sdsa_unit(tmp_path, digits_program):
    """SDSA-3, T = 4: every attention layer of the digits model."""
    _sdsa_replay(tmp_path, digits_program, "digits.yaml")


@pytest.mark.slow   # ~35 s; SDSA-1 runs on the core in the default suite (test_core.py, with MASK)
def test_digits_sdsa1_attention_replays_on_sdsa_unit(tmp_path, digits_sdsa1_program):
    """The small digits model trained with SDSA-1."""
    _sdsa_replay(tmp_path, digits_sdsa1_program, "digits_sdsa1.yaml")


@pytest.mark.slow   # ~37 s; every LIF layer runs on the core in the default suite (test_core.py)
def test_digits_lif_layers_replay_on_lif_core(tmp_path, digits_program):
    """Every LIF layer (encode, block, Q/K/V, attention, MLP and head neurons), T = 4."""
    hw = load_config(CONFIGS / "digits.yaml")
    spec = lif_specs(digits_program, hw.lif.lanes)
    names = [str(spec[f"label{i}"]) for i in range(int(spec["count"]))]
    assert any(n.endswith("attn_lif") for n in names) and "lif" in names
    np.savez(tmp_path / "lif.npz", **spec)
    run_cocotb(lif_sim_run(hw, test_module="lif_tb", test_dir=HERE, testcase="replay_traces",
                           plan={"replay": str(tmp_path / "lif.npz")}))
