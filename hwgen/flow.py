"""The whole flow from Python, one function per step: what ``hwgen quantize``, ``hwgen eval`` and
``hwgen sim`` run (docs/python.md)::

    from hwgen.flow import quantize_checkpoint, evaluate_program, simulate_program

    program = quantize_checkpoint("my.pth", "configs/hw/digits.yaml", "build/mine", images="photos/")
    print(evaluate_program(program, images="photos/")["int_top1"])
    run = simulate_program(program, "configs/hw/digits.yaml", images="photos/", count=2)

Each raises the error of the step that failed (``CheckpointError``, ``ModelArgError``,
``ImageError``, ``QuantizationError``, ``MemoryFitError``, ``MismatchError`` ...), whose message
names the file, the key or the layer; nothing is written on failure.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from contract.config import HwConfig, load_config
from contract.fsutil import file_sha256

__all__ = ["quantize_checkpoint", "evaluate_program", "simulate_program", "float_model_of"]


def _config(hw: HwConfig | str | Path) -> HwConfig:
    return hw if isinstance(hw, HwConfig) else load_config(hw)


def quantize_checkpoint(checkpoint: str | Path | None, hw: HwConfig | str | Path, out: str | Path, *,
                        model: str | None = None, model_args: Sequence[str] | dict = (),
                        random_init: int | None = None, images: str | None = None, calib: int = 16,
                        samples: int = 4, preprocessing: dict | None = None, allow_upscale: bool = False,
                        weight_bits: int = 8, target_rates: tuple[float, float] | None = None,
                        force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Checkpoint (or ``random_init``) -> program folder ``out`` for the hardware ``hw``.

    ``model_args``: ``["embed_dim=[16,32,64,96]", ...]`` as on the command line, or a dict.
    ``images``: the source of the calibration and trace images (default: the digits training split
    for digits models, else random pixels); ``calib`` of them are run through the float model and
    the integer program and their agreement is recorded in the header, ``samples`` are traced.
    ``preprocessing``: overrides of the reference pipeline (``crop_pct``, ``interpolation``,
    ``mean``, ``std``). ``target_rates`` (random weights only): shift conv biases so every LIF fires
    at a rate in ``(low, high)`` on the calibration images (:mod:`golden.calibrate`), as trained
    models do; such a program has no float checkpoint to compare with."""
    import argparse

    import torch

    from golden.encoding import fold_input_normalization
    from golden.evaluate import evaluate
    from golden.export import build_model, export_program
    from golden.fold import fold_model
    from golden.model_args import parse_model_args
    from golden.quantize import quantize
    from hwgen.compiler.placement import MemoryFitError, place_parameters, write_memory_images
    from hwgen.inputs import image_source, preprocessing_for_model

    hw = _config(hw)
    if checkpoint is None and random_init is None:
        raise ValueError("give a checkpoint, or a model name and a random_init seed")
    overrides = dict(model_args) if isinstance(model_args, dict) else parse_model_args(list(model_args))
    net, spec = build_model(checkpoint, model_name=model, overrides=overrides, random_init=random_init)
    cfg = net.config
    log(f"model: {spec.describe()}")
    opts = argparse.Namespace(images=images, allow_upscale=allow_upscale,
                              **{k: (preprocessing or {}).get(k) for k in ("crop_pct", "interpolation", "mean", "std")})
    pre = preprocessing_for_model(cfg, opts, events=_event_camera(checkpoint))
    default = {"digits": "digits:train", "events": "events:train"}.get(pre.kind, "random")
    source = image_source(images or default, pre, opts)
    n_calib, n_samples = min(calib, len(source)), min(samples, len(source))
    pixels, labels = source.load(0, n_samples)
    shape = [cfg["in_channels"], cfg["img_size_h"], cfg["img_size_w"]]
    log(f"model: {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters, input {shape}, T={net.T}, "
        f"kd={cfg['kd']}; images: {source.name} ({len(source)}), {n_calib} for calibration, {n_samples} traced")

    # the chip takes 8-bit pixels: the normalization joins the encoding conv (docs/arithmetic.md);
    # event frames are spikes already, taken as they are (docs/events.md)
    events = pre.kind == "events"
    folded = fold_model(net) if events else \
        fold_input_normalization(fold_model(net), pre.scale, pre.offset, height=shape[1], width=shape[2])
    if target_rates is not None:
        if random_init is None:
            raise ValueError("target_rates reshapes a random-weight model; a checkpoint keeps its own rates")
        if not n_calib:
            raise ValueError("target_rates needs calibration images (calib >= 1)")
        from golden.calibrate import calibrate_firing_rates

        reached = calibrate_firing_rates(folded, source.load(0, n_calib)[0].float(), low=target_rates[0],
                                         high=target_rates[1], seed=random_init)
        log(f"firing rates calibrated to ({target_rates[0]}, {target_rates[1]}) on {n_calib} image(s): "
            f"{min(reached.values()):.3f} .. {max(reached.values()):.3f}, mean {sum(reached.values()) / len(reached):.3f}")
    program = quantize(folded, hw, weight_bits=weight_bits, input_scale=1.0, input_shape=shape, model_name=spec.name,
                       spike_frames=events)
    if events:
        program.header["input"].update(pixels=f"binary event frames [T = {net.T}, {', '.join(map(str, shape))}] per "
                                              "image, channel 0 OFF, 1 ON (golden.events)")
    else:
        program.header["input"].update(pixels=f"uint8 0..{pre.levels} after resize and crop",
                                       normalization={"scale": list(pre.scale), "offset": list(pre.offset)})
    program.header["preprocessing"] = pre.as_dict()
    short = place_parameters(program).shortfalls()      # before the calibration runs: it takes a while
    if short:
        raise MemoryFitError("program does not fit: " + "; ".join(short))
    program.header["source"] = {
        "checkpoint": None if checkpoint is None else str(Path(checkpoint).resolve()),
        "sha256": None if checkpoint is None else file_sha256(Path(checkpoint)),
        "random_init": random_init, "model": spec.as_dict(),
        "target_rates": None if target_rates is None else list(target_rates),
    }
    if n_calib and target_rates is None:
        result = evaluate(program, net, source.select(0, n_calib), batch=16).as_dict()
        program.header["calibration"] = {"images": result["images"], "source": source.name,
                                         "agreement": result["agreement"], "spike_agreement": result["spike_agreement"]}
        name, low = min(result["spike_agreement"].items(), key=lambda kv: kv[1])
        log(f"calibration on {result['images']} image(s): float and integer predictions agree on "
            f"{100 * result['agreement']:.1f}%; least agreeing layer {name} ({100 * low:.1f}% identical spikes)")
    for note in sorted(set(source.notes)):
        log(f"note: {note}")
    with torch.no_grad():
        float_logits = net(source.normalized(pixels)) if len(pixels) else None
    export_program(program, out, pixels=pixels if len(pixels) else None, labels=labels, float_logits=float_logits,
                   force=force, log=log, extra=lambda folder: write_memory_images(program, folder / "memories"))
    convs = sum(1 for layer in program.layers if layer.kind == "conv")
    log(f"wrote {out}: {len(program.layers)} layers ({convs} conv), {weight_bits}-bit weights, widest accumulator "
        f"{max(layer.attrs.get('acc_bits', 0) for layer in program.layers)} of {hw.accumulator.accumulator_width} bits")
    return Path(out)


