"""hwgen.sim.core keeps the core's Verilog between runs and generates it again only when the
configuration or the code that generates it changed."""
from __future__ import annotations

from contract.config import load_config
from hwgen.sim import core
from hwgen.sim.runner import REPO_ROOT


def test_core_verilog_is_generated_again_only_when_its_generator_changed(monkeypatch, tmp_path):
    made = []
    monkeypatch.setattr("hwgen.build.emit_verilog", lambda component, top: made.append(top) or f"// {len(made)}\n")
    monkeypatch.setattr(core, "REPO_ROOT", tmp_path)
    digest = ["a"]
    monkeypatch.setattr(core, "generator_digest", lambda: digest[0])
    hw = load_config(REPO_ROOT / "configs" / "hw" / "digits.yaml")
    first = core._core_verilog(hw)
    assert first.read_text() == "// 1\n" and len(made) == 1
    assert core._core_verilog(hw) == first and len(made) == 1           # cached
    digest[0] = "b"                                                      # the generator changed
    assert core._core_verilog(hw).read_text() == "// 2\n" and len(made) == 2
    other = load_config(REPO_ROOT / "configs" / "hw" / "digits16.yaml")  # another configuration
    assert core._core_verilog(other) != first and len(made) == 3


def test_generator_digest_follows_the_gateware_sources(monkeypatch, tmp_path):
    for rel in core.GENERATOR_SOURCES:
        path = tmp_path / rel
        if rel.endswith(".py"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x = 1\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "a.py").write_text("y = 1\n")
    monkeypatch.setattr(core, "REPO_ROOT", tmp_path)
    before = core.generator_digest()
    assert core.generator_digest() == before
    (tmp_path / "hwgen" / "units" / "a.py").write_text("y = 2\n")
    assert core.generator_digest() != before
