"""How registry results read as text: Markdown / CSV tables, one result as a cell (value ± spread, seeds, protocol
tag), column headers that say what ± is, and a protocol in one line. Shared by `zoo registry` and its HTML report."""
from __future__ import annotations

import csv
import io
from typing import Any, Sequence

from zoo.catalog import Row

PROTOCOL_KEYS = ("n_samples", "n_real", "pairs", "splits", "reference_split", "sample_split", "backbone", "weights",
                 "weights_sha256", "backbone_weights", "backbone_weights_sha256", "iw_samples", "critic_backbone",
                 "critic_steps", "critic_train_data", "n_test", "kid_subset_size", "seed", "msssim_protocol", "scales",
                 "window", "normalize", "batch_size", "smoothing_std", "num_z")


def markdown(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def as_csv(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")


def cell(row: Row, metric: str, tag: bool = False) -> str:
    """value ± spread; `(n seeds)` for a mean over seeds; `[id]` when the column mixes protocols (`tag`)."""
    if metric not in row.results:
        return ""
    r = row.results[metric]
    text = f"{r['value']:.4g}" + ("" if r["std"] is None else f" ± {r['std']:.2g}")
    text += f" ({r['n_seeds']} seeds)" if r.get("n_seeds", 1) > 1 else ""
    text += "" if r.get("complete", True) else " (stopped early)"
    return text + (f" [{r['protocol_id'][:6]}]" if tag else "")


def header(metric: str, rows: list[Row]) -> str:
    """The column name with what its ± is (split std, per-pair std, standard error, ...)."""
    kinds = sorted({r.results[metric]["spread"] for r in rows if metric in r.results and r.results[metric]["spread"]
                    and r.results[metric].get("n_seeds", 1) == 1})
    seeds = any(r.results[metric].get("n_seeds", 1) > 1 for r in rows if metric in r.results)
    said = kinds + (["std over seeds where (n seeds)"] if seeds else [])
    return metric + (f" (± {'; '.join(said)})" if said else "")


def protocol_summary(protocol: dict[str, Any]) -> str:
    parts = []
    for key in PROTOCOL_KEYS:
        if key in protocol and protocol[key] is not None:
            value = protocol[key]
            parts.append(f"{key}={str(value)[:12] if key.endswith('sha256') else value}")
    return ", ".join(parts)