def _event_camera(checkpoint) -> dict | None:
    """The event camera a checkpoint was trained with (``args.events_camera``, tools/train_events.py)."""
    if checkpoint is None:
        return None
    from golden.checkpoint import read_checkpoint

    obj = read_checkpoint(checkpoint, trusted=True)
    args = obj.get("args") if isinstance(obj, dict) else None
    camera = getattr(args, "events_camera", None) if args is not None and not isinstance(args, dict) else \
        (args or {}).get("events_camera")
    if camera is None:
        return None
    split_seed = getattr(args, "split_seed", 0) if not isinstance(args, dict) else args.get("split_seed", 0)
    return {"camera": dict(camera), "split_seed": int(split_seed)}


def float_model_of(program, checkpoint: str | Path | None = None):
    """The float model a program was quantized from (its header's ``source``), for comparison;
    ``checkpoint`` when the file moved."""
    from golden.export import build_model

    src = program.header.get("source")
    if src is None:
        raise ValueError("the program header does not say which checkpoint it came from; quantize it again "
                         "with this version")
    spec = src["model"]
    if src.get("target_rates") is not None:
        raise ValueError("the program's random weights were recalibrated for firing rates (target_rates): "
                         "there is no float model to compare it with")
    path = checkpoint or src["checkpoint"]
    if src["random_init"] is None:
        if path is None or not Path(path).is_file():
            raise ValueError(f"the program's checkpoint {path} is not there; pass --checkpoint PATH")
        if checkpoint is None and src.get("sha256") and file_sha256(Path(path)) != src["sha256"]:
            raise ValueError(f"{path} changed since the program was quantized (sha256 differs); quantize again "
                             "or pass --checkpoint PATH explicitly")
    model, _ = build_model(None if src["random_init"] is not None else path, model_name=spec["name"],
                           overrides={k: tuple(v) if isinstance(v, list) else v for k, v in spec["kwargs"].items()},
                           random_init=src["random_init"])
    return model


def evaluate_program(program_dir: str | Path, *, images: str | None = None, start: int = 0,
                     count: int | None = None, checkpoint: str | Path | None = None, batch: int = 32,
                     allow_upscale: bool = False, out: str | Path | None = None, progress=None) -> dict:
    """Float against integer on ``images`` (default: the digits test split for digits programs):
    top-1/top-5, agreement, per-layer spike agreement (:func:`golden.evaluate.evaluate`); written
    to ``out/eval.json`` when ``out`` is given. ``progress(total)`` makes the progress display."""
    import argparse

    from contract.program import load_program
    from contract.progress import NullProgress
    from golden.evaluate import evaluate
    from hwgen.inputs import image_source, preprocessing_of

    program = load_program(program_dir)
    pre = preprocessing_of(program.header)
    spec = images or {"digits": "digits:test", "events": "events:test"}.get(pre.kind)
    if spec is None:
        raise ValueError("give the images to evaluate on (a labelled ImageFolder for accuracy)")
    source = image_source(spec, pre, argparse.Namespace(start=start, count=count, allow_upscale=allow_upscale))
    model = float_model_of(program, checkpoint)
    with (progress(len(source)) if progress else NullProgress()) as bar:
        result = evaluate(program, model, source, batch=batch, progress=bar).as_dict()
    result.update(program=str(program_dir), source=source.name, start=source.first, notes=sorted(set(source.notes)))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "eval.json.tmp"
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(out / "eval.json")
    return result


def simulate_program(program_dir: str | Path, hw: HwConfig | str | Path, *, out: str | Path | None = None,
                     **options) -> dict:
    """The program on the simulated core, every layer of every image checked
    (:func:`hwgen.sim.simulate.simulate`; ``images``, ``start``, ``count``, ``keep_going`` ...);
    the run folder defaults to ``build/runs/<program folder name>``."""
    from hwgen.sim.simulate import simulate

    return simulate(program_dir, _config(hw), out=out or f"build/runs/{Path(program_dir).name}", **options)
