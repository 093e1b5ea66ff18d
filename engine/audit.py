"""The quality audit: named SQL checks over DuckDB views of a dataset.

Each check is one file under `data/audit/` (users read, copy and extend them). Its header names
it and sets its thresholds; its body holds up to four statements, each after a marker line:

    -- check: duplicate_questions
    -- measures: one sentence
    -- requires: mcqs              tables that must hold rows, else the check is "n/a"
    -- warn: duplicate_share > 0.01
    -- fail: duplicate_share > 0.05
    -- random weights: one line on why random-weight models must fail this check (optional)
    -- [setup]     optional, e.g. a TEMP TABLE the other statements share
    -- [summary]   the table printed under the check
    -- [metric]    one row; the column named in the thresholds is compared (an optional
                   `note` column says what tripped it)
    -- [examples]  optional: rows behind a warn or fail (linked from the report)

The views read one version of each table, taken once when the audit opens: the files (and the
live row ranges of compacted parts) that the store's commit records name at that moment, so every
check sees the same tables even while a run is still committing. A rerun replaces a shard file
under the same name, and DuckDB may open one file several times in a query (footer at bind time,
row groups later), so the shard files of the version (the few not yet compacted) are hard-linked
into `<root>/_audit/<id>/`; compacted parts are never rewritten in place, so they are read where
they are. A compaction moves the parts it replaces to `_trash/`: a query that finds a file gone
re-reads the version and runs once more. Where links cannot be made (read-only dataset, odd file
system) the views use the shard paths and rely on that retry. Opening never runs the store's
crash recovery: that would remove a live writer's staging folders.

What the last run should have written comes from `run.json`: each stage it ran declares the
tables it writes. A check whose required table is empty is "n/a" only where no stage of the run
was meant to fill that table; otherwise it fails, saying which stage left it empty. Views
`run_stages` (stage, table) and `stage_commits` (stage, shard_id, clips) let checks compare what
ran with what landed.

Counts that several checks read are helper tables (`SHARED_TABLES`), built once per snapshot when
a statement first names them: `mcq_category_counts` (category, questions, clips) serves the two
category checks with one pass over the MCQs, `lineage_counts` (rows and tokens per table and
lineage) the lineage and token-cost checks with one pass over the `lineage` view.
"""

from __future__ import annotations

import operator
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.collector import collector_paused
from engine.errors import UserError
from engine.storage import is_remote
from engine.store import DatasetStore, TableVersion, view_sql
from schemas import TABLES

SNAPSHOTS = "_audit"  # per-audit hard links of shard files; never a table folder (leading underscore)

CHECKS_DIR = Path(__file__).resolve().parents[1] / "data" / "audit"
PRICES_FILE = CHECKS_DIR / "prices.yaml"
RANDOM_WEIGHTS_FILE = CHECKS_DIR / "random_weights.yaml"  # tables random-weight models may leave empty
STATUS_ORDER = ("pass", "n/a", "warn", "fail", "error")
LINEAGE_COLUMNS = ("agent", "model", "model_revision", "prompt_version", "prompt_tokens", "completion_tokens")
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_THRESHOLD = re.compile(r"^\s*([A-Za-z_]\w*)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.]+(?:[eE]-?\d+)?)\s*$")
_HEADER = re.compile(r"^--\s*(check|measures|requires|needs|warn|fail|random weights)\s*:\s*(.*)$")
_SECTION = re.compile(r"^--\s*\[(setup|summary|metric|examples)\]\s*$")
_RLE_TYPE = "STRUCT(size INTEGER[], counts VARCHAR)"
# Helper tables several checks read: each is built once per snapshot, when a statement first names it.
SHARED_TABLES = {
    # Distinct clips counted by 64-bit hash (a third less work than by the id strings; two of a
    # million clip ids share a hash with odds of about 3 in 10^8); an MCQ's clip_id is never null.
    "mcq_category_counts": "SELECT category, count(*) AS questions, count(DISTINCT hash(clip_id)) AS clips "
                           "FROM mcqs GROUP BY ALL",
    # coalesce once per group, not once per row (a sixth of the statement's time)
    "lineage_counts": 'SELECT "table", agent, model, model_revision, prompt_version, count(*) AS rows, '
                      "coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
                      "coalesce(sum(completion_tokens), 0) AS completion_tokens FROM lineage GROUP BY ALL",
}


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str, where: str) -> Threshold:
        match = _THRESHOLD.match(text)
        if not match:
            raise UserError(f"{where}: threshold {text!r} is not of the form `metric > 0.05`")
        return cls(match[1], match[2], float(match[3]))

    def hit(self, value: float) -> bool:
        return _OPS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass
