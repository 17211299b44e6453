"""A lineage graph answer drawn as SVG: a layered (Sugiyama) layout by ``grandalf``.

``grandalf`` is pure Python (no Graphviz binary at run time). Parents sit above the
versions derived from them; each node is a labelled box coloured by kind, each edge a
path with an arrow and its relation (and weight) as label. A readable version's box
links to its web page, ``/adapters/{namespace}/{name}/versions/{n}``, a base model's
to ``/base-models/{name}``. Every text and attribute
is XML-escaped. The web page reuses :func:`render_svg` as is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from loreg.lineage_text import edge_label, node_label
from loreg.vocabulary import LineageNodeKind

if TYPE_CHECKING:
    from grandalf.layouts import SugiyamaLayout

CHAR_WIDTH = 7.2  # px per character of the 12 px monospace font
LABEL_CHAR_WIDTH = 6.6  # the same for the 11 px edge labels
BOX_HEIGHT = 40.0
BOX_PAD = 16.0
X_GAP = 30.0  # least space between two boxes of one layer
Y_GAP = 60.0  # space between layers (room for edge labels)
MARGIN = 20.0

#: Fill colour per node kind; a hidden (private) version is grey.
KIND_COLOURS = {
    LineageNodeKind.VERSION.value: "#dbeafe",
    LineageNodeKind.BASE_MODEL.value: "#dcfce7",
    LineageNodeKind.UPSTREAM.value: "#ffedd5",
    LineageNodeKind.UNKNOWN.value: "#f3f4f6",
}
HIDDEN_COLOUR = "#e5e7eb"
#: grandalf keeps layout state on its classes (Tarjan's counter ``Vertex.ncur``) and
#: sets the recursion limit: one layout at a time per process (pages render in threads).
_LAYOUT_LOCK = threading.Lock()


@dataclass
class _View:
    """What grandalf reads (``w``, ``h``) and writes (``xy``) on a vertex."""

    w: float
    h: float
    xy: tuple[float, float] = (0.0, 0.0)


@dataclass
class _EdgeView:
    """Receives the routed points of an edge from grandalf."""

    points: list[tuple[float, float]] = field(default_factory=list)

    def setpath(self, points: list[tuple[float, float]]) -> None:
        """Called by the layout with the edge's points (ends and bends)."""
        self.points = [(float(x), float(y)) for x, y in points]


@dataclass(frozen=True)
class Box:
    """A laid-out node: its centre and size."""

    key: str
    x: float
    y: float
    w: float
    h: float


def _box_width(label: str) -> float:
    return max(len(label), 8) * CHAR_WIDTH + 2 * BOX_PAD


def layout(graph: dict[str, Any]) -> tuple[dict[str, Box], list[list[tuple[float, float]]]]:
    """The position of every node (by key) and the points of every edge (in edge order).

    Layers come from grandalf's Sugiyama layout; boxes of one layer are then pushed
    apart where its coordinate balancing let them touch, so no two boxes overlap.
    """
    # imported here: the layout library (and the numpy it loads) is only for drawings
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    nodes = {n["key"]: n for n in [graph["root"], *graph.get("nodes", [])]}
    for e in graph["edges"]:
        nodes.setdefault(e["parent"]["key"], e["parent"])
        nodes.setdefault(e["child"]["key"], e["child"])
    vertices = {key: Vertex(key) for key in nodes}
    for key, vertex in vertices.items():
        vertex.view = _View(_box_width(node_label(nodes[key])), BOX_HEIGHT)
    edges = []
    for e in graph["edges"]:
        edge = Edge(vertices[e["parent"]["key"]], vertices[e["child"]["key"]])
        edge.view = _EdgeView()
        edges.append(edge)
    offset = 0.0
    with _LAYOUT_LOCK:
        g = Graph(list(vertices.values()), edges)
        for component in g.C:
            sugiyama = SugiyamaLayout(component)
            sugiyama.xspace, sugiyama.yspace = X_GAP, Y_GAP
            sugiyama.init_all()
            sugiyama.draw()
            left = _separate(sugiyama)
            right = max(v.view.xy[0] + v.view.w / 2 for layer in sugiyama.layers for v in layer)
            for v in component.sV:
                v.view.xy = (v.view.xy[0] - left + offset, v.view.xy[1])
            for e in component.sE:
                e.view.points = [(x - left + offset, y) for x, y in e.view.points]
            offset += right - left + X_GAP
    boxes = {
        key: Box(key, v.view.xy[0] + MARGIN, v.view.xy[1] + MARGIN, v.view.w, v.view.h)
        for key, v in vertices.items()
    }
    paths = []
    for edge in edges:
        parent, child = boxes[edge.v[0].data], boxes[edge.v[1].data]
        bends = [(x + MARGIN, y + MARGIN) for x, y in edge.view.points[1:-1]]
        start = (parent.x, parent.y + parent.h / 2)
        end = (child.x, child.y - child.h / 2)
        paths.append([start, *bends, end])
    return boxes, paths


def _separate(sugiyama: SugiyamaLayout) -> float:
    """Push apart, left to right, the members of each layer that overlap (boxes and the
    bend points of long edges alike), then route the edges again; the leftmost x drawn."""
    for layer in sugiyama.layers:
        row = sorted(layer, key=lambda v: v.view.xy[0])
        for prev, cur in zip(row, row[1:], strict=False):
            least = prev.view.xy[0] + (prev.view.w + cur.view.w) / 2 + X_GAP
            if cur.view.xy[0] < least:
                cur.view.xy = (least, cur.view.xy[1])
    sugiyama.draw_edges()
    return min(v.view.xy[0] - v.view.w / 2 for layer in sugiyama.layers for v in layer)


