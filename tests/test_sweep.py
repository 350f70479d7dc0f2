"""`hwgen sweep` (hwgen/sweep.py): spec validation, a small sweep on the digits model, its figures
against the flow's own functions, caching and resume, and the Dask path on a LocalCluster.

The default-run sweep is 4 points on the digits model (2 built, 1 invalid configuration, 1 that
does not fit), 24 accuracy images and 3 cycle-model images, no area; the area and the bundled
12-point example run under ``-m slow``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from hwgen.cli import main
from hwgen.sweep import COLUMNS, SpecError, load_spec, pareto_front, sweep

REPO = Path(__file__).resolve().parents[1]
T1 = "checkpoints/digits_sdsa3_t1.pth"

# one xdist worker holds the module's sweep; it starts worker processes of its own
pytestmark = pytest.mark.xdist_group("sweep")


def _small_spec() -> dict:
    return {
        "name": "small", "root": str(REPO), "base": "configs/hw/digits.yaml",
        "count": 24, "estimate_count": 3, "metrics": ["accuracy", "cycles", "energy"],
        "defaults": {"checkpoint": T1},
        "grid": {"weight_bits": [6, 8]},
        "points": [{"lanes": 6},                               # lif.neurons = 16384 is no multiple of 6
                   {"accumulator.weight_depth": 4096}],        # the weights need 39,073 words
    }


def _write(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _figures(record: dict) -> list[dict]:
    """The points without their timings (which differ between any two runs)."""
    return [{k: v for k, v in r.items() if k not in ("timing", "point_s")} for r in record["points"]]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The small sweep on two local worker processes: (record, sweep folder, spec file)."""
    tmp = tmp_path_factory.mktemp("sweep_local")
    spec = _write(tmp / "small.yaml", _small_spec())
    record = sweep(spec, tmp / "out", workers=2, log=lambda s: None)
    return record, tmp / "out", spec


# ---------------------------------------------------------------------------- the spec
def test_grid_and_points_expand_over_the_base():
    spec = load_spec({
        "root": str(REPO), "base": "configs/hw/digits.yaml", "metrics": ["accuracy"],
        "defaults": {"weight_bits": 8},
        "grid": {"lanes": [8, 16], "weight_bits": [4, 8],
                 "model": [{"checkpoint": T1}, {"checkpoint": "checkpoints/digits_sdsa1_t1.pth", "sdsa.variant": 1}]},
        "points": [{"checkpoint": T1, "core.int_depth": 8192},
                   {"checkpoint": T1, "lanes": 8, "weight_bits": 4}],       # the same as grid point 0
    })
    assert len(spec.points) == 9 and len(spec.notes) == 1 and "same point as #0" in spec.notes[0]
    p = spec.points[7]       # lanes 16, weight_bits 8, the SDSA-1 model
    assert (p.params["lanes"], p.weight_bits, Path(p.checkpoint).name) == (16, 8, "digits_sdsa1_t1.pth")
    assert [p.hw[s]["lanes"] for s in ("lif", "accumulator", "sdsa")] == [16, 16, 16]
    assert p.hw["sdsa"]["variant"] == 1 and p.config.sdsa.variant == 1 and p.config.lif.lanes == 16
    listed = spec.points[8]
    assert listed.hw["core"]["int_depth"] == 8192 and listed.hw["lif"]["lanes"] == 8
    assert len({p.key for p in spec.points}) == 9
    assert len({p.hw_hash for p in spec.points}) == 5          # 2 lanes x 2 variants, and the int memory
    assert spec.varied == ["lanes", "weight_bits", "checkpoint", "sdsa.variant", "core.int_depth"]
    assert p.label == "lanes=16 weight_bits=8 checkpoint=digits_sdsa1_t1 sdsa.variant=1"


def test_point_key_follows_checkpoint_content_not_path(tmp_path):
    def key(ckpt: Path) -> str:
        return load_spec({"root": str(REPO), "base": "configs/hw/digits.yaml",
                          "points": [{"checkpoint": str(ckpt)}]}).points[0].key

    copy = tmp_path / "elsewhere.pth"
    shutil.copyfile(REPO / T1, copy)
    assert key(copy) == key(REPO / T1)
    shutil.copyfile(REPO / "checkpoints/digits_sdsa3_t4.pth", copy)      # same path, other weights
    assert key(copy) != key(REPO / T1)


