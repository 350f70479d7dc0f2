"""Which Meta-SpikeFormer a checkpoint holds: its constructor arguments, and where each came from.

A model is built from, in increasing precedence:

1. the registered constructor's defaults (``--model NAME``, or the checkpoint's ``args.model``,
   reference names such as ``metaspikformer_8_512`` accepted);
2. what the weights' **shapes** say: input channels, the four embedding dimensions, the blocks per
   list, the MLP ratio, the classes, the distillation head (``head_kd.*`` keys), SDSA-2 (no
   ``k_conv``) and SDSA-4 (learnable ``attn_lif.v_threshold``), and the Table 5 architecture
   options that change weights: no SepConv, the channel MLP (1x1 ``conv1``), linear Q/K/V or
   output projections, no ``downsample4`` (no pyramid), which block each list holds;
3. the reference training scripts' ``args`` Namespace: ``time_steps`` -> ``T``, ``nb_classes`` ->
   ``num_classes``, ``input_size`` -> the image size (and the project's own checkpoints, whose
   ``args`` hold every constructor argument);
4. ``--model-arg KEY=VALUE`` on the command line (VALUE read as YAML).

:func:`resolve` returns a :class:`ModelSpec` that names, per argument, the source that set it
(:meth:`ModelSpec.describe` is the one line ``hwgen`` prints). Unknown keys and wrong types are
:class:`ModelArgError` naming the key, the value and what is expected. Nothing here can tell
SDSA-1 from SDSA-3, find ``num_heads`` or the shortcut (no weight depends on them): they come
from ``args`` or ``--model-arg`` (defaults: 3, 8 and ``membrane``, the reference's).
"""
from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from torch import Tensor

from golden.model import REFERENCE_MODEL_NAMES, MetaSpikeFormer, create_model, list_models

__all__ = ["ModelArgError", "ModelSpec", "MODEL_ARGUMENTS", "parse_model_args", "resolve", "infer_from_state"]


class ModelArgError(ValueError):
    """A model argument is unknown or of the wrong type; the message names key and value."""


#: every constructor argument of MetaSpikeFormer with its type: int, float, bool, str, or "ints4"/"ints"
MODEL_ARGUMENTS: dict[str, Any] = {
    "img_size_h": int, "img_size_w": int, "in_channels": int, "num_classes": int,
    "embed_dim": "ints4", "depths": "ints", "num_heads": int, "mlp_ratio": float, "T": int,
    "sdsa_variant": int, "kd": bool, "head_input": str,
    # the paper's Table 5 options (golden.model.ARCHITECTURE_OPTIONS)
    "sepconv": bool, "channel_mixer": str, "qkv_proj": str, "attn_proj": str, "shortcut": str,
    "pyramid": bool, "blocks": str,
}
#: shorthands accepted by --model-arg
ALIASES = {"img_size": ("img_size_h", "img_size_w"), "time_steps": ("T",), "nb_classes": ("num_classes",),
           "input_size": ("img_size_h", "img_size_w"), "embed_dims": ("embed_dim",)}
#: reference Namespace fields -> constructor arguments
NAMESPACE_FIELDS = {"time_steps": ("T",), "nb_classes": ("num_classes",), "input_size": ("img_size_h", "img_size_w")}


def _typed(key: str, value: Any, where: str) -> Any:
    """``value`` as the type of constructor argument ``key``, or ModelArgError naming both."""
    kind = MODEL_ARGUMENTS[key]

    def bad(expected: str):
        return ModelArgError(f"{where}: {key} = {value!r}: must be {expected}")

    if kind is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise bad("a list of integers" + (" [e0, e1, e2, e3]" if kind == "ints4" else ""))
    if kind == "ints4" and len(value) != 4:
        raise bad("a list of 4 integers [e0, e1, e2, e3]")
    return tuple(value)


