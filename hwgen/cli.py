"""The `hwgen` command line.

Exit codes: 0 success, 1 a build or tool failed, 2 bad input (configuration, arguments,
existing output folder). Bad input never prints a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contract.config import ConfigError, load_config

EXIT_FAIL, EXIT_USAGE = 1, 2


def _cmd_build(args) -> int:
    from hwgen.build import BuildError, build

    cfg = load_config(args.config)
    if args.out is None:
        args.out = f"build/{cfg.name}"
    if args.program is not None:
        from contract.program import ProgramError, load_program
        from hwgen.compiler import CoreFitError, compile_program
        if cfg.core is None:
            print(f"hwgen build: --program needs a configuration with a 'core' section ({args.config})", file=sys.stderr)
            return EXIT_USAGE
        try:
            image = compile_program(load_program(args.program), cfg)
        except (ProgramError, CoreFitError) as e:
            print(f"hwgen build: {args.program} does not fit {args.config}: {e}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{args.program} fits: {len(image.instructions)} instructions, int memory {image.peak['ints']} of "
              f"{cfg.core.int_depth} words, spike memory {image.peak['spikes']} of {cfg.core.spike_depth}")
    try:
        result = build(cfg, args.out, force=args.force, run_lint=not args.no_lint, run_synth=not args.no_synth)
    except BuildError as e:
        print(f"hwgen build: {e}", file=sys.stderr)
        return EXIT_USAGE if "not empty" in str(e) or "not a folder" in str(e) else EXIT_FAIL
    lint = result.manifest["lint"]
    for path in result.verilog:
        print(f"wrote {path}")
    synth = result.manifest["synth"]
    for top, st in (synth.items() if isinstance(synth, dict) else ()):
        print(f"{top}: {st['cells']} cells ({st['flip_flops']} flip-flops), {st['memory_bits']} memory bits, "
              f"~{st['cmos_transistors_logic']} logic transistors (yosys stat -tech cmos)")
    print(f"wrote {result.out / 'manifest.json'} (config {cfg.name}, hash {cfg.hash}); lint: {lint}")
    return 0


def _cmd_quantize(args) -> int:
    import torch

    from contract.fsutil import OutputExists
    from golden.checkpoint import CheckpointError
    from golden.export import export_program, load_model
    from golden.fold import fold_model
    from golden.quantize import QuantizationError, calibrate, quantize
    from hwgen.compiler.placement import MemoryFitError, write_memory_images

    hw = load_config(args.hw)
    if args.checkpoint is None and args.random_init is None:
        print("hwgen quantize: give a CHECKPOINT, or --model NAME --random-init SEED", file=sys.stderr)
        return EXIT_USAGE
    kwargs = {}
    if args.img_size:
        kwargs.update(img_size_h=args.img_size, img_size_w=args.img_size)
    if args.T:
        kwargs["T"] = args.T
    try:
        model = load_model(args.checkpoint, model_name=args.model, random_init=args.random_init, **kwargs)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"hwgen quantize: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.T:
        model.T = args.T
    cfg = model.config
    shape = [cfg["in_channels"], cfg["img_size_h"], cfg["img_size_w"]]
    data = args.data or ("digits" if shape == [1, 32, 32] and cfg["num_classes"] == 10 else "random")
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, input {shape}, "
          f"T={model.T}, data: {data}")
    if data == "digits":
        from golden.digits import PIXEL_LEVELS, load_digits_split
        x_train, _, x_test, y_test = load_digits_split(size=shape[1])
        calib_batches = [x_train[i:i + 64] for i in range(0, 256, 64)]
        samples, labels = x_test[:args.samples], y_test[:args.samples]
        input_scale = args.input_scale or 1.0 / PIXEL_LEVELS  # digits pixels are exact k/16
    else:
        gen = torch.Generator().manual_seed(0)
        calib_batches = [torch.rand(2, *shape, generator=gen) for _ in range(2)]
        samples, labels = torch.rand(args.samples, *shape, generator=gen), None
        input_scale = args.input_scale
    folded = fold_model(model)
    calib = calibrate(folded, calib_batches)
    try:
        program = quantize(folded, hw, weight_bits=args.weight_bits, input_scale=input_scale,
                           calibration=calib, input_shape=shape,
                           model_name=args.model or str(args.checkpoint))
    except QuantizationError as e:
        print(f"hwgen quantize: {e}", file=sys.stderr)
        return EXIT_FAIL
    with torch.no_grad():
        float_logits = model(samples) if len(samples) else None
    try:
        export_program(program, args.out, images=samples if len(samples) else None, labels=labels,
                       float_logits=float_logits, force=args.force, log=print,
                       extra=lambda folder: write_memory_images(program, folder / "memories"))
    except OutputExists as e:
        print(f"hwgen quantize: {e}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryFitError as e:
        print(f"hwgen quantize: {e}", file=sys.stderr)
        return EXIT_FAIL
    convs = sum(1 for layer in program.layers if layer.kind == "conv")
    print(f"wrote {args.out}: {len(program.layers)} layers ({convs} conv), {args.weight_bits}-bit weights, "
          f"widest accumulator {max(layer.attrs.get('acc_bits', 0) for layer in program.layers)} of "
          f"{hw.accumulator.accumulator_width} bits")
    return 0


def _cmd_sim(args) -> int:
    from contract.program import ProgramError
    from hwgen.compiler import CoreFitError
    from hwgen.sim.core import CoreSimError
    from hwgen.sim.simulate import MismatchError, simulate

    hw = load_config(args.config)
    if hw.core is None:
        print(f"hwgen sim: {args.config}: no 'core' section: this configuration describes no core", file=sys.stderr)
        return EXIT_USAGE
    out = args.out or f"build/runs/{Path(args.program).name}"

    def progress(done: int) -> None:
        print(f"\r  simulated {done}/{args.images} image(s)", end="", file=sys.stderr, flush=True)

    try:
        run = simulate(args.program, hw, images=args.images, out=out, data=args.data, progress=progress)
    except (ProgramError, CoreFitError, FileNotFoundError, ValueError) as e:
        print(f"hwgen sim: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (MismatchError, CoreSimError) as e:
        print(f"\nhwgen sim: {e}", file=sys.stderr)
        return EXIT_FAIL
    print(file=sys.stderr)
    _print_run(run, out)
    return 0


def _print_run(run: dict, out) -> None:
    for i in run["images"]:
        label = "" if i["label"] is None else f"label {i['label']}, "
        print(f"image {i['index']:3d}: {label}predicted {i['predicted']} (golden {i['golden_predicted']}), "
              f"{i['cycles']:,} cycles")
    print(f"{'layer':40s} {'unit':11s} {'cycles':>10s} {'effic.':>6s} {'additions':>11s} {'rate':>6s} {'energy':>10s}")
    for r in run["layers"]:
        eff = "" if r["efficiency"] is None else f"{r['efficiency']:.2f}"
        rate = "" if r["input_rate"] is None else f"{r['input_rate']:.3f}"
        print(f"{r['name'][:40]:40s} {r['unit']:11s} {r['cycles']:10,.0f} {eff:>6s} {r['additions']:11,.0f} "
              f"{rate:>6s} {r['energy_pj'] / 1e3:8.2f} nJ")
    t = run["totals"]
    acc = "" if t["accuracy"] is None else f", accuracy {100 * t['accuracy']:.2f}%"
    print(f"{t['exact_images']}/{t['images']} images bit-exact on every layer and the logits{acc}")
    print(f"cycles/image {t['cycles_per_image']:,.0f} (bound {t['bound_per_image']:,.0f}, efficiency "
          f"{t['efficiency']:.3f}); energy/image {t['energy_pj_per_image'] / 1e6:.3f} uJ "
          f"({t['additions_per_image']:,.0f} additions, {t['macs_per_image']:,.0f} MACs)")
    print(f"wrote {Path(out) / 'run.json'}, {Path(out) / 'report.md'}, {Path(out) / 'report.png'}")


def _cmd_check(args) -> int:
    cfg = load_config(args.config)
    print(f"{args.config}: ok ({cfg.name}, hash {cfg.hash})")
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hwgen", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="generate Verilog, manifest and lint report for a hardware config")
    b.add_argument("config", help="hardware configuration, e.g. configs/hw/lif_small.yaml")
    b.add_argument("--out", help="output folder (default: build/<config name>)")
    b.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    b.add_argument("--no-lint", action="store_true", help="skip the Verilator lint gate")
    b.add_argument("--no-synth", action="store_true", help="skip Yosys statistics (synth_<top>.json)")
    b.add_argument("--program", help="program folder (hwgen quantize) the core must hold: refuse the build if it does not fit")
    b.set_defaults(func=_cmd_build)

    q = sub.add_parser("quantize", help="fold, quantize and export a checkpoint as an integer program with traces")
    q.add_argument("checkpoint", nargs="?", help="checkpoint (.pth, reference format, a {'state_dict'} or a bare state dict)")
    q.add_argument("--hw", required=True, help="hardware configuration the program must fit")
    q.add_argument("--out", required=True, help="output folder (program.json, arrays.npz, memories/, traces.npz)")
    q.add_argument("--model", help="model name (registry or reference); default: from the checkpoint's args")
    q.add_argument("--random-init", type=int, metavar="SEED", help="no checkpoint: random weights and BN statistics")
    q.add_argument("--img-size", type=int, help="input size for --model (e.g. 224)")
    q.add_argument("--T", type=int, help="timesteps (default: the model's)")
    q.add_argument("--samples", type=int, default=4, help="sample images to trace (default 4)")
    q.add_argument("--weight-bits", type=int, default=8)
    q.add_argument("--input-scale", type=float, help="value of one pixel LSB (default: calibrated)")
    q.add_argument("--data", choices=["digits", "random"], help="calibration and sample data (default: by model)")
    q.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    q.set_defaults(func=_cmd_quantize)

    s = sub.add_parser("sim", help="run a program on the simulated core and check every layer against the golden engine")
    s.add_argument("program", help="program folder written by hwgen quantize")
    s.add_argument("--config", required=True, help="hardware configuration with a 'core' section")
    s.add_argument("--images", type=int, default=10, help="images to simulate (default 10)")
    s.add_argument("--data", choices=["digits", "traces"],
                   help="images: the digits test split (default for digits models) or the program's traces")
    s.add_argument("--out", help="run folder (default: build/runs/<program folder name>)")
    s.set_defaults(func=_cmd_sim)

    from hwgen.report import add_parser as add_report_parser
    add_report_parser(sub)

    c = sub.add_parser("check", help="validate a hardware config and print its hash")
    c.add_argument("config")
    c.set_defaults(func=_cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"hwgen {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hwgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
