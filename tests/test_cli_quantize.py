"""`hwgen quantize`: a checkpoint in, a program folder out (or a clear refusal)."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from golden.checkpoint import save_checkpoint
from golden.model import create_model

REPO = Path(__file__).resolve().parents[1]


def hwgen(*args):
    return subprocess.run([sys.executable, "-m", "hwgen", *args], cwd=REPO, capture_output=True, text=True)


def test_quantize_checkpoint_and_refuse_overwrite(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    save_checkpoint(create_model("metaspikeformer_tiny", T=2), ckpt)
    out = tmp_path / "prog"
    res = hwgen("quantize", str(ckpt), "--model", "metaspikeformer_tiny", "--T", "2", "--hw",
                "configs/hw/digits.yaml", "--out", str(out), "--samples", "2")
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "program.json").read_text())
    header = doc["header"]
    # the chip's input is the pixel (LSB 1); the digits' x = pixel / 16 is folded into the encoding conv
    assert header["T"] == 2 and header["input"]["scale"] == 1.0
    assert header["input"]["normalization"] == {"scale": [1 / 16], "offset": [0.0]}
    assert header["preprocessing"]["kind"] == "digits" and header["preprocessing"]["levels"] == 16
    assert {"program.json", "arrays.npz", "memories", "traces.npz"} <= {p.name for p in out.iterdir()}
    before = sorted(p.name for p in out.rglob("*"))
    res = hwgen("quantize", str(ckpt), "--model", "metaspikeformer_tiny", "--hw", "configs/hw/digits.yaml",
                "--out", str(out))
    assert res.returncode == 2 and "not empty; pass --force" in res.stderr
    assert sorted(p.name for p in out.rglob("*")) == before


def test_quantize_names_bad_checkpoint_keys(tmp_path):
    model = create_model("metaspikeformer_tiny")
    sd = model.state_dict()
    sd["head.weight_renamed"] = sd.pop("head.weight")
    sd["downsample1_1.encode_conv.bias"] = torch.zeros(3)
    ckpt = tmp_path / "bad.pth"
    torch.save({"model": sd}, ckpt)
    out = tmp_path / "prog"
    res = hwgen("quantize", str(ckpt), "--model", "metaspikeformer_tiny", "--hw", "configs/hw/digits.yaml",
                "--out", str(out))
    assert res.returncode == 2, res.stderr
    assert "head.weight" in res.stderr and "downsample1_1.encode_conv.bias" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
