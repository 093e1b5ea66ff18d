"""Export a dataset to a public format (VideoRefer, MotionBench, LLaVA SFT, DPO, Hugging Face)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UserError

HELP = "Export a dataset as videorefer, motionbench, sft, dpo or hf into a folder"
FORMATS = ("videorefer", "motionbench", "sft", "dpo", "hf")
MEDIA = ("link", "copy", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset root")
    parser.add_argument("--format", required=True, choices=FORMATS, help="output format")
    parser.add_argument("--to", required=True, help="output folder (created); records name paths inside it")
    parser.add_argument("--media", choices=MEDIA, default="link",
                        help="clip files beside the records: link (hard link, a copy across file systems; "
                             "the default), copy, or none (records name videos relative to the dataset root); "
                             "a clip that is a span of a longer video is cut to its own file")


def main(args: argparse.Namespace) -> int:
    from engine.export import export
    from engine.storage import is_remote

    if not is_remote(args.dataset) and not Path(args.dataset).is_dir():
        raise UserError(f"no dataset at {args.dataset}")
    report = export(args.dataset, args.format, args.to, media=args.media)
    written = ", ".join(f"{k} {v}" for k, v in report.written.items()) or "nothing"
    print(f"{args.format}: wrote {written} to {args.to}")
    for note in report.notes:
        print(f"  {note}")
    if report.skipped:
        print("left out: " + ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items())))
    for problem in report.problems[:5]:
        print(f"  {problem}")
    return 0
