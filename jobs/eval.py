"""Evaluate the agents on virtual clips against their exact ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.errors import UserError

HELP = "Compare agent output on virtual clips with ground truth: mask IoU, noun recall, QA agreement"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset root")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def main(args: argparse.Namespace) -> int:
    from engine.evaluate import evaluate, format_evaluation

    if not Path(args.dataset).is_dir():
        raise UserError(f"no dataset at {args.dataset}")
    result = evaluate(args.dataset)
    if result.virtual_clips == 0:
        raise UserError(f"{args.dataset} has no virtual clips: eval needs ground truth (build with --source virtual:N)")
    print(json.dumps(result.to_dict(), indent=1) if args.json else format_evaluation(result))
    return 0
