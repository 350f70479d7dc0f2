"""Which model a checkpoint holds (golden.model_args) and the refusal of non-finite weights."""
import argparse

import pytest
import torch

from golden.checkpoint import CheckpointError, save_checkpoint
from golden.export import build_model
from golden.model import MetaSpikeFormer, randomize_statistics
from golden.model_args import ModelArgError, infer_from_state, parse_model_args, resolve

DIMS = (16, 32, 64, 96)


def _kd_model(**kw) -> MetaSpikeFormer:
    torch.manual_seed(0)
    model = MetaSpikeFormer(img_size_h=64, img_size_w=64, in_channels=3, num_classes=7, embed_dim=DIMS,
                            depths=(1, 1, 1, 1, 2, 1), num_heads=4, mlp_ratio=4, T=4, kd=True, **kw)
    randomize_statistics(model, 0)
    return model


def reference_namespace(**kw):
    """What the reference training scripts pickle into a checkpoint (a few of its fields)."""
    return argparse.Namespace(**{"model": "metaspikformer_8_512", "time_steps": 4, "nb_classes": 7,
                                 "input_size": 64, "batch_size": 64, "lr": 5e-4, **kw})


def test_the_weights_shapes_say_dims_depths_classes_and_the_distillation_head():
    found = infer_from_state(_kd_model().state_dict())
    assert found == {"in_channels": 3, "embed_dim": DIMS, "depths": (1, 1, 1, 1, 2, 1), "mlp_ratio": 4.0,
                     "num_classes": 7, "kd": True}
    assert infer_from_state(_kd_model(sdsa_variant=2).state_dict())["sdsa_variant"] == 2
    assert infer_from_state(_kd_model(sdsa_variant=4).state_dict())["sdsa_variant"] == 4


def test_reference_checkpoint_builds_its_model_with_T_and_kd(tmp_path):
    model = _kd_model()
    path = save_checkpoint(model, tmp_path / "kd.pth", reference_namespace())
    built, spec = build_model(path, overrides=parse_model_args(["num_heads=4"]))
    assert spec.kwargs["T"] == 4 and spec.sources["T"] == "args.time_steps"
    assert spec.kwargs["kd"] is True and spec.sources["kd"] == "the weights' shapes"
    assert spec.kwargs["embed_dim"] == DIMS and spec.sources["num_heads"] == "--model-arg"
    assert spec.kwargs["img_size_h"] == 64 and spec.sources["img_size_h"] == "args.input_size"
    assert built.T == 4 and built.kd and built.embed_dim == DIMS
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(built(x), model.eval()(x))
    line = spec.describe()
    assert line.startswith("metaspikeformer_55m (args.model 'metaspikformer_8_512'): ") and "(args.time_steps)" in line and "(--model-arg)" in line


def test_model_arg_values_are_yaml_and_typed():
    assert parse_model_args(["embed_dim=[16,32,64,96]", "kd=true", "img_size=64", "mlp_ratio=2"]) == {
        "embed_dim": DIMS, "kd": True, "img_size_h": 64, "img_size_w": 64, "mlp_ratio": 2.0}
    for bad, words in [("bogus=1", "bogus names no constructor argument"), ("embed_dim=16", r"must be a list of integers \[e0"),
                       ("kd=maybe", "kd = 'maybe': must be true or false"), ("T=1.5", "T = 1.5: must be an integer"),
                       ("num_heads", "expected KEY=VALUE"), ("embed_dim=[1, 2", "not valid YAML")]:
        with pytest.raises(ModelArgError, match=words):
            parse_model_args([bad])


def test_unknown_model_name_lists_the_registry():
    with pytest.raises(ModelArgError, match="not a registered model; registered: metaspikeformer_15m"):
        resolve(args=argparse.Namespace(model="resnet50"))


@pytest.mark.parametrize("key, index, value", [
    ("downsample3.encode_conv.weight", (5, 1, 0, 2), float("nan")),
    ("block3.0.mlp.fc1_bn.running_var", (3,), float("inf")),
])
def test_non_finite_weights_and_statistics_are_named(tmp_path, key, index, value):
    model = _kd_model()
    state = model.state_dict()
    state[key][index] = value
    torch.save({"model": state, "args": reference_namespace()}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=rf"{key.replace('.', r'[.]')}: .*first at index \[{', '.join(map(str, index))}\]"):
        build_model(tmp_path / "bad.pth", overrides={"num_heads": 4})
