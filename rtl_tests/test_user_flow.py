"""A user's own checkpoint and photos through the whole flow, as the README runs it.

The checkpoint is what the reference training scripts save (``{"model", "args": Namespace}``) for
a model with a distillation head, 3-channel input and dimensions that no registered constructor
has (tools/example_inputs.py); the photos are crops of scikit-learn's two bundled photos in the
``ImageFolder`` layout. `hwgen quantize` must take T, the classes and the input size from the
Namespace and the distillation head from the keys; `hwgen eval` must print float and integer
accuracy on the photos; `hwgen sim` must run both heads on the core, every layer at every timestep
bit-exact.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def hwgen(*args):
    res = subprocess.run([sys.executable, "-m", "hwgen", *map(str, args)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def _flow(tmp_path: Path, *, size: int, T: int, config: str, count: int):
    from tools.example_inputs import write_checkpoint

    ckpt = tmp_path / "kd.pth"
    write_checkpoint(ckpt)
    from golden.photos import write_photo_folder

    photos = write_photo_folder(tmp_path / "photos", per_class=3, size=96)
    extra = [] if (size, T) == (64, 4) else ["--model-arg", f"img_size={size}", "--model-arg", f"T={T}"]
    out = hwgen("quantize", ckpt, "--model-arg", "num_heads=4", *extra, "--images", photos, "--hw", config,
                "--out", tmp_path / "program", "--calib", 4, "--samples", 2)
    model_line = out.splitlines()[0]
    assert "kd=True (the weights' shapes)" in model_line and "embed_dim=[16, 32, 64, 96]" in model_line
    header = json.loads((tmp_path / "program" / "program.json").read_text())["header"]
    assert header["T"] == T and header["classes"] == 2 and header["input"]["shape"] == [3, size, size]
    assert header["preprocessing"]["mean"] == [0.485, 0.456, 0.406] and header["preprocessing"]["crop_pct"] == 224 / 256
    evaluation = hwgen("eval", tmp_path / "program", "--images", photos, "--out", tmp_path / "eval")
    assert "float" in evaluation and "integer" in evaluation and "agree on" in evaluation
    sim = hwgen("sim", tmp_path / "program", "--config", config, "--images", photos, "--count", count,
                "--out", tmp_path / "run")
    assert f"{count}/{count} images bit-exact on every layer and the logits" in sim
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    names = [layer["name"] for layer in run["layers"]]
    assert "head" in names and "head_kd" in names and run["T"] == T
    return run


def test_kd_checkpoint_and_photos_at_32x32_T2(tmp_path):
    """The default run: the README's model at 32 x 32 and T = 2 (the same core configuration)."""
    _flow(tmp_path, size=32, T=2, config=REPO / "configs" / "hw" / "example64.yaml", count=2)


@pytest.mark.slow
def test_kd_checkpoint_and_photos_at_64x64_T4_as_the_readme(tmp_path):
    """Acceptance: the README's commands, 64 x 64, T = 4 from the checkpoint, two photos in RTL."""
    _flow(tmp_path, size=64, T=4, config=REPO / "configs" / "hw" / "example64.yaml", count=2)
