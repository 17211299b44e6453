"""Combine several LoRA adapters into one (docs/design.md §7).

Every adapter is ``{module_path: LoraFactors}``; adapter ``i`` contributes the
true delta ``δ_i = w_i · s_i · B_i @ A_i`` of each module. The methods:

* ``cat`` / ``flora``: stack the factors, exact, rank ``Σ r_i``
  (``flora`` normalises the client weights to sum 1);
* ``linear``: the exact weighted sum (``cat``), optionally truncated to ``rank``
  by ``svd`` (never PEFT's factor-wise sum with its cross terms ``B_i A_j``);
* ``svd`` / ``delta_avg``: the weighted sum truncated to ``rank`` with the QR
  method (:func:`~workers.ops.svd.lowrank_svd`), never forming a dense ``d × k`` delta
  (``delta_avg`` normalises the client weights);
* ``ties`` / ``dare_linear`` / ``dare_ties`` / ``magnitude_prune``: element-wise on
  the dense true deltas ``δ_i``, one module at a time, then truncated to ``rank``
  (:func:`~workers.ops.svd.dense_truncated_svd`);
* ``fedit``: federated averaging of A's and B's separately (FedIT); inexact unless
  all A's are equal (FFA-LoRA), which ``stats.exact`` reports.

Decompositions run in float64 (the low-rank path) or float32 matmuls with
float64 small factorizations (the dense path); results are cast back to the
inputs' dtype and returned on the inputs' device.

Every method takes an optional ``on_module(index, total)`` callback, called
after each module is done; an exception it raises aborts the combination (a
job uses it to report progress and to stop when cancelled).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from loreg.vocabulary import (
    DENSITY_METHODS,
    FULL_RANK_METHODS,
    SEEDED_METHODS,
    SIGN_METHODS,
    CombineMethod,
    MajoritySign,
)
from workers.errors import JobInputError
from workers.ops.lora import LoraFactors, resolve_device
from workers.ops.svd import dense_truncated_svd, lowrank_svd

__all__ = [
    "CombineResult",
    "CombineStats",
    "ModuleCallback",
    "ModuleStats",
    "combine",
    "combine_cat",
    "combine_dare_linear",
    "combine_dare_ties",
    "combine_delta_avg",
    "combine_fedit",
    "combine_flora",
    "combine_linear",
    "combine_magnitude_prune",
    "combine_svd",
    "combine_ties",
    "resolve_device",
]

Adapter = Mapping[str, LoraFactors]
# on_module(index, total): module ``index`` (0-based) of ``total`` is done
ModuleCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------- results


@dataclass
class ModuleStats:
    """Per-module figures; norms are squared Frobenius norms (float64 sums)."""

    rank: int
    energy: float  # ‖M‖², M = the method's result before rank truncation
    kept: float  # ‖B'A'‖² = Σ kept σ² of M
    target_norm2: float  # ‖Σ_i w_i s_i B_i A_i‖²
    error_norm2: float  # ‖B'A' - Σ_i w_i s_i B_i A_i‖²

    @property
    def energy_kept(self) -> float:
        """Σ kept σ² / Σ σ² of the untruncated result (1.0 for a zero delta)."""
        return _ratio(self.kept, self.energy, empty=1.0)

    @property
    def truncation_error(self) -> float:
        """Relative Frobenius error introduced by the rank truncation."""
        return math.sqrt(max(0.0, _ratio(self.energy - self.kept, self.energy, empty=0.0)))

    @property
    def error_vs_sum(self) -> float:
        """Relative Frobenius distance of the result from the plain weighted sum of deltas."""
        return math.sqrt(_ratio(self.error_norm2, self.target_norm2, empty=0.0))


@dataclass
class CombineStats:
    """What a combination did, for the result card."""

    method: str
    params: dict[str, Any]
    exact: bool  # the result equals Σ w_i s_i B_i A_i (up to rounding)
    modules: dict[str, ModuleStats] = field(default_factory=dict)

    def _total(self, name: str) -> float:
        return sum(getattr(m, name) for m in self.modules.values())

    @property
    def energy_kept(self) -> float:
        """Overall Σ kept σ² / Σ σ² over all modules."""
        return _ratio(self._total("kept"), self._total("energy"), empty=1.0)

    @property
    def truncation_error(self) -> float:
        """Overall relative Frobenius error of the rank truncation."""
        lost = self._total("energy") - self._total("kept")
        return math.sqrt(max(0.0, _ratio(lost, self._total("energy"), empty=0.0)))

    @property
    def error_vs_sum(self) -> float:
        """Overall relative Frobenius distance from the plain weighted sum of deltas."""
        return math.sqrt(_ratio(self._total("error_norm2"), self._total("target_norm2"), 0.0))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (overall figures plus one entry per module)."""
        ranks = [m.rank for m in self.modules.values()]
        return {
            "method": self.method,
            "params": dict(self.params),
            "exact": self.exact,
            "energy_kept": self.energy_kept,
            "truncation_error": self.truncation_error,
            "error_vs_sum": self.error_vs_sum,
            "rank": {"min": min(ranks, default=0), "max": max(ranks, default=0)},
            "modules": {
                path: {
                    **asdict(m),
                    "energy_kept": m.energy_kept,
                    "truncation_error": m.truncation_error,
                    "error_vs_sum": m.error_vs_sum,
                }
                for path, m in self.modules.items()
            },
        }


