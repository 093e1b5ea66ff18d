"""The command line: `python -m engine.run <job> [options]`.

Each job lives in `jobs/<name>.py` and exposes `HELP` (one line), `add_arguments(parser)` and
`main(args) -> int`. Job modules import only light packages at the top, so `--help` answers at
once; heavy imports (torch, ray, transformers) happen inside `main`.

Failures a user can fix (`engine.errors`: bad input, a machine that cannot run the job, a full
disk, a permission) print one sentence and exit with their own code; `--debug` (anywhere on the
line, or VDE_DEBUG=1) adds the traceback. A job that writes a dataset (`WRITES_DATASET = True`)
has its temporary files removed after such a failure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from engine.errors import EXIT_SIGINT, Stopped, UserError, os_error_message

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
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure (any position)")
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
        job_parser.set_defaults(_main=module.main, _writes_dataset=getattr(module, "WRITES_DATASET", False))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("VDE_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    if isinstance(getattr(args, "dataset", None), str) and args.dataset.startswith("file://"):
        args.dataset = args.dataset[len("file://"):]  # a local root named as a URL
    try:
        return int(args._main(args) or 0)
    except Stopped as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("interrupted: committed shards are kept; run the same command again to resume", file=sys.stderr)
        return EXIT_SIGINT
    except UserError as err:
        return _fail(str(err), err.exit_code, debug)
    except OSError as err:
        known = os_error_message(err)
        if known is None:
            raise
        _discard_partial_writes(args)
        return _fail(*known, debug)


def _fail(message: str, code: int, debug: bool) -> int:
    """One sentence on stderr; the traceback only with --debug (or VDE_DEBUG=1)."""
    if debug:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return code


def _discard_partial_writes(args: argparse.Namespace) -> None:
    """After a failed write, leave no temporary files in the dataset of a job that writes one
    (readers never touch a dataset's temporary files: a live writer may own them)."""
    dataset = getattr(args, "dataset", None)
    if dataset and getattr(args, "_writes_dataset", False):
        from engine.build import discard_partial_writes

        discard_partial_writes(dataset)


if __name__ == "__main__":
    sys.exit(main())
