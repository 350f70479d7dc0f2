"""HwConfig validation: every bad file is rejected naming file, key path, value and rule."""
from pathlib import Path

import pytest
import yaml

from contract.config import ConfigError, HwConfig, load_config

REPO = Path(__file__).resolve().parents[1]
GOOD = yaml.safe_load((REPO / "configs/hw/lif_small.yaml").read_text())


def _with(path, value):
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    node = raw
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "configs/hw").glob("*.yaml")))
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs/hw" / f"{name}.yaml")
    assert cfg.name == name
    assert len(cfg.hash) == 16


@pytest.mark.parametrize("path, value, key, words", [
    ("lif.lanse", 4, "lif.lanse", "unknown key; allowed keys: lanes"),
    ("lif.current_width", -3, "lif.current_width", "must be >= 2"),
    ("lif.lanes", 0, "lif.lanes", "must be >= 1"),
    ("lif.lanes", "four", "lif.lanes", "must be an integer"),
    ("lif.lanes", True, "lif.lanes", "must be an integer"),
    ("lif.lanes", 3, "lif.neurons", "must be a multiple of lanes (3)"),
    ("lif.reset", "soft", "lif.reset", "must be one of 'hard', 'subtract'"),
    ("lif.membrane_width", 17, "lif.membrane_width", "current_width + frac_bits = 18"),
    ("lif.channels", 2048, "lif.channels", "must be <= neurons"),
    ("lif.frac_bits", KeyError, "lif.frac_bits", "is required"),
    ("extra", 1, "extra", "unknown key"),
    ("name", "lif small", "name", "must be an identifier"),
])
def test_bad_values_are_named(path, value, key, words):
    with pytest.raises(ConfigError) as info:
        HwConfig.from_dict(_with(path, value), "configs/hw/x.yaml")
    msg = str(info.value)
    assert msg.startswith(f"configs/hw/x.yaml: {key} = ")
    assert words in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlif: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ = None: is not valid YAML"):
        load_config(bad)


def test_hash_follows_content_not_spelling(tmp_path):
    a = HwConfig.from_dict(GOOD)
    reordered = {"lif": dict(reversed(list(GOOD["lif"].items()))), "name": GOOD["name"]}
    assert HwConfig.from_dict(reordered).hash == a.hash
    assert HwConfig.from_dict(_with("lif.frac_bits", 5)).hash != a.hash