class Check:
    name: str
    measures: str
    path: Path
    requires: list[str] = field(default_factory=list)
    warn: Threshold | None = None
    fail: Threshold | None = None
    random_weights: str = ""  # why random-weight models must trip this check
    sections: dict[str, str] = field(default_factory=dict)

    @property
    def metric(self) -> str | None:
        threshold = self.fail or self.warn
        return threshold.metric if threshold else None


@dataclass
class Rows:
    columns: list[str]
    rows: list[tuple]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass
class CheckResult:
    name: str
    measures: str
    status: str  # pass | warn | fail | n/a | error
    metric: str | None = None
    value: float | None = None
    warn: str | None = None
    fail: str | None = None
    note: str = ""
    summary: Rows | None = None
    examples: Rows | None = None
    seconds: float = 0.0
    sql: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "measures": self.measures,
            "metric": self.metric,
            "value": self.value,
            "warn": self.warn,
            "fail": self.fail,
            "note": self.note,
            "seconds": round(self.seconds, 4),
            "summary": self.summary.records() if self.summary else [],
            "examples": self.examples.records() if self.examples else [],
        }


# ----- checks -----
def load_checks(folders: list[Path] | None = None, names: list[str] | None = None) -> list[Check]:
    """Every `*.sql` check of the folders (the built-in one first); a later file overrides a name."""
    by_name: dict[str, Check] = {}
    for folder in [CHECKS_DIR, *(folders or [])]:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"checks folder {folder} does not exist")
        for path in sorted(folder.glob("*.sql")):
            check = parse_check(path)
            by_name[check.name] = check
    if names:
        unknown = sorted(set(names) - set(by_name))
        if unknown:
            raise UserError(f"unknown check(s) {', '.join(unknown)}; checks are {', '.join(sorted(by_name))}")
        return [by_name[n] for n in names]
    return list(by_name.values())


def parse_check(path: Path) -> Check:
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        section = _SECTION.match(line.strip())
        if section:
            current = section[1]
            sections[current] = []
            continue
        if current is None:
            match = _HEADER.match(line.strip())
            if match:
                header[match[1]] = match[2].strip()
            continue
        sections[current].append(line)
    where = path.name
    if "check" not in header or "metric" not in sections:
        raise UserError(f"{where}: a check needs a `-- check: name` header and a `-- [metric]` statement")
    check = Check(
        name=header["check"],
        measures=header.get("measures", ""),
        path=path,
        requires=[t.strip() for t in header.get("requires", "").split(",") if t.strip()],
        warn=Threshold.parse(header["warn"], where) if header.get("warn") else None,
        fail=Threshold.parse(header["fail"], where) if header.get("fail") else None,
        random_weights=header.get("random weights", ""),
        sections={k: "\n".join(v).strip().rstrip(";").strip() for k, v in sections.items()},
    )
    return check


def grade(check: Check, value: float | None) -> str:
    if value is None:
        return "n/a"
    if check.fail and check.fail.hit(value):
        return "fail"
    if check.warn and check.warn.hit(value):
        return "warn"
    return "pass"


def worst(statuses: list[str]) -> str:
    return max(statuses, key=STATUS_ORDER.index, default="pass")


# ----- the dataset as DuckDB views -----
def table_names(root: str | Path) -> list[str]:
    """The registry's tables, then any other table folder on disk (tables added by newer code)."""
    names = list(TABLES)
    if is_remote(root):  # a remote root holds the registry's tables only
        return names
    root = Path(root)
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            if folder.name not in names and any(folder.glob("*.parquet")) and folder.name.isidentifier():
                names.append(folder.name)
    return names


@dataclass
class RunFacts:
    """What the dataset's last run meant to do, from run.json and the commit records."""

    writers: dict[str, list[str]] = field(default_factory=dict)  # table -> stages of the run that write it
    random_weight_stages: list[str] = field(default_factory=list)  # stages whose model is a `tiny:` build
    commits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stages(self) -> list[str]:
        return sorted({s for stages in self.writers.values() for s in stages})

    def random_weight_excuses(self) -> dict[str, str]:
        """Why a table may be empty, for tables whose every writer in this run has random weights."""
        reasons = _load_yaml(RANDOM_WEIGHTS_FILE) if RANDOM_WEIGHTS_FILE.is_file() else {}
        tiny = set(self.random_weight_stages)
        return {table: str(reason) for table, reason in (reasons or {}).items()
                if self.writers.get(table) and set(self.writers[table]) <= tiny}


