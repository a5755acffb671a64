"""YAML with bounds: every YAML file the zoo reads (recipes, a run's config.yaml, sweeps, reproduction specs, the
catalog's stored configs) goes through `load`, which refuses, before anything is copied or walked, a document that
is too large or that expands too far.

PyYAML's safe loader shares the object behind an alias, so a "billion laughs" document (nine levels of ten aliases
to the level below) loads in microseconds into 10**9 leaves by reference, and hangs or exhausts memory in the first
code that walks or copies it (a deep copy, a key check, json.dumps). `load` counts the nodes the document would have
with every alias expanded, on the composed node graph (each distinct node once, memoised), and refuses beyond
`MAX_NODES`. A leaf module: it imports nothing of zoo.
"""
from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: the largest reproduction spec is ~10 kB
MAX_NODES = 100_000  # nodes after expanding aliases: a recipe has ~100, a reproduction spec a few thousand


class YAMLLimitError(ValueError):
    """A YAML document over the size or expansion bounds (the message says which and by how much)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that checks the expanded size of each composed document before constructing it."""

    def compose_document(self):  # noqa: ANN201 - PyYAML's signature
        node = super().compose_document()
        expanded_size(node)
        return node


def expanded_size(root: yaml.Node, limit: int = MAX_NODES) -> int:
    """Nodes of `root` with every alias expanded; YAMLLimitError beyond `limit` or for a recursive alias."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YAMLLimitError("an alias refers to a node that contains it (a recursive document)")
        open_nodes.add(key)
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                raise YAMLLimitError(f"it expands to more than {limit:,} nodes (aliases repeating blocks: a "
                                     f"'billion laughs' document?)")
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)


def load(text: str | bytes) -> Any:
    """`yaml.safe_load` within the bounds; YAMLLimitError (or yaml.YAMLError for invalid YAML) otherwise."""
    if len(text) > MAX_BYTES:
        raise YAMLLimitError(f"it is {len(text):,} bytes, over the {MAX_BYTES:,}-byte limit for a YAML file the zoo "
                             f"reads")
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
