"""Quantize-and-export at ImageNet scale: a randomly initialized 31M model at 224x224, one
sample, exported and replayed layer by layer (slow: about a minute; `./run tests -m slow`)."""
import subprocess
import sys
from pathlib import Path

import pytest

from contract.program import load_program
from golden.export import load_traces, replay

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_31m_at_224_exports_and_replays(tmp_path):
    out = tmp_path / "m31"
    res = subprocess.run([sys.executable, "-m", "hwgen", "quantize", "--model", "metaspikeformer_31m",
                          "--img-size", "224", "--random-init", "1", "--hw", "configs/hw/metaspikeformer31m.yaml",
                          "--out", str(out), "--samples", "1"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    program = load_program(out)
    assert program.header["input"]["shape"] == [3, 224, 224]
    assert sum(layer.kind == "conv" for layer in program.layers) == 69
    assert replay(program, load_traces(out)) == []