@dataclass
class CombineResult:
    """The combined adapter (scale 1 everywhere) and its statistics."""

    modules: dict[str, LoraFactors]
    stats: CombineStats

    @property
    def parameter_count(self) -> int:
        """Number of LoRA parameters: Σ (d + k) · r over modules."""
        return sum((f.shape[0] + f.shape[1]) * f.rank for f in self.modules.values())


def _ratio(num: float, den: float, empty: float) -> float:
    return empty if den <= 0.0 else num / den


# --------------------------------------------------------------------------- validation


def _validate(
    adapters: Sequence[Adapter], weights: Sequence[float]
) -> tuple[list[str], list[float]]:
    if not isinstance(adapters, Sequence) or len(adapters) == 0:
        raise JobInputError("combine needs a non-empty list of adapters")
    if len(weights) != len(adapters):
        raise JobInputError(
            f"got {len(adapters)} adapters but {len(weights)} weights; give one weight per adapter"
        )
    clean: list[float] = []
    for i, w in enumerate(weights):
        try:
            value = float(w)
        except (TypeError, ValueError) as exc:
            raise JobInputError(f"weight {i} is not a number: {w!r}") from exc
        if not math.isfinite(value):
            raise JobInputError(f"weight {i} must be finite, got {w!r}")
        clean.append(value)
    names = set(adapters[0])
    if not names:
        raise JobInputError("adapter 0 has no modules")
    for i, adapter in enumerate(adapters[1:], start=1):
        if set(adapter) != names:
            missing = sorted(names - set(adapter))[:5]
            extra = sorted(set(adapter) - names)[:5]
            raise JobInputError(
                f"adapter {i} targets different modules than adapter 0 "
                f"(missing: {missing}, extra: {extra}); combine adapters with the same targets"
            )
    for path in sorted(names):
        shape = adapters[0][path].shape
        for i, adapter in enumerate(adapters):
            if not isinstance(adapter[path], LoraFactors):
                raise JobInputError(f"adapter {i} module {path!r} is not a LoraFactors")
            if adapter[path].shape != shape:
                raise JobInputError(
                    f"module {path!r}: adapter {i} has delta shape {adapter[path].shape} but "
                    f"adapter 0 has {shape}; adapters must share a base model"
                )
    return sorted(names), clean


def _check_rank(rank: int | None) -> None:
    if rank is not None and (
        not isinstance(rank, numbers.Integral) or isinstance(rank, bool) or rank < 1
    ):
        raise JobInputError(f"rank must be a positive integer or None, got {rank!r}")


