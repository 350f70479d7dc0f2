"""Tests for golden.checkpoint: every accepted format round-trips, every mismatch is named."""

from __future__ import annotations

import argparse
import pathlib

import pytest
import torch
from torch import nn

from golden.checkpoint import (
    CheckpointError,
    checkpoint_filter_fn,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from golden.model import MetaSpikeFormer, metaspikeformer_tiny, randomize_statistics


def _model(seed: int, **kwargs) -> MetaSpikeFormer:
    torch.manual_seed(seed)
    model = metaspikeformer_tiny(T=2, **kwargs)
    randomize_statistics(model, seed, negative_scales=0.0)
    return model.eval()


@pytest.fixture(scope="module")
def source() -> MetaSpikeFormer:
    return _model(seed=1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(7))


def _write(fmt: str, model: nn.Module, path: pathlib.Path) -> None:
    """Write ``model`` in one of the accepted on-disk formats."""
    sd = model.state_dict()
    if fmt == "model":
        save_checkpoint(model, path, argparse.Namespace(model="metaspikeformer_tiny", time_steps=2), epoch=5)
    elif fmt == "state_dict":  # mmdet/mmseg style: backbone prefix plus detector-only keys
        state = {f"backbone.{k}": v for k, v in sd.items()}
        state["neck.lateral.weight"] = torch.zeros(4, 4)
        torch.save({"state_dict": state, "meta": {"epoch": 12}}, path)
    elif fmt == "bare":
        torch.save(sd, path)
    elif fmt == "ddp":
        torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, path)
    else:
        raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["model", "state_dict", "bare", "ddp"])
def test_each_format_round_trips(fmt, source, images, tmp_path):
    path = tmp_path / f"{fmt}.pth"
    _write(fmt, source, path)
    fresh = _model(seed=2)
    before = fresh(images)
    expected = source(images)
    assert not torch.equal(before, expected)  # the load has something to change
    info = load_checkpoint(path, fresh)
    assert torch.equal(fresh(images), expected)
    for k, v in source.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert info.format == {"ddp": "model"}.get(fmt, fmt)
    if fmt == "model":
        assert info.args.model == "metaspikeformer_tiny" and info.args.time_steps == 2 and info.epoch == 5
    if fmt == "state_dict":
        assert info.ignored_keys == ["neck.lateral.weight"]


def test_loaded_object_and_filter_fn(source, images):
    obj = {"model": source.state_dict(), "args": argparse.Namespace(kd=False)}
    fresh = _model(seed=3)
    info = load_checkpoint(obj, fresh)
    assert info.format == "model" and torch.equal(fresh(images), source(images))
    state = checkpoint_filter_fn({"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}})
    assert list(state) == list(source.state_dict())


def test_reference_training_checkpoint_loads_without_trust(source, tmp_path):
    """What the reference's misc.save_model writes: optimizer, scaler, epoch and a pickled Namespace."""
    opt = torch.optim.AdamW(source.parameters(), lr=1e-3)
    args = argparse.Namespace(model="metaspikformer_8_512", time_steps=4, kd=True, input_size=224,
                              blr=6e-4, output_dir="/tmp/out", aa="rand-m9-mstd0.5-inc1", lr=None)
    path = tmp_path / "checkpoint-199.pth"
    torch.save({"model": source.state_dict(), "optimizer": opt.state_dict(), "epoch": 199,
                "scaler": {"scale": 65536.0}, "args": args}, path)
    info = load_checkpoint(path, _model(seed=4))
    assert info.args == args and info.epoch == 199


def test_save_defaults_args_to_model_config(source, tmp_path):
    path = save_checkpoint(source, tmp_path / "c.pth")
    info = load_checkpoint(path, _model(seed=5))
    assert vars(info.args) == source.config and info.epoch is None


def test_renamed_and_misshaped_keys_are_both_named(source, tmp_path):
    sd = dict(source.state_dict())
    sd["block3.0.attn.q_conv.1.weightt"] = sd.pop("block3.0.attn.q_conv.1.weight")
    sd["head.weight"] = torch.zeros(12, 64)
    path = tmp_path / "bad.pth"
    torch.save({"model": sd}, path)
    victim = _model(seed=6)
    before = {k: v.clone() for k, v in victim.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, victim)
    msg = str(err.value)
    assert "1 missing key(s)" in msg and "block3.0.attn.q_conv.1.weight" in msg
    assert "1 unexpected key(s)" in msg and "block3.0.attn.q_conv.1.weightt" in msg
    assert "1 mis-shaped key(s)" in msg and "head.weight: model expects (10, 64), checkpoint has (12, 64)" in msg
    assert err.value.missing == ["block3.0.attn.q_conv.1.weight"]
    assert err.value.mismatched == [("head.weight", (10, 64), (12, 64))]
    for k, v in victim.state_dict().items():  # nothing was loaded
        assert torch.equal(v, before[k]), k


def test_long_lists_are_truncated_with_counts(source):
    sd = {k: v for k, v in source.state_dict().items() if not k.startswith("block3.")}
    with pytest.raises(CheckpointError, match=r"(\d+) missing key\(s\).*\.\.\. \(\d+ more\)") as err:
        checkpoint_filter_fn(sd, _model(seed=7))
    n_block3 = sum(k.startswith("block3.") for k in source.state_dict())
    assert f"{n_block3} missing key(s)" in str(err.value)


@pytest.mark.parametrize(
    "ckpt_kwargs, model_kwargs, hint",
    [
        ({"kd": True}, {}, "kd=True"),
        ({}, {"kd": True}, "kd=False"),
        ({"sdsa_variant": 4}, {}, "sdsa_variant=4"),
        ({"sdsa_variant": 2}, {}, "sdsa_variant=2"),
    ],
)
def test_configuration_mismatch_hints(ckpt_kwargs, model_kwargs, hint):
    with torch.device("meta"):
        sd = metaspikeformer_tiny(**ckpt_kwargs).state_dict()
        model = metaspikeformer_tiny(**model_kwargs)
    with pytest.raises(CheckpointError, match=hint):
        checkpoint_filter_fn({"model": sd}, model)


@pytest.mark.parametrize("obj", [[1, 2], {"epoch": 3, "lr": 0.1}, nn.Linear(2, 2)])
def test_unknown_formats_are_rejected(obj):
    with pytest.raises(CheckpointError):
        checkpoint_filter_fn(obj)


def test_untrusted_pickles_need_trusted_flag(source, tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"model": source.state_dict(), "extra": pathlib.PurePosixPath("/data")}, path)
    with pytest.raises(CheckpointError, match="trusted=True"):
        read_checkpoint(path)
    assert load_checkpoint(path, _model(seed=8), trusted=True).format == "model"


def test_unreadable_files_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "junk.pth")


def test_save_is_atomic(source, images, tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(source, path, epoch=1)
    save_checkpoint(source, path, epoch=2)  # replaces in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]
    # A save that fails half-way (unpicklable args) leaves the old file intact and no temp file.
    with pytest.raises(Exception):
        save_checkpoint(_model(seed=9), path, argparse.Namespace(fn=lambda: 0), epoch=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]
    fresh = _model(seed=10)
    assert load_checkpoint(path, fresh).epoch == 2
    assert torch.equal(fresh(images), source(images))
