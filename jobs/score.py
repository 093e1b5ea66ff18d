"""Score `{uid: answer}` predictions against a MotionBench-style gold JSONL."""

from __future__ import annotations

import argparse
import json

HELP = "Score predictions (MotionBench answer file {uid: letter}, free-form answers) against a MotionBench JSONL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gold", required=True, help="MotionBench JSONL (e.g. from `export --format motionbench`)")
    parser.add_argument("--pred", required=True, help="MotionBench answer file {uid: letter}, {uid: answer text}, "
                        "or a JSON / JSONL list of {uid, answer} records")
    parser.add_argument("--json", action="store_true", help="print a JSON object (accuracy is a share, 0 to 1)")


def main(args: argparse.Namespace) -> int:
    from engine.score import format_table, load_gold, load_predictions, score

    result = score(load_gold(args.gold), load_predictions(args.pred))
    print(json.dumps(result.to_dict(), indent=1) if args.json else format_table(result))
    return 0