def _check_density(density: float | None) -> float:
    if density is None:
        raise JobInputError("this method needs density, the fraction of entries kept, in (0, 1]")
    if not isinstance(density, numbers.Real) or isinstance(density, bool):
        raise JobInputError(f"density must be a number in (0, 1], got {density!r}")
    value = float(density)
    if not 0.0 < value <= 1.0:
        raise JobInputError(f"density must be in (0, 1], got {density!r}")
    return value


def _normalised(weights: list[float]) -> list[float]:
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise JobInputError(
            f"federated client weights must be >= 0 with a positive sum, got {weights}"
        )
    total = sum(weights)
    return [w / total for w in weights]


def _out_dtype(adapters: Sequence[Adapter], path: str) -> torch.dtype:
    dtype = adapters[0][path].A.dtype
    for adapter in adapters:
        dtype = torch.promote_types(
            torch.promote_types(dtype, adapter[path].A.dtype), adapter[path].B.dtype
        )
    return dtype


def _finish(B: Tensor, A: Tensor, like: LoraFactors, dtype: torch.dtype) -> LoraFactors:
    device = like.A.device
    return LoraFactors(A.to(device=device, dtype=dtype), B.to(device=device, dtype=dtype), 1.0)


def _module_done(on_module: ModuleCallback | None, index: int, total: int) -> None:
    if on_module is not None:
        on_module(index, total)


def _gram_norm2(U: Tensor, V: Tensor) -> float:
    """‖U @ V‖_F² from the small Gram matrices (float64), never the product."""
    return max(0.0, float(((U.T @ U) * (V @ V.T)).sum()))


def _stack(
    adapters: Sequence[Adapter], weights: list[float], path: str, device: torch.device
) -> tuple[Tensor, Tensor]:
    """U = [w_i s_i B_i] (d×R) and V = [A_i] (R×k) in float64, so that U V = Σ δ_i."""
    f64 = torch.float64
    U = torch.cat(
        [
            a[path].B.to(device, f64) * (w * a[path].scale)
            for a, w in zip(adapters, weights, strict=True)
        ],
        1,
    )
    V = torch.cat([a[path].A.to(device, f64) for a in adapters], 0)
    return U, V


# --------------------------------------------------------------------------- low-rank methods


