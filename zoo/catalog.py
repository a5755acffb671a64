"""The model registry table: one SQLite file of runs, checkpoints and metric results.

    runs         id, name, out_dir (unique), model, dataset, recipe, config (resolved YAML), git_commit, created_at
    checkpoints  id, run_id, step, path (unique), sha256, created_at
    results      id, checkpoint_id, metric, value, std, protocol (JSON), created_at

Default file `runs/registry.sqlite` (relative to the working directory); the ZOO_REGISTRY environment variable or an
explicit path overrides it. `zoo train` records runs and checkpoints, `zoo evaluate` results, and
`zoo registry` reads it. Several processes may write at once: the database runs in WAL mode with a busy timeout,
and every write is one short `BEGIN IMMEDIATE` transaction, so concurrent writers queue instead of failing and no
row is lost.
"""
from __future__ import annotations

import datetime
import json
import os
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

DEFAULT_PATH = Path("runs") / "registry.sqlite"
ENV = "ZOO_REGISTRY"
SCHEMA_VERSION = 1
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


def default_path() -> Path:
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else DEFAULT_PATH


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit(repo: str | Path | None = None) -> str | None:
    """HEAD of the checkout holding `repo` (default: this package), with "-dirty" when files differ; None without
    git."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True,
                               text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def checkpoint_sha256(ckpt: str | Path) -> str:
    """sha256 over the checkpoint's weights: model.safetensors, then ema.safetensors when present."""
    import hashlib

    from zoo.training.checkpoint import EMA_WEIGHTS, WEIGHTS
    digest = hashlib.sha256()
    for name in (WEIGHTS, EMA_WEIGHTS):
        path = Path(ckpt) / name
        if path.is_file():
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


@dataclass
class Row:
    """One checkpoint with its run and its latest result per metric."""

    checkpoint_id: int
    run: str
    model: str | None
    dataset: str | None
    step: int
    path: str
    sha256: str | None
    git_commit: str | None
    results: dict[str, dict[str, Any]]  # metric -> {value, std, protocol, created_at}

    def value(self, metric: str) -> float | None:
        return self.results[metric]["value"] if metric in self.results else None