def _node_href(node: dict[str, Any]) -> str | None:
    """The web page of a readable node: a version's page, or a base model's."""
    if node.get("private"):
        return None
    if node.get("kind") == LineageNodeKind.BASE_MODEL and node.get("ref"):
        return f"/base-models/{quote(str(node['ref']), safe='/')}"
    if node.get("kind") != LineageNodeKind.VERSION:
        return None
    if not node.get("namespace") or not node.get("name"):
        return None
    page = f"/adapters/{quote(str(node['namespace']), safe='')}/{quote(str(node['name']), safe='')}"
    number = node.get("version")
    return f"{page}/versions/{int(number)}" if isinstance(number, int) else page


def _attr(value: object) -> str:
    return quoteattr(str(value))


def _fmt(value: float) -> str:
    return f"{value:.1f}"


#: Where along an edge (from its parent end) its label sits: edges that share a child
#: (a combine's parents) or a parent (versions trained from one base) have spread
#: apart there, unlike at their middles.
LABEL_AT = 0.4
LABEL_HEIGHT = 13.0


def _label_anchor(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Where an edge's label starts: beside the point :data:`LABEL_AT` along its path."""
    lengths = [
        ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False)
    ]
    target = sum(lengths) * LABEL_AT
    for (x0, y0), (x1, y1), length in zip(points, points[1:], lengths, strict=False):
        if length > 0 and target <= length:
            t = target / length
            return x0 + (x1 - x0) * t + 4, y0 + (y1 - y0) * t
        target -= length
    x, y = points[-1] if points else (0.0, 0.0)
    return x + 4, y


def _spread_labels(
    anchors: list[tuple[float, float]], widths: list[float]
) -> list[tuple[float, float]]:
    """Move labels down, a line at a time, until none overlaps one placed before it."""
    placed: list[tuple[float, float, float]] = []  # x, y (baseline), width
    out = []
    for (x, y), w in zip(anchors, widths, strict=True):
        while any(
            x < px + pw and px < x + w and abs(y - py) < LABEL_HEIGHT for px, py, pw in placed
        ):
            y += LABEL_HEIGHT
        placed.append((x, y, w))
        out.append((x, y))
    return out


def render_svg(graph: dict[str, Any]) -> str:
    """The lineage graph answer as a standalone SVG document (text)."""
    boxes, paths = layout(graph)
    widths = [len(edge_label(e)) * LABEL_CHAR_WIDTH for e in graph["edges"]]
    anchors = _spread_labels([_label_anchor(points) for points in paths], widths)
    label_ends = [x + w for w, (x, _) in zip(widths, anchors, strict=True)]
    xs = [b.x + b.w / 2 for b in boxes.values()] + [x for p in paths for x, _ in p] + label_ends
    ys = (
        [b.y + b.h / 2 for b in boxes.values()]
        + [y for p in paths for _, y in p]
        + [y + 4 for _, y in anchors]
    )
    width = max(xs, default=0.0) + MARGIN
    height = max(ys, default=0.0) + MARGIN
    root_key = graph["root"]["key"]
    nodes = {n["key"]: n for n in [graph["root"], *graph.get("nodes", [])]}
    for e in graph["edges"]:
        nodes.setdefault(e["parent"]["key"], e["parent"])
        nodes.setdefault(e["child"]["key"], e["child"])
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{_fmt(width)}" height="{_fmt(height)}" '
        f'viewBox="0 0 {_fmt(width)} {_fmt(height)}" font-family="monospace" font-size="12">',
        f"<title>{escape('lineage of ' + node_label(graph['root']))}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#374151"/></marker></defs>',
    ]
    for edge, points, (lx, ly) in zip(graph["edges"], paths, anchors, strict=True):
        d = " ".join(
            f"{'M' if i == 0 else 'L'} {_fmt(x)} {_fmt(y)}" for i, (x, y) in enumerate(points)
        )
        out.append(
            f'<g class="edge" data-from={_attr(edge["parent"]["key"])} '
            f"data-to={_attr(edge['child']['key'])} data-relation={_attr(edge['relation'])}>"
            f'<path d="{d}" fill="none" stroke="#374151" stroke-width="1.2" '
            'marker-end="url(#arrow)"/>'
            f'<text x="{_fmt(lx)}" y="{_fmt(ly)}" fill="#374151" font-size="11">'
            f"{escape(edge_label(edge))}</text></g>"
        )
    for key, box in boxes.items():
        node = nodes[key]
        fill = HIDDEN_COLOUR if node.get("private") else KIND_COLOURS.get(node.get("kind"), "#fff")
        kind = "private" if node.get("private") else node.get("kind")
        stroke = 3 if key == root_key else 1
        group = (
            f'<g class="node" data-key={_attr(key)} data-kind={_attr(kind)}>'
            f'<rect x="{_fmt(box.x - box.w / 2)}" y="{_fmt(box.y - box.h / 2)}" '
            f'width="{_fmt(box.w)}" height="{_fmt(box.h)}" rx="6" fill="{fill}" '
            f'stroke="#1f2937" stroke-width="{stroke}"/>'
            f'<text x="{_fmt(box.x)}" y="{_fmt(box.y + 4)}" text-anchor="middle">'
            f"{escape(node_label(node))}</text></g>"
        )
        href = _node_href(node)
        if href is not None:
            group = f"<a href={_attr(href)} xlink:href={_attr(href)}>{group}</a>"
        out.append(group)
    out.append("</svg>")
    return "\n".join(out) + "\n"


__all__ = ["KIND_COLOURS", "Box", "layout", "render_svg"]
