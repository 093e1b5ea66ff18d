"""Export a dataset to a public format (VideoRefer, MotionBench, LLaVA SFT, DPO, Hugging Face)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UserError

HELP = "Export a dataset as videorefer, motionbench, sft, dpo or hf into a folder"
FORMATS = ("videorefer", "motionbench", "sft", "dpo", "hf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset root")
    parser.add_argument("--format", required=True, choices=FORMATS, help="output format")
    parser.add_argument("--to", required=True, help="output folder (created)")


def main(args: argparse.Namespace) -> int:
    from engine.export import export

    if not Path(args.dataset).is_dir():
        raise UserError(f"no dataset at {args.dataset}")
    if Path(args.to).exists() and not Path(args.to).is_dir():
        raise UserError(f"--to {args.to} is a file; give a folder to export into")
    report = export(args.dataset, args.format, args.to)
    written = ", ".join(f"{k} {v}" for k, v in report.written.items()) or "nothing"
    print(f"{args.format}: wrote {written} to {args.to}")
    if report.skipped:
        print("left out: " + ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items())))
    for problem in report.problems[:5]:
        print(f"  {problem}")
    return 0