def _load_yaml(path: Path) -> Any:
    """A small YAML file through libyaml's safe loader where PyYAML has it (the pure-Python one took
    longer than the small checks of an audit)."""
    import yaml

    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_run_facts(root: str | Path, store: DatasetStore | None = None) -> RunFacts:
    store = store or DatasetStore(root, create=False)
    facts = RunFacts(commits=_commit_records(root, store))
    try:
        run = store.read_run_config() or {}
    except (OSError, ValueError, UserError):
        run = {}
    stages = run.get("stages") or {}
    for stage in stages:
        for table in _stage_writes(stage):
            facts.writers.setdefault(table, []).append(stage)
    facts.random_weight_stages = sorted(s for s, spec in stages.items() if _names_tiny_model(spec.get("config")))
    return facts


def _stage_writes(stage: str) -> tuple[str, ...]:
    from engine.config import STAGE_CLASSES, load_stage_class

    if stage not in STAGE_CLASSES:
        return ()
    try:
        return tuple(load_stage_class(stage).writes)
    except (UserError, ImportError):
        return ()


def _names_tiny_model(config: Any) -> bool:
    if isinstance(config, dict):
        return any(_names_tiny_model(v) for v in config.values())
    if isinstance(config, list):
        return any(_names_tiny_model(v) for v in config)
    return isinstance(config, str) and config.startswith("tiny:")


def _commit_records(root: str | Path, store: DatasetStore | None = None) -> list[dict[str, Any]]:
    """Every current commit record (the index and the loose records since its last fold)."""
    state = (store or DatasetStore(root, create=False)).state()
    return [r for shards in state.values() for r in shards.values() if not r.get("removed")]


def snapshot(root: str | Path, skip: frozenset[str] = frozenset(),
             store: DatasetStore | None = None) -> dict[str, TableVersion]:
    """The current version of every table: files named by the commit records (extra folders: a glob).
    A store passed in is re-read only when its commit records changed on disk."""
    store = store or DatasetStore(root, create=False)
    versions = {t: store.table_version(t, skip_damaged=True) for t in TABLES}  # damaged files: named by verify
    for version in versions.values():  # files a checksum found altered
        version.files = [f for f in version.files if f not in skip]
        version.partial = {f: r for f, r in version.partial.items() if f not in skip}
    for table in table_names(root):
        if table not in versions:
            versions[table] = TableVersion(files=sorted(str(p) for p in (Path(root) / table).glob("*.parquet")))
    return versions


