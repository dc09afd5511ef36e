"""The batch face of psfkit: ``psfkit demo`` and ``psfkit deconvolve`` on TIFF files."""

from __future__ import annotations

import argparse
import sys


def _add_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on bundled sample data and write the results")
    parser.add_argument("-o", "--output", default="psfkit-demo",
                        help="folder for the TIFF results and the summary figure")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.output)["exit_code"]


def _add_deconvolve(subparsers) -> None:
    parser = subparsers.add_parser("deconvolve", help="deconvolve a TIFF image with a TIFF PSF")
    parser.add_argument("image")
    parser.add_argument("--psf", required=True)
    parser.add_argument("-o", "--output", required=True)
    parser.set_defaults(handler=_run_deconvolve)


def _run_deconvolve(args) -> int:
    print("psfkit deconvolve is being built", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="psfkit", description="Find the blur between images and undo it.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_demo(subparsers)
    _add_deconvolve(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
