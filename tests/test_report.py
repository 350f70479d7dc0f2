"""`hwgen report`: run.json validation, report.md contents, report.png, the CLI entry point."""
import argparse
import copy
import json

import pytest

from hwgen.report import (
    DPI,
    FIGSIZE,
    RunError,
    add_parser,
    load_run,
    run_report,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _layer(name, kind, unit, cycles, bound, additions=0.0, macs=0.0, input_rate=0.1):
    return {"name": name, "kind": kind, "unit": unit, "cycles": float(cycles), "bound": float(bound),
            "efficiency": bound / cycles if bound else None, "additions": float(additions),
            "macs": float(macs), "events": 10.0 * cycles, "input_rate": input_rate,
            "energy_pj": 0.9 * additions + 4.6 * macs}


def make_run(n_layers=12):
    """A consistent synthetic run: every unit, integer inputs on the encoder, one zero bound."""
    base = [
        _layer("downsample1_1.encode_conv", "conv", "accumulator", 5000, 4800, macs=20000, input_rate=None),
        _layer("ConvBlock1_1.0.Conv.lif1", "lif", "lif", 1500, 1400),
        _layer("ConvBlock1_1.0.Conv.pwconv1", "conv", "accumulator", 12345, 11000, additions=90000, input_rate=0.25),
        _layer("ConvBlock1_1.0.Conv.lif2", "lif", "lif", 1500, 1400, input_rate=0.0),
        _layer("block3.0.attn.q_conv", "conv", "accumulator", 2000, 1900, additions=15000, input_rate=0.05),
        _layer("block3.0.attn.sdsa", "sdsa", "sdsa", 800, 640, input_rate=0.3),
        _layer("block3.0.attn.mask", "mask", "vector", 64, 0, input_rate=0.2),  # bound 0: efficiency null
        _layer("block3.0.mlp.fc1_conv", "conv", "accumulator", 40000, 39000, additions=300000, input_rate=0.12),
        _layer("block3.0.mlp.fc2_lif", "lif", "lif", 900, 880, input_rate=None),
        _layer("token_mean", "token_sum", "vector", 128, 128, input_rate=0.4),
        _layer("head", "linear", "accumulator", 320, 300, additions=1200, input_rate=0.6),
        _layer("logits", "readout", "vector", 10, 10, input_rate=None),
    ]
    layers = [copy.deepcopy(base[i % len(base)]) for i in range(n_layers)]
    for i, layer in enumerate(layers[len(base):], len(base)):
        layer["name"] = f"repeat{i // len(base)}.{layer['name']}"  # names stay unique
    images = [{"index": i, "label": i % 10, "predicted": i % 10, "golden_predicted": i % 10,
               "cycles": 60000.0, "exact": i != 3} for i in range(5)]
    cycles, bound = sum(la["cycles"] for la in layers), sum(la["bound"] for la in layers)
    totals = {"cycles_per_image": cycles, "bound_per_image": bound, "efficiency": bound / cycles,
              "additions_per_image": sum(la["additions"] for la in layers),
              "macs_per_image": sum(la["macs"] for la in layers),
              "energy_pj_per_image": sum(la["energy_pj"] for la in layers),
              "accuracy": 0.8, "exact_images": sum(im["exact"] for im in images), "images": len(images)}
    return {"format": "spikeforge-run", "version": 1, "program": "build/digits_t1",
            "config": "configs/hw/digits.yaml", "T": 1, "lanes": 8,
            "energy_model": {"e_ac_pj": 0.9, "e_mac_pj": 4.6, "note": "45 nm, Horowitz 2014"},
            "images": images, "layers": layers, "totals": totals}


def save_run(folder, run):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.json"
    path.write_text(json.dumps(run))
    return path


def table_rows(markdown, first_header):
    """Header cells and body rows (lists of cells) of the table whose first column is `first_header`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return table[0], table[2:]  # table[1] is the alignment row


def test_write_report_writes_markdown_with_one_row_per_layer_and_totals(tmp_path):
    run = make_run()
    md, png = write_report(run, tmp_path / "out")
    assert (md.name, png.name) == ("report.md", "report.png") and md.is_file() and png.is_file()
    # nothing but the two reports: the temp files were renamed into place
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.md", "report.png"]
    text = md.read_text(encoding="utf-8")
    totals = run["totals"]
    assert run["program"] in text and run["config"] in text
    assert f"{totals['exact_images']}/{totals['images']}" in text
    assert "accuracy" in text
    assert f"E_AC = {run['energy_model']['e_ac_pj']} pJ" in text
    assert f"E_MAC = {run['energy_model']['e_mac_pj']} pJ" in text

    header, rows = table_rows(text, "#")
    col = {name: i for i, name in enumerate(header)}
    layer_rows = [r for r in rows if r[col["#"]].isdigit()]
    assert len(layer_rows) == len(run["layers"])
    for i, (row, layer) in enumerate(zip(layer_rows, run["layers"])):
        assert row[col["#"]] == str(i)
        assert row[col["layer"]] == layer["name"]
        assert (row[col["kind"]], row[col["unit"]]) == (layer["kind"], layer["unit"])
        assert row[col["cycles"]] == f"{layer['cycles']:,.0f}"
        assert row[col["bound"]] == f"{layer['bound']:,.0f}"
        if layer["efficiency"] is None:
            assert not any(ch.isdigit() for ch in row[col["efficiency"]])
        if layer["input_rate"] is None:
            assert not any(ch.isdigit() for ch in row[col["input rate"]])
        else:
            assert float(row[col["input rate"]]) == pytest.approx(layer["input_rate"], abs=5e-4)
        share = float(row[col["share of cycles"]].rstrip("%"))
        assert share == pytest.approx(100 * layer["cycles"] / totals["cycles_per_image"], abs=0.05)

    (total_row,) = [r for r in rows if "total" in r[col["layer"]]]
    assert total_row[col["cycles"]] == f"{totals['cycles_per_image']:,.0f}"
    assert total_row[col["additions"]] == f"{totals['additions_per_image']:,.0f}"
    assert total_row[col["MACs"]] == f"{totals['macs_per_image']:,.0f}"
    assert float(total_row[col["share of cycles"]].rstrip("%")) == pytest.approx(100)
    energy_unit = next(h for h in header if h.startswith("energy"))
    scale = 1e3 if "nJ" in energy_unit else 1.0
    assert float(total_row[col[energy_unit]].replace(",", "")) == pytest.approx(
        totals["energy_pj_per_image"] / scale, rel=5e-3)

    # by kind: every kind once, cycles adding up to the kind's layers
    kind_header, kind_rows = table_rows(text, "kind")
    kcol = {name: i for i, name in enumerate(kind_header)}
    kinds = {la["kind"] for la in run["layers"]}
    assert {r[kcol["kind"]] for r in kind_rows} == kinds
    for r in kind_rows:
        expected = sum(la["cycles"] for la in run["layers"] if la["kind"] == r[kcol["kind"]])
        assert r[kcol["cycles"]] == f"{expected:,.0f}"


def test_unknown_accuracy_is_left_out(tmp_path):
    run = make_run()
    run["totals"]["accuracy"] = None
    for image in run["images"]:
        image["label"] = None
    md, _ = write_report(run, tmp_path)
    assert "accuracy" not in md.read_text(encoding="utf-8")


def test_png_is_a_readable_image_of_the_documented_size(tmp_path):
    from matplotlib.image import imread

    _, png = write_report(make_run(), tmp_path)
    assert png.read_bytes()[:8] == PNG_MAGIC
    image = imread(png)
    assert image.shape[:2] == (FIGSIZE[1] * DPI, FIGSIZE[0] * DPI)
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas


def test_report_of_80_layers(tmp_path):
    run = make_run(80)
    md, png = write_report(run, tmp_path)
    assert png.read_bytes()[:8] == PNG_MAGIC
    header, rows = table_rows(md.read_text(encoding="utf-8"), "#")
    assert sum(r[0].isdigit() for r in rows) == 80


def test_failed_render_leaves_the_old_report(tmp_path, monkeypatch):
    import hwgen.report as report

    md, png = write_report(make_run(), tmp_path)
    before = md.read_bytes(), png.read_bytes()

    def broken(run):
        raise RuntimeError("renderer failed")
    monkeypatch.setattr(report, "_render_png", broken)
    changed = make_run()
    changed["program"] = "build/other"
    with pytest.raises(RuntimeError):
        write_report(changed, tmp_path)
    assert (md.read_bytes(), png.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "report.png"]


def test_load_run_accepts_folder_or_file(tmp_path):
    run = make_run()
    path = save_run(tmp_path / "run", run)
    assert load_run(path) == run
    assert load_run(path.parent) == run
    assert load_run(str(path.parent)) == run


def _error(tmp_path, run):
    path = save_run(tmp_path / "run", run)
    with pytest.raises(RunError) as info:
        load_run(path.parent)
    return path, str(info.value)


def test_load_run_rejects_a_wrong_format(tmp_path):
    run = make_run()
    run["format"] = "spikeforge-program"
    path, message = _error(tmp_path, run)
    assert message.startswith(f"{path}: format = 'spikeforge-program': expected 'spikeforge-run'")


def test_load_run_rejects_a_newer_version(tmp_path):
    run = make_run()
    run["version"] = 2
    path, message = _error(tmp_path, run)
    assert message.startswith(f"{path}: version = 2: ")


def test_load_run_names_a_missing_key(tmp_path):
    run = make_run()
    del run["layers"][3]["cycles"]
    path, message = _error(tmp_path, run)
    assert message == f"{path}: layers[3].cycles: missing"


@pytest.mark.parametrize("where, key, value, expected", [
    ("layers", "cycles", "abc", "expected a number"),
    ("layers", "cycles", True, "expected a number"),
    ("layers", "energy_pj", -1.0, "expected a number >= 0"),
    ("layers", "input_rate", 1.5, "expected a number in [0, 1]"),
    ("layers", "unit", "gpu", "expected one of"),
    ("images", "exact", 1, "expected true or false"),
    ("totals", "images", 2.5, "expected an integer"),
])
def test_load_run_names_a_bad_value(tmp_path, where, key, value, expected):
    run = make_run()
    if where == "totals":
        run["totals"][key], path_key = value, f"totals.{key}"
    else:
        run[where][3][key], path_key = value, f"{where}[3].{key}"
    path, message = _error(tmp_path, run)
    assert message.startswith(f"{path}: {path_key} = {value!r}: {expected}")


def test_load_run_rejects_broken_json_naming_the_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"format": "spikeforge-run",')
    with pytest.raises(RunError, match="not valid JSON") as info:
        load_run(tmp_path)
    assert str(info.value).startswith(f"{path}: ")


def make_cli():
    parser = argparse.ArgumentParser(prog="hwgen")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_missing_folder_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    args = make_cli().parse_args(["report", str(missing)])
    assert args.func(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("hwgen report: ") and str(missing) in err
    assert "Traceback" not in err


def test_cli_invalid_run_exits_2_with_the_key_path(tmp_path, capsys):
    run = make_run()
    run["totals"]["cycles_per_image"] = "many"
    path = save_run(tmp_path / "run", run)
    assert run_report(argparse.Namespace(run=str(path), out=None)) == 2
    err = capsys.readouterr().err
    assert err == f"hwgen report: {path}: totals.cycles_per_image = 'many': expected a number\n"


def test_cli_writes_next_to_the_run_or_into_out(tmp_path, capsys):
    path = save_run(tmp_path / "run", make_run())
    args = make_cli().parse_args(["report", str(path)])
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {path.parent / 'report.md'}",
                                                    f"wrote {path.parent / 'report.png'}"]
    out = tmp_path / "elsewhere"
    args = make_cli().parse_args(["report", str(path.parent), "--out", str(out)])
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {out / 'report.md'}", f"wrote {out / 'report.png'}"]
    assert (out / "report.png").read_bytes()[:8] == PNG_MAGIC
