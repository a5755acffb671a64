"""Protocol identity: which results are comparable. `protocol_id` hashes a protocol without the fields that name
the source or report outcomes (NON_PROTOCOL_KEYS); equal ids mean comparable numbers."""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoo.catalog.rows import Result

# protocol fields that say which source was evaluated or what came out, not how: left out of protocol_id
NON_PROTOCOL_KEYS = frozenset({"source", "model", "sample_split", "processes", "clamp_rate", "negative_term_rate",
                               "stopped_early", "critic_steps_requested"})
N_KEYS = ("n_samples", "n_real", "n_test", "num_points")  # the first one a protocol has is the result's n


def protocol_id(protocol: dict[str, Any]) -> str:
    """12 hex digits identifying a protocol: equal ids mean comparable numbers."""
    core = {k: v for k, v in protocol.items() if k not in NON_PROTOCOL_KEYS}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:12]


def protocol_n(protocol: dict[str, Any]) -> int | None:
    """The sample count a protocol records; a field that is not a whole number (a damaged or crafted table) counts
    as unrecorded rather than stopping every command that reads the table."""
    counts = (protocol.get(k) for k in N_KEYS)
    return next((int(v) for v in counts if isinstance(v, (int, float)) or (isinstance(v, str) and v.isdigit())), None)


def matches(result: Result, protocol: str) -> bool:
    """--protocol: an id prefix, or comma-separated key=value pairs that must all hold."""
    if "=" not in protocol:
        return result.protocol_id.startswith(protocol)
    for pair in protocol.split(","):
        key, _, value = pair.partition("=")
        if str(result.protocol.get(key.strip())) != value.strip():
            return False
    return True
