"""Pure tensor operations on LoRA adapters (docs/design.md §7).

No Celery, database, object store or HTTP here: every function takes tensors
(or state dicts) and returns tensors plus plain statistics, so the job wrapper
and the tests can call them directly.

* :mod:`workers.ops.lora` — :class:`LoraFactors`, PEFT state dict <-> factors;
* :mod:`workers.ops.combine` — ``cat``, ``linear``, ``svd``, ``ties``, ``dare_linear``,
  ``dare_ties``, ``magnitude_prune``, ``fedit``, ``flora``, ``delta_avg``;
* :mod:`workers.ops.svd` — the two truncation kernels combine and compress share
  (:func:`~workers.ops.svd.lowrank_svd`: QR + small SVD of a product of factors;
  :func:`~workers.ops.svd.dense_truncated_svd`: randomized subspace iteration);
* :mod:`workers.ops.compress` — rank reduction, fp16/bf16, int8 with per-row scales;
* :mod:`workers.ops.merge` — fold an adapter into base weights shard by shard.

This package module imports nothing heavy (no torch), so the API process can
use the constants below to validate job parameters.
"""

from __future__ import annotations

#: Methods whose result equals the weighted sum of deltas (up to rank truncation).
EXACT_METHODS = ("cat", "linear", "svd", "flora", "delta_avg")
#: Methods that work element-wise on dense per-module deltas and need ``density``.
DENSITY_METHODS = ("ties", "dare_linear", "dare_ties", "magnitude_prune")
#: Every method accepted by :func:`workers.ops.combine.combine`.
COMBINE_METHODS = (*EXACT_METHODS, *DENSITY_METHODS, "fedit")
#: Methods that draw random numbers (need ``seed`` for reproducibility).
SEEDED_METHODS = ("dare_linear", "dare_ties")
#: Sign-election rules for ``ties`` and ``dare_ties``.
MAJORITY_SIGN_METHODS = ("total", "frequency")
#: Target precisions of :func:`workers.ops.compress.cast_precision`.
PRECISIONS = ("fp16", "bf16")

__all__ = [
    "COMBINE_METHODS",
    "DENSITY_METHODS",
    "EXACT_METHODS",
    "MAJORITY_SIGN_METHODS",
    "PRECISIONS",
    "SEEDED_METHODS",
]
