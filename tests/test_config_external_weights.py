"""`accumulator.weights: external` and its keys (docs/accumulator.md, "Weights from external
memory"): defaults, every bad value refused naming the key and the value, and a core with
external weights accepted (docs/core.md, "Weights from external memory")."""
from pathlib import Path

import pytest
import yaml

from contract.config import ConfigError, HwConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def _acc(**changes):
    raw = yaml.safe_load((REPO / "configs/hw/acc_small.yaml").read_text())
    raw["accumulator"].update(changes)
    return raw


def test_defaults_are_onchip_and_size_the_queue_from_the_buffer():
    acc = HwConfig.from_dict(_acc()).accumulator
    assert (acc.weights, acc.external_weights) == ("onchip", False)
    ext = load_config(REPO / "configs/hw/acc_external.yaml").accumulator
    assert ext.external_weights and ext.event_queue == ext.weight_buffer + 2
    assert ext.weight_burst <= ext.weight_buffer


@pytest.mark.parametrize("changes, key, words", [
    ({"weights": "offchip"}, "accumulator.weights", "must be one of 'onchip', 'external'"),
    ({"weights": 1}, "accumulator.weights", "must be a string"),
    ({"weight_buffer": 2}, "accumulator.weight_buffer", "must be >= 4"),
    ({"weight_buffer": 101}, "accumulator.weight_buffer", "must be even"),
    ({"weight_burst": 1}, "accumulator.weight_burst", "must be >= 2"),
    ({"weight_buffer": 64, "weight_burst": 100}, "accumulator.weight_burst", "must be <= weight_buffer (64)"),
    ({"weight_port_words": 4}, "accumulator.weight_port_words", "must be one of 1, 2"),
])
def test_bad_values_are_named(changes, key, words):
    with pytest.raises(ConfigError) as info:
        HwConfig.from_dict(_acc(**{"weights": "external", **changes}), "x.yaml")
    msg = str(info.value)
    assert msg.startswith(f"x.yaml: {key} = "), msg
    assert words in msg


def test_a_core_with_external_weights_is_accepted():
    raw = yaml.safe_load((REPO / "configs/hw/digits.yaml").read_text())
    raw["accumulator"]["weights"] = "external"
    assert HwConfig.from_dict(raw, "digits.yaml").accumulator.external_weights
    ext = load_config(REPO / "configs/hw/digits_external.yaml")
    assert ext.core is not None and ext.accumulator.external_weights
