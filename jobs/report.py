"""`python -m engine.run report`: a static HTML report (audit, plots, clip gallery) of a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Write a static HTML report of a dataset: audit results, statistics plots and a clip gallery."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="the dataset root (a folder, or a URL such as s3://bucket/prefix)")
    parser.add_argument("--to", type=Path, default=Path("report"), metavar="DIR",
                        help="folder to write the site into (default: report/); open DIR/index.html")
    parser.add_argument("--clips", type=int, default=12, help="clips shown in the gallery (default 12)")


def main(args: argparse.Namespace) -> int:
    from engine.errors import UserError
    from engine.report import build_report

    if args.clips < 0:
        raise UserError("--clips must be zero or more")
    if args.to.exists() and not args.to.is_dir():
        raise UserError(f"report path {args.to} is a file, not a directory")
    index = build_report(args.dataset, args.to, clips=args.clips)
    print(f"report written: {index.resolve()}")
    return 0
