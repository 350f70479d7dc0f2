"""The layer-kind registries: contract.program.KINDS names the kinds, golden.kinds and
hwgen.compiler.kinds hold each side's rules, and nothing else enumerates them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from contract.program import KINDS, check_registry
from golden.fold import LIFStep, Step
from golden.intsim import IntegerEngine
from golden.kinds import GOLDEN_KINDS, golden_kind, kind_of_step

REPO = Path(__file__).resolve().parents[2]


def test_golden_registry_covers_the_format():
    assert list(GOLDEN_KINDS) == list(KINDS)
    assert len({k.step for k in GOLDEN_KINDS.values()}) == len(GOLDEN_KINDS)   # one kind per folded step


@pytest.mark.parametrize("name", list(GOLDEN_KINDS))
def test_every_kind_names_an_engine_method(name):
    kind = GOLDEN_KINDS[name]
    assert kind.name == name and callable(getattr(IntegerEngine, kind.engine, None)), kind.engine
    # only a kind with spikes out keeps membranes, and the LIF does
    assert not kind.membrane_output or kind.format.output == "spikes"


def test_check_registry_names_what_is_missing_or_extra():
    check_registry("ok", list(KINDS))
    with pytest.raises(RuntimeError, match=r"mine: no entry for kind\(s\) mask; kind\(s\) pool are not in"):
        check_registry("mine", [k for k in KINDS if k != "mask"] + ["pool"])


def test_unknown_step_and_kind_are_named():
    class PoolStep(Step):
        kind = "pool"

    with pytest.raises(ValueError, match="p1: cannot quantize a PoolStep"):
        kind_of_step(PoolStep("p1", ["input"]))
    with pytest.raises(ValueError, match="unknown layer kind 'pool'"):
        golden_kind("pool")
    assert kind_of_step(LIFStep("n", "x", v_threshold=1.0)) is GOLDEN_KINDS["lif"]


# `kind == "conv"`, `kind in ("lif", "mask")`, `.kind != "readout"`, `kind not in (...)`
COMPARISON = re.compile(r"""\bkind\s*(?:==|!=|\bnot\s+in\b|\bin\b)\s*(.*)""")
LITERAL = re.compile(r"""["']([a-z_]+)["']""")
#: the modules that dispatch on kinds: through the registries only
DISPATCHERS = ["contract/program.py", "golden/quantize.py", "golden/passes.py", "golden/quantgraph.py",
               "golden/intsim.py", "golden/export.py", "hwgen/compiler/image.py", "hwgen/compiler/padding.py",
               "hwgen/compiler/placement.py", "hwgen/report.py"]


def kinds_compared(text: str) -> dict[str, list[int]]:
    """Kind names a source compares a ``kind`` with, and on which lines."""
    found: dict[str, list[int]] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for m in COMPARISON.finditer(line):
            for name in LITERAL.findall(m.group(1)):
                if name in KINDS or name == "token_mean":
                    found.setdefault(name, []).append(i)
    return found


def test_the_dispatching_modules_name_no_kind():
    offenders = {f: kinds_compared((REPO / f).read_text()) for f in DISPATCHERS}
    assert {f: k for f, k in offenders.items() if k} == {}


def test_no_kind_chains_outside_the_registries():
    """Elsewhere on the registries' sides a module may pick out one kind (``layer.kind == "lif"``
    to select the neurons), but a chain over two or more is a registry lookup."""
    chains = {}
    for side in ("contract", "golden", "hwgen"):
        for f in sorted((REPO / side).rglob("*.py")):
            if f.name != "kinds.py":
                found = kinds_compared(f.read_text())
                if len(found) > 1:
                    chains[str(f.relative_to(REPO))] = found
    assert chains == {}


def test_the_comparison_pattern_finds_chains():
    text = """if layer.kind == "conv":
x = a if src.kind in ("lif", "mask") else b
if layer.kind != "readout":
if kind not in ('token_sum', 'linear'):
kind = core_kind(layer.kind)
if pre.kind == "digits":
# if layer.kind == "sdsa": a comment
"""
    assert kinds_compared(text) == {"conv": [1], "lif": [2], "mask": [2], "readout": [3], "token_sum": [4],
                                    "linear": [4]}


def test_sdsa_variants_agree_across_model_quantizer_and_config():
    """A variant is listed by the float model, the quantizer and the hardware configuration:
    the three lists must be one (docs/adding-a-layer-kind.md, "An SDSA variant")."""
    import dataclasses

    from contract.config import SdsaConfig
    from golden.kinds import SDSA_VARIANTS
    from golden.model import SDSA_VARIANTS as MODEL_VARIANTS

    config = {f.name: f for f in dataclasses.fields(SdsaConfig)}["variant"].metadata["choices"]
    assert sorted(SDSA_VARIANTS) == sorted(MODEL_VARIANTS) == sorted(config)
    # the configuration's attention_matrix is the quantizer's matrix
    for v, row in SDSA_VARIANTS.items():
        assert SdsaConfig(lanes=4, heads=1, head_dim=4, max_tokens=4, count_width=4, acc_width=8,
                          variant=v).attention_matrix == row.matrix, v
