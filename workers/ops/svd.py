"""Truncated SVD kernels shared by combine and compress (docs/design.md §7).

* :func:`lowrank_svd`: the truncated SVD of a product of factors ``U @ V`` by QR
  and the SVD of a small core, never forming the dense product;
* :func:`dense_truncated_svd`: the best rank-``r`` factors of a dense matrix by
  randomized subspace iteration (an exact SVD when the subspace is large).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["dense_truncated_svd", "lowrank_svd"]


def lowrank_svd(U: Tensor, V: Tensor, rank: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Truncated SVD of the product ``U @ V`` without forming it (QR method).

    ``U: [d, R]``, ``V: [R, k]``. QR: ``U = Q_u R_u``, ``Vᵀ = Q_v R_v``; SVD of the
    small core ``R_u R_vᵀ = Ũ Σ Ṽᵀ``; keep the top ``rank``:
    ``B' = Q_u Ũ_r Σ_r`` and ``A' = (Q_v Ṽ_r)ᵀ`` (orthonormal rows). Returns
    ``(B', A', σ)`` with all singular values ``σ`` (descending) so callers can
    report the energy kept. Computed in the inputs' dtype: pass float64.
    """
    q_u, r_u = torch.linalg.qr(U)
    q_v, r_v = torch.linalg.qr(V.T)
    core_u, sigma, core_vh = torch.linalg.svd(r_u @ r_v.T, full_matrices=False)
    keep = sigma.numel() if rank is None else min(int(rank), sigma.numel())
    B = q_u @ (core_u[:, :keep] * sigma[:keep])
    A = core_vh[:keep] @ q_v.T
    return B, A, sigma


def dense_truncated_svd(
    M: Tensor,
    rank: int,
    *,
    oversample: int | None = None,
    max_iters: int = 24,
    tol: float = 1e-7,
) -> tuple[Tensor, Tensor, Tensor, float]:
    """Best rank-``rank`` factors ``B' [d, r]``, ``A' [r, k]`` of a dense matrix ``M``.

    Randomized subspace iteration (Halko, Martinsson & Tropp 2011) with
    ``rank + oversample`` columns and Rayleigh-Ritz: iterates until the top
    ``rank`` Ritz values change by less than ``tol · σ_1`` between two steps (at
    most ``max_iters`` steps); big matmuls in float32, small factorizations in
    float64. When the subspace would cover at least half of ``min(d, k)`` an
    exact float64 SVD is used instead. ``B'A'`` is the orthogonal projection of
    ``M`` onto the computed subspace, so the returned figures describe the
    returned factors (up to rounding): ``‖M - B'A'‖² = ‖M‖² - Σ σ_kept²``.

    Returns ``(B', A', σ_kept, ‖M‖²)`` with ``B'`` and ``A'`` in float64.
    """
    d, k = M.shape
    n = min(d, k)
    keep = max(1, min(int(rank), n))
    energy = float(torch.linalg.vector_norm(M, dtype=torch.float64) ** 2)
    extra = max(keep, 16) if oversample is None else int(oversample)
    width = min(n, keep + extra)
    if 2 * width >= n:
        u, sigma, vh = torch.linalg.svd(M.to(torch.float64), full_matrices=False)
        return u[:, :keep] * sigma[:keep], vh[:keep], sigma[:keep], energy

    work = M.to(torch.float32)
    gen = torch.Generator(device=work.device).manual_seed(0)
    omega = torch.randn(k, width, generator=gen, device=work.device, dtype=torch.float32)
    q = _orthonormal(work @ omega)
    previous: Tensor | None = None
    for step in range(max_iters + 1):
        z = (work.T @ q).to(torch.float64)  # [k, width] = (qᵀ M)ᵀ
        ritz = torch.linalg.svdvals(z)[:keep]
        if previous is not None:
            change = float((ritz - previous).abs().max())
            if change <= tol * float(ritz[0].clamp_min(torch.finfo(torch.float64).tiny)):
                break
        if step == max_iters:
            break
        previous = ritz
        q = _orthonormal(work @ _orthonormal(z).to(torch.float32))
    small_u, sigma, vh = torch.linalg.svd(z.T, full_matrices=False)
    B = q.to(torch.float64) @ (small_u[:, :keep] * sigma[:keep])
    return B, vh[:keep], sigma[:keep], energy


def _orthonormal(x: Tensor) -> Tensor:
    return torch.linalg.qr(x)[0]
