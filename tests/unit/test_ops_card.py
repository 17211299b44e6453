"""The card's figures (workers/ops/card.py) against the math: a dense fp64 SVD of s·B·A.

Every expected value is computed here from the dense delta with numpy's own SVD
and the definitions (Frobenius norm, entropy effective rank, energy fractions),
never from the functions under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from workers.ops.card import (
    ENERGY_KS,
    delta_singular_values,
    effective_rank,
    energy_top_k,
    frobenius_norm,
    module_figures,
    numerical_rank,
    r_factor,
    scaling,
)

REL = 1e-6


def dense_sigma(B: np.ndarray, A: np.ndarray, s: float) -> np.ndarray:
    """Singular values of the dense fp64 delta ``s · B @ A``."""
    return np.linalg.svd(s * (B.astype(np.float64) @ A.astype(np.float64)), compute_uv=False)


def assert_sigma_close(got: np.ndarray, want: np.ndarray) -> None:
    """Relative error <= 1e-6 on every σ above rounding, and absolute (vs σ_1) below it."""
    n = got.size
    assert n == min(want.size, n) and np.all(np.diff(got) <= 1e-12 * max(got[0], 1e-300))
    want = want[:n]
    top = float(want[0]) if want.size else 0.0
    for g, w in zip(got, want, strict=True):
        if w > 1e-9 * top:
            assert abs(g - w) <= REL * w, (g, w)
        else:
            assert abs(g - w) <= REL * top, (g, w)


SHAPES = [(1, 1, 1), (8, 2, 5), (64, 4, 48), (33, 8, 17), (5, 16, 7), (128, 32, 96), (3, 4, 200)]


@pytest.mark.parametrize(("d", "r", "k"), SHAPES)
@pytest.mark.parametrize("rslora", [False, True])
def test_singular_values_match_a_dense_fp64_svd(d, r, k, rslora):
    rng = np.random.default_rng(d * 1000 + r * 10 + k)
    B = rng.standard_normal((d, r))
    A = rng.standard_normal((r, k))
    alpha = 16.0
    s = alpha / (math.sqrt(r) if rslora else r)
    assert scaling(r, alpha, rslora) == pytest.approx(s, rel=1e-15)
    got = delta_singular_values(B, A, s)
    want = dense_sigma(B, A, s)
    assert got.size == min(d, k, r)
    assert_sigma_close(got, want)
    dense = s * (B @ A)
    assert frobenius_norm(got) == pytest.approx(np.linalg.norm(dense, "fro"), rel=REL)


@pytest.mark.parametrize("seed", range(6))
def test_rank_deficient_factors(seed):
    """B with repeated columns and A with a zero row: ΔW has rank < r; zeros found as such."""
    rng = np.random.default_rng(seed)
    d, r, k = 40, 8, 30
    true_rank = int(rng.integers(1, r))
    B = rng.standard_normal((d, true_rank)) @ rng.standard_normal((true_rank, r))
    A = rng.standard_normal((r, k))
    A[-1] = 0.0
    s = scaling(r, 32.0, True)
    got = delta_singular_values(B, A, s)
    want = dense_sigma(B, A, s)
    assert_sigma_close(got, want)
    dense_rank = int(np.linalg.matrix_rank(s * (B @ A)))
    assert numerical_rank(got, (d, k)) == dense_rank
    assert frobenius_norm(got) == pytest.approx(np.linalg.norm(s * B @ A), rel=REL)


def test_float16_and_float32_factors_are_read_in_float64():
    rng = np.random.default_rng(3)
    B = rng.standard_normal((24, 4)).astype(np.float16)
    A = rng.standard_normal((4, 20)).astype(np.float32)
    got = delta_singular_values(B, A, 0.5)
    assert_sigma_close(got, dense_sigma(B, A, 0.5))


def test_zero_delta():
    """A freshly initialised LoRA (B = 0): no energy, effective rank 0, energy undefined."""
    B = np.zeros((10, 4))
    A = np.random.default_rng(0).standard_normal((4, 6))
    sigma = delta_singular_values(B, A, 2.0)
    assert np.all(sigma == 0.0)
    assert frobenius_norm(sigma) == 0.0
    assert effective_rank(sigma) == 0.0
    assert numerical_rank(sigma, (10, 6)) == 0
    assert energy_top_k(sigma) == {1: None, 2: None, 4: None}


def test_effective_rank_against_its_definition():
    sigma = np.array([4.0, 2.0, 1.0, 1.0, 0.0])
    p = np.array([4.0, 2.0, 1.0, 1.0]) / 8.0
    want = math.exp(-sum(x * math.log(x) for x in p))
    assert effective_rank(sigma) == pytest.approx(want, rel=1e-12)
    assert effective_rank(np.array([3.0, 3.0, 3.0])) == pytest.approx(3.0, rel=1e-12)
    assert effective_rank(np.array([5.0])) == pytest.approx(1.0)


def test_energy_top_k_against_its_definition():
    rng = np.random.default_rng(11)
    sigma = np.sort(rng.random(20))[::-1]
    energy = energy_top_k(sigma)
    assert sorted(energy) == [k for k in ENERGY_KS if k <= 20]
    total = float(np.sum(sigma**2))
    for k, value in energy.items():
        assert value == pytest.approx(float(np.sum(sigma[:k] ** 2)) / total, rel=1e-12)
    assert energy[16] <= 1.0 and energy[1] < energy[2] < energy[4]


def test_module_figures_from_the_r_factors_alone():
    rng = np.random.default_rng(5)
    d, r, k = 50, 6, 35
    B, A = rng.standard_normal((d, r)), rng.standard_normal((r, k))
    fig = module_figures(r_factor(B), r_factor(A.T), shape=(d, k), alpha=12.0, use_rslora=False)
    s = 12.0 / 6
    dense = s * (B @ A)
    want = np.linalg.svd(dense, compute_uv=False)
    assert fig.rank == r and fig.scaling == pytest.approx(s) and fig.shape == (d, k)
    assert fig.parameter_count == (d + k) * r
    assert_sigma_close(np.array(fig.singular_values), want)
    assert fig.frobenius_norm == pytest.approx(np.linalg.norm(dense), rel=REL)
    p = want[:r] / want[:r].sum()
    assert fig.effective_rank == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=REL)
    assert fig.numerical_rank == int(np.linalg.matrix_rank(dense))
    as_json = fig.to_dict(max_singular_values=3)
    assert len(as_json["singular_values"]) == 3 and as_json["singular_values_truncated"] is True
    assert as_json["energy_top_k"]["1"] == pytest.approx(want[0] ** 2 / np.sum(want**2), rel=REL)


def test_bad_factors_are_refused():
    with pytest.raises(ValueError, match="B must be"):
        delta_singular_values(np.ones((3, 2)), np.ones((3, 4)), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        r_factor(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="positive integer"):
        scaling(0, 8.0)
