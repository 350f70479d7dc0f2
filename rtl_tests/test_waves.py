"""`hwgen sim --waves`: a waveform of the core around the first mismatch, or of a chosen window,
read back with a waveform reader (pywellen) and searched for the core's named signals."""
from pathlib import Path

import pytest

from contract.config import load_config
from hwgen.sim.simulate import simulate

HW = Path(__file__).resolve().parents[1] / "configs" / "hw" / "digits.yaml"


def _signals(path: Path) -> set[str]:
    import pywellen

    return {v.full_name for v in pywellen.Waveform(str(path)).all_vars()}


def _times(path: Path) -> tuple[int, int]:
    stamps = [int(line[1:]) for line in path.read_text().splitlines() if line.startswith("#")]
    return min(stamps), max(stamps)


def test_waves_around_the_first_mismatch(digits_t1_program, tmp_path, corrupt_image_1):
    result = simulate(digits_t1_program, load_config(HW), out=tmp_path / "run", count=2, keep_going=True,
                      waves="mismatch", log=lambda m: None)
    bad = result["images"][1]
    assert not bad["exact"] and "waves" not in result["images"][0]
    path = Path(bad["waves"])
    assert path.name == f"image1_{corrupt_image_1}_t0.vcd" and path.exists()
    names = _signals(path)
    # the sequencer's instruction register and the int and spike memories' write ports
    assert any(n.endswith("dut.instr") or ".dut.instr" in n for n in names), sorted(names)[:40]
    assert {"core_harness.dut.spike_write__en", "core_harness.dut.int_write__en"} <= names


def test_waves_of_a_chosen_window(digits_t1_program, tmp_path):
    result = simulate(digits_t1_program, load_config(HW), out=tmp_path / "run", start=3, count=1,
                      waves="3:head:logits", log=lambda m: None)
    path = Path(result["waves"])
    assert path.name == "image3_logits.vcd" and result["images"][0]["exact"]
    first, last = _times(path)
    assert 0 < last - first < 2_000_000                 # the two instructions only, not the image (ps)
    with pytest.raises(ValueError, match="'nope' is neither a layer of the program"):
        simulate(digits_t1_program, load_config(HW), out=tmp_path / "run2", count=1, waves="0:nope",
                 log=lambda m: None)