def parse_model_args(pairs: list[str] | None) -> dict[str, Any]:
    """``["embed_dim=[16,32,64,96]", "kd=true"]`` -> constructor keyword arguments.

    Raises:
        ModelArgError: no ``=``, a key that names no constructor argument (listing the allowed
            ones), a value that is not valid YAML or not of the argument's type.
    """
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        key = key.strip()
        where = f"--model-arg {pair!r}"
        if not sep or not key:
            raise ModelArgError(f"{where}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ModelArgError(f"{where}: the value is not valid YAML: {e}") from None
        keys = ALIASES.get(key, (key,))
        if keys[0] not in MODEL_ARGUMENTS:
            allowed = ", ".join([*MODEL_ARGUMENTS, *ALIASES])
            raise ModelArgError(f"{where}: {key} names no constructor argument of MetaSpikeFormer; "
                                f"allowed: {allowed}")
        for k in keys:
            out[k] = _typed(k, value, where)
    return out


def _count(state: Mapping[str, Tensor], prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    return len({int(m.group(1)) for k in state if (m := pattern.match(k))})


def infer_from_state(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Constructor arguments that the weights' shapes determine (missing keys: left out)."""
    found: dict[str, Any] = {}

    def shape(key):
        t = state.get(key)
        return tuple(t.shape) if isinstance(t, Tensor) else None

    enc = shape("downsample1_1.encode_conv.weight")
    outs = [shape(f"{d}.encode_conv.weight") for d in ("downsample1_2", "downsample2", "downsample3", "downsample4")]
    lists = ("ConvBlock1_1", "ConvBlock1_2", "ConvBlock2_1", "ConvBlock2_2", "block3", "block4")
    if enc is not None:
        found["in_channels"] = enc[1]
    if all(o is not None for o in outs[:3]) and outs[3] is None and any(k.startswith("block4.") for k in state):
        found["pyramid"] = False                      # stage 4 = stage 3: no downsample4
        outs[3] = outs[2]
    if all(o is not None for o in outs):
        found["embed_dim"] = tuple(o[0] for o in outs)
    if any(k.startswith(lists) for k in state):
        found["depths"] = tuple(_count(state, name) for name in lists)
    # which block each list holds: transformer blocks have ".attn." keys, conv blocks ".conv1."
    attention_lists = {n for n in lists if any(k.startswith(f"{n}.") and ".attn." in k for k in state)}
    conv_lists = {n for n in lists if any(k.startswith(f"{n}.") and ".conv1." in k for k in state)}
    if attention_lists == set(lists):
        found["blocks"] = "transformer"
    elif conv_lists == set(lists):
        found["blocks"] = "conv"
    # like SDSA-2/4 above, an option is reported only where the weights differ from the reference's
    conv1 = next((v for k, v in state.items() if k.endswith(".conv1.weight") and isinstance(v, Tensor)), None)
    if conv1 is not None:
        if conv1.shape[-1] == 1:
            found["channel_mixer"] = "mlp"
        if not any(".Conv.pwconv1." in k for k in state):
            found["sepconv"] = False
    for role, arg in (("q_conv", "qkv_proj"), ("proj_conv", "attn_proj")):
        if any(k.endswith(f".attn.{role}.0.weight") for k in state):
            found[arg] = "linear"
    for key in ("block3.0.mlp.fc1_conv.weight", "ConvBlock2_1.0.conv1.weight"):
        s = shape(key)
        if s is not None and s[1]:
            found["mlp_ratio"] = s[0] / s[1]
            break
    if "mlp_ratio" not in found:     # a list of the other block kind (blocks="conv" / "transformer")
        for key in ("ConvBlock2_1.0.mlp.fc1_conv.weight", "block3.0.conv1.weight"):
            s = shape(key)
            if s is not None and s[1]:
                found["mlp_ratio"] = s[0] / s[1]
                break
    head = shape("head.weight")
    if head is not None:
        found["num_classes"] = head[0]
    found["kd"] = any(k.startswith("head_kd.") for k in state)
    attention = [k for k in state if ".attn." in k]
    if attention:
        if any(k.endswith("attn.attn_lif.v_threshold") for k in attention):
            found["sdsa_variant"] = 4
        elif not any(".attn.k_conv." in k for k in attention):
            found["sdsa_variant"] = 2
    return found


@dataclass
class ModelSpec:
    """A registered constructor and its keyword arguments, with the source of each argument."""

    name: str
    kwargs: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def build(self) -> MetaSpikeFormer:
        return create_model(self.name, **self.kwargs)

    def describe(self) -> str:
        """One line: the model and each argument with where it came from, grouped by source."""
        groups: dict[str, list[str]] = {}
        for key, value in self.kwargs.items():
            if isinstance(value, tuple):
                value = list(value)
            groups.setdefault(self.sources.get(key, "?"), []).append(f"{key}={value}")
        parts = [f"{', '.join(items)} ({source})" for source, items in groups.items()]
        return f"{self.name} ({self.sources.get('model', 'given')}): " + "; ".join(parts)

    def as_dict(self) -> dict:
        return {"name": self.name, "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs.items()},
                "sources": dict(self.sources)}


def resolve(*, model_name: str | None = None, args: argparse.Namespace | Mapping | None = None,
            state: Mapping[str, Tensor] | None = None, overrides: Mapping[str, Any] | None = None,
            source: str = "the checkpoint") -> ModelSpec:
    """The model a checkpoint (``args``, ``state``) holds, with CLI ``overrides`` winning.

    Raises:
        ModelArgError: no model can be named, or a Namespace value has the wrong type.
        KeyError: the model name is not registered (the message lists the registry).
    """
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    sources: dict[str, str] = {}
    kwargs: dict[str, Any] = {}

    name, name_from = model_name, "--model"
    if name is None and isinstance(values.get("model"), str):
        name, name_from = values["model"], "args.model"
    if name is None and "embed_dim" in values:
        name, name_from = "metaspikeformer_tiny", "the checkpoint's builder arguments"
    if name is None:
        raise ModelArgError(f"{source}: no model name (pass --model NAME; registered: {', '.join(list_models())})")
    registry_name = REFERENCE_MODEL_NAMES.get(name, name)
    if registry_name not in list_models():
        raise ModelArgError(f"{name_from} = {name!r}: not a registered model; registered: {', '.join(list_models())} "
                            f"(reference names: {', '.join(sorted(REFERENCE_MODEL_NAMES))})")

    for key, value in infer_from_state(state or {}).items():
        kwargs[key], sources[key] = value, "the weights' shapes"
    for key in MODEL_ARGUMENTS:          # the project's own checkpoints store every constructor argument
        if key in values and values[key] is not None:
            kwargs[key], sources[key] = _typed(key, values[key], f"{source} args"), "checkpoint args"
    for field_name, keys in NAMESPACE_FIELDS.items():
        if values.get(field_name) is not None:
            for key in keys:
                kwargs[key], sources[key] = _typed(key, values[field_name], f"{source} args"), f"args.{field_name}"
    for key, value in (overrides or {}).items():
        kwargs[key], sources[key] = value, "--model-arg"
    return ModelSpec(registry_name, kwargs, {"model": f"{name_from} {name!r}", **sources})
