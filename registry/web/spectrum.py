"""The singular-value spectrum of a computed adapter card, drawn as an SVG chart.

Small multiples: one row per LoRA module, one vertical bar per singular value
(σ1 first, the largest). Every bar is scaled by the largest σ over all the modules
shown, so rows compare with each other; bar *i* sits at the same x in every row.

The page's CSP allows no inline style, so the SVG carries no ``style`` attribute, no
``<style>`` element and no presentation attribute (``fill``, ``stroke``, ``font-*``,
``text-anchor``...): only geometry and CSS classes. The stylesheet colours these:

``spectrum``
    the ``<svg>`` element itself.
``spectrum-row``
    the ``<g>`` holding one module's label, axis and bars.
``spectrum-label``
    a row's ``<text>``: shortened module name and rank.
``spectrum-axis``
    a row's base ``<line>``, under its bars.
``spectrum-bar``
    a ``<rect>`` per singular value (its ``<title>`` gives the value); a value that was
    not a finite, non-negative number is drawn as 0 and has the extra class
    ``spectrum-bar-invalid``.
``spectrum-more``
    the ``<text>`` "… and N more modules" after the last row shown.
``spectrum-empty``
    the ``<text>`` "no LoRA modules" of the chart for an empty module list.

The output is deterministic (same input, byte-identical SVG); coordinates have
:data:`DECIMALS` decimals. Every text taken from the input is XML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

#: Prefix PEFT puts before every module name; dropped from the row labels.
NAME_PREFIX = "base_model.model."
#: Bars drawn per module at most (a rank above this shows its first σ only).
MAX_BARS_PER_MODULE = 128
#: Decimals of every coordinate in the SVG.
DECIMALS = 3

WIDTH = 640.0
MARGIN = 8.0
LABEL_HEIGHT = 16.0  # text line above a row's bars
BAR_HEIGHT = 40.0  # a bar of the largest σ shown
ROW_GAP = 10.0
ROW_HEIGHT = LABEL_HEIGHT + BAR_HEIGHT + ROW_GAP
LINE_HEIGHT = 18.0  # the "… and N more" line and the empty chart's text
BAR_FILL = 0.8  # share of a bar's slot that the bar covers
MAX_SLOT = 24.0  # widest slot per bar, so a low rank does not draw slabs

_NAMESPACE = "http://www.w3.org/2000/svg"


@dataclass(frozen=True)
class _Row:
    """One module as drawn: its label and σ values (cleaned, capped)."""

    label: str
    values: list[float]
    invalid: list[bool]


def _num(value: float) -> str:
    """A coordinate with :data:`DECIMALS` decimals ("-0.000" written as "0.000")."""
    text = f"{value:.{DECIMALS}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _sigma(raw: Any) -> tuple[float, bool]:
    """``raw`` as a σ value: (value, was_valid); non-finite, negative, non-numbers: 0."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return 0.0, False
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        return 0.0, False
    return value, True


def _short_name(name: Any) -> str:
    """The module name without PEFT's ``base_model.model.`` prefix."""
    text = name if isinstance(name, str) else "?"
    return text[len(NAME_PREFIX) :] if text.startswith(NAME_PREFIX) else text


def _row(module: Any) -> _Row:
    """Read one item of a card's ``modules`` list, tolerating missing or odd fields."""
    item: Mapping[str, Any] = module if isinstance(module, Mapping) else {}
    raw = item.get("singular_values")
    raw_values: Sequence[Any] = raw if isinstance(raw, list | tuple) else ()
    pairs = [_sigma(v) for v in raw_values[:MAX_BARS_PER_MODULE]]
    rank = item.get("rank")
    label = f"{_short_name(item.get('name'))} · rank {rank if isinstance(rank, int) else '?'}"
    if len(raw_values) > MAX_BARS_PER_MODULE or item.get("singular_values_truncated") is True:
        label += f" (first {len(pairs)} σ)"
    elif not pairs:
        label += " (no singular values)"
    return _Row(label=label, values=[v for v, _ in pairs], invalid=[not ok for _, ok in pairs])


def _svg(height: float, summary: str, body: list[str]) -> Markup:
    """Wrap ``body`` (already escaped parts) in the root element."""
    label = escape(summary)
    head = (
        f'<svg xmlns="{_NAMESPACE}" class="spectrum" viewBox="0 0 {_num(WIDTH)} {_num(height)}"'
        f' width="100%" preserveAspectRatio="xMinYMin meet" role="img" aria-label="{label}">'
        f"<title>{label}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def spectrum_svg(modules: list[dict[str, Any]], *, max_modules: int = 24) -> Markup:
    """Draw the singular values of a card's ``modules`` as an SVG chart (small multiples).

    One row per module, at most ``max_modules`` rows, then a line "… and N more modules".
    Bar heights are σ_i over the largest σ of the rows shown. An empty list gives a small
    chart that says "no LoRA modules". The CSS classes are listed in the module docstring.
    """
    if max_modules < 1:
        raise ValueError("max_modules must be at least 1")
    if not modules:
        text = "no LoRA modules"
        height = 2 * MARGIN + LINE_HEIGHT
        empty = (
            f'<text class="spectrum-empty" x="{_num(MARGIN)}" y="{_num(MARGIN + 13)}">{text}</text>'
        )
        return _svg(height, text, [empty])

    rows = [_row(module) for module in modules[:max_modules]]
    hidden = len(modules) - len(rows)
    tallest = max((v for row in rows for v in row.values), default=0.0)
    slots = max((len(row.values) for row in rows), default=0)
    slot = min((WIDTH - 2 * MARGIN) / slots, MAX_SLOT) if slots else 0.0
    bar_width = slot * BAR_FILL

    body: list[str] = []
    for index, row in enumerate(rows):
        top = MARGIN + index * ROW_HEIGHT
        base = top + LABEL_HEIGHT + BAR_HEIGHT
        parts = [
            '<g class="spectrum-row">',
            f'<text class="spectrum-label" x="{_num(MARGIN)}" y="{_num(top + 12)}">'
            f"{escape(row.label)}</text>",
            f'<line class="spectrum-axis" x1="{_num(MARGIN)}" y1="{_num(base)}"'
            f' x2="{_num(WIDTH - MARGIN)}" y2="{_num(base)}"/>',
        ]
        for i, (value, invalid) in enumerate(zip(row.values, row.invalid, strict=True)):
            height = BAR_HEIGHT * value / tallest if tallest > 0 else 0.0
            css = "spectrum-bar spectrum-bar-invalid" if invalid else "spectrum-bar"
            shown = "not a finite non-negative number, drawn as 0" if invalid else f"{value:.4g}"
            parts.append(
                f'<rect class="{css}" x="{_num(MARGIN + i * slot + (slot - bar_width) / 2)}"'
                f' y="{_num(base - height)}" width="{_num(bar_width)}" height="{_num(height)}">'
                f"<title>σ{i + 1} = {escape(shown)}</title></rect>"
            )
        parts.append("</g>")
        body.append("".join(parts))

    height = MARGIN + len(rows) * ROW_HEIGHT
    if hidden:
        noun = "module" if hidden == 1 else "modules"
        body.append(
            f'<text class="spectrum-more" x="{_num(MARGIN)}" y="{_num(height + 12)}">'
            f"… and {hidden} more {noun}</text>"
        )
        height += LINE_HEIGHT
    height += MARGIN

    count = len(modules)
    summary = f"Singular values of {count} module{'' if count == 1 else 's'}"
    if hidden:
        summary += f" ({len(rows)} shown)"
    return _svg(height, summary, body)
