"""Ranking and grouping results: means over training seeds, one row per checkpoint and protocol combination, the best
row per model, sorting, and the Pareto front of two metrics. Pure functions over Result and Row."""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Sequence

from zoo.catalog.protocols import NON_PROTOCOL_KEYS
from zoo.catalog.rows import Result, Row


def aggregate_seeds(results: list[Result]) -> list[Result]:
    """Results of runs of one recipe that differ only in training seed, at one step, under one protocol and metric,
    become one result: mean, std over seeds (ddof 1), n_seeds. Others pass through."""
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        key = (r.recipe_key or f"run:{r.checkpoint_id}", r.dataset, r.model, r.step, r.metric, r.protocol_id)
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        latest = {}  # one result per checkpoint (a repeated evaluation under one protocol: the newest)
        for r in members:
            latest[r.checkpoint_id] = r
        members = list(latest.values())
        if len(members) == 1 or len({r.train_seed for r in members}) != len(members):
            out += members
            continue
        values = [r.value for r in members]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        first = members[0]
        seeds = sorted(r.train_seed for r in members)
        out.append(dataclasses.replace(first, value=mean, std=std, spread=f"std over {len(values)} training seeds",
                                       n_seeds=len(values), runs=tuple(r.run for r in members),
                                       run=f"{first.run} (+{len(values) - 1}, seeds {','.join(map(str, seeds))})",
                                       checkpoint_id=-min(r.checkpoint_id for r in members),
                                       complete=all(r.complete for r in members)))
    return out


def wide_rows(results: list[Result]) -> list[Row]:
    """One Row per checkpoint and combination of its metrics' protocols; of repeated results of one metric under
    one protocol the newest counts (the same protocol measured twice)."""
    by_ckpt: dict[int, dict[str, dict[str, Result]]] = {}
    for r in results:
        by_ckpt.setdefault(r.checkpoint_id, {}).setdefault(r.metric, {})[r.protocol_id] = r
    rows = []
    for cid, metrics in by_ckpt.items():
        names = sorted(metrics)
        for combo in itertools.product(*(list(metrics[m].values()) for m in names)):
            if not _consistent(combo):
                continue
            first = combo[0]
            rows.append(Row(cid, first.run, first.model, first.dataset, first.step, first.path, first.sha256,
                            first.run_commit, {r.metric: r.as_dict() for r in combo}, first.n_seeds))
    return rows


_SIZE_KEYS = frozenset({"n_samples", "n_real", "n_test", "n_train", "n_fake", "pairs", "reference_split"})


def _consistent(combo: Sequence[Result]) -> bool:
    """Results of one metric family in one row ("msssim" and "msssim.reference") must come from one protocol: no
    key they share (sizes aside) may differ, so a small3 diversity never sits beside a tf5 reference."""
    for i, a in enumerate(combo):
        for b in combo[i + 1:]:
            if a.metric.split(".")[0] != b.metric.split(".")[0]:
                continue
            shared = (a.protocol.keys() & b.protocol.keys()) - NON_PROTOCOL_KEYS - _SIZE_KEYS
            if any(a.protocol[k] != b.protocol[k] for k in shared):
                return False
    return True


def best_per_model(rows: list[Row], metric: str, higher: bool | None) -> list[Row]:
    """The best row for each (model, dataset, protocol of `metric`) by `metric` (rows without it are dropped):
    results under different protocols are never ranked against each other."""
    best: dict[tuple[Any, Any, Any], Row] = {}
    for row in rows:
        value = row.value(metric)
        if value is None:
            continue
        key = (row.model, row.dataset, row.protocol_id(metric))
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
