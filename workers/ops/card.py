"""The figures of a version's card, computed from its LoRA factors (docs/design.md §7, Cards).

Pure numpy functions over one module's factors ``A: [r, k]`` and ``B: [d, r]``
(``ΔW = s·B·A``, ``s = alpha/r``, ``alpha/sqrt(r)`` with rsLoRA): no torch, no I/O.
The dense ``d×k`` delta is never formed:

* ``B = Q_B R_B`` and ``Aᵀ = Q_A R_A`` (reduced QR; ``R_B: [min(d,r), r]``,
  ``R_A: [min(k,r), r]``), so ``ΔW = s · Q_B (R_B R_Aᵀ) Q_Aᵀ`` with orthonormal
  ``Q``: the singular values of ``ΔW`` are ``|s|`` times those of the small core
  ``R_B R_Aᵀ`` and ``‖ΔW‖_F = |s| · ‖R_B R_Aᵀ‖_F``. Only the two ``R`` are kept, so a
  caller may read B, reduce it to ``R_B``, drop it, then read A (one tensor at a
  time). This is the method of :func:`workers.ops.svd.lowrank_svd`, which combine
  and compress run in torch; the card job runs numpy only, so it is written here
  once for numpy, computing the singular values alone.
* **effective rank** (Roy & Vetterli, 2007): ``exp(H(p))`` with ``p_i = σ_i / Σ σ``
  and ``H(p) = -Σ p_i ln p_i`` (``0 ln 0 = 0``); between 1 and the number of
  non-zero ``σ``, and 0 for a zero delta.
* **numerical rank**: how many ``σ_i > σ_1 · max(d, k) · ε`` (ε of float64; numpy's
  ``matrix_rank`` rule, applied to ``ΔW``'s shape).
* **energy in the top k**: ``Σ_{i≤k} σ_i² / Σ_i σ_i²`` for ``k`` in
  :data:`ENERGY_KS` up to the number of singular values; undefined (None) for a
  zero delta.

Everything is computed in float64 whatever the stored dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ENERGY_KS",
    "ModuleFigures",
    "delta_singular_values",
    "effective_rank",
    "energy_top_k",
    "frobenius_norm",
    "module_figures",
    "numerical_rank",
    "r_factor",
    "scaling",
    "singular_values_from_r",
]

#: The ``k`` of the "energy in the top k singular values" figures (those ``<= r`` are kept).
ENERGY_KS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)

F64 = np.float64
Matrix = NDArray[np.float64]


def scaling(r: int, alpha: float, use_rslora: bool = False) -> float:
    """PEFT's LoRA scaling ``s``: ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA."""
    if isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {r!r}")
    if not math.isfinite(float(alpha)):
        raise ValueError(f"lora_alpha must be a finite number, got {alpha!r}")
    return float(alpha) / (math.sqrt(r) if use_rslora else float(r))


