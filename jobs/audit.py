"""`python -m engine.run audit`: named quality checks, ad hoc SQL, or a DuckDB shell over a dataset."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

HELP = "Audit a dataset with named DuckDB checks (pass/warn/fail), or run SQL against its tables."

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "n/a": "dim", "error": "bold magenta"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="the dataset root (a folder, or a URL such as s3://bucket/prefix)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any check fails (a release gate)")
    parser.add_argument("--sql", metavar="QUERY", help="run one SQL statement against views of every table instead")
    parser.add_argument("--shell", action="store_true", help="open the duckdb CLI with the views defined")
    parser.add_argument("--check", action="append", dest="only", metavar="NAME", help="run only this check (repeatable)")
    parser.add_argument("--checks-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="more *.sql checks (same format as data/audit/); a same-named file overrides")
    parser.add_argument("--examples", action="store_true", help="also print example rows behind a warn or fail")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON instead of tables")
    out.add_argument("--csv", action="store_true", help="print CSV instead of tables")


def main(args: argparse.Namespace) -> int:
    from engine import audit

    if args.shell:
        return _shell(args.dataset)
    if args.sql:
        db = audit.AuditDatabase(args.dataset)
        try:
            rows = db.query(args.sql)
        except Exception as err:
            from engine.errors import UserError

            raise UserError(f"the query failed: {str(err).splitlines()[0]}") from None
        finally:
            db.close()
        _print_rows(rows, args, title=None)
        return 0
    checks = audit.load_checks(args.checks_dir, args.only)
    damaged, skip = _verify(args)
    results = audit.run_audit(args.dataset, checks, examples=args.examples or args.json, skip=skip)
    _print_results(results, args)
    overall = audit.worst([r.status for r in results])
    return 1 if args.strict and (overall in ("fail", "error") or damaged) else 0


def _verify(args) -> tuple[list, frozenset[str]]:
    """Committed files against their commit records (checksums under --strict); each damaged one
    named. Also the damaged files as the views name them (local paths, or a remote root's URLs)."""
    from engine.store import DatasetStore
    from engine.verify import verify

    store = DatasetStore(args.dataset, create=False)
    problems = verify(store, checksums=args.strict)
    for problem in problems:
        print(f"damaged: {problem.sentence()}; `engine.run verify --dataset {args.dataset} --repair` "
              "and a build recompute it", file=sys.stderr)
    return problems, frozenset(store.url(p.path) for p in problems)


def _print_results(results, args) -> None:
    if args.json:
        print(json.dumps({"dataset": str(args.dataset), "checks": [r.to_json() for r in results]}, indent=1, default=str))
        return
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["check", "status", "metric", "value", "warn", "fail", "note", "seconds"])
        for r in results:
            writer.writerow([r.name, r.status, r.metric, r.value, r.warn, r.fail, r.note, f"{r.seconds:.4f}"])
        return
    from rich.console import Console
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    console = Console()
    for r in results:
        if r.summary and r.summary.rows:
            _print_rows(r.summary, args, title=f"{r.name}: {r.measures}")
        if r.examples and r.examples.rows:
            _print_rows(r.examples, args, title=f"{r.name}: examples")
    table = Table(title=f"audit of {args.dataset}", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("metric")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("warn / fail")
    table.add_column("note")
    for r in results:
        table.add_row(r.name, f"[{_STYLE[r.status]}]{r.status}[/]", r.metric or "", _value(r), _limits(r), r.note)
    if _fits(console, table):
        console.print(table)
        return
    console.print(f"audit of {args.dataset}", markup=False, highlight=False)
    width = max(len(r.name) for r in results)
    for r in results:
        metric = f"{r.metric} {_value(r)}".strip() if r.metric else ""
        limits = ", ".join(f"{kind} {t.split(' ', 1)[1]}" for kind, t in (("warn", r.warn), ("fail", r.fail)) if t)
        console.print(f"{r.name:<{width}}  [{_STYLE[r.status]}]{r.status:<5}[/]  {metric}"
                      f"{f' ({limits})' if limits else ''}", highlight=False)
        if r.note:
            console.print(Padding(Text(r.note), (0, 0, 0, width + 9), expand=False))


def _fits(console, table) -> bool:
    """Whether a table shows without wrapping any cell; else the caller prints a narrow layout."""
    unbounded = console.options.update_width(1_000_000)  # rich clamps a measurement to the width it is given
    return console.measure(table, options=unbounded).maximum <= console.width


def _value(r) -> str:
    return "" if r.value is None else f"{r.value:.4g}"


def _limits(r) -> str:
    return " / ".join(_limit(t) for t in (r.warn, r.fail))


def _limit(threshold: str | None) -> str:
    return threshold.split(" ", 1)[1] if threshold else "-"


def _print_rows(rows, args, title: str | None) -> None:
    if args.json:
        print(json.dumps(rows.records(), indent=1, default=str))
        return
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(rows.columns)
        writer.writerows(rows.rows)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=title, title_justify="left")
    for column in rows.columns:
        table.add_column(str(column))
    for row in rows.rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    if _fits(console, table):
        console.print(table)
        return
    if title:  # too wide for the terminal: one line per row, column=value
        console.print(title, markup=False, highlight=False)
    for row in rows.rows:
        cells = "  ".join(f"{c}={'' if v is None else v}" for c, v in zip(rows.columns, row, strict=True))
        console.print(f"  {cells}", markup=False, highlight=False)


def _shell(dataset: Path) -> int:
    from engine import audit

    statements = audit.shell_statements(dataset)
    binary = shutil.which("duckdb")
    if binary is None:
        print("The duckdb CLI binary is not on PATH (the duckdb Python package has no interactive shell); "
              "paste these statements into any DuckDB session to get the same views:")
        print("\n".join(statements))
        return 0
    return subprocess.call([binary, "-cmd", "\n".join(statements)])