class Catalog:
    """The registry table at `path` (default: ZOO_REGISTRY, else runs/registry.sqlite); created on first use."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self._retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        self._conn.execute("PRAGMA foreign_keys = ON")
        with self._write() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- transactions ---------------------------------------------------------------------------------------------
    @staticmethod
    def _retry(fn, attempts: int = 20):
        """Run fn, retrying 'database is locked' (which the busy timeout does not cover for WAL set-up)."""
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))

    class _Tx:
        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            Catalog._retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))  # take the write lock up front
            return self.conn

        def __exit__(self, exc_type, *rest) -> None:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _write(self) -> "_Tx":
        return Catalog._Tx(self._conn)

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
        tree = yaml.safe_load(config) or {}
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
                   protocol: dict[str, Any]) -> int:
        with self._write() as db:
            cur = db.execute("INSERT INTO results (checkpoint_id, metric, value, std, protocol, created_at) VALUES "
                             "(?, ?, ?, ?, ?, ?)", (checkpoint_id, metric, float(value),
                                                    None if std is None else float(std),
                                                    json.dumps(protocol, sort_keys=True, default=str), now()))
            return int(cur.lastrowid)

    # ---- reads ----------------------------------------------------------------------------------------------------
    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, tuple(args)).fetchall()

    def runs(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM runs ORDER BY id")

    def rows(self, model: str | None = None, dataset: str | None = None) -> list[Row]:
        """Every checkpoint with its run and its latest result per metric, oldest checkpoint first."""
        where, args = [], []
        for column, value in (("r.model", model), ("r.dataset", dataset)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = ("SELECT c.id, r.name, r.model, r.dataset, c.step, c.path, c.sha256, r.git_commit FROM checkpoints c "
               "JOIN runs r ON r.id = c.run_id" + (" WHERE " + " AND ".join(where) if where else "") +
               " ORDER BY c.id")
        rows = {rec[0]: Row(rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7], {})
                for rec in self.query(sql, args)}
        latest = ("SELECT s.checkpoint_id, s.metric, s.value, s.std, s.protocol, s.created_at FROM results s WHERE "
                  "s.id = (SELECT MAX(t.id) FROM results t WHERE t.checkpoint_id = s.checkpoint_id AND t.metric = "
                  "s.metric)")
        for rec in self.query(latest):
            if rec[0] in rows:
                rows[rec[0]].results[rec[1]] = {"value": rec[2], "std": rec[3], "protocol": json.loads(rec[4]),
                                                "created_at": rec[5]}
        return list(rows.values())

    def count(self, table: str) -> int:
        if table not in ("runs", "checkpoints", "results"):
            raise ValueError(f"unknown table {table!r}; tables: runs, checkpoints, results")
        return int(self.query(f"SELECT COUNT(*) FROM {table}")[0][0])


def _key(path: str | Path) -> str:
    """Paths are stored absolute; `data:...` labels as they are."""
    text = str(path)
    return text if text.startswith("data:") else str(Path(text).expanduser().resolve())


def best_per_model(rows: list[Row], metric: str, higher: bool | None) -> list[Row]:
    """The best row for each (model, dataset) by `metric` (rows without it are dropped)."""
    best: dict[tuple[Any, Any], Row] = {}
    for row in rows:
        value = row.value(metric)
        if value is None:
            continue
        key = (row.model, row.dataset)
        if key not in best or _better(value, best[key].value(metric), higher):
            best[key] = row
    return list(best.values())


def _better(a: float, b: float | None, higher: bool | None) -> bool:
    return b is None or (a > b if higher in (True, None) else a < b)


def sort_rows(rows: list[Row], metric: str, higher: bool | None) -> list[Row]:
    """Best first by `metric` (descending when higher is better or unknown, else ascending); rows without it last."""
    have = [r for r in rows if r.value(metric) is not None]
    missing = [r for r in rows if r.value(metric) is None]
    return sorted(have, key=lambda r: r.value(metric), reverse=higher is not False) + missing


def pareto_front(points: Sequence[tuple[float, float]], higher_x: bool = True, higher_y: bool = True) -> list[int]:
    """Indices of the points no other point dominates (at least as good on both axes, better on one), in order of x.
    """
    sx, sy = (1 if higher_x else -1), (1 if higher_y else -1)
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(sx * u >= sx * x and sy * v >= sy * y and (sx * u > sx * x or sy * v > sy * y)
                        for j, (u, v) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def iter_json_rows(rows: list[Row], metrics: Sequence[str]) -> Iterator[dict[str, Any]]:
    for r in rows:
        yield {"run": r.run, "model": r.model, "dataset": r.dataset, "step": r.step, "path": r.path,
               "sha256": r.sha256, "git_commit": r.git_commit,
               "results": {m: r.results[m] for m in metrics if m in r.results}}


def record_training(out_dir: str | Path, recipe: str | None = None, path: str | Path | None = None) -> bool:
    """Record a training run and its checkpoints (`zoo train` calls this at the start and at the end of training).
    Never raises: an unreachable registry table prints a warning and training goes on. Returns success."""
    from zoo.training.checkpoint import CONFIG, checkpoint_dirs
    out = Path(out_dir)
    try:
        config = (out / CONFIG).read_text()
        tree = yaml.safe_load(config) or {}
        with Catalog(path) as catalog:
            run_id = catalog.register_run(out, model=(tree.get("model") or {}).get("name"),
                                          dataset=(tree.get("data") or {}).get("name"), recipe=recipe, config=config,
                                          git_commit=git_commit())
            known = {rec[0] for rec in catalog.query("SELECT path FROM checkpoints WHERE run_id = ? AND sha256 IS NOT "
                                                     "NULL", (run_id,))}
            for ckpt in checkpoint_dirs(out):
                if _key(ckpt) not in known:
                    step = int(ckpt.name.split("_")[-1])
                    catalog.register_checkpoint(run_id, step, ckpt, checkpoint_sha256(ckpt))
        return True
    except Exception as err:  # noqa: BLE001 - the registry must never stop a training run
        import sys
        print(f"zoo: warning: could not record the run in the registry table {path or default_path()}: "
              f"{type(err).__name__}: {err} (training is unaffected)", file=sys.stderr)
        return False
