"""Text renderings of a lineage graph answer (``GET /v1/lineage/...`` JSON): tree, Mermaid, DOT.

All three are built from the JSON alone, so the SDK needs no dependency for them (the
SVG drawing needs a layout library and is drawn by the server). The node and edge
labels are shared with the server's SVG renderer, so every rendering names things
alike. Edges point from parent to child, the way an adapter was derived.
"""

from __future__ import annotations

import json
from typing import Any

from loreg.vocabulary import LineageDirection, LineageNodeKind

HIDDEN_LABEL = "(a private version)"


def node_label(node: dict[str, Any]) -> str:
    """What a node is called: its ref, ``base model NAME``, or a private placeholder."""
    if node.get("private"):
        return HIDDEN_LABEL
    if node.get("kind") == LineageNodeKind.BASE_MODEL:
        return f"base model {node.get('ref')}"
    return str(node.get("ref"))


def edge_label(edge: dict[str, Any]) -> str:
    """The relation of an edge, with its weight when it has one (``combined_from w=0.7``)."""
    weight = (edge.get("params") or {}).get("weight")
    return f"{edge.get('relation')} w={weight}" if weight is not None else str(edge.get("relation"))


def to_tree(graph: dict[str, Any]) -> str:
    """The plain text listing: the root, then one ``child <-relation- parent`` line per edge."""
    lines = [node_label(graph["root"])]
    if not graph["edges"]:
        none = (
            "no recorded dependents" if graph.get("direction") == "down" else "no recorded parents"
        )
        lines.append(f"  ({none})")
    heading = None
    for edge in graph["edges"]:
        way = edge.get("direction", LineageDirection.UP.value)
        if graph.get("direction") == LineageDirection.BOTH and way != heading:
            heading = way
            lines.append("  parents:" if way == LineageDirection.UP else "  dependents:")
        params = ", ".join(f"{k}={v}" for k, v in sorted((edge.get("params") or {}).items()))
        lines.append(
            f"  {node_label(edge['child'])} <-{edge['relation']}- {node_label(edge['parent'])}"
            + (f"  [{params}]" if params else "")
        )
    if graph.get("truncated"):
        lines.append("  ... (truncated)")
    if graph.get("depth_limited"):
        lines.append(f"  ... (more past depth {graph.get('depth')})")
    return "\n".join(lines) + "\n"


def _nodes(graph: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node once, by key (the answer's ``nodes``; rebuilt from the edges if absent)."""
    if graph.get("nodes"):
        return list(graph["nodes"])
    seen: dict[str, dict[str, Any]] = {}
    for node in [graph["root"], *(n for e in graph["edges"] for n in (e["child"], e["parent"]))]:
        seen.setdefault(node["key"], node)
    return list(seen.values())


def _mermaid_text(text: str) -> str:
    # inside a quoted Mermaid label only entity codes are safe for these characters
    for char, code in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text


def to_mermaid(graph: dict[str, Any]) -> str:
    """A Mermaid ``flowchart`` of the graph: one node per lineage node, parents above."""
    lines = ["flowchart TD"]
    for node in _nodes(graph):
        lines.append(f'  {node["key"]}["{_mermaid_text(node_label(node))}"]')
    for edge in graph["edges"]:
        label = _mermaid_text(edge_label(edge))
        lines.append(f'  {edge["parent"]["key"]} -->|"{label}"| {edge["child"]["key"]}')
    lines.append(f"  classDef root stroke-width:3px\n  class {graph['root']['key']} root")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return json.dumps(text)  # a DOT quoted string: backslash and quote escaped alike


def to_dot(graph: dict[str, Any]) -> str:
    """A Graphviz DOT ``digraph`` of the graph: boxes for nodes, labelled edges."""
    lines = ["digraph lineage {", "  node [shape=box];"]
    root = graph["root"]["key"]
    for node in _nodes(graph):
        style = ", penwidth=3" if node["key"] == root else ""
        kind = "private" if node.get("private") else node.get("kind")
        label = _dot_text(node_label(node))
        lines.append(f"  {node['key']} [label={label}, class={_dot_text(str(kind))}{style}];")
    for edge in graph["edges"]:
        lines.append(
            f"  {edge['parent']['key']} -> {edge['child']['key']} "
            f"[label={_dot_text(edge_label(edge))}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


__all__ = ["HIDDEN_LABEL", "edge_label", "node_label", "to_dot", "to_mermaid", "to_tree"]
