"""Math tests for workers.ops.compress: rank reduction, fp16/bf16, int8 (docs/design.md §7)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from workers.errors import JobInputError
from workers.ops.compress import (
    INT8_FORMAT,
    cast_precision,
    dequantize_int8,
    int8_state_dict,
    quantize_int8,
    read_int8_state_dict,
    reduce_rank,
)
from workers.ops.lora import LoraFactors, lora_scale, peft_adapter_config

F64 = torch.float64
SHAPES = {"layers.0.q": (40, 24), "layers.0.down": (18, 50)}


def make_adapter(seed, rank=8, rslora=False, shapes=SHAPES, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return {
        path: LoraFactors(
            torch.randn(rank, k, generator=gen).to(dtype),
            torch.randn(d, rank, generator=gen).to(dtype),
            lora_scale(rank, 2 * rank, rslora),
        )
        for path, (d, k) in shapes.items()
    }


def dense_error2(old, new):
    """(‖ΔW‖², ‖ΔW' - ΔW‖²) densely in float64."""
    ref = old.delta(F64)
    return float(torch.linalg.norm(ref) ** 2), float(torch.linalg.norm(new.delta(F64) - ref) ** 2)


# --------------------------------------------------------------------------- rank


@pytest.mark.parametrize("rank", [1, 3, 8, 20])
def test_reduce_rank_error_squared_is_dropped_sigma_squared(rank):
    adapter = make_adapter(1, rank=8, rslora=True)
    result = reduce_rank(adapter, rank=rank, device="cpu")
    dropped_all = total_all = 0.0
    for path, f in adapter.items():
        sigma = torch.linalg.svdvals(f.delta(F64))
        out = result.modules[path]
        keep = min(rank, 8)
        assert out.rank == keep and out.A.dtype == torch.float32 and out.scale == 1.0
        total, error2 = dense_error2(f, out)
        dropped = float((sigma[keep:] ** 2).sum())
        assert error2 == pytest.approx(dropped, rel=1e-4, abs=1e-10 * total)
        stats = result.stats.modules[path]
        assert stats.relative_error == pytest.approx((dropped / total) ** 0.5, abs=1e-6)
        dropped_all += dropped
        total_all += total
    assert result.stats.relative_error == pytest.approx((dropped_all / total_all) ** 0.5, abs=1e-6)
    assert result.stats.energy_kept == pytest.approx(1 - dropped_all / total_all, abs=1e-9)
    expected_bytes = sum((d + k) * min(rank, 8) * 4 for d, k in SHAPES.values())
    assert result.stats.bytes_after == expected_bytes


@pytest.mark.parametrize("energy", [0.3, 0.8, 0.99, 1.0])
def test_reduce_rank_by_energy_keeps_the_smallest_sufficient_rank(energy):
    adapter = make_adapter(2, rank=8)
    result = reduce_rank(adapter, energy=energy, device="cpu")
    for path, f in adapter.items():
        power = torch.linalg.svdvals(f.delta(F64)) ** 2
        fractions = torch.cumsum(power, 0) / power.sum()
        expected = int((fractions < energy - 1e-9).sum()) + 1
        out = result.modules[path]
        assert out.rank == expected
        kept = 1 - result.stats.modules[path].relative_error ** 2
        assert kept >= energy - 1e-9


def test_reduce_rank_refuses_bad_arguments():
    adapter = make_adapter(3)
    for kwargs, message in (
        ({}, "exactly one"),
        ({"rank": 2, "energy": 0.5}, "exactly one"),
        ({"rank": 0}, "positive integer"),
        ({"energy": 1.5}, r"energy must be in \(0, 1\]"),
    ):
        with pytest.raises(JobInputError, match=message):
            reduce_rank(adapter, device="cpu", **kwargs)
    with pytest.raises(JobInputError, match="no modules"):
        reduce_rank({}, rank=2, device="cpu")


# --------------------------------------------------------------------------- precision


@pytest.mark.parametrize("precision, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_cast_precision_reports_the_true_error(precision, dtype):
    adapter = make_adapter(4, rslora=True)
    result = cast_precision(adapter, precision, device="cpu")
    totals = errors = 0.0
    for path, f in adapter.items():
        out = result.modules[path]
        assert out.A.dtype == out.B.dtype == dtype and out.scale == f.scale
        assert torch.equal(out.A, f.A.to(dtype))
        total, error2 = dense_error2(f, out)
        assert error2 > 0
        assert result.stats.modules[path].relative_error == pytest.approx(
            (error2 / total) ** 0.5, rel=1e-6
        )
        totals, errors = totals + total, errors + error2
    assert result.stats.relative_error == pytest.approx((errors / totals) ** 0.5, rel=1e-6)
    # bf16 keeps 8 mantissa bits, fp16 11: the error is of that order, not more
    assert result.stats.relative_error < (1e-2 if precision == "bf16" else 2e-3)
    assert result.stats.size_ratio == pytest.approx(0.5)


def test_cast_to_fp16_refuses_values_out_of_range():
    adapter = make_adapter(5)
    big = {p: LoraFactors(f.A * 1e5, f.B, f.scale) for p, f in adapter.items()}
    with pytest.raises(JobInputError, match="use bf16"):
        cast_precision(big, "fp16", device="cpu")
    assert cast_precision(big, "bf16", device="cpu").stats.relative_error < 1e-2
    with pytest.raises(JobInputError, match="precision must be one of"):
        cast_precision(adapter, "fp8", device="cpu")


# --------------------------------------------------------------------------- int8


def test_int8_round_trip_error_is_bounded_by_half_a_step():
    adapter = make_adapter(6, rslora=True)
    quantized, stats = quantize_int8(adapter, device="cpu")
    restored = dequantize_int8(quantized)
    for path, f in adapter.items():
        q = quantized[path]
        for name, original, factor in (("A", f.A, q.A), ("B", f.B, q.B)):
            assert factor.qweight.dtype == torch.int8 and factor.scales.dtype == torch.float32
            expected_scales = original.abs().amax(dim=1) / 127
            torch.testing.assert_close(factor.scales, expected_scales)
            step = factor.scales[:, None].to(F64)
            error = (getattr(restored[path], name).to(F64) - original.to(F64)).abs()
            assert bool((error <= step / 2 * (1 + 1e-5)).all()), name
        # the reported error is the error of exactly what dequantize_int8 returns
        total, error2 = dense_error2(f, restored[path])
        assert stats.modules[path].relative_error == pytest.approx(
            (error2 / total) ** 0.5, rel=1e-6
        )
        assert restored[path].scale == f.scale
    assert 0 < stats.relative_error < 0.05
    values = sum((d + k) * 8 for d, k in SHAPES.values())
    scale_bytes = sum((8 + d) * 4 for d, _ in SHAPES.values())
    assert stats.bytes_after == values + scale_bytes
    assert stats.size_ratio == pytest.approx((values + scale_bytes) / (4 * values))


def test_int8_zero_rows_stay_zero():
    f = LoraFactors(torch.zeros(2, 5), torch.tensor([[1.0, -2.0], [0.0, 0.0], [3.0, 0.5]]), 1.0)
    quantized, stats = quantize_int8({"m": f}, device="cpu")
    restored = dequantize_int8(quantized)["m"]
    assert torch.equal(restored.A, f.A)
    assert torch.equal(restored.B[1], torch.zeros(2))
    assert quantized["m"].B.qweight[0].tolist() == [64, -127]  # round(1 / (2/127)) = 64
    assert stats.relative_error == 0.0  # zero delta


def test_int8_safetensors_format_round_trips_bit_exactly(tmp_path):
    adapter = make_adapter(7, rank=4)
    adapter["layers.1.v"] = make_adapter(8, rank=2, shapes={"layers.1.v": (10, 24)})["layers.1.v"]
    quantized, _ = quantize_int8(adapter, device="cpu")
    tensors, metadata = int8_state_dict(quantized)
    assert metadata == {"format": INT8_FORMAT}
    assert "base_model.model.layers.0.q.lora_A.qweight" in tensors
    assert tensors["base_model.model.layers.0.q.lora_B.scales"].shape == (40,)
    save_file(tensors, str(tmp_path / "adapter_int8.safetensors"), metadata=metadata)
    config = json.loads(json.dumps(peft_adapter_config(adapter)))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "adapter_int8.safetensors"), "pt") as handle:
        stored_metadata = handle.metadata()
    loaded = read_int8_state_dict(
        load_file(str(tmp_path / "adapter_int8.safetensors")), stored_metadata, config
    )
    before, after = dequantize_int8(quantized), dequantize_int8(loaded)
    for path in adapter:
        assert torch.equal(before[path].A, after[path].A)
        assert torch.equal(before[path].B, after[path].B)
        assert after[path].scale == pytest.approx(adapter[path].scale, rel=1e-12)


