"""Evaluate the agents on virtual clips against their exact ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.errors import UserError

HELP = "Compare agent output on virtual clips with ground truth: mask IoU, noun recall, QA agreement"
EPILOG = ("Give --dataset several times (datasets built from the same virtual source with different "
          "--profile) to see the profiles side by side in one table.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, action="append",
                        help="dataset root; repeat to compare datasets (one column per profile)")
    parser.epilog = EPILOG
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def main(args: argparse.Namespace) -> int:
    from engine.evaluate import compare, format_comparison, format_evaluation

    for dataset in args.dataset:
        if not Path(dataset).is_dir():
            raise UserError(f"no dataset at {dataset}")
    results = compare(args.dataset)
    for (_, result), dataset in zip(results, args.dataset, strict=True):
        if result.virtual_clips == 0:
            raise UserError(f"{dataset} has no virtual clips: eval needs ground truth (build with --source virtual:N)")
    if len(results) == 1:
        [(_, result)] = results
        print(json.dumps(result.to_dict(), indent=1) if args.json else format_evaluation(result))
    elif args.json:
        print(json.dumps({name: result.to_dict() for name, result in results}, indent=1))
    else:
        print(format_comparison(results))
    return 0
