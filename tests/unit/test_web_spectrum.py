"""registry/web/spectrum.py: a card's singular values as an SVG, small multiples."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from markupsafe import Markup

from registry.web.spectrum import (
    BAR_HEIGHT,
    MAX_BARS_PER_MODULE,
    spectrum_svg,
)

SVG = "{http://www.w3.org/2000/svg}"


def _module(name: str, values: list[float], rank: int | None = None, **extra: Any) -> dict:
    return {
        "name": f"base_model.model.{name}",
        "rank": rank if rank is not None else len(values),
        "alpha": 16.0,
        "singular_values": values,
        "singular_values_truncated": False,
        "energy_top_k": {"1": 0.6},
        "frobenius_norm": 1.0,
        **extra,
    }


def _root(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises if not well-formed XML


def _classes(element: ET.Element) -> set[str]:
    return set(element.get("class", "").split())


def _bars(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}rect") if "spectrum-bar" in _classes(e)]


def _rows(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}g") if "spectrum-row" in _classes(e)]


def _texts(root: ET.Element, css: str) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{SVG}text") if css in _classes(e)]


MODULES = [
    _module("model.layers.0.self_attn.q_proj", [3.1, 1.2, 0.8123, 0.1], rank=4),
    _module("model.layers.0.self_attn.v_proj", [6.2, 2.0], rank=2),
    _module("model.layers.1.mlp.down_proj", [1.0, 0.5, 0.25, 0.125, 0.0625, 0.0, 0.0, 0.0]),
]


def test_returns_markup_of_well_formed_svg() -> None:
    out = spectrum_svg(MODULES)
    assert isinstance(out, Markup)
    root = _root(out)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Singular values of 3 modules"
    assert root.findtext(f"{SVG}title") == "Singular values of 3 modules"
    assert root.get("width") == "100%"
    view_box = [float(x) for x in root.get("viewBox", "").split()]
    assert len(view_box) == 4 and view_box[2] > 0 and view_box[3] > 0


def test_one_row_and_one_bar_per_value() -> None:
    root = _root(spectrum_svg(MODULES))
    rows = _rows(root)
    assert len(rows) == 3
    assert [len(_bars(row)) for row in rows] == [4, 2, 8]
    assert len(_bars(root)) == sum(len(m["singular_values"]) for m in MODULES)


def test_labels_drop_prefix_and_show_rank() -> None:
    labels = _texts(_root(spectrum_svg(MODULES)), "spectrum-label")
    assert labels[0] == "model.layers.0.self_attn.q_proj · rank 4"
    assert labels[1] == "model.layers.0.self_attn.v_proj · rank 2"
    assert not any("base_model" in label for label in labels)


def test_name_without_prefix_is_kept_whole() -> None:
    module = _module("x", [1.0])
    module["name"] = "transformer.h.0.attn.c_attn"
    assert _texts(_root(spectrum_svg([module])), "spectrum-label") == [
        "transformer.h.0.attn.c_attn · rank 1"
    ]


def _height(bar: ET.Element) -> float:
    return float(bar.get("height", "nan"))


def test_heights_proportional_to_sigma_over_all_rows() -> None:
    root = _root(spectrum_svg(MODULES))
    rows = _rows(root)
    tallest = 6.2  # the largest σ over every module shown
    for row, module in zip(rows, MODULES, strict=True):
        for bar, sigma in zip(_bars(row), module["singular_values"], strict=True):
            assert _height(bar) == pytest.approx(BAR_HEIGHT * sigma / tallest, abs=1e-3)
    heights = [_height(bar) for bar in _bars(root)]
    assert max(heights) == pytest.approx(BAR_HEIGHT)
    # the tallest bar is the v_proj row's σ1
    assert _height(_bars(rows[1])[0]) == pytest.approx(BAR_HEIGHT)
    first = _bars(rows[0])
    assert _height(first[0]) / _height(first[1]) == pytest.approx(3.1 / 1.2, rel=1e-3)
    across = _height(first[0]) / _height(_bars(rows[2])[0])
    assert across == pytest.approx(3.1 / 1.0, rel=1e-3)


def test_bars_stand_on_the_row_axis_and_do_not_overlap() -> None:
    root = _root(spectrum_svg(MODULES))
    for row in _rows(root):
        axes = [e for e in row.iter(f"{SVG}line") if "spectrum-axis" in _classes(e)]
        assert len(axes) == 1
        base = float(axes[0].get("y1", "nan"))
        bars = _bars(row)
        for bar in bars:
            bottom = float(bar.get("y", "nan")) + _height(bar)
            assert bottom == pytest.approx(base, abs=2e-3)
        xs = [float(bar.get("x", "nan")) for bar in bars]
        widths = [float(bar.get("width", "nan")) for bar in bars]
        assert all(w > 0 for w in widths)
        for i in range(len(xs) - 1):
            assert xs[i] + widths[i] <= xs[i + 1] + 1e-6
    # bar i sits at the same x in every row
    firsts = [float(_bars(row)[1].get("x", "nan")) for row in _rows(root)]
    assert len(set(firsts)) == 1


def test_every_bar_titles_its_value() -> None:
    root = _root(spectrum_svg(MODULES))
    titles = [bar.findtext(f"{SVG}title") for bar in _bars(_rows(root)[0])]
    assert titles == ["σ1 = 3.1", "σ2 = 1.2", "σ3 = 0.8123", "σ4 = 0.1"]


def test_more_modules_than_shown() -> None:
    modules = [_module(f"model.layers.{i}.q_proj", [float(i + 1)]) for i in range(30)]
    root = _root(spectrum_svg(modules, max_modules=24))
    assert len(_rows(root)) == 24
    assert _texts(root, "spectrum-more") == ["… and 6 more modules"]
    assert root.get("aria-label") == "Singular values of 30 modules (24 shown)"
    # scaled by the rows shown: the 24th module's σ = 24 is the full height
    assert max(_height(b) for b in _bars(root)) == pytest.approx(BAR_HEIGHT)
    assert _height(_bars(root)[0]) == pytest.approx(BAR_HEIGHT / 24, abs=1e-3)
    one_more = _root(spectrum_svg(modules[:3], max_modules=2))
    assert _texts(one_more, "spectrum-more") == ["… and 1 more module"]
    assert _texts(_root(spectrum_svg(modules[:24])), "spectrum-more") == []


def test_default_max_modules_is_24() -> None:
    modules = [_module(f"m{i}", [1.0]) for i in range(25)]
    root = _root(spectrum_svg(modules))
    assert len(_rows(root)) == 24
    assert _texts(root, "spectrum-more") == ["… and 1 more module"]


def test_max_modules_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        spectrum_svg(MODULES, max_modules=0)


def test_bars_per_module_are_capped() -> None:
    big = _module("wide", [1.0] * (MAX_BARS_PER_MODULE + 50), rank=MAX_BARS_PER_MODULE + 50)
    root = _root(spectrum_svg([big, _module("small", [1.0, 0.5])]))
    assert [len(_bars(row)) for row in _rows(root)] == [MAX_BARS_PER_MODULE, 2]
    label = _texts(root, "spectrum-label")[0]
    assert f"first {MAX_BARS_PER_MODULE} σ" in label
    view_width = float(root.get("viewBox", "").split()[2])
    assert all(
        float(b.get("x", "0")) + float(b.get("width", "0")) <= view_width for b in _bars(root)
    )


def test_card_truncated_values_are_noted() -> None:
    module = _module("t", [2.0, 1.0], rank=64, singular_values_truncated=True)
    label = _texts(_root(spectrum_svg([module])), "spectrum-label")[0]
    assert label == "t · rank 64 (first 2 σ)"


def test_escapes_module_names() -> None:
    evil = _module("x<script>alert(1)</script>&\"'", [1.0])
    out = spectrum_svg([evil])
    assert "<script" not in out
    root = _root(out)
    assert not list(root.iter("script")) and not list(root.iter(f"{SVG}script"))
    assert _texts(root, "spectrum-label") == ["x<script>alert(1)</script>&\"' · rank 1"]


def test_nan_inf_negative_and_non_numbers_count_as_zero() -> None:
    values: list[Any] = [2.0, math.nan, math.inf, -math.inf, -1.0, "7", None, True, 1.0]
    root = _root(spectrum_svg([_module("n", values, rank=9)]))
    bars = _bars(root)
    assert len(bars) == len(values)
    assert [_height(b) for b in bars] == pytest.approx(
        [BAR_HEIGHT, 0, 0, 0, 0, 0, 0, 0, BAR_HEIGHT / 2], abs=1e-3
    )
    invalid = ["spectrum-bar-invalid" in _classes(b) for b in bars]
    assert invalid == [False, True, True, True, True, True, True, True, False]
    text = spectrum_svg([_module("n", values)])
    assert "nan" not in text.lower() and "inf" not in text.lower()


def test_all_zero_or_all_invalid_values() -> None:
    root = _root(spectrum_svg([_module("z", [0.0, 0.0]), _module("w", [math.nan])]))
    assert [_height(b) for b in _bars(root)] == [0.0, 0.0, 0.0]


def test_module_without_values_and_odd_items() -> None:
    modules: list[Any] = [
        _module("empty", []),
        {"name": 5, "rank": "8", "singular_values": "bad"},
        {},
    ]
    root = _root(spectrum_svg(modules))
    assert len(_rows(root)) == 3
    assert _bars(root) == []
    labels = _texts(root, "spectrum-label")
    assert labels[0] == "empty · rank 0 (no singular values)"
    assert labels[1] == "? · rank ? (no singular values)"


def test_empty_modules() -> None:
    out = spectrum_svg([])
    root = _root(out)
    assert root.get("role") == "img"
    assert root.get("aria-label") == "no LoRA modules"
    assert _texts(root, "spectrum-empty") == ["no LoRA modules"]
    assert _bars(root) == []


def test_deterministic() -> None:
    modules = [
        _module(f"model.layers.{i}.q_proj", [1.0 / (i + 1), 0.3, math.nan]) for i in range(5)
    ]
    first = spectrum_svg(modules)
    again = spectrum_svg([dict(m) for m in modules])
    assert first == again
    assert str(first).encode() == str(again).encode()


def test_numbers_have_fixed_decimals() -> None:
    root = _root(spectrum_svg(MODULES))
    assert root.get("width") == "100%"
    assert re.fullmatch(r"0 0 \d+\.\d{3} \d+\.\d{3}", root.get("viewBox", ""))
    for element in root.iter():
        if element is root:
            continue
        for name in ("x", "y", "width", "height", "x1", "y1", "x2", "y2"):
            value = element.get(name)
            if value is not None:
                assert re.fullmatch(r"\d+\.\d{3}", value), (name, value)


@pytest.mark.parametrize("modules", [MODULES, [], [_module("n", [math.nan, 1.0])]])
def test_no_inline_style_and_no_presentation_attributes(modules: list[dict]) -> None:
    out = spectrum_svg(modules, max_modules=2)
    root = _root(out)
    assert not list(root.iter(f"{SVG}style"))
    presentation = {"style", "fill", "stroke", "stroke-width", "font-size", "font-family"}
    presentation |= {"text-anchor", "opacity", "color"}
    for element in root.iter():
        assert not presentation & set(element.attrib), element.attrib
    assert "style" not in out
    assert "fill=" not in out
    for element in root.iter():
        if element.tag in {f"{SVG}rect", f"{SVG}text", f"{SVG}line", f"{SVG}g", f"{SVG}svg"}:
            assert any(c.startswith("spectrum") for c in _classes(element)), element.tag
