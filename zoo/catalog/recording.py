"""What training writes to the catalog: a run and its checkpoints (`record_training`), and the new place of moved
checkpoint directories (`relocate_checkpoints`). Neither ever stops a training run: a failure is a warning."""
from __future__ import annotations

import sys
from pathlib import Path

from zoo import yaml_limits
from zoo.catalog.provenance import checkpoint_sha256, git_commit
from zoo.catalog.store import Catalog, _key, default_path

RECORD_LOCK_TIMEOUT_S = 10.0  # training does not wait longer for the catalog: it warns and goes on


def relocate_checkpoints(moves: dict[Path, Path], path: str | Path | None = None) -> None:
    """Point the catalog rows of moved checkpoint directories (a resumed run's abandoned branch) at their new place,
    so that results measured on them stay with them and a new checkpoint at the old path gets its own row. Only an
    existing table is touched; a failure warns and training goes on."""
    table = Path(path) if path is not None else default_path()
    if not moves or not table.is_file():
        return
    try:
        with Catalog(table, lock_timeout=RECORD_LOCK_TIMEOUT_S) as catalog, catalog._write() as db:
            for old, new in moves.items():
                db.execute("UPDATE checkpoints SET path = ? WHERE path = ?", (_key(new), _key(old)))
    except Exception as err:  # noqa: BLE001 - the catalog must never stop a training run
        print(f"zoo: warning: could not update the catalog {table} for the moved checkpoints: "
              f"{type(err).__name__}: {err} (training is unaffected)", file=sys.stderr)


def record_training(out_dir: str | Path, recipe: str | None = None, path: str | Path | None = None,
                    name: str | None = None) -> bool:
    """Record a training run and its checkpoints (`zoo train` calls this at the start and at the end of training);
    `name` defaults to the folder's name. Never raises: an unreachable catalog prints a warning and training
    goes on. Returns success."""
    from zoo.training.checkpoint import CONFIG, checkpoint_dirs
    out = Path(out_dir)
    try:
        config = (out / CONFIG).read_text()
        tree = yaml_limits.load(config) or {}
        with Catalog(path, lock_timeout=RECORD_LOCK_TIMEOUT_S) as catalog:
            run_id = catalog.register_run(out, name=name, model=(tree.get("model") or {}).get("name"),
                                          dataset=(tree.get("data") or {}).get("name"), recipe=recipe, config=config,
                                          git_commit=git_commit())
            known = {rec[0] for rec in catalog.query("SELECT path FROM checkpoints WHERE run_id = ? AND sha256 IS NOT "
                                                     "NULL", (run_id,))}
            for ckpt in checkpoint_dirs(out):
                if _key(ckpt) not in known:
                    step = int(ckpt.name.split("_")[-1])
                    catalog.register_checkpoint(run_id, step, ckpt, checkpoint_sha256(ckpt))
        return True
    except Exception as err:  # noqa: BLE001 - the catalog must never stop a training run
        print(f"zoo: warning: could not record the run in the catalog {path or default_path()}: "
              f"{type(err).__name__}: {err} (training is unaffected)", file=sys.stderr)
        return False