class AuditDatabase:
    """A DuckDB connection over one dataset: table views, helper views, the mask_area UDF, prices."""

    def __init__(self, root: str | Path, prices: Path = PRICES_FILE, skip: frozenset[str] = frozenset()):
        import duckdb

        self.address = str(root)
        self.remote = is_remote(root)
        if self.remote:  # shard files there have unique names and are never rewritten: nothing to pin
            store = DatasetStore(root, create=False)
            self.root = store.root
        else:
            self.root = Path(root)
            if not self.root.exists():
                raise UserError(f"no dataset at {self.root}")
            if not self.root.is_dir():
                raise UserError(f"dataset path {self.root} is a file, not a directory")
        self.con = duckdb.connect()
        if self.remote:
            store.register(self.con)
        # A rerun replaces a shard under the same name; a path-keyed block cache could mix old and new.
        self.con.execute("SET enable_external_file_cache = false")
        self.con.create_function("mask_area", _mask_area_arrow, [_RLE_TYPE], "BIGINT", type="arrow")
        self._register_prices(prices)
        self.store = DatasetStore(self.address, create=False)  # one read of the commit index for the whole audit
        self.run = read_run_facts(self.address, self.store)
        self._register_run(self.run)
        self.files: dict[str, list[str]] = {}
        self.versions: dict[str, TableVersion] = {}
        self._pins: list[Path] = []
        self.skip = skip  # damaged files (absolute paths) the views leave out
        self.refresh()

    def refresh(self) -> None:
        """Re-read the tables' versions and rebuild every view."""
        versions = snapshot(self.address, self.skip, self.store)
        self.versions = versions if self.remote else self._pin(versions)
        self.files = {t: v.files + list(v.partial) for t, v in self.versions.items()}
        for table, version in self.versions.items():
            view_sql(self.con, table, version)
        self.columns = self._columns()
        # Row counts per table and source, counted once: several checks read them, and as a view
        # every read scanned every table again.
        self.con.execute("DROP TABLE IF EXISTS table_rows")
        self.con.execute(self._table_rows_view(empty_tables=False).replace(
            "CREATE OR REPLACE VIEW table_rows AS", "CREATE TEMP TABLE table_rows AS", 1))
        # every check asks whether its tables hold rows: counted here, not once per check
        self.counts = dict(self.con.execute('SELECT "table", sum(rows) FROM table_rows GROUP BY ALL').fetchall())
        empty = [table for table in self.columns if table not in self.counts]
        if empty:
            self.con.execute("INSERT INTO table_rows SELECT unnest(?), NULL, 0", [empty])
        self.con.execute(self._lineage_view())
        for name in SHARED_TABLES:
            self.con.execute(f"DROP TABLE IF EXISTS {name}")
        self._shared_built: set[str] = set()

    def _build_shared(self, sql: str) -> None:
        """Build the helper tables the statement names that this snapshot has not built yet."""
        for name, body in SHARED_TABLES.items():
            if name not in self._shared_built and re.search(rf"\b{name}\b", sql):
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {body}")
                self._shared_built.add(name)

    def _pin(self, versions: dict[str, TableVersion]) -> dict[str, TableVersion]:
        """Hard-link the version's shard files so a concurrent rewrite cannot change them under a query."""
        folder = self.root / SNAPSHOTS / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        pinned: dict[str, TableVersion] = {}
        try:
            for table, version in versions.items():
                (folder / table).mkdir(parents=True, exist_ok=True)
                files = [f if Path(f).name.startswith("part-") else _link(Path(f), folder / table)
                         for f in version.files]
                pinned[table] = TableVersion([f for f in files if f], version.partial)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            return versions
        self._pins.append(folder)
        return pinned

    def _columns(self) -> dict[str, list[str]]:
        """Each view's columns (a relation's columns: information_schema took 20 ms)."""
        return {table: self.con.table(table).columns for table in self.files}

    def _table_rows_view(self, empty_tables: bool = True) -> str:
        """Rows per table and source; with empty_tables, a (table, NULL, 0) row for each empty table
        (the audit adds those itself: the EXISTS probes were 40% of counting)."""
        parts = []
        for table, cols in self.columns.items():
            source = "CAST(source AS VARCHAR)" if "source" in cols else "CAST(NULL AS VARCHAR)"
            empty = f" UNION ALL SELECT '{table}', NULL, 0 WHERE NOT EXISTS (SELECT 1 FROM {table})" if empty_tables else ""
            parts.append(f"SELECT '{table}' AS \"table\", source, count(*) AS rows "
                         f"FROM (SELECT {source} AS source FROM {table}) GROUP BY source{empty}")
        return "CREATE OR REPLACE VIEW table_rows AS " + "\nUNION ALL ".join(parts)

    def _lineage_view(self) -> str:
        parts = []
        for table, cols in self.columns.items():
            if not set(LINEAGE_COLUMNS) <= set(cols):
                continue
            key = TABLES[table].KEY if table in TABLES else cols[0]
            parts.append(f"SELECT '{table}' AS \"table\", CAST({key} AS VARCHAR) AS row_id, {', '.join(LINEAGE_COLUMNS)} FROM {table}")
        if not parts:
            parts = ["SELECT NULL::VARCHAR AS \"table\", NULL::VARCHAR AS row_id, NULL::VARCHAR AS agent, "
                     "NULL::VARCHAR AS model, NULL::VARCHAR AS model_revision, NULL::VARCHAR AS prompt_version, "
                     "NULL::BIGINT AS prompt_tokens, NULL::BIGINT AS completion_tokens WHERE false"]
        return "CREATE OR REPLACE VIEW lineage AS " + "\nUNION ALL ".join(parts)

    def _register_prices(self, path: Path) -> None:
        entries = _load_yaml(path) if path.is_file() else {}
        prices = pa.table({
            "model": pa.array([str(m) for m in entries], pa.string()),
            "input_per_1m": pa.array([float(v.get("input", 0)) for v in entries.values()], pa.float64()),
            "output_per_1m": pa.array([float(v.get("output", 0)) for v in entries.values()], pa.float64()),
        })
        self.con.register("prices", prices)

    def _register_run(self, run: RunFacts) -> None:
        pairs = [(stage, table) for table, stages in run.writers.items() for stage in stages]
        self.con.register("run_stages", pa.table({
            "stage": pa.array([p[0] for p in pairs], pa.string()),
            "table": pa.array([p[1] for p in pairs], pa.string()),
        }))
        records = [r for r in run.commits if r.get("stage")]
        excuses = run.random_weight_excuses()
        self.con.register("random_weight_tables", pa.table({
            "table": pa.array(list(excuses), pa.string()),
            "reason": pa.array(list(excuses.values()), pa.string()),
        }))
        self.con.register("stage_commits", pa.table({
            "stage": pa.array([r["stage"] for r in records], pa.string()),
            "shard_id": pa.array([str(r.get("shard_id")) for r in records], pa.string()),
            "clips": pa.array([len(r.get("clip_ids") or []) for r in records], pa.int64()),
            "rejected": pa.array([int(r.get("rejected") or 0) for r in records], pa.int64()),
        }))

    # ----- queries -----
    def query(self, sql: str, params: list | None = None) -> Rows:
        """Run one statement; if a shard vanished under it (a rerun replaced it), re-snapshot once."""
        import duckdb

        try:
            self._build_shared(sql)
            return self._fetch(sql, params)
        except (duckdb.IOException, duckdb.InvalidInputException):
            self.refresh()
            self._build_shared(sql)
            return self._fetch(sql, params)

    def _fetch(self, sql: str, params: list | None = None) -> Rows:
        cursor = self.con.execute(sql, params) if params else self.con.execute(sql)
        if cursor.description is None:
            return Rows([], [])
        columns = [d[0] for d in cursor.description]
        return Rows(columns, cursor.fetchall())

    def row_count(self, table: str) -> int:
        """Rows of the table in this snapshot."""
        return int(self.counts.get(table) or 0)

    def close(self) -> None:
        self.con.close()
        for folder in self._pins:
            shutil.rmtree(folder, ignore_errors=True)
        self._pins.clear()
        try:
            (self.root / SNAPSHOTS).rmdir()
        except OSError:
            pass  # another audit still holds a snapshot


