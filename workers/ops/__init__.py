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
* :mod:`workers.ops.merge` — fold an adapter into base weights shard by shard;
* :mod:`workers.ops.card` — a version card's figures (singular values, norm,
  effective rank, energy) from one module's factors, in numpy.

The words these operations accept (combine methods and their groups, sign
rules, precisions) are :mod:`loreg.vocabulary`'s, the same the API validates
job parameters with (:mod:`registry.job_params`) before a job reaches a worker.
"""