def test_int8_reader_refuses_other_files():
    quantized, _ = quantize_int8(make_adapter(9, rank=2), device="cpu")
    tensors, metadata = int8_state_dict(quantized)
    config = peft_adapter_config(dequantize_int8(quantized))
    with pytest.raises(JobInputError, match="not an int8 LoRA file"):
        read_int8_state_dict(tensors, {}, config)
    bad = dict(tensors)
    bad["base_model.model.layers.0.q.lora_A.qweight"] = bad[
        "base_model.model.layers.0.q.lora_A.qweight"
    ].float()
    with pytest.raises(JobInputError, match="unexpected tensor"):
        read_int8_state_dict(bad, metadata, config)
    del tensors["base_model.model.layers.0.q.lora_A.scales"]
    with pytest.raises(JobInputError, match="without scales"):
        read_int8_state_dict(tensors, metadata, config)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    d=st.integers(1, 30),
    k=st.integers(1, 30),
    r=st.integers(1, 8),
    magnitude=st.floats(1e-3, 1e3),
    seed=st.integers(0, 10_000),
)
def test_property_int8_and_rank_bounds(d, k, r, magnitude, seed):
    f = make_adapter(seed, rank=r, shapes={"m": (d, k)})["m"]
    f = LoraFactors(f.A * magnitude, f.B, f.scale)
    quantized, _ = quantize_int8({"m": f}, device="cpu")
    restored = dequantize_int8(quantized)["m"]
    for original, back, factor in (
        (f.A, restored.A, quantized["m"].A),
        (f.B, restored.B, quantized["m"].B),
    ):
        bound = factor.scales[:, None].to(F64) / 2 * (1 + 1e-5)
        assert bool(((back.to(F64) - original.to(F64)).abs() <= bound).all())
        assert int(factor.qweight.abs().max()) <= 127
    keep = max(1, r // 2)
    out = reduce_rank({"m": f}, rank=keep, device="cpu").modules["m"]
    sigma = torch.linalg.svdvals(f.delta(F64))
    total, error2 = dense_error2(f, out)
    assert error2 == pytest.approx(float((sigma[keep:] ** 2).sum()), rel=1e-3, abs=1e-9 * total)
