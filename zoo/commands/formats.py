"""How catalog results read as text: Markdown / CSV tables, one result as a cell (value ± spread, seeds, protocol
tag), column headers that say what ± is, and a protocol in one line. Shared by `zoo registry` and its HTML report."""
from __future__ import annotations

import csv
import html
import io
import re
from typing import Any, Sequence

from zoo.catalog import Row

PROTOCOL_KEYS = ("n_samples", "n_real", "pairs", "splits", "reference_split", "sample_split", "backbone", "weights",
                 "weights_sha256", "backbone_weights", "backbone_weights_sha256", "iw_samples", "critic_backbone",
                 "critic_steps", "critic_train_data", "n_test", "kid_subset_size", "seed", "msssim_protocol", "scales",
                 "window", "normalize", "batch_size", "smoothing_std", "num_z")


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def markdown_text(value: Any) -> str:
    """A value as the text of a Markdown table cell: raw HTML shown, not rendered (`<`, `>`, `&` escaped), a `|`
    kept inside its cell, a newline kept from ending the row. Catalog values are data from anyone."""
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(markdown_text(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(markdown_text(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def csv_cell(value: Any) -> Any:
    """A value safe to open in a spreadsheet: text starting like a formula gets a leading `'` (shown as text, as
    OWASP recommends); numbers, and text that is a number such as "-5.3", stay as they are (negative metric values
    are common and must stay numeric)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def as_csv(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_cell(h) for h in header])
    writer.writerows([csv_cell(c) for c in row] for row in rows)
    return buffer.getvalue().rstrip("\n")


def number(value: Any, spec: str) -> str:
    """A number formatted by `spec`; anything else (a damaged or crafted catalog value) as its text."""
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def cell(row: Row, metric: str, tag: bool = False) -> str:
    """value ± spread; `(n seeds)` for a mean over seeds; `[id]` when the column mixes protocols (`tag`)."""
    if metric not in row.results:
        return ""
    r = row.results[metric]
    text = number(r["value"], ".4g") + ("" if r["std"] is None else f" ± {number(r['std'], '.2g')}")
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


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def protocol_differences(protocols: dict[str, dict[str, Any]], ignore: frozenset[str] = frozenset()
                         ) -> dict[str, str]:
    """For protocols of one metric (id -> protocol), the settings that tell them apart and are not in their summary
    line (hidden dataset options such as limit or pad_to, a dataset version, ...): id -> "key=value, ...". Two ids
    whose summaries read the same then still show why they are two."""
    if len(protocols) < 2:
        return {}
    flat = {pid: {k: v for k, v in _flat(p).items() if k.split(".")[0] not in ignore} for pid, p in protocols.items()}
    keys = sorted({k for f in flat.values() for k in f})
    differing = [k for k in keys if len({repr(f.get(k, "(unset)")) for f in flat.values()}) > 1
                 and k not in PROTOCOL_KEYS]
    return {pid: ", ".join(f"{k}={f.get(k, '(unset)')}" for k in differing) for pid, f in flat.items() if differing}


def protocol_summary(protocol: dict[str, Any]) -> str:
    parts = []
    for key in PROTOCOL_KEYS:
        if key in protocol and protocol[key] is not None:
            value = protocol[key]
            parts.append(f"{key}={str(value)[:12] if key.endswith('sha256') else value}")
    return ", ".join(parts)