BAD_SPECS = [
    ({"grdi": {}}, "grdi", "unknown key"),
    ({"grid": {"lanes": 8}}, "grid.lanes", "non-empty list"),
    ({"grid": {"lane": [8]}}, "grid.lane[0]", "unknown parameter"),
    ({"grid": {"accumulator.lane": [8]}}, "grid.accumulator.lane[0]", "fields of accumulator"),
    ({"grid": {"weight_bits": [4, "eight"]}}, "grid.weight_bits[1]", "positive integer"),
    ({"grid": {"core.int_depth": ["big"]}}, "grid.core.int_depth[0]", "must be an integer"),
    ({"grid": {"checkpoint": ["checkpoints/nope.pth"]}}, "grid.checkpoint[0]", "no such file"),
    ({"base": "configs/hw/lif_small.yaml"}, "base", "no 'core' section"),
    ({"base": None}, "base", "file path"),
    ({"metrics": ["speed"]}, "metrics", "accuracy, cycles, energy, area"),
    ({"grid": {"lanes": [8], "both": [{"lanes": 16, "weight_bits": 4}]}}, "grid.both", "sets lanes"),
    ({"grid": None, "points": []}, "grid", "needs a grid or a list of points"),
    ({"defaults": {}, "grid": {"weight_bits": [8]}}, "defaults", "non-empty mapping"),
    ({"images": "no/such/folder"}, "images", "no such file or folder"),
    ({"count": 0}, "count", "positive integer"),
    ({"plots": {"energy": "joules"}}, "plots.energy", "energy_uj_memory"),
    ({"points": [{"checkpoint": T1, "model_args": {"T": 4}}]}, "points[0].model_args.T", "own parameter"),
]


@pytest.mark.parametrize("change,key,allowed", BAD_SPECS, ids=[c[1] for c in BAD_SPECS])
def test_bad_spec_exits_2_naming_file_key_and_value(tmp_path, capsys, change, key, allowed):
    raw = {"root": str(REPO), "base": "configs/hw/digits.yaml", "defaults": {"checkpoint": T1},
           "grid": {"weight_bits": [8]}}
    raw.update(change)
    raw = {k: v for k, v in raw.items() if v is not None or k == "base"}
    spec = _write(tmp_path / "bad.yaml", raw)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hwgen sweep: {spec}: {key} = "), err
    assert allowed in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()                     # nothing written


def test_spec_errors_name_the_missing_checkpoint_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match=r"grid\.checkpoint = None: is required for accuracy"):
        load_spec({"root": str(REPO), "base": "configs/hw/digits.yaml", "grid": {"weight_bits": [8]}})
    bad = tmp_path / "broken.yaml"
    bad.write_text("base: configs/hw/digits.yaml\ngrid: {lanes: [8, 16]\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: line \d+ = None: is not valid YAML"):
        load_spec(bad)


def test_pareto_front_by_hand():
    #            0    1    2    3    4    5
    energy = [1.0, 2.0, 2.0, 3.0, 0.5, 3.0]
    acc = [0.50, 0.90, 0.80, 0.90, 0.40, 0.95]
    # 2 is beaten by 1 (same energy, better accuracy), 3 by 1 (less energy, same accuracy)
    assert pareto_front(energy, acc, maximize_y=True) == [0, 1, 4, 5]
    cycles, area = [5, 4, 4, 9], [1, 2, 2, 1]           # minimize both; 1 and 2 tie: both on the front
    assert pareto_front(area, cycles, maximize_y=False) == [0, 1, 2]