def _link(src: Path, folder: Path) -> str | None:
    """A hard link to src in folder; None when src vanished (a shard removed since the listing)."""
    dst = folder / src.name
    try:
        os.link(src, dst)
    except FileNotFoundError:
        return None
    return str(dst)


def _mask_area_arrow(masks: pa.Array) -> pa.Array:
    """The mask_area SQL function: pycocotools' area of each COCO RLE struct in a vector, in one call
    per 255 masks (one call per mask cost most of the mask checks' time). An RLE's area is the sum of
    its foreground runs, decoded from `counts` alone (pycocotools' rleFrString reads no size), so
    every mask is handed over with one shared size: building a Python list of [h, w] per mask cost
    several times the decoding at 10^6 masks."""
    import numpy as np
    from pycocotools import mask as mask_utils

    masks = masks.combine_chunks() if isinstance(masks, pa.ChunkedArray) else masks
    valid = np.asarray(masks.is_valid().to_numpy(zero_copy_only=False), bool)
    kept = masks.filter(pa.array(valid)) if not valid.all() else masks
    size = [1, 1]  # unused by the area
    counts = kept.field("counts").cast(pa.binary()).to_pylist()
    areas = np.zeros(len(masks), np.int64)
    with collector_paused():  # it ran over and over while the dicts were built: ~2/3 of the time
        rles = [{"size": size, "counts": rle} for rle in counts]
        if rles:
            # pycocotools' area() of a list fails from 256 items on (it counts them in a uint8): chunks of 255
            areas[valid] = np.concatenate([mask_utils.area(rles[k : k + 255]) for k in range(0, len(rles), 255)])
    return pa.array(areas, pa.int64(), mask=~valid)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ----- running -----
