"""The catalog's SQLite store: the schema, the file's default place, opening it (read-only or for writing), locking,
and the writes and reads of runs, checkpoints and results. Several processes may write at once: the database runs in
WAL mode with a busy timeout, and every write is one short `BEGIN IMMEDIATE` transaction, so concurrent writers queue
instead of failing and no row is lost.
"""
from __future__ import annotations

import datetime
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from zoo import yaml_limits
from zoo.catalog.protocols import matches, protocol_id, protocol_n
from zoo.catalog.provenance import checkpoint_sha256, recipe_key, train_seed
from zoo.catalog.ranking import wide_rows
from zoo.catalog.rows import Result, Row

DEFAULT_PATH = Path("runs") / "catalog.sqlite"
ENV = "ZOO_CATALOG"
# the names before issue 22, still honoured: the variable while ENV is unset, the file while it is the only one
OLD_ENV = "ZOO_REGISTRY"
OLD_DEFAULT_PATH = Path("runs") / "registry.sqlite"
SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    out_dir TEXT NOT NULL UNIQUE,
    model TEXT,
    dataset TEXT,
    recipe TEXT,
    config TEXT,
    git_commit TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id),
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    std REAL,
    protocol TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_checkpoint ON results(checkpoint_id, metric, id);
"""
# schema 2: columns added to the results of schema 1 (old rows get protocol_id etc. computed when read)
_RESULT_COLUMNS = {"spread": "TEXT", "n": "INTEGER", "seed": "INTEGER", "protocol_id": "TEXT", "code_commit": "TEXT",
                   "zoo_version": "TEXT", "complete": "INTEGER", "metadata": "TEXT"}


def default_path() -> Path:
    """The catalog's file when no path is given: ZOO_CATALOG; else ZOO_REGISTRY (its old name, with a notice to
    rename it); else runs/catalog.sqlite, or runs/registry.sqlite where only that older file exists.

    An old file is used where it lies, never renamed: a process of an older zoo may hold it open (and would recreate
    it), and the database and its -wal/-shm companions cannot be renamed in one atomic step.
    """
    env = os.environ.get(ENV)
    if not env and os.environ.get(OLD_ENV):
        env = os.environ[OLD_ENV]
        _say_once(f"zoo: DeprecationWarning: {OLD_ENV} is deprecated; rename it to {ENV} (read only while {ENV} is "
                  f"unset)")
    if env:
        return Path(env).expanduser()
    if OLD_DEFAULT_PATH.is_file():
        if not DEFAULT_PATH.exists():
            _say_once(f"zoo: using the catalog at its old name {OLD_DEFAULT_PATH}; rename it and its -wal/-shm files "
                      f"to {DEFAULT_PATH.name} when no zoo process is running, or set {ENV}")
            return OLD_DEFAULT_PATH
        _say_once(f"zoo: warning: both {DEFAULT_PATH} and the older {OLD_DEFAULT_PATH} exist; using {DEFAULT_PATH} "
                  f"(the other's rows are not read: set {ENV} to read it)")
    return DEFAULT_PATH


_said: set[str] = set()


def _say_once(text: str) -> None:
    """A notice on stderr, once per process however often the default path is asked for."""
    if text not in _said:
        _said.add(text)
        print(text, file=sys.stderr, flush=True)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class CatalogError(RuntimeError):
    """The catalog cannot be opened or read: a damaged file, a missing one opened read-only, or a held lock."""


LOCK_NOTICE_S = 2.0  # a writer that waits longer than this for the lock says so


def describe_error(path: str | Path | None, err: Exception, lock_timeout: float = BUSY_TIMEOUT_S) -> CatalogError:
    """A one-line CatalogError for an sqlite error on the table at `path`: what happened and what to do."""
    path = Path(path) if path is not None else default_path()
    text = str(err)
    if "locked" in text or "busy" in text:
        return CatalogError(f"catalog {str(path)!r} is locked by another process (waited {lock_timeout:.0f} s); "
                            f"find the process holding it (e.g. `fuser {path}`) or retry later")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return CatalogError(f"catalog {str(path)!r} is damaged ({text}); move it away: runs are re-recorded by "
                            f"`zoo train --resume auto` and results by `zoo evaluate`")
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return CatalogError(f"catalog {str(path)!r} cannot be written ({text}); reading it still works "
                            f"(`zoo registry list`); point {ENV} (or --registry) at a writable file to record")
    return CatalogError(f"catalog {str(path)!r}: {text}")


class Catalog:
    """The catalog at `path` (default: `default_path()`, i.e. ZOO_CATALOG, else runs/catalog.sqlite); created on
    first use.

    Args:
        readonly: open for reading only (listing, comparing, exporting): works on a read-only file or folder and
            never creates or alters the table.
        lock_timeout: seconds a write waits for another process's lock before failing (CatalogError naming the
            file); waits longer than LOCK_NOTICE_S are announced on stderr.
    """

    def __init__(self, path: str | Path | None = None, *, readonly: bool = False,
                 lock_timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(path) if path is not None else default_path()
        self.lock_timeout, self._announced = lock_timeout, False
        try:
            if readonly:
                self._conn = self._open_readonly()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(str(self.path), timeout=LOCK_NOTICE_S, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            if readonly:
                self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails now on a damaged file
                return
            self._locked(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
            self._conn.execute("PRAGMA foreign_keys = ON")
            with self._write() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                have = {rec[1] for rec in db.execute("PRAGMA table_info(results)").fetchall()}
                for column, kind in _RESULT_COLUMNS.items():  # a schema-1 table gains the new columns in place
                    if column not in have:
                        db.execute(f"ALTER TABLE results ADD COLUMN {column} {kind}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise CatalogError(f"catalog {str(self.path)!r} does not exist (set {ENV} or --registry to the file that "
                               f"`zoo train` / `zoo evaluate` wrote)")
        uri = self.path.resolve().as_uri()
        try:  # a WAL database needs its -shm file: a read-only folder falls back to an immutable snapshot
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)

    def _error(self, err: Exception) -> CatalogError:
        return describe_error(self.path, err, self.lock_timeout)

    def _locked(self, fn):
        """Run a statement that may wait for another process's lock: after LOCK_NOTICE_S say so, then wait up to
        `lock_timeout` in all (a silent wait once stalled a 3-step training run for 152 s)."""
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or time.monotonic() >= deadline:
                    raise
                if not self._announced:
                    self._announced = True
                    print(f"zoo: the catalog {self.path} is locked by another process; waiting up to "
                          f"{self.lock_timeout:.0f} s", file=sys.stderr, flush=True)
                time.sleep(0.05)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- transactions ---------------------------------------------------------------------------------------------
    class _Tx:
        def __init__(self, catalog: "Catalog"):
            self.catalog = catalog

        def __enter__(self) -> sqlite3.Connection:
            conn = self.catalog._conn
            try:
                self.catalog._locked(lambda: conn.execute("BEGIN IMMEDIATE"))  # take the write lock up front
            except sqlite3.DatabaseError as err:
                raise self.catalog._error(err) from None
            return conn

        def __exit__(self, exc_type, *rest) -> None:
            self.catalog._conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _write(self) -> "_Tx":
        return Catalog._Tx(self)

    # ---- writes ---------------------------------------------------------------------------------------------------
    def register_run(self, out_dir: str | Path, *, name: str | None = None, model: str | None = None,
                     dataset: str | None = None, recipe: str | None = None, config: str | None = None,
                     git_commit: str | None = None) -> int:
        """Insert or update the run whose directory is `out_dir` (a resumed run keeps its id); returns its id."""
        key = _key(out_dir)
        with self._write() as db:
            row = db.execute("SELECT id FROM runs WHERE out_dir = ?", (key,)).fetchone()
            if row is None:
                cur = db.execute("INSERT INTO runs (name, out_dir, model, dataset, recipe, config, git_commit, "
                                 "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 (name or Path(key).name, key, model, dataset, recipe, config, git_commit, now()))
                return int(cur.lastrowid)
            db.execute("UPDATE runs SET name = COALESCE(?, name), model = COALESCE(?, model), dataset = COALESCE(?, "
                       "dataset), recipe = COALESCE(?, recipe), config = COALESCE(?, config), git_commit = COALESCE(?, "
                       "git_commit) WHERE id = ?", (name, model, dataset, recipe, config, git_commit, row["id"]))
            return int(row["id"])

    def register_checkpoint(self, run_id: int, step: int, path: str | Path, sha256: str | None = None) -> int:
        """Insert or update the checkpoint at `path`; returns its id."""
        key = _key(path)
        with self._write() as db:
            row = db.execute("SELECT id FROM checkpoints WHERE path = ?", (key,)).fetchone()
            if row is None:
                cur = db.execute("INSERT INTO checkpoints (run_id, step, path, sha256, created_at) VALUES (?, ?, ?, ?, "
                                 "?)", (run_id, step, key, sha256, now()))
                return int(cur.lastrowid)
            db.execute("UPDATE checkpoints SET run_id = ?, step = ?, sha256 = COALESCE(?, sha256) WHERE id = ?",
                       (run_id, step, sha256, row["id"]))
            return int(row["id"])

    def register_checkpoint_dir(self, ckpt: str | Path, *, recipe: str | None = None, commit: str | None = None
                                ) -> int:
        """Record a checkpoint directory written by the trainer (and its run, `<run>/checkpoints/step_N`), reading
        its config.yaml and trainer state; returns the checkpoint id."""
        from zoo.training.checkpoint import CONFIG, read_trainer_state
        ckpt = Path(ckpt).resolve()
        run_dir = ckpt.parent.parent
        config = (ckpt / CONFIG).read_text()
        tree = yaml_limits.load(config) or {}
        run_id = self.register_run(run_dir, model=(tree.get("model") or {}).get("name"),
                                   dataset=(tree.get("data") or {}).get("name"), recipe=recipe, config=config,
                                   git_commit=commit)
        step = int(read_trainer_state(ckpt)["step"])
        return self.register_checkpoint(run_id, step, ckpt, checkpoint_sha256(ckpt))

    def register_source(self, label: str, dataset: str) -> int:
        """A real-data reference (`data:NAME:SPLIT`) as a run with one step-0 checkpoint; returns the checkpoint id."""
        run_id = self.register_run(label, name=label, model="data", dataset=dataset)
        return self.register_checkpoint(run_id, 0, label)

    def add_result(self, checkpoint_id: int, metric: str, value: float, std: float | None,
                   protocol: dict[str, Any], *, spread: str | None = None, code_commit: str | None = None,
                   zoo_version: str | None = None, metadata: dict[str, Any] | None = None) -> int:
        """Append one result (never replacing another): `spread` says what `std` is; `code_commit` and
        `zoo_version` identify the evaluation code; `protocol["stopped_early"]` marks a protocol not run in full."""
        text = json.dumps(protocol, sort_keys=True, default=str)
        protocol = json.loads(text)
        seed = protocol.get("seed")
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO results (checkpoint_id, metric, value, std, protocol, created_at, spread, n, seed, "
                "protocol_id, code_commit, zoo_version, complete, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?)", (checkpoint_id, metric, float(value), None if std is None else float(std), text, now(), spread,
                          protocol_n(protocol), None if seed is None else int(seed), protocol_id(protocol),
                          code_commit, zoo_version, 0 if protocol.get("stopped_early") else 1,
                          json.dumps(metadata, default=str) if metadata else None))
            return int(cur.lastrowid)

    # ---- reads ----------------------------------------------------------------------------------------------------
    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, tuple(args)).fetchall()

    def runs(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM runs ORDER BY id")

    def results(self, model: str | None = None, dataset: str | None = None, metrics: Sequence[str] | None = None,
                protocol: str | None = None) -> list[Result]:
        """Every result (all of them, oldest first) with its checkpoint and run. `protocol` keeps, of each metric with
        a result that matches it, the results whose protocol id starts with it or whose protocol has every `key=value`
        of a comma-separated list; metrics with no matching result are kept whole."""
        where, args = [], []
        for column, value in (("r.model", model), ("r.dataset", dataset)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if metrics:
            where.append(f"s.metric IN ({', '.join('?' for _ in metrics)})")
            args += list(metrics)
        sql = ("SELECT c.id, r.name, r.model, r.dataset, c.step, c.path, c.sha256, r.git_commit, r.config, s.* "
               "FROM results s JOIN checkpoints c ON c.id = s.checkpoint_id JOIN runs r ON r.id = c.run_id" +
               (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.id")
        out = []
        for rec in self.query(sql, args):
            proto = json.loads(rec["protocol"])
            out.append(Result(
                checkpoint_id=rec[0], run=rec[1], model=rec[2], dataset=rec[3], step=rec[4], path=rec[5],
                sha256=rec[6], run_commit=rec[7], recipe_key=recipe_key(rec[8]), train_seed=train_seed(rec[8]),
                metric=rec["metric"], value=rec["value"], std=rec["std"], spread=rec["spread"],
                n=rec["n"] if rec["n"] is not None else protocol_n(proto),
                seed=rec["seed"] if rec["seed"] is not None else proto.get("seed"), protocol=proto,
                protocol_id=rec["protocol_id"] or protocol_id(proto), code_commit=rec["code_commit"],
                zoo_version=rec["zoo_version"], complete=rec["complete"] != 0, created_at=rec["created_at"],
                metadata=json.loads(rec["metadata"]) if rec["metadata"] else {}))
        if protocol is None:
            return out
        # the filter picks the protocol of the metrics it matches; a metric none of whose results match it (the other
        # axis of a plot, say) keeps its results
        picked = {r.metric for r in out if matches(r, protocol)}
        return [r for r in out if r.metric not in picked or matches(r, protocol)]

    def rows(self, model: str | None = None, dataset: str | None = None, protocol: str | None = None) -> list[Row]:
        """Every checkpoint with its results: one row per combination of protocols of its metrics (one row when
        each metric was run under one protocol), checkpoints without results included, oldest first."""
        sql = ("SELECT c.id, r.name, r.model, r.dataset, c.step, c.path, c.sha256, r.git_commit FROM checkpoints c "
               "JOIN runs r ON r.id = c.run_id" + "".join(f" AND {col} = ?" for col, v in (("r.model", model),
                                                                                           ("r.dataset", dataset))
                                                          if v is not None) + " ORDER BY c.id")
        args = [v for v in (model, dataset) if v is not None]
        bare = {rec[0]: Row(rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7], {})
                for rec in self.query(sql, args)}
        results = self.results(model, dataset, protocol=protocol)
        with_results = {r.checkpoint_id for r in results}
        return wide_rows(results) + [row for cid, row in bare.items() if cid not in with_results and protocol is None]

    def count(self, table: str) -> int:
        if table not in ("runs", "checkpoints", "results"):
            raise ValueError(f"unknown table {table!r}; tables: runs, checkpoints, results")
        return int(self.query(f"SELECT COUNT(*) FROM {table}")[0][0])


def _key(path: str | Path) -> str:
    """Paths are stored absolute; `data:...` labels as they are."""
    text = str(path)
    return text if text.startswith("data:") else str(Path(text).expanduser().resolve())