def _lowrank_combine(
    method: str,
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    rank: int | None,
    mode: str,
    device: torch.device | str | None,
    normalise: bool = False,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """Methods on stacked factors. ``mode``: ``cat`` (stack, never truncate),
    ``linear`` (stack, svd only when ``rank`` is given) or ``svd`` (always the QR
    method, ``rank`` defaulting to the largest input rank)."""
    names, w = _validate(adapters, weights)
    _check_rank(rank)
    if normalise:
        w = _normalised(w)
    dev = resolve_device(device)
    params = {"weights": w, "rank": rank, "device": str(dev)}
    stats = CombineStats(method, params, True)
    modules: dict[str, LoraFactors] = {}
    f64 = torch.float64
    for index, path in enumerate(names):
        dtype = _out_dtype(adapters, path)
        U, V = _stack(adapters, w, path, dev)
        if mode == "cat" or (mode == "linear" and rank is None):
            # PEFT's convention for cat: weights and scales on A, B's stacked as they are.
            B = torch.cat([a[path].B.to(dev, f64) for a in adapters], 1)
            A = torch.cat(
                [
                    a[path].A.to(dev, f64) * (wi * a[path].scale)
                    for a, wi in zip(adapters, w, strict=True)
                ],
                0,
            )
            norm2 = _gram_norm2(U, V)
            modules[path] = _finish(B, A, adapters[0][path], dtype)
            stats.modules[path] = ModuleStats(A.shape[0], norm2, norm2, norm2, 0.0)
            _module_done(on_module, index, len(names))
            continue
        target = rank if rank is not None else max(a[path].rank for a in adapters)
        B, A, sigma = lowrank_svd(U, V, target)
        energy = float((sigma**2).sum())
        kept = float((sigma[: A.shape[0]] ** 2).sum())
        modules[path] = _finish(B, A, adapters[0][path], dtype)
        stats.modules[path] = ModuleStats(A.shape[0], energy, kept, energy, energy - kept)
        if kept < energy * (1.0 - 1e-12):
            stats.exact = False
        _module_done(on_module, index, len(names))
    return CombineResult(modules, stats)


def combine_cat(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """Exact concatenation: ``A' = [w_i s_i A_i]`` stacked, ``B' = [B_1 … B_n]``, rank ``Σ r_i``."""
    return _lowrank_combine(
        "cat", adapters, weights, rank=None, mode="cat", device=device, on_module=on_module
    )


def combine_flora(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """FLoRA stacking: ``cat`` with client weights normalised to sum 1; exact ``Σ p_k ΔW_k``."""
    return _lowrank_combine(
        "flora",
        adapters,
        weights,
        rank=None,
        mode="cat",
        device=device,
        normalise=True,
        on_module=on_module,
    )


def combine_linear(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    rank: int | None = None,
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """The exact weighted sum ``Σ w_i s_i B_i A_i``; with ``rank``, truncated by ``svd``.

    Without ``rank`` the result has rank ``Σ r_i`` (cat form). This is not PEFT's
    ``linear`` (sum of A's times sum of B's), which adds cross terms.
    """
    return _lowrank_combine(
        "linear", adapters, weights, rank=rank, mode="linear", device=device, on_module=on_module
    )


def combine_svd(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    rank: int | None = None,
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """Best rank-``rank`` approximation of ``Σ w_i s_i B_i A_i`` by the QR method.

    ``rank`` defaults to the largest input rank (PEFT's default); a rank at or
    above ``Σ r_i`` keeps everything (exact). Never forms a dense delta.
    """
    return _lowrank_combine(
        "svd", adapters, weights, rank=rank, mode="svd", device=device, on_module=on_module
    )


def combine_delta_avg(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    rank: int | None = None,
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """Federated average of the true deltas ``Σ p_k ΔW_k`` (weights normalised), then ``svd``.

    ``rank`` defaults to the largest client rank; at ``Σ r_k`` or above it is exact.
    """
    return _lowrank_combine(
        "delta_avg",
        adapters,
        weights,
        rank=rank,
        mode="svd",
        device=device,
        normalise=True,
        on_module=on_module,
    )


def combine_fedit(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """FedIT: average A's and B's separately, ``A' = Σ p_k A_k``, ``B' = Σ p_k s_k B_k``.

    Weights are normalised to sum 1. Inexact in general (the product of averages
    is not the average of products); ``stats.exact`` is true only when every
    client has the same A in every module (FFA-LoRA), where it is exact.
    ``stats.error_vs_sum`` reports the actual error.
    """
    names, w = _validate(adapters, weights)
    p = _normalised(w)
    dev = resolve_device(device)
    for path in names:
        ranks = {a[path].rank for a in adapters}
        if len(ranks) != 1:
            raise JobInputError(
                f"fedit averages factors and needs equal ranks; module {path!r} has ranks "
                f"{sorted(ranks)} (use flora or delta_avg for mixed ranks)"
            )
    same_a = all(torch.equal(a[path].A, adapters[0][path].A) for a in adapters for path in names)
    stats = CombineStats("fedit", {"weights": p, "device": str(dev)}, same_a)
    modules: dict[str, LoraFactors] = {}
    f64 = torch.float64
    for index, path in enumerate(names):
        A = sum(pk * a[path].A.to(dev, f64) for a, pk in zip(adapters, p, strict=True))
        B = sum(
            (pk * a[path].scale) * a[path].B.to(dev, f64) for a, pk in zip(adapters, p, strict=True)
        )
        U, V = _stack(adapters, p, path, dev)
        target = _gram_norm2(U, V)
        error = _gram_norm2(torch.cat([U, -B], 1), torch.cat([V, A], 0))
        norm2 = _gram_norm2(B, A)
        modules[path] = _finish(B, A, adapters[0][path], _out_dtype(adapters, path))
        stats.modules[path] = ModuleStats(A.shape[0], norm2, norm2, target, error)
        _module_done(on_module, index, len(names))
    return CombineResult(modules, stats)


# --------------------------------------------------------------------------- dense methods


def _magnitude_prune(x: Tensor, density: float, _gen: torch.Generator | None = None) -> Tensor:
    """Keep the ``int(density · numel)`` largest-magnitude entries (ties at the cut kept)."""
    keep = int(density * x.numel())
    if keep >= x.numel():
        return x
    if keep == 0:
        return torch.zeros_like(x)
    magnitude = x.abs()
    return x.masked_fill_(magnitude < _kth_largest(magnitude.view(-1), keep), 0.0)


def _kth_largest(values: Tensor, kth: int, sample: int = 1 << 16) -> Tensor:
    """The exact ``kth`` largest of a 1-D tensor, without a full selection on big tensors.

    A random sample brackets the answer; the entries inside the bracket (about
    2% of them) go through ``kthvalue``. Counts check the bracket, and a plain
    ``kthvalue`` of everything is the fallback, so the result is always exact.
    """
    n = values.numel()
    if n <= 16 * sample:
        return torch.kthvalue(values, n - kth + 1).values
    gen = torch.Generator(device=values.device).manual_seed(0)
    picks = values[torch.randint(n, (sample,), generator=gen, device=values.device)]
    q = 1.0 - kth / n
    lo, hi = torch.quantile(
        picks,
        torch.tensor(
            [max(q - 0.01, 0.0), min(q + 0.01, 1.0)], device=values.device, dtype=values.dtype
        ),
    )
    above = int((values > hi).sum())
    inside = values[(values >= lo) & (values <= hi)]
    need = kth - above
    if 1 <= need <= inside.numel():
        return torch.kthvalue(inside, inside.numel() - need + 1).values
    return torch.kthvalue(values, n - kth + 1).values


def _dare(x: Tensor, density: float, gen: torch.Generator | None) -> Tensor:
    """Drop each entry with probability ``1 - density`` and rescale the rest by ``1/density``."""
    if density >= 1.0:
        return x
    drop = torch.rand(x.shape, generator=gen, device=x.device, dtype=torch.float32) >= density
    return x.masked_fill_(drop, 0.0).div_(density)


class _Sum:
    """Accumulates Σ x."""

    def __init__(self, like: Tensor):
        self.total = torch.zeros_like(like)

    def add(self, x: Tensor) -> None:
        self.total += x

    def result(self) -> Tensor:
        return self.total


class _Ties:
    """TIES sign election and disjoint mean, one delta at a time.

    Keeps, per entry, the sums and counts of the positive and of the negative
    values. The elected sign is + where the vote (``total``: Σ x; ``frequency``:
    #positive - #negative) is >= 0; the result is the mean of the values of the
    elected sign (zeros never count).
    """

    def __init__(self, like: Tensor, majority_sign_method: str):
        self.method = majority_sign_method
        self.pos_sum, self.neg_sum = torch.zeros_like(like), torch.zeros_like(like)
        self.pos_count, self.neg_count = torch.zeros_like(like), torch.zeros_like(like)
        self._values = torch.empty_like(like)
        self._mask = torch.empty_like(like, dtype=torch.bool)

    def add(self, x: Tensor) -> None:
        self.pos_sum += torch.clamp(x, min=0, out=self._values)
        self.neg_sum += torch.clamp(x, max=0, out=self._values)
        self.pos_count += torch.gt(x, 0, out=self._mask)
        self.neg_count += torch.lt(x, 0, out=self._mask)

    def result(self) -> Tensor:
        if self.method == "total":
            votes = self.pos_sum + self.neg_sum
        else:
            votes = self.pos_count - self.neg_count
        positive = votes >= 0
        del votes
        pos_mean = self.pos_sum.div_(self.pos_count.clamp_(min=1))
        neg_mean = self.neg_sum.div_(self.neg_count.clamp_(min=1))
        return torch.where(positive, pos_mean, neg_mean)


Trim = Callable[[Tensor, float, torch.Generator | None], Tensor]


def _dense_combine(
    method: str,
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    trim: Trim,
    *,
    density: float,
    rank: int | None,
    seed: int | None,
    majority_sign_method: str | None,
    device: torch.device | str | None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """Stream modules, and within a module the adapters: ``δ_i`` → ``trim`` → accumulate.

    At most one module's dense deltas live at a time (the running sums plus the
    current ``δ_i``); the merged delta is then truncated to ``rank`` (default:
    the largest input rank) by :func:`~workers.ops.svd.dense_truncated_svd`.
    """
    names, w = _validate(adapters, weights)
    _check_rank(rank)
    dev = resolve_device(device)
    gen = None if seed is None else torch.Generator(device=dev).manual_seed(int(seed))
    params: dict[str, Any] = {"weights": w, "density": density, "rank": rank}
    if seed is not None:
        params["seed"] = seed
    if majority_sign_method is not None:
        params["majority_sign_method"] = majority_sign_method
    stats = CombineStats(method, {**params, "device": str(dev)}, False)
    modules: dict[str, LoraFactors] = {}
    f32 = torch.float32
    for index, path in enumerate(names):
        d, k = adapters[0][path].shape
        target = torch.zeros(d, k, device=dev, dtype=f32)
        acc = _Sum(target) if majority_sign_method is None else _Ties(target, majority_sign_method)
        for a, wi in zip(adapters, w, strict=True):
            delta = (a[path].B.to(dev, f32) @ a[path].A.to(dev, f32)).mul_(wi * a[path].scale)
            target += delta
            acc.add(trim(delta, density, gen))
            del delta
        merged = acc.result()
        del acc
        keep = rank or max(a[path].rank for a in adapters)
        # The merged delta's dominant part lies near the span of the inputs (rank Σ r_i):
        # a subspace wider than that converges in a few iterations.
        total_rank = sum(a[path].rank for a in adapters)
        B, A, sigma, energy = dense_truncated_svd(
            merged, keep, oversample=max(total_rank - keep, 0) + 16
        )
        del merged
        kept = float((sigma**2).sum())
        norm2 = float(torch.linalg.vector_norm(target, dtype=torch.float64) ** 2)
        target -= B.to(f32) @ A.to(f32)
        error = float(torch.linalg.vector_norm(target, dtype=torch.float64) ** 2)
        del target
        modules[path] = _finish(B, A, adapters[0][path], _out_dtype(adapters, path))
        stats.modules[path] = ModuleStats(A.shape[0], energy, kept, norm2, error)
        _module_done(on_module, index, len(names))
    return CombineResult(modules, stats)


def combine_ties(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    density: float,
    rank: int | None = None,
    majority_sign_method: str = "total",
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """TIES on the true deltas ``δ_i = w_i s_i B_i A_i``, module by module, then truncate.

    Trim each ``δ_i`` to its ``density`` largest magnitudes, elect each entry's
    sign (``total``: sign of Σ δ_i; ``frequency``: majority of signs; 0 counts as
    +), average the entries that agree (disjoint mean), and truncate to ``rank``
    (default: the largest input rank).
    """
    _check_sign_method(majority_sign_method)
    return _dense_combine(
        "ties",
        adapters,
        weights,
        _magnitude_prune,
        density=_check_density(density),
        rank=rank,
        seed=None,
        majority_sign_method=majority_sign_method,
        device=device,
        on_module=on_module,
    )


def combine_magnitude_prune(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    density: float,
    rank: int | None = None,
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """Sum of the true deltas, each trimmed to its ``density`` largest magnitudes; truncate."""
    return _dense_combine(
        "magnitude_prune",
        adapters,
        weights,
        _magnitude_prune,
        density=_check_density(density),
        rank=rank,
        seed=None,
        majority_sign_method=None,
        device=device,
        on_module=on_module,
    )


def combine_dare_linear(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    density: float,
    seed: int | None = None,
    rank: int | None = None,
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """DARE: randomly keep a ``density`` fraction of each true delta (rescaled), sum, truncate.

    Seeded (``seed`` defaults to 0): the same seed and device give the same result.
    """
    return _dense_combine(
        "dare_linear",
        adapters,
        weights,
        _dare,
        density=_check_density(density),
        rank=rank,
        seed=0 if seed is None else int(seed),
        majority_sign_method=None,
        device=device,
        on_module=on_module,
    )


def combine_dare_ties(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    *,
    density: float,
    seed: int | None = None,
    rank: int | None = None,
    majority_sign_method: str = "total",
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """DARE drop-and-rescale of each true delta, then TIES sign election and disjoint mean.

    Seeded (``seed`` defaults to 0): the same seed and device give the same result.
    """
    _check_sign_method(majority_sign_method)
    return _dense_combine(
        "dare_ties",
        adapters,
        weights,
        _dare,
        density=_check_density(density),
        rank=rank,
        seed=0 if seed is None else int(seed),
        majority_sign_method=majority_sign_method,
        device=device,
        on_module=on_module,
    )


def _check_sign_method(name: str) -> None:
    if name not in tuple(MajoritySign):
        raise JobInputError(
            f"majority_sign_method must be one of {_words(MajoritySign)}, got {name!r}"
        )


def _words(words: Iterable[str]) -> list[str]:
    """The words as plain strings (an error message lists them as ``['a', 'b']``)."""
    return [str(w) for w in words]


# --------------------------------------------------------------------------- dispatcher


def combine(
    adapters: Sequence[Adapter],
    weights: Sequence[float],
    method: str,
    *,
    rank: int | None = None,
    density: float | None = None,
    seed: int | None = None,
    majority_sign_method: str = "total",
    device: torch.device | str | None = None,
    on_module: ModuleCallback | None = None,
) -> CombineResult:
    """Combine ``adapters`` with ``weights`` by ``method`` (see the module docstring).

    Parameters a method does not use must be left at their defaults, so that a
    job never silently ignores what its submitter asked for. ``on_module(index,
    total)`` is called after each module; an exception from it aborts.
    """
    if method not in tuple(CombineMethod):
        raise JobInputError(
            f"unknown combine method {method!r}; choose one of {_words(CombineMethod)}"
        )
    if density is not None and method not in DENSITY_METHODS:
        raise JobInputError(f"density applies to {_words(DENSITY_METHODS)} only, not {method!r}")
    if seed is not None and method not in SEEDED_METHODS:
        raise JobInputError(f"seed applies to {_words(SEEDED_METHODS)} only, not {method!r}")
    if rank is not None and method in FULL_RANK_METHODS:
        raise JobInputError(f"{method!r} does not truncate and takes no rank; use svd or linear")
    if majority_sign_method != MajoritySign.TOTAL and method not in SIGN_METHODS:
        raise JobInputError("majority_sign_method applies to ties and dare_ties only")
    dev = {"device": device, "on_module": on_module}
    if method == "cat":
        return combine_cat(adapters, weights, **dev)
    if method == "flora":
        return combine_flora(adapters, weights, **dev)
    if method == "fedit":
        return combine_fedit(adapters, weights, **dev)
    if method == "linear":
        return combine_linear(adapters, weights, rank=rank, **dev)
    if method == "svd":
        return combine_svd(adapters, weights, rank=rank, **dev)
    if method == "delta_avg":
        return combine_delta_avg(adapters, weights, rank=rank, **dev)
    if method == "ties":
        return combine_ties(
            adapters,
            weights,
            density=density,
            rank=rank,
            majority_sign_method=majority_sign_method,
            **dev,
        )
    if method == "magnitude_prune":
        return combine_magnitude_prune(adapters, weights, density=density, rank=rank, **dev)
    if method == "dare_linear":
        return combine_dare_linear(adapters, weights, density=density, seed=seed, rank=rank, **dev)
    return combine_dare_ties(
        adapters,
        weights,
        density=density,
        seed=seed,
        rank=rank,
        majority_sign_method=majority_sign_method,
        **dev,
    )