def run_check(db: AuditDatabase, check: Check, examples: bool = False) -> CheckResult:
    started = time.perf_counter()
    result = CheckResult(
        name=check.name, measures=check.measures, status="n/a", metric=check.metric,
        warn=str(check.warn) if check.warn else None, fail=str(check.fail) if check.fail else None,
        sql=check.path.read_text(),
    )
    missing = [t for t in check.requires if db.row_count(t) == 0]
    if missing:
        expected = [t for t in missing if t in db.run.writers]
        if expected:  # the run should have filled it: an empty table is a failure, not "n/a"
            result.status = "fail"
            result.note = "; ".join(f"no rows in {t}, which {', '.join(db.run.writers[t])} should have written"
                                    for t in expected)
            excuses = db.run.random_weight_excuses()
            if all(t in excuses for t in expected):
                result.note = f"expected with random-weight models: {'; '.join(excuses[t] for t in expected)}"
        else:
            result.note = f"no rows in {', '.join(missing)}"
        result.seconds = time.perf_counter() - started
        return result
    try:
        if "setup" in check.sections:
            db.query(check.sections["setup"])
        if "summary" in check.sections:
            result.summary = db.query(check.sections["summary"])
        metric = db.query(check.sections["metric"])
        result.value = _metric_value(metric, check)
        result.status = grade(check, result.value)
        if result.value is None:
            result.note = "nothing to measure"
        elif result.status in ("warn", "fail"):
            result.note = _metric_note(metric)
        if examples and result.status in ("warn", "fail") and "examples" in check.sections:
            result.examples = db.query(check.sections["examples"])
        if result.status in ("warn", "fail") and check.random_weights and db.run.random_weight_stages:
            result.note = f"expected with random-weight models: {check.random_weights}"
    except Exception as err:  # a broken user check must not hide the others
        result.status, result.note = "error", f"{type(err).__name__}: {err}".splitlines()[0][:300]
    result.seconds = time.perf_counter() - started
    return result


def _metric_value(metric: Rows, check: Check) -> float | None:
    if not metric.rows:
        return None
    column = check.metric if check.metric in metric.columns else metric.columns[0]
    value = metric.rows[0][metric.columns.index(column)]
    return None if value is None else float(value)


def _metric_note(metric: Rows) -> str:
    """A metric statement may name what tripped it in a `note` column."""
    if "note" not in metric.columns or not metric.rows:
        return ""
    return str(metric.rows[0][metric.columns.index("note")] or "")


def run_audit(root: str | Path, checks: list[Check] | None = None, examples: bool = False,
              skip: frozenset[str] = frozenset()) -> list[CheckResult]:
    db = AuditDatabase(root, skip=skip)
    try:
        return [run_check(db, check, examples) for check in (checks or load_checks())]
    finally:
        db.close()


def shell_statements(root: str | Path) -> list[str]:
    """CREATE VIEW statements for the DuckDB CLI over the tables' current versions."""
    db = AuditDatabase(root)
    try:
        statements = []
        for table, version in snapshot(root).items():  # the real paths: the shell outlives this audit
            if version.empty:
                statements.append(_empty_view(db, table))
            else:
                statements.append(view_sql(db.con, table, version) + ";")
        statements.append(db._table_rows_view() + ";")
        statements.append(db._lineage_view() + ";")
        statements += [f"CREATE OR REPLACE VIEW {name} AS {body};" for name, body in SHARED_TABLES.items()]
        statements += [_frozen_table(db, name) for name in ("run_stages", "stage_commits", "random_weight_tables", "prices")]
        return statements
    finally:
        db.close()


def _frozen_table(db: AuditDatabase, name: str) -> str:
    """A registered in-memory table (what run.json and the commit records said) as a CREATE statement."""
    rows = db._fetch(f"SELECT * FROM {name}")
    described = db._fetch(f"DESCRIBE {name}").rows
    columns = ", ".join(f'"{column}" {ctype}' for column, ctype, *_ in described)
    values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows.rows)
    insert = f" INSERT INTO {name} VALUES {values};" if values else ""
    return f"CREATE OR REPLACE TABLE {name} ({columns});{insert}"


def _literal(value: Any) -> str:
    return "NULL" if value is None else str(value) if isinstance(value, int | float) else _quote(str(value))


def _empty_view(db: AuditDatabase, table: str) -> str:
    described = db._fetch(f"DESCRIBE {table}").rows
    columns = ", ".join(f"CAST(NULL AS {ctype}) AS {name}" for name, ctype, *_ in described)
    return f"CREATE OR REPLACE VIEW {table} AS SELECT {columns} WHERE false;"
