"""The catalog: one SQLite file of runs, checkpoints and metric results (the code's registry of models and metrics
is zoo/registry.py, another thing).

    runs         id, name, out_dir (unique), model, dataset, recipe, config (resolved YAML), git_commit, created_at
    checkpoints  id, run_id, step, path (unique), sha256, created_at
    results      id, checkpoint_id, metric, value, std, protocol (JSON), created_at, and (schema 2) spread (what
                 std is), n (samples or images), seed, protocol_id, code_commit, zoo_version, complete, metadata

Every result is kept: one checkpoint may hold several results of one metric under different protocols (1,000 and
50,000 samples), and readers compare only results whose `protocol_id` agrees (`protocol_id`: a hash of the protocol
without the fields that name the source or report outcomes, NON_PROTOCOL_KEYS).

Default file `runs/catalog.sqlite` (relative to the working directory); the ZOO_CATALOG environment variable or an
explicit path overrides it. The names before issue 22 still work: ZOO_REGISTRY while ZOO_CATALOG is unset (with a
notice to rename it), and an existing `runs/registry.sqlite` while no `runs/catalog.sqlite` exists (used in place,
never renamed; see `default_path`). `zoo train` records runs and checkpoints, `zoo evaluate` results, and
`zoo registry` reads it. Several processes may write at once: the database runs in WAL mode with a busy timeout,
and every write is one short `BEGIN IMMEDIATE` transaction, so concurrent writers queue instead of failing and no
row is lost.

One job a file, each importing only those listed above it (none imports zoo.commands):

    rows.py        Result and Row, what reads return
    protocols.py   protocol identity: protocol_id, protocol_n, matches
    provenance.py  where a result came from: git_commit, checkpoint_sha256, recipe_key, train_seed
    ranking.py     seed means, wide rows, best per model, sorting, Pareto front
    store.py       the SQLite store: schema, default path, locking, errors, the Catalog class
    recording.py   what training writes: record_training, relocate_checkpoints
"""
from zoo.catalog.protocols import N_KEYS, NON_PROTOCOL_KEYS, matches, protocol_id, protocol_n
from zoo.catalog.provenance import checkpoint_sha256, git_commit, recipe_key, train_seed
from zoo.catalog.ranking import aggregate_seeds, best_per_model, pareto_front, sort_rows, wide_rows
from zoo.catalog.recording import RECORD_LOCK_TIMEOUT_S, record_training, relocate_checkpoints
from zoo.catalog.rows import Result, Row
from zoo.catalog.store import (BUSY_TIMEOUT_S, DEFAULT_PATH, ENV, LOCK_NOTICE_S, OLD_DEFAULT_PATH, OLD_ENV,
                               SCHEMA_VERSION, Catalog, CatalogError, default_path, describe_error, now)

# Backwards-compatible alias: CatalogError was called RegistryError before issue 22 (the results table was "the
# registry table"). Kept so that `except RegistryError` in code written against that name still catches; new code
# says CatalogError.
RegistryError = CatalogError

__all__ = ["BUSY_TIMEOUT_S", "DEFAULT_PATH", "ENV", "LOCK_NOTICE_S", "NON_PROTOCOL_KEYS", "N_KEYS", "OLD_DEFAULT_PATH",
           "OLD_ENV", "RECORD_LOCK_TIMEOUT_S", "SCHEMA_VERSION", "Catalog", "CatalogError", "RegistryError", "Result",
           "Row", "aggregate_seeds", "best_per_model", "checkpoint_sha256", "default_path", "describe_error",
           "git_commit", "matches", "now", "pareto_front", "protocol_id", "protocol_n", "recipe_key",
           "record_training", "relocate_checkpoints", "sort_rows", "train_seed", "wide_rows"]