def r_factor(factor: NDArray) -> Matrix:
    """The ``R`` of the reduced QR of a tall factor (``B: [d, r]``, or ``Aᵀ: [k, r]``).

    ``[min(rows, r), r]``, float64. Pass ``A.T`` for A: ``Aᵀ = Q_A R_A``.
    """
    m = np.asarray(factor, dtype=F64)
    if m.ndim != 2 or m.shape[1] < 1:
        raise ValueError(f"a LoRA factor must be a 2-D matrix with r >= 1 columns, got {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("the factor holds NaN or infinite values")
    return np.linalg.qr(m, mode="r")


def singular_values_from_r(r_b: Matrix, r_a: Matrix, scale: float) -> Matrix:
    """Singular values (descending, ``min(d, k, r)`` of them) of ``s·B·A`` from ``R_B``, ``R_A``."""
    if r_b.shape[1] != r_a.shape[1]:
        raise ValueError(
            f"rank mismatch: R_B has {r_b.shape[1]} columns and R_A has {r_a.shape[1]}; "
            "B's columns must equal A's rows"
        )
    core = r_b @ r_a.T
    return abs(float(scale)) * np.linalg.svd(core, compute_uv=False)


def delta_singular_values(B: NDArray, A: NDArray, scale: float) -> Matrix:
    """Singular values of ``ΔW = scale · B @ A`` (``B: [d, r]``, ``A: [r, k]``), never dense."""
    if np.ndim(A) != 2 or np.ndim(B) != 2 or np.shape(B)[1] != np.shape(A)[0]:
        raise ValueError(f"B must be [d, r] and A [r, k], got B{np.shape(B)} and A{np.shape(A)}")
    return singular_values_from_r(r_factor(B), r_factor(np.asarray(A).T), scale)


def frobenius_norm(sigma: Matrix) -> float:
    """``‖ΔW‖_F = sqrt(Σ σ²)``."""
    return float(np.sqrt(np.sum(np.square(sigma, dtype=F64))))


def effective_rank(sigma: Matrix) -> float:
    """Entropy effective rank ``exp(-Σ p ln p)``, ``p = σ / Σ σ``; 0 for a zero delta."""
    s = np.asarray(sigma, dtype=F64)
    total = float(s.sum())
    if total <= 0.0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def numerical_rank(sigma: Matrix, shape: tuple[int, int]) -> int:
    """How many ``σ > σ_1 · max(d, k) · ε_float64`` (numpy's ``matrix_rank`` tolerance)."""
    s = np.asarray(sigma, dtype=F64)
    if s.size == 0 or s[0] <= 0.0:
        return 0
    tol = float(s[0]) * max(shape) * float(np.finfo(F64).eps)
    return int(np.count_nonzero(s > tol))


def energy_top_k(sigma: Matrix, ks: Iterable[int] = ENERGY_KS) -> dict[int, float | None]:
    """``Σ_{i≤k} σ² / Σ σ²`` for each ``k`` up to ``len(σ)``; None (undefined) for a zero delta."""
    s2 = np.square(np.asarray(sigma, dtype=F64))
    total = float(s2.sum())
    cumulative = np.cumsum(s2)
    out: dict[int, float | None] = {}
    for k in ks:
        if 1 <= k <= s2.size:
            out[k] = float(cumulative[k - 1] / total) if total > 0.0 else None
    return out


@dataclass(frozen=True)
class ModuleFigures:
    """What the card says about one LoRA module."""

    rank: int
    alpha: float
    scaling: float
    shape: tuple[int, int]  # (d, k) = (out features, in features) of ΔW
    parameter_count: int
    singular_values: tuple[float, ...]
    frobenius_norm: float
    effective_rank: float
    numerical_rank: int
    energy_top_k: dict[int, float | None]

    def to_dict(self, max_singular_values: int | None = None) -> dict[str, object]:
        """JSON-ready figures; at most ``max_singular_values`` σ listed (all when None)."""
        sigma = list(self.singular_values)
        shown = sigma if max_singular_values is None else sigma[:max_singular_values]
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "scaling": self.scaling,
            "shape": list(self.shape),
            "parameter_count": self.parameter_count,
            "frobenius_norm": self.frobenius_norm,
            "singular_values": shown,
            "singular_values_truncated": len(shown) < len(sigma),
            "effective_rank": self.effective_rank,
            "numerical_rank": self.numerical_rank,
            "energy_top_k": {str(k): v for k, v in self.energy_top_k.items()},
        }


def module_figures(
    r_b: Matrix,
    r_a: Matrix,
    *,
    shape: tuple[int, int],
    alpha: float,
    use_rslora: bool = False,
) -> ModuleFigures:
    """Every card figure of one module from ``R_B``, ``R_A`` (:func:`r_factor`) and its config.

    ``shape`` is ``(d, k)``: the rows of B and the columns of A.
    """
    rank = int(r_b.shape[1])
    s = scaling(rank, alpha, use_rslora)
    sigma = singular_values_from_r(r_b, r_a, s)
    d, k = int(shape[0]), int(shape[1])
    return ModuleFigures(
        rank=rank,
        alpha=float(alpha),
        scaling=s,
        shape=(d, k),
        parameter_count=(d + k) * rank,
        singular_values=tuple(float(x) for x in sigma),
        frobenius_norm=frobenius_norm(sigma),
        effective_rank=effective_rank(sigma),
        numerical_rank=numerical_rank(sigma, (d, k)),
        energy_top_k=energy_top_k(sigma),
    )
