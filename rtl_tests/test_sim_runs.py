"""`hwgen sim` at user scale: each image checked as it finishes, a mismatch recorded or stopping
the run, shards, and two runs at once on one configuration."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from contract.config import load_config
from hwgen.sim.simulate import MismatchError, simulate

REPO = Path(__file__).resolve().parents[1]
HW = REPO / "configs" / "hw" / "digits.yaml"
def test_keep_going_records_the_mismatching_image_and_checks_the_rest(digits_t1_program, tmp_path, corrupt_image_1):
    run = simulate(digits_t1_program, load_config(HW), out=tmp_path / "run", count=4, keep_going=True,
                   log=lambda m: None)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["images"] == run["images"]
    assert [i["exact"] for i in saved["images"]] == [True, False, True, True]
    assert saved["images"][1]["mismatch"].startswith(
        f"image 1, layer {corrupt_image_1} (lif): first mismatch at timestep=0, channel=5, y=1, x=0")
    assert "mismatch" not in saved["images"][0] and saved["totals"]["exact_images"] == 3


def test_first_mismatch_stops_the_run(digits_t1_program, tmp_path, corrupt_image_1):
    with pytest.raises(MismatchError, match=rf"image 1, layer {corrupt_image_1} \(lif\)"):
        simulate(digits_t1_program, load_config(HW), out=tmp_path / "run", count=60, log=lambda m: None)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    # the harness stopped at the next image boundary after the checker asked: not all 60 ran (the
    # simulator runs ahead of the checker, by several images on a loaded machine: 12 was too few)
    assert 2 <= len(saved["images"]) < 60 and not saved["images"][1]["exact"]


def test_a_shard_is_named_by_its_indices(digits_t1_program, tmp_path):
    run = simulate(digits_t1_program, load_config(HW), out=tmp_path / "run", start=7, count=2, log=lambda m: None)
    assert [i["index"] for i in run["images"]] == [7, 8] and all(i["exact"] for i in run["images"])


def test_two_runs_at_once_on_one_config_both_finish_exact(digits_t1_program, tmp_path):
    def sim(out):
        return subprocess.Popen([sys.executable, "-m", "hwgen", "sim", str(digits_t1_program), "--config", str(HW),
                                 "--count", "2", "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    runs = [sim(tmp_path / "a"), sim(tmp_path / "b")]
    outputs = [p.communicate(timeout=600) for p in runs]
    for p, (out, err) in zip(runs, outputs):
        assert p.returncode == 0, err
        assert "2/2 images bit-exact on every layer and the logits" in out
    for name in ("a", "b"):
        assert json.loads((tmp_path / name / "run.json").read_text())["totals"]["exact_images"] == 2


def test_one_run_folder_takes_one_run(digits_t1_program, tmp_path):
    from hwgen.sim.simulate import _RunLock

    (tmp_path / "run").mkdir()
    with _RunLock(tmp_path / "run"):
        with pytest.raises(ValueError, match="is in use by another hwgen sim; give this run its own --out"):
            simulate(digits_t1_program, load_config(HW), out=tmp_path / "run", count=1, log=lambda m: None)
