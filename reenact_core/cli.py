"""Command-line entry point: `python -m reenact_core <command>`."""
from __future__ import annotations

import argparse
import sys

from .errors import ReenactError


def _convert(args: argparse.Namespace) -> int:
    from .weights import convert, inspect_model_file

    out = convert(args.src, args.dst, expected_kind=args.kind)
    info = inspect_model_file(out)
    print(f"wrote {out} ({info.kind}: {info.config})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reenact_core",
                                     description="One-shot face reenactment by directions in StyleGAN2's W+ space.")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert an official checkpoint to a .safetensors model file",
                          description="Convert an official checkpoint (stylegan-voxceleb.pt, rosinality FFHQ .pt, "
                                      "e4e-voxceleb.pt or an original e4e .pt, deca_model.tar, A_matrix.pt) to our "
                                      ".safetensors format. The file is read with torch.load(weights_only=True); the "
                                      "architecture is inferred from its shapes and checked strictly.")
    conv.add_argument("src", help="the official checkpoint file")
    conv.add_argument("dst", help="output .safetensors file, or a folder (e.g. models/reenact/) to use the canonical name")
    conv.add_argument("--kind", choices=["stylegan2", "e4e", "deca", "directions"],
                      help="refuse the file unless it holds this kind of model")
    conv.set_defaults(run=_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ReenactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
