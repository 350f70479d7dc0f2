"""Bad input to `hwgen quantize` / `hwgen eval`: exit 2, one message naming the file or the key,
no traceback, nothing written."""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from golden.checkpoint import save_checkpoint
from golden.model import MetaSpikeFormer, randomize_statistics
from golden.photos import write_photo_folder
from hwgen.cli import main

REPO = Path(__file__).resolve().parents[1]
HW = str(REPO / "configs" / "hw" / "digits.yaml")


def _rgb_model() -> MetaSpikeFormer:
    torch.manual_seed(0)
    model = MetaSpikeFormer(img_size_h=32, img_size_w=32, in_channels=3, num_classes=2, embed_dim=(16, 16, 32, 48),
                            depths=(1, 1, 1, 1, 1, 1), num_heads=2, T=1)
    randomize_statistics(model, 0)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "rgb.pth"
    save_checkpoint(_rgb_model(), path, argparse.Namespace(model="metaspikeformer_tiny", time_steps=1,
                                                           nb_classes=2, input_size=32))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photo_folder(tmp_path_factory.mktemp("photos"), per_class=2, size=48)


def quantize(*extra, out):
    return main(["quantize", *map(str, extra), "--hw", HW, "--out", str(out), "--model-arg", "num_heads=2",
                 "--calib", "2", "--samples", "1"])


def _refused(capsys, code, out: Path, *words):
    err = capsys.readouterr().err
    assert code == 2, err
    for w in words:
        assert w in err, err
    assert "Traceback" not in err
    assert not out.exists()


def _bad_checkpoint(tmp_path, key, value):
    model = _rgb_model()
    state = model.state_dict()
    state[key].view(-1)[3] = value
    path = tmp_path / "bad.pth"
    torch.save({"model": state, "args": argparse.Namespace(model="metaspikeformer_tiny", input_size=32)}, path)
    return path


@pytest.mark.parametrize("key, value, what", [
    ("ConvBlock1_1.0.conv1.weight", float("nan"), "1 NaN, 0 infinite"),
    ("block3.0.attn.q_conv.1.running_mean", float("-inf"), "0 NaN, 1 infinite"),
])
def test_non_finite_checkpoints_are_refused(tmp_path, capsys, photos, key, value, what):
    out = tmp_path / "prog"
    code = quantize(_bad_checkpoint(tmp_path, key, value), "--images", photos, out=out)
    _refused(capsys, code, out, "has non-finite values", key, what)


def test_empty_folder(tmp_path, capsys, checkpoint):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "prog"
    _refused(capsys, quantize(checkpoint, "--images", tmp_path / "empty", out=out), out,
             f"{tmp_path / 'empty'}: the folder holds no image files")


def test_corrupt_jpeg(tmp_path, capsys, checkpoint, photos):
    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    (folder / "0.jpg").write_bytes((photos / "china" / "china_0.jpg").read_bytes()[:200])   # truncated
    out = tmp_path / "prog"
    _refused(capsys, quantize(checkpoint, "--images", tmp_path / "imgs", out=out), out,
             f"{folder / '0.jpg'}: cannot be read as an image")


def test_image_smaller_than_the_crop(tmp_path, capsys, checkpoint):
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(tmp_path / "tiny.png")
    out = tmp_path / "prog"
    _refused(capsys, quantize(checkpoint, "--images", tmp_path, out=out), out,
             "tiny.png: the image is 30x20, smaller than the 32x32 crop", "--allow-upscale")


@pytest.mark.parametrize("arg, words", [
    ("depth=3", "depth names no constructor argument of MetaSpikeFormer"),
    ("num_heads=two", "num_heads = 'two': must be an integer"),
])
def test_bad_model_args(tmp_path, capsys, checkpoint, photos, arg, words):
    out = tmp_path / "prog"
    code = main(["quantize", str(checkpoint), "--hw", HW, "--out", str(out), "--images", str(photos),
                 "--model-arg", arg])
    _refused(capsys, code, out, words, arg)


def test_grayscale_photos_are_converted_and_said(tmp_path, capsys, checkpoint):
    Image.fromarray(np.full((40, 40), 90, dtype=np.uint8), mode="L").save(tmp_path / "gray.png")
    out = tmp_path / "prog"
    assert quantize(checkpoint, "--images", tmp_path, out=out) == 0
    assert "gray.png: L image converted to RGB" in capsys.readouterr().out
    assert (out / "program.json").exists()


def test_eval_start_past_the_end(tmp_path, capsys, checkpoint, photos):
    prog = tmp_path / "prog"
    assert quantize(checkpoint, "--images", photos, out=prog) == 0
    capsys.readouterr()
    out = tmp_path / "ev"
    code = main(["eval", str(prog), "--images", str(photos), "--start", "4", "--out", str(out)])
    _refused(capsys, code, out, "--start 4 is past the end: the source has 4 image(s)")


def test_a_bad_checkpoint_prints_no_traceback_from_the_command_line(tmp_path, photos):
    out = tmp_path / "prog"
    path = _bad_checkpoint(tmp_path, "head.weight", float("nan"))
    res = subprocess.run([sys.executable, "-m", "hwgen", "quantize", str(path), "--hw", HW, "--out", str(out),
                          "--images", str(photos)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and "head.weight: 1 NaN" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()