# ---------------------------------------------------------------------------- a small sweep
def test_small_sweep_writes_csv_json_and_plot(local_run):
    record, out, _ = local_run
    rows = record["points"]
    assert [r["status"] for r in rows] == ["ok", "ok", "invalid_config", "does_not_fit"]
    assert [r["weight_bits"] for r in rows] == [6, 8, 8, 8] and [r["lanes"] for r in rows] == [8, 8, 6, 8]
    assert "lif.neurons = 16384" in rows[2]["message"] and "multiple of lanes (6)" in rows[2]["message"]
    assert "accumulator.weight_depth" in rows[3]["message"] and rows[3]["fits"] is False
    for r in rows[:2]:
        assert r["fits"] is True and r["short"] is None and r["accuracy_images"] == 24 and r["estimate_images"] == 3
        assert 0.5 < r["int_top1"] <= 1 and r["cycles_per_image"] > r["bound_per_image"] > 0
        assert 0 < r["energy_uj_paper_datapath"] < r["energy_uj_memory"]
        assert r["cells"] is None                           # area was not asked for

    csv_lines = (out / "results.csv").read_text().splitlines()
    header = csv_lines[0].split(",")
    assert header == record["columns"] and set(COLUMNS) <= set(header) and "accumulator.weight_depth" in header
    assert len(csv_lines) == 1 + len(rows)
    assert json.loads((out / "results.json").read_text())["points"] == json.loads(json.dumps(rows))
    assert (out / "pareto_accuracy_energy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "pareto_cycles_area.png").exists()    # no area measured
    # the invalid configuration is not cached; the rest is, each with the hardware it ran on
    assert sorted(d.name for d in (out / "points").iterdir()) == sorted(r["key"] for r in rows if r["index"] != 2)
    hw = yaml.safe_load((out / "points" / rows[3]["key"] / "hw.yaml").read_text())
    assert hw["accumulator"]["weight_depth"] == 4096


def test_point_figures_equal_the_flow_run_directly(local_run, tmp_path):
    """Point 0 (weight_bits = 6, not the default) against quantize -> evaluate -> estimate by hand."""
    from contract.config import load_config
    from hwgen.estimate import estimate
    from hwgen.flow import evaluate_program, quantize_checkpoint

    row = local_run[0]["points"][0]
    hw = load_config(REPO / "configs/hw/digits.yaml")
    program = quantize_checkpoint(REPO / T1, hw, tmp_path / "program", weight_bits=6, calib=0, samples=0,
                                  log=lambda s: None)
    ev = evaluate_program(program, images="digits:test", count=24)
    est = estimate(program, images="digits:test", count=3, hw=hw, log=lambda s: None)
    mj = est["estimate"]["energy_mj"]
    assert (row["float_top1"], row["int_top1"], row["agreement"]) == (ev["float_top1"], ev["int_top1"], ev["agreement"])
    assert (row["cycles_per_image"], row["sops_per_image"], row["additions_per_image"]) == (
        est["totals"]["cycles_per_image"], est["estimate"]["sops_per_image"], est["totals"]["additions_per_image"])
    assert (row["energy_uj_paper"], row["energy_uj_paper_datapath"], row["energy_uj_memory"]) == (
        mj["paper_model"]["paper"] * 1e3, mj["paper_model"]["datapath"] * 1e3, mj["memory_aware"]["datapath"] * 1e3)


@pytest.mark.parametrize("params,status,check", [
    ({"T": 2}, "ok", lambda r: r["metrics"]["T"] == 2 and r["metrics"]["accuracy_images"] == 8),
    ({"weight_bits": 12}, "quantization_error", lambda r: "weight_bits must be in [2, accumulator.weight_width = 8], "
                                                          "not 12" in r["message"]),
], ids=["T=2", "weight_bits=12"])
def test_run_task_in_this_process(params, status, check):
    """The worker function alone: T reaches the model, a refused quantization is a status."""
    from hwgen.sweep import _point_task, run_task

    spec = load_spec({"root": str(REPO), "base": "configs/hw/digits.yaml", "count": 8, "metrics": ["accuracy"],
                      "points": [{"checkpoint": T1, **params}]})
    result = run_task(_point_task(spec, spec.points[0]))
    assert result["status"] == status and check(result), result


def test_rerun_computes_nothing(local_run, tmp_path):
    record, out, spec = local_run
    again = tmp_path / "out"
    shutil.copytree(out, again)
    stamps = {p: p.stat().st_mtime_ns for p in again.glob("points/*/result.json")}
    rerun = sweep(spec, again, workers=2, log=lambda s: None)
    assert rerun["run"]["computed"] == [] and rerun["run"]["scheduler"].startswith("none")
    assert sorted(rerun["run"]["cached"]) == sorted(r["key"] for r in record["points"] if r["index"] != 2)
    assert {p: p.stat().st_mtime_ns for p in again.glob("points/*/result.json")} == stamps
    assert _figures(rerun) == _figures(record)


def test_interrupted_sweep_resumes_with_the_rest(local_run, tmp_path):
    record, _, spec = local_run
    out = tmp_path / "out"
    seen = []

    def stop_after_one(row):
        seen.append(row["key"])
        raise KeyboardInterrupt            # as Ctrl-C after the first point came back

    with pytest.raises(KeyboardInterrupt):
        sweep(spec, out, workers=2, log=lambda s: None, on_result=stop_after_one)
    assert [d.name for d in (out / "points").iterdir()] == seen       # exactly the saved one, nothing half-written
    assert not (out / "results.json").exists()
    resumed = sweep(spec, out, workers=2, log=lambda s: None)
    rest = [r["key"] for r in record["points"] if r["index"] != 2 and r["key"] != seen[0]]
    assert resumed["run"]["cached"] == seen and sorted(resumed["run"]["computed"]) == sorted(rest)
    assert _figures(resumed) == _figures(record)


def test_dask_local_cluster_gives_the_local_results(local_run, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the Dask path needs dask[distributed] (test extra)")
    record, _, spec = local_run
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        on_dask = sweep(spec, tmp_path / "out", scheduler=cluster.scheduler_address, log=lambda s: None)
    assert on_dask["run"]["scheduler"] == f"dask: {cluster.scheduler_address}"
    assert sorted(on_dask["run"]["computed"]) == sorted(record["run"]["computed"])
    assert _figures(on_dask) == _figures(record)
    assert on_dask["pareto"] == record["pareto"]


def test_cli_sweep_prints_the_table(local_run, tmp_path, capsys):
    _, out, spec = local_run
    again = tmp_path / "out"
    shutil.copytree(out, again)
    assert main(["sweep", str(spec), "--out", str(again)]) == 0
    text = capsys.readouterr().out
    assert "0 point(s) computed, 3 cached" in text and "invalid_config" in text and "does_not_fit" in text
    assert main(["sweep", str(spec), "--out", str(again), "--dry-run"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 4 and listing[2].endswith("multiple of lanes (6): lane l holds neurons l, l+lanes, ...")
    assert all(line.endswith(": cached") for i, line in enumerate(listing) if i != 2)


# ---------------------------------------------------------------------------- slow: area, the example
TINY_CORE = {
    "name": "tiny",
    "lif": {"lanes": 2, "neurons": 64, "channels": 16, "current_width": 12, "membrane_width": 16, "frac_bits": 4,
            "threshold_width": 8, "max_timesteps": 4, "threshold_depth": 16},
    "accumulator": {"lanes": 2, "weight_width": 4, "accumulator_width": 12, "bias_width": 12, "weight_depth": 256,
                    "accumulator_depth": 64, "bias_depth": 32, "max_kernel": 3, "max_channels": 16, "max_size": 8},
    "sdsa": {"variant": 3, "lanes": 2, "heads": 1, "head_dim": 2, "max_tokens": 4, "count_width": 3, "acc_width": 4,
             "max_timesteps": 4},
    "core": {"int_depth": 64, "spike_depth": 64, "pixel_depth": 64, "program_depth": 16},
}


@pytest.mark.slow
def test_area_once_per_hardware_and_as_hwgen_build_reports(tmp_path):
    """An area-only sweep of a tiny core: 4 points on 2 hardware configurations -> 2 Yosys runs,
    each equal to `hwgen build`'s statistics of the core top; a rerun runs none. (~3 min here)"""
    from contract.config import HwConfig
    from hwgen.build import build

    _write(tmp_path / "tiny.yaml", TINY_CORE)
    spec = _write(tmp_path / "area.yaml", {"base": "tiny.yaml", "metrics": ["area"],
                                           "grid": {"core.program_depth": [16, 32], "weight_bits": [4, 8]}})
    record = sweep(spec, tmp_path / "out", workers=2, log=lambda s: None)
    rows = record["points"]
    assert len(rows) == 4 and len(record["run"]["area_computed"]) == 2 and record["run"]["computed"] == []
    assert [r["cells"] for r in rows[:2]] == [rows[0]["cells"]] * 2        # same hardware, one measurement
    cfg = HwConfig.from_dict({**TINY_CORE, "core": {**TINY_CORE["core"], "program_depth": 32}})
    synth = build(cfg, tmp_path / "build", run_lint=False).manifest["synth"]["core"]
    row = rows[2]
    assert row["hw_hash"] == cfg.hash
    assert (row["cells"], row["flip_flops"], row["logic_cells"], row["memory_bits"], row["transistors_logic"]) == (
        synth["cells"], synth["flip_flops"], synth["logic_cells"], synth["memory_bits"], synth["cmos_transistors_logic"])
    assert row["area_transistors"] == synth["cmos_transistors_logic"] + 6 * synth["memory_bits"]
    rerun = sweep(spec, tmp_path / "out", workers=2, log=lambda s: None)
    assert rerun["run"]["area_computed"] == [] and len(rerun["run"]["area_cached"]) == 2
    assert _figures(rerun) == _figures(record)


@pytest.mark.slow
def test_example_sweep_digits_lanes_bits(tmp_path):
    """configs/sweeps/digits_lanes_bits.yaml end to end: 14 points, the CSV and both Pareto plots."""
    record = sweep(REPO / "configs/sweeps/digits_lanes_bits.yaml", tmp_path / "out", log=lambda s: None)
    rows = record["points"]
    assert len(rows) == 14 and [r["status"] for r in rows] == ["ok"] * 13 + ["does_not_fit"]
    assert len(record["run"]["area_computed"]) == 3                         # lanes 8, lanes 16, SDSA-1
    assert all(r["int_top1"] > 0.9 for r in rows if r["weight_bits"] == 8 and r["status"] == "ok")
    assert all(r["cells"] > 0 and r["accuracy_images"] == 450 for r in rows[:13])
    for name in ("accuracy_energy", "cycles_area"):
        assert record["pareto"][name]["points"]
        assert (tmp_path / "out" / f"pareto_{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "out" / "results.csv").read_text().splitlines()) == 15
