"""`hwgen build`: outputs, manifest, lint gate, refusal to overwrite, exit codes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def hwgen(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "hwgen", *args], cwd=cwd, capture_output=True, text=True)


def _snapshot(folder: Path):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_writes_lint_clean_verilog_and_manifest(tmp_path):
    out = tmp_path / "lif"
    res = hwgen("build", "configs/hw/lif_small.yaml", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}/lif_core.v" in res.stdout
    synth = json.loads((out / "synth_lif_core.json").read_text())
    assert synth["top"] == "lif_core" and synth["cells"] > 100 and synth["flip_flops"] > 10
    # membrane memory (256 rows x 4 x 18 bits) and threshold memory (1024 rows x 4 x 11 bits)
    assert synth["memory_bits"] == 256 * 4 * 18 + 1024 * 4 * 11
    assert "Estimated number of transistors" in (out / "synth_lif_core.txt").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lint"] == "clean"
    assert manifest["config_name"] == "lif_small" and len(manifest["config_hash"]) == 16
    unit = manifest["units"][0]
    assert unit["top"] == "lif_core"
    ports = {p["name"]: p for p in unit["ports"]}
    assert ports["currents__payload"] == {"name": "currents__payload", "direction": "in", "width": 4 * 12}
    assert ports["spikes__payload"]["width"] == 4 + 4 * 18
    assert {"amaranth", "verilator", "cocotb"} <= set(manifest["tools"])
    assert "module lif_core(" in (out / "lif_core.v").read_text()
    assert "lif_core: clean" in (out / "lint.txt").read_text()
    # no temporary folders left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lif"]


def test_build_refuses_non_empty_folder_and_leaves_it(tmp_path):
    out = tmp_path / "lif"
    assert hwgen("build", "configs/hw/lif_small.yaml", "--out", str(out), "--no-synth").returncode == 0
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    res = hwgen("build", "configs/hw/lif_wide.yaml", "--out", str(out))
    assert res.returncode == 2
    assert "not empty; pass --force" in res.stderr and "Traceback" not in res.stderr
    assert _snapshot(out) == before
    res = hwgen("build", "configs/hw/lif_wide.yaml", "--out", str(out), "--force", "--no-synth")
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "manifest.json").read_text())["config_name"] == "lif_wide"
    assert not (out / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lif"]


@pytest.mark.parametrize("body, words", [
    ("name: x\nlif: {lanes: 4, neurons: 64, channels: 8, current_width: 8, membrane_width: 12,"
     " frac_bits: 4, threshold_width: 6, bogus: 1}\n", "lif.bogus = 1: unknown key"),
    ("name: x\nlif: {lanes: 4, neurons: 64, channels: 8, current_width: -8, membrane_width: 12,"
     " frac_bits: 4, threshold_width: 6}\n", "lif.current_width = -8: must be >= 2"),
    ("name: x\nlif: {lanes: 5, neurons: 64, channels: 10, current_width: 8, membrane_width: 12,"
     " frac_bits: 4, threshold_width: 6}\n", "lif.neurons = 64: must be a multiple of lanes (5)"),
])
def test_bad_config_exits_2_without_traceback(tmp_path, body, words):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(body)
    out = tmp_path / "out"
    res = hwgen("build", str(cfg), "--out", str(out))
    assert res.returncode == 2
    assert words in res.stderr and str(cfg) in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()
