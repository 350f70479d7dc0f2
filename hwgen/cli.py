"""The `hwgen` command line.

Exit codes: 0 success, 1 a build or tool failed, 2 bad input (configuration, arguments,
existing output folder). Bad input never prints a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contract.config import ConfigError, load_config
from hwgen.inputs import add_image_options, add_preprocessing_options

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


def _fail(command: str, message, code: int = EXIT_USAGE) -> int:
    print(f"hwgen {command}: {message}", file=sys.stderr)
    return code


def _input_errors():
    """Exceptions that mean bad input (exit 2)."""
    from contract.fsutil import OutputExists
    from contract.program import ProgramError
    from golden.checkpoint import CheckpointError
    from golden.images import ImageError
    from golden.model_args import ModelArgError

    return (OutputExists, ProgramError, CheckpointError, ImageError, ModelArgError, KeyError, ValueError,
            FileNotFoundError)


def _message(e: BaseException) -> str:
    return e.args[0] if isinstance(e, KeyError) and e.args else str(e)


def _cmd_quantize(args) -> int:
    from golden.quantize import QuantizationError
    from hwgen.compiler.placement import MemoryFitError
    from hwgen.flow import quantize_checkpoint

    try:
        quantize_checkpoint(args.checkpoint, load_config(args.hw), args.out, model=args.model,
                            model_args=[*(args.model_arg or ()),
                                        *([f"img_size={args.img_size}"] if args.img_size else []),
                                        *([f"T={args.T}"] if args.T else [])],
                            random_init=args.random_init, images=args.images, calib=args.calib,
                            samples=args.samples, allow_upscale=args.allow_upscale, weight_bits=args.weight_bits,
                            target_rates=tuple(args.target_rates) if args.target_rates else None,
                            preprocessing=dict(crop_pct=args.crop_pct, interpolation=args.interpolation,
                                               mean=args.mean, std=args.std), force=args.force)
    except (QuantizationError, MemoryFitError) as e:     # the model does not fit the hardware
        return _fail("quantize", e, EXIT_FAIL)
    except _input_errors() as e:
        return _fail("quantize", _message(e))
    return 0


def _cmd_eval(args) -> int:
    from contract.progress import Progress
    from hwgen.flow import evaluate_program

    out = Path(args.out or f"build/evals/{Path(args.program).name}")
    try:
        result = evaluate_program(args.program, images=args.images, start=args.start, count=args.count,
                                  checkpoint=args.checkpoint, batch=args.batch, allow_upscale=args.allow_upscale,
                                  out=out, progress=lambda total: Progress("eval", total))
    except _input_errors() as e:
        return _fail("eval", _message(e))
    for note in result["notes"]:
        print(f"note: {note}")
    _print_eval(result)
    print(f"wrote {out / 'eval.json'}")
    return 0


def _print_eval(r: dict) -> None:
    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    print(f"{r['images']} image(s) from {r['source']}, {r['labelled']} labelled")
    print(f"{'':10s} {'top-1':>8s} {'top-5':>8s}")
    print(f"{'float':10s} {pct(r['float_top1']):>8s} {pct(r['float_top5']):>8s}")
    print(f"{'integer':10s} {pct(r['int_top1']):>8s} {pct(r['int_top5']):>8s}")
    print(f"float and integer predictions agree on {pct(r['agreement'])} of the images")
    worst = sorted(r["spike_agreement"].items(), key=lambda kv: kv[1])[:5]
    print("identical spikes, least agreeing layers: " + ", ".join(f"{k} {pct(v)}" for k, v in worst))


def _cmd_sim(args) -> int:
    from contract.progress import Progress
    from hwgen.compiler import CoreFitError
    from hwgen.sim.core import CoreSimError
    from hwgen.sim.simulate import MismatchError, simulate

    hw = load_config(args.config)
    if hw.core is None:
        return _fail("sim", f"{args.config}: no 'core' section: this configuration describes no core")
    out = Path(args.out or f"build/runs/{Path(args.program).name}")
    try:
        run = simulate(args.program, hw, out=out, images=args.images, start=args.start, count=args.count,
                       keep_going=args.keep_going, allow_upscale=args.allow_upscale, waves=args.waves,
                       progress=lambda total: Progress("sim", total), mem_latency=args.mem_latency,
                       mem_bandwidth=args.mem_bandwidth)
    except (CoreFitError, *_input_errors()) as e:
        return _fail("sim", _message(e))
    except (MismatchError, CoreSimError) as e:
        return _fail("sim", f"{e}\n(run record: {out / 'run.json'})" if (out / "run.json").exists() else e, EXIT_FAIL)
    _print_run(run, out)
    bad = [i for i in run["images"] if not i["exact"]]
    return EXIT_FAIL if bad else 0


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
          f"{t['efficiency']:.3f}; one unit at a time {t['serial_bound_per_image']:,.0f}, ceil(additions / lanes) "
          f"{t['additions_bound_per_image']:,.0f}); energy/image {t['energy_pj_per_image'] / 1e6:.3f} uJ "
          f"({t['additions_per_image']:,.0f} additions, {t['macs_per_image']:,.0f} MACs)")
    if "memory" in run:       # external weights: where the accumulator waited for them
        stalled = [f"{r['name']} {r['weight_stalls']:,.0f}" for r in run["layers"] if r.get("weight_stalls")]
        print("weight stall cycles per layer: " + (", ".join(stalled) or "none"))
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
    q.add_argument("--model", help="model name (registry or reference); default: the checkpoint's args.model")
    q.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="a constructor argument, VALUE read as YAML (repeatable): embed_dim=[16,32,64,96], "
                        "num_heads=4, kd=true, T=4, img_size=64, sdsa_variant=1, ...")
    q.add_argument("--random-init", type=int, metavar="SEED", help="no checkpoint: random weights and BN statistics")
    q.add_argument("--img-size", type=int, help="input size (same as --model-arg img_size=N)")
    q.add_argument("--T", type=int, help="timesteps (same as --model-arg T=N)")
    add_image_options(q, default_help="default: digits:train for the digits models, else random", select=False)
    q.add_argument("--calib", type=int, default=16, metavar="N",
                   help="images for the calibration report (float against integer agreement; default 16, 0: none)")
    q.add_argument("--samples", type=int, default=4, help="sample images to trace (default 4)")
    q.add_argument("--target-rates", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="with --random-init: shift conv biases so every LIF fires at a rate in [LOW, HIGH] on the "
                        "calibration images, like a trained model (e.g. 0.05 0.4)")
    add_preprocessing_options(q)
    q.add_argument("--weight-bits", type=int, default=8)
    q.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    q.set_defaults(func=_cmd_quantize)

    e = sub.add_parser("eval", help="float against integer accuracy and spike agreement of a program on images")
    e.add_argument("program", help="program folder written by hwgen quantize")
    add_image_options(e, default_help="default: the digits test split for the digits models")
    e.add_argument("--checkpoint", help="the float checkpoint, if it moved since quantizing")
    e.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    e.add_argument("--out", help="folder for eval.json (default: build/evals/<program folder name>)")
    e.set_defaults(func=_cmd_eval)

    s = sub.add_parser("sim", help="run a program on the simulated core and check every layer against the golden engine")
    s.add_argument("program", help="program folder written by hwgen quantize")
    s.add_argument("--config", required=True, help="hardware configuration with a 'core' section")
    add_image_options(s, default_help="or 'traces', the program's sample images; default: the digits test split "
                                      "for the digits models, else the traces")
    s.add_argument("--keep-going", action="store_true",
                   help="record a mismatching image in run.json (with its first mismatch) and go on")
    s.add_argument("--waves", metavar="WINDOW", nargs="?", const="mismatch",
                   help="write a waveform (VCD, under <out>/waves/): alone, around the first mismatch (the "
                        "instruction before and the mismatching one); IMAGE:LAYER[:LAYER] for that window "
                        "(layer names or instruction numbers)")
    s.add_argument("--mem-latency", type=int, metavar="N",
                   help="external weights (accumulator.weights: external): the memory model's cycles from a request "
                        "to its first word (default 100)")
    s.add_argument("--mem-bandwidth", type=int, metavar="W",
                   help="external weights: the memory model's words per cycle, 1 .. accumulator.weight_port_words "
                        "(default 1)")
    s.add_argument("--out", help="run folder (default: build/runs/<program folder name>)")
    s.set_defaults(func=_cmd_sim)

    from hwgen.report import add_parser as add_report_parser
    add_report_parser(sub)
    from hwgen.estimate import add_parser as add_estimate_parser
    add_estimate_parser(sub)
    from hwgen.sweep import add_parser as add_sweep_parser
    add_sweep_parser(sub)

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
