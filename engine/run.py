"""The command line: `python -m engine.run <job> [options]`.

Each job lives in `jobs/<name>.py` and exposes `HELP` (one line), `add_arguments(parser)` and
`main(args) -> int`. Job modules import only light packages at the top, so `--help` answers at
once; heavy imports (torch, ray, transformers) happen inside `main`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine.errors import UserError

# job name -> module; listed here (not discovered) so `--help` needs no imports of its own.
JOBS = {
    "build-motionvid-qa": "jobs.build_motionvid_qa",
    "audit": "jobs.audit",
    "report": "jobs.report",
    "export": "jobs.export",
    "score": "jobs.score",
    "eval": "jobs.eval",
    "dedup": "jobs.dedup",
    "compact": "jobs.compact",
    "verify": "jobs.verify",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, no usage dump
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m engine.run",
        description="Video annotation data engine: build, audit, report on and export video datasets.",
        epilog="Commands on a dataset take --dataset DIR, its root folder. Example: "
        "python -m engine.run build-motionvid-qa --dataset out/demo --source virtual:6",
    )
    sub = parser.add_subparsers(dest="job", metavar="JOB", parser_class=_Parser)
    for name, module_name in JOBS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue  # a job not shipped in this build
            raise
        job_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(job_parser)
        job_parser.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: committed shards are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
