"""The `hwgen` command line.

Exit codes: 0 success, 1 a build or tool failed, 2 bad input (configuration, arguments,
existing output folder). Bad input never prints a traceback.
"""
from __future__ import annotations

import argparse
import sys

from hwgen.config import ConfigError, load_config

EXIT_FAIL, EXIT_USAGE = 1, 2


def _cmd_build(args) -> int:
    from hwgen.build import BuildError, build

    cfg = load_config(args.config)
    if args.out is None:
        args.out = f"build/{cfg.name}"
    try:
        result = build(cfg, args.out, force=args.force, run_lint=not args.no_lint)
    except BuildError as e:
        print(f"hwgen build: {e}", file=sys.stderr)
        return EXIT_USAGE if "not empty" in str(e) or "not a folder" in str(e) else EXIT_FAIL
    lint = result.manifest["lint"]
    for path in result.verilog:
        print(f"wrote {path}")
    print(f"wrote {result.out / 'manifest.json'} (config {cfg.name}, hash {cfg.hash}); lint: {lint}")
    return 0


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
    b.set_defaults(func=_cmd_build)

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
