"""Math tests for workers.ops.combine and workers.ops.lora (docs/design.md §7).

Every reference is computed densely in float64 in the test itself, from the
definition ΔW = s·B·A; nothing is compared with a hard-coded result.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loreg.vocabulary import DENSITY_METHODS, CombineMethod
from workers.errors import JobInputError
from workers.ops.combine import _kth_largest, combine
from workers.ops.lora import (
    LoraFactors,
    build_peft_state_dict,
    lora_scale,
    split_peft_state_dict,
)
from workers.ops.svd import dense_truncated_svd, lowrank_svd

F64 = torch.float64
SHAPES = {"layers.0.q": (24, 16), "layers.0.down": (12, 30)}


def make_adapter(seed, rank, alpha=None, rslora=False, shapes=SHAPES, dtype=torch.float32):
    """Random LoRA factors (non-zero B) with PEFT's scale for (rank, alpha, rslora)."""
    gen = torch.Generator().manual_seed(seed)
    scale = lora_scale(rank, alpha if alpha is not None else 2 * rank, rslora)
    return {
        path: LoraFactors(
            torch.randn(rank, k, generator=gen).to(dtype),
            torch.randn(d, rank, generator=gen).to(dtype),
            scale,
        )
        for path, (d, k) in shapes.items()
    }


def weighted_sum(adapters, weights, path):
    """Σ w_i s_i B_i A_i in float64, densely."""
    return sum(w * a[path].delta(F64) for a, w in zip(adapters, weights, strict=True))


def rel(x, ref):
    return float(torch.linalg.norm(x.to(F64) - ref) / torch.linalg.norm(ref))


@pytest.fixture(scope="module")
def mixed():
    """Three adapters with mixed ranks, alphas and rsLoRA, and signed weights."""
    adapters = [
        make_adapter(1, 4, alpha=8),
        make_adapter(2, 6, alpha=3, rslora=True),
        make_adapter(3, 2, alpha=16),
    ]
    return adapters, [0.7, 0.3, -0.45]


# --------------------------------------------------------------------------- exact methods


@pytest.mark.parametrize("method", ["cat", "linear"])
def test_exact_methods_equal_weighted_sum(mixed, method):
    adapters, weights = mixed
    result = combine(adapters, weights, method, device="cpu")
    for path in SHAPES:
        out = result.modules[path]
        assert out.A.dtype == torch.float32 and out.scale == 1.0
        assert out.rank == sum(a[path].rank for a in adapters)
        assert rel(out.delta(F64), weighted_sum(adapters, weights, path)) <= 1e-6
    assert result.stats.exact and result.stats.error_vs_sum == 0.0


def test_full_rank_svd_equals_weighted_sum(mixed):
    adapters, weights = mixed
    total = sum(a["layers.0.q"].rank for a in adapters)
    result = combine(adapters, weights, "svd", rank=total, device="cpu")
    for path in SHAPES:
        assert rel(result.modules[path].delta(F64), weighted_sum(adapters, weights, path)) <= 1e-6
    assert result.stats.exact
    assert result.stats.energy_kept == pytest.approx(1.0, abs=1e-12)


def test_linear_is_not_the_factorwise_sum(mixed):
    """PEFT's factor-wise linear, (Σ√w A)(Σ√w B), has cross terms; ours must not."""
    adapters, weights = [make_adapter(4, 4), make_adapter(5, 4)], [0.7, 0.3]
    path = "layers.0.q"
    a_sum = sum(
        math.sqrt(w * a[path].scale) * a[path].A.to(F64)
        for a, w in zip(adapters, weights, strict=True)
    )
    b_sum = sum(
        math.sqrt(w * a[path].scale) * a[path].B.to(F64)
        for a, w in zip(adapters, weights, strict=True)
    )
    reference = weighted_sum(adapters, weights, path)
    assert rel(b_sum @ a_sum, reference) > 0.1
    ours = combine(adapters, weights, "linear", device="cpu").modules[path]
    assert rel(ours.delta(F64), reference) <= 1e-6


@pytest.mark.parametrize("rank", [1, 3, 7])
def test_truncated_svd_keeps_top_singular_values(mixed, rank):
    adapters, weights = mixed
    adapters64 = [{p: f.to(dtype=F64) for p, f in a.items()} for a in adapters]
    result = combine(adapters64, weights, "svd", rank=rank, device="cpu")
    dropped_total = energy_total = 0.0
    for path in SHAPES:
        exact = weighted_sum(adapters64, weights, path)
        sigma = torch.linalg.svdvals(exact)
        out = result.modules[path]
        assert out.rank == rank and out.A.dtype == F64
        got = torch.linalg.svdvals(out.delta(F64))[:rank]
        torch.testing.assert_close(got, sigma[:rank], rtol=1e-9, atol=1e-9 * float(sigma[0]))
        # error² (Frobenius) equals the sum of the dropped σ²
        error2 = float(torch.linalg.norm(out.delta(F64) - exact) ** 2)
        dropped = float((sigma[rank:] ** 2).sum())
        assert error2 == pytest.approx(dropped, rel=1e-9)
        stats = result.stats.modules[path]
        assert stats.energy_kept == pytest.approx(1 - dropped / float((sigma**2).sum()), rel=1e-9)
        dropped_total += dropped
        energy_total += float((sigma**2).sum())
    assert result.stats.energy_kept == pytest.approx(1 - dropped_total / energy_total, rel=1e-9)
    assert not result.stats.exact


def test_truncated_svd_in_fp32(mixed):
    adapters, weights = mixed
    result = combine(adapters, weights, "svd", rank=5, device="cpu")
    path = "layers.0.down"
    exact = weighted_sum(adapters, weights, path)
    sigma = torch.linalg.svdvals(exact)
    out = result.modules[path]
    assert out.A.dtype == torch.float32
    error2 = float(torch.linalg.norm(out.delta(F64) - exact) ** 2)
    assert error2 == pytest.approx(float((sigma[5:] ** 2).sum()), rel=1e-4)


def test_svd_default_rank_is_the_largest_input_rank(mixed):
    adapters, weights = mixed
    result = combine(adapters, weights, "svd", device="cpu")
    assert {f.rank for f in result.modules.values()} == {6}


@pytest.mark.parametrize("method", ["cat", "linear", "svd", "flora", "delta_avg", "fedit"])
@pytest.mark.parametrize("rslora", [False, True])
def test_one_adapter_with_weight_one_reproduces_itself(method, rslora):
    adapter = make_adapter(7, 5, alpha=7, rslora=rslora)
    result = combine([adapter], [1.0], method, device="cpu")
    for path, f in adapter.items():
        assert rel(result.modules[path].delta(F64), f.delta(F64)) <= 1e-6
    assert result.stats.exact


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    d=st.integers(1, 20),
    k=st.integers(1, 20),
    ranks=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    data=st.data(),
)
def test_property_cat_and_full_svd_are_exact(d, k, ranks, data):
    weights = data.draw(
        st.lists(st.floats(-2, 2, allow_nan=False), min_size=len(ranks), max_size=len(ranks))
    )
    seed = data.draw(st.integers(0, 10_000))
    adapters = [
        make_adapter(seed + i, r, alpha=r + i, rslora=bool(i % 2), shapes={"m": (d, k)})
        for i, r in enumerate(ranks)
    ]
    exact = weighted_sum(adapters, weights, "m")
    scale = max(float(torch.linalg.norm(exact)), 1e-30)
    for method, kwargs in (("cat", {}), ("svd", {"rank": sum(ranks)})):
        out = combine(adapters, weights, method, device="cpu", **kwargs).modules["m"]
        assert float(torch.linalg.norm(out.delta(F64) - exact)) <= 1e-6 * scale + 1e-12
    # truncated: top singular values of the dense sum, and error² = dropped σ²
    rank = data.draw(st.integers(1, sum(ranks)))
    out = combine(adapters, weights, "svd", rank=rank, device="cpu").modules["m"]
    sigma = torch.linalg.svdvals(exact)
    error2 = float(torch.linalg.norm(out.delta(F64) - exact) ** 2)
    assert error2 == pytest.approx(float((sigma[rank:] ** 2).sum()), rel=1e-4, abs=1e-9 * scale**2)


def test_lowrank_svd_matches_dense_svd():
    gen = torch.Generator().manual_seed(0)
    U, V = (
        torch.randn(40, 9, generator=gen, dtype=F64),
        torch.randn(9, 33, generator=gen, dtype=F64),
    )
    B, A, sigma = lowrank_svd(U, V, 4)
    dense = torch.linalg.svdvals(U @ V)
    torch.testing.assert_close(sigma, dense[:9])
    torch.testing.assert_close(A @ A.T, torch.eye(4, dtype=F64))  # orthonormal rows
    assert float(torch.linalg.norm(B @ A - U @ V) ** 2) == pytest.approx(
        float((dense[4:] ** 2).sum()), rel=1e-9
    )


def test_dense_truncated_svd_randomized_path_is_near_optimal():
    """A 300×200 matrix (subspace < half its size) goes through subspace iteration."""
    gen = torch.Generator().manual_seed(3)
    q1, _ = torch.linalg.qr(torch.randn(300, 200, generator=gen, dtype=F64))
    q2, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen, dtype=F64))
    sigma = torch.cat([torch.linspace(10, 5, 20, dtype=F64), 0.1 * torch.rand(180, generator=gen)])
    M = ((q1 * sigma) @ q2.T).to(torch.float32)
    B, A, kept, energy = dense_truncated_svd(M, 8)
    best = torch.linalg.svd(M.to(F64), full_matrices=False)
    optimal = (best.U[:, :8] * best.S[:8]) @ best.Vh[:8]
    assert rel(B @ A, optimal) <= 1e-4
    error2 = float(torch.linalg.norm(M.to(F64) - B @ A) ** 2)
    assert error2 == pytest.approx(energy - float((kept**2).sum()), rel=1e-5)
    assert error2 == pytest.approx(float((best.S[8:] ** 2).sum()), rel=1e-5)


# --------------------------------------------------------------------------- federated


def test_flora_and_full_rank_delta_avg_equal_weighted_average(mixed):
    adapters, _ = mixed
    clients = [120, 30, 50]  # sample counts: weights are normalised to p_k = n_k / n
    p = [n / sum(clients) for n in clients]
    total = sum(a["layers.0.q"].rank for a in adapters)
    for method, kwargs in (("flora", {}), ("delta_avg", {"rank": total})):
        result = combine(adapters, clients, method, device="cpu", **kwargs)
        for path in SHAPES:
            assert rel(result.modules[path].delta(F64), weighted_sum(adapters, p, path)) <= 1e-6
        assert result.stats.exact
        assert result.stats.params["weights"] == pytest.approx(p)


def test_fedit_differs_from_the_weighted_average():
    adapters, p = [make_adapter(11, 4), make_adapter(12, 4)], [0.5, 0.5]
    result = combine(adapters, p, "fedit", device="cpu")
    for path in SHAPES:
        reference = weighted_sum(adapters, p, path)
        error = rel(result.modules[path].delta(F64), reference)
        assert error > 0.1
        assert result.stats.modules[path].error_vs_sum == pytest.approx(error, rel=1e-6)
    assert not result.stats.exact


def test_fedit_is_exact_when_all_A_are_equal():
    """FFA-LoRA: a shared, frozen A makes averaging the B's exact."""
    shared = make_adapter(13, 4)
    adapters = []
    for seed in (14, 15, 16):
        other = make_adapter(seed, 4)
        adapters.append({p: LoraFactors(shared[p].A, other[p].B, other[p].scale) for p in SHAPES})
    p = [0.2, 0.5, 0.3]
    result = combine(adapters, p, "fedit", device="cpu")
    for path in SHAPES:
        assert rel(result.modules[path].delta(F64), weighted_sum(adapters, p, path)) <= 1e-6
    assert result.stats.exact and result.stats.error_vs_sum <= 1e-6


def test_fedit_refuses_mixed_ranks(mixed):
    with pytest.raises(JobInputError, match="equal ranks"):
        combine(mixed[0], [1, 1, 1], "fedit", device="cpu")


# --------------------------------------------------------------------------- ties / dare / prune


def dense_magnitude_prune(x, density):
    """PEFT's rule: keep the int(density·n) largest magnitudes (topk)."""
    keep = int(density * x.numel())
    mask = torch.zeros(x.numel(), dtype=torch.bool)
    mask[torch.topk(x.abs().flatten(), keep).indices] = True
    return x * mask.reshape(x.shape)


def dense_ties(deltas, density, method="total"):
    """TIES on stacked true deltas: trim, elect sign, disjoint mean."""
    pruned = torch.stack([dense_magnitude_prune(x, density) for x in deltas])
    votes = pruned.sum(0) if method == "total" else pruned.sign().sum(0)
    sign = torch.where(votes >= 0, 1.0, -1.0).to(pruned.dtype)
    agree = pruned.sign() == sign
    return (pruned * agree).sum(0) / agree.sum(0).clamp(min=1)


def true_deltas(adapters, weights, path):
    return torch.stack([w * a[path].delta(F64) for a, w in zip(adapters, weights, strict=True)])


FULL = {"rank": 30}  # >= min(d, k) of every module: no truncation


@pytest.mark.parametrize("sign_method", ["total", "frequency"])
def test_ties_acts_on_true_deltas(mixed, sign_method):
    adapters, weights = mixed
    result = combine(
        adapters,
        weights,
        "ties",
        density=0.4,
        majority_sign_method=sign_method,
        device="cpu",
        **FULL,
    )
    for path in SHAPES:
        reference = dense_ties(true_deltas(adapters, weights, path), 0.4, sign_method)
        assert rel(result.modules[path].delta(F64), reference) <= 1e-5


def test_ties_differs_from_the_factorwise_approach():
    """PEFT's `ties` trims A's and B's separately; the product is not TIES of the deltas."""
    adapters, weights = [make_adapter(21, 4), make_adapter(22, 4)], [0.5, 0.5]
    path = "layers.0.q"
    reference = dense_ties(true_deltas(adapters, weights, path), 0.5)
    sw = [math.sqrt(w * a[path].scale) for a, w in zip(adapters, weights, strict=True)]
    a_f = dense_ties(
        torch.stack([s * a[path].A.to(F64) for a, s in zip(adapters, sw, strict=True)]), 0.5
    )
    b_f = dense_ties(
        torch.stack([s * a[path].B.to(F64) for a, s in zip(adapters, sw, strict=True)]), 0.5
    )
    assert rel(b_f @ a_f, reference) > 0.2
    ours = combine(adapters, weights, "ties", density=0.5, device="cpu", **FULL).modules[path]
    assert rel(ours.delta(F64), reference) <= 1e-5


def test_magnitude_prune_acts_on_true_deltas(mixed):
    adapters, weights = mixed
    result = combine(adapters, weights, "magnitude_prune", density=0.3, device="cpu", **FULL)
    for path in SHAPES:
        reference = sum(dense_magnitude_prune(x, 0.3) for x in true_deltas(adapters, weights, path))
        assert rel(result.modules[path].delta(F64), reference) <= 1e-5


def test_dare_linear_keeps_or_drops_whole_delta_entries():
    """Each entry of the result is Σ over a subset of δ_i / density: DARE on the true deltas."""
    adapters, weights = [make_adapter(31, 3), make_adapter(32, 5)], [0.6, 0.4]
    density = 0.5
    result = combine(
        adapters, weights, "dare_linear", density=density, seed=5, device="cpu", **FULL
    )
    for path in SHAPES:
        d1, d2 = true_deltas(adapters, weights, path) / density
        out = result.modules[path].delta(F64)
        candidates = torch.stack([torch.zeros_like(d1), d1, d2, d1 + d2])
        distance = (candidates - out).abs().amin(0)
        assert float(distance.max()) <= 1e-4 * float(out.abs().max())
        # about `density` of each delta's entries survive
        kept_1 = ((out - d1).abs() < 1e-5) | ((out - d1 - d2).abs() < 1e-5)
        assert abs(float(kept_1.double().mean()) - density) < 0.12


def test_dare_ties_with_density_one_is_sign_election_on_true_deltas(mixed):
    adapters, weights = mixed
    result = combine(adapters, weights, "dare_ties", density=1.0, seed=0, device="cpu", **FULL)
    for path in SHAPES:
        reference = dense_ties(true_deltas(adapters, weights, path), 1.0)
        assert rel(result.modules[path].delta(F64), reference) <= 1e-5


@pytest.mark.parametrize("method", ["dare_linear", "dare_ties"])
def test_dare_is_reproducible_with_a_seed(mixed, method):
    adapters, weights = mixed

    def run(seed):
        kwargs = {"density": 0.5, "seed": seed, "rank": 4, "device": "cpu"}
        return combine(adapters, weights, method, **kwargs).modules

    first, again, other = run(7), run(7), run(8)
    for path in SHAPES:
        assert torch.equal(first[path].A, again[path].A)
        assert torch.equal(first[path].B, again[path].B)
        assert rel(other[path].delta(F64), first[path].delta(F64)) > 1e-3


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    d=st.integers(2, 16),
    k=st.integers(2, 16),
    ranks=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    density=st.floats(0.1, 1.0),
    data=st.data(),
)
def test_property_ties_and_prune_match_the_dense_definition(d, k, ranks, density, data):
    weights = data.draw(
        st.lists(st.floats(0.1, 2) | st.floats(-2, -0.1), min_size=len(ranks), max_size=len(ranks))
    )
    seed = data.draw(st.integers(0, 10_000))
    adapters = [make_adapter(seed + i, r, shapes={"m": (d, k)}) for i, r in enumerate(ranks)]
    deltas = true_deltas(adapters, weights, "m")
    scale = float(torch.linalg.norm(deltas))  # density may prune everything: no division
    full = {"rank": min(d, k), "density": density, "device": "cpu"}
    ties = combine(adapters, weights, "ties", **full).modules["m"]
    ties_error = torch.linalg.norm(ties.delta(F64) - dense_ties(deltas, density))
    assert float(ties_error) <= 1e-5 * scale
    pruned = combine(adapters, weights, "magnitude_prune", **full).modules["m"]
    reference = sum(dense_magnitude_prune(x, density) for x in deltas)
    assert float(torch.linalg.norm(pruned.delta(F64) - reference)) <= 1e-5 * scale


def test_kth_largest_is_exact_on_big_tensors():
    """Above ~1M entries the threshold comes from a sampled bracket; it must stay exact."""
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(1_200_000, generator=gen).abs()
    values[:300_000] = 0.0  # many ties at zero
    values[300_000:300_100] = 7.0  # and a block of equal values
    n = values.numel()
    for kth in (1, 50, 100, 150, 12_345, n // 2, n - 300_000, n - 299_999, n - 1, n):
        expected = torch.kthvalue(values, n - kth + 1).values
        assert float(_kth_largest(values, kth)) == float(expected), kth


def test_dense_methods_report_truncation_figures(mixed):
    adapters, weights = mixed
    result = combine(adapters, weights, "ties", density=0.5, rank=3, device="cpu")
    for path in SHAPES:
        reference = dense_ties(true_deltas(adapters, weights, path), 0.5)
        sigma = torch.linalg.svdvals(reference)
        out = result.modules[path]
        assert out.rank == 3
        torch.testing.assert_close(
            torch.linalg.svdvals(out.delta(F64))[:3], sigma[:3], rtol=1e-5, atol=0
        )
        stats = result.stats.modules[path]
        expected = float((sigma[:3] ** 2).sum() / (sigma**2).sum())
        assert stats.energy_kept == pytest.approx(expected, rel=1e-5)
        exact = weighted_sum(adapters, weights, path)
        assert stats.error_vs_sum == pytest.approx(rel(out.delta(F64), exact), rel=1e-4)


def test_dtype_and_device_follow_the_inputs():
    adapters = [
        make_adapter(41, 4, dtype=torch.bfloat16),
        make_adapter(42, 4, dtype=torch.bfloat16),
    ]
    for method, kwargs in (("svd", {"rank": 4}), ("ties", {"density": 0.5})):
        out = combine(adapters, [0.5, 0.5], method, device="cpu", **kwargs)
        for f in out.modules.values():
            assert f.A.dtype == f.B.dtype == torch.bfloat16 and f.A.device.type == "cpu"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "mean"}, "unknown combine method"),
        ({"method": "ties"}, "needs density"),
        ({"method": "ties", "density": 0.0}, r"density must be in \(0, 1\]"),
        ({"method": "ties", "density": 1.5}, r"density must be in \(0, 1\]"),
        ({"method": "svd", "density": 0.5}, "density applies to"),
        ({"method": "svd", "rank": 0}, "rank must be a positive integer"),
        ({"method": "svd", "rank": "4"}, "rank must be a positive integer"),
        ({"method": "ties", "density": "half"}, "density must be a number"),
        ({"method": "svd", "seed": 1}, "seed applies to"),
        ({"method": "cat", "rank": 4}, "takes no rank"),
        ({"method": "ties", "density": 0.5, "majority_sign_method": "max"}, "majority_sign_method"),
        ({"method": "svd", "weights": [1.0]}, "one weight per adapter"),
        ({"method": "svd", "weights": [1.0, float("nan")]}, "must be finite"),
        ({"method": "flora", "weights": [1.0, -1.0]}, "client weights"),
    ],
)
def test_bad_parameters_are_refused(kwargs, message):
    adapters = [make_adapter(51, 2), make_adapter(52, 2)]
    kwargs = {"weights": [0.5, 0.5], **kwargs}
    with pytest.raises(JobInputError, match=message):
        combine(adapters, kwargs.pop("weights"), kwargs.pop("method"), device="cpu", **kwargs)


def test_mismatched_adapters_are_refused():
    a = make_adapter(61, 2)
    other_modules = make_adapter(62, 2, shapes={"layers.0.q": (24, 16), "layers.1.q": (24, 16)})
    with pytest.raises(JobInputError, match="different modules"):
        combine([a, other_modules], [1, 1], "cat", device="cpu")
    other_shape = make_adapter(63, 2, shapes={"layers.0.q": (24, 17), "layers.0.down": (12, 30)})
    with pytest.raises(JobInputError, match="delta shape"):
        combine([a, other_shape], [1, 1], "svd", device="cpu")
    with pytest.raises(JobInputError, match="non-empty"):
        combine([], [], "svd", device="cpu")
    with pytest.raises(JobInputError, match="invalid device"):
        combine([a], [1.0], "svd", device="quantum")


def test_every_method_runs_through_the_dispatcher(mixed):
    adapters, weights = mixed
    same_rank = [make_adapter(71, 3), make_adapter(72, 3)]
    for method in (m.value for m in CombineMethod):
        needs = {"density": 0.5} if method in DENSITY_METHODS else {}
        chosen = same_rank if method == "fedit" else adapters
        w = [0.5, 0.5] if method == "fedit" else [abs(x) for x in weights]
        result = combine(chosen, w, method, device="cpu", **needs)
        card = result.stats.to_dict()
        assert card["method"] == method and set(card["modules"]) == set(SHAPES)
        json.dumps(card)  # the card is JSON-ready
        assert result.parameter_count == sum(
            (f.shape[0] + f.shape[1]) * f.rank for f in result.modules.values()
        )


# --------------------------------------------------------------------------- PEFT format


def _peft_layers(model):
    from peft.tuners.lora import LoraLayer

    return {
        name.removeprefix("base_model.model."): module
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }


def test_split_peft_state_dict_with_patterns_and_rslora():
    from peft import get_peft_model_state_dict

    from tests.support.tiny import make_lora, tiny_llama

    model = make_lora(
        tiny_llama(0),
        seed=3,
        r=4,
        targets=("q_proj", "v_proj", "down_proj"),
        rank_pattern={"model.layers.1.self_attn.q_proj": 6},
        alpha_pattern={"down_proj": 3},
        use_rslora=True,
    )
    state = get_peft_model_state_dict(model)
    modules = split_peft_state_dict(state, model.peft_config["default"].to_dict())
    layers = _peft_layers(model)
    assert set(modules) == set(layers)
    assert modules["model.layers.1.self_attn.q_proj"].rank == 6
    assert modules["model.layers.0.mlp.down_proj"].scale == pytest.approx(3 / math.sqrt(4))
    for path, layer in layers.items():
        expected = layer.get_delta_weight("default").to(F64)
        assert rel(modules[path].delta(F64), expected) <= 1e-6


def test_built_adapter_loads_in_peft_with_the_same_deltas(tmp_path, mixed):
    from peft import PeftModel
    from safetensors.torch import save_file

    from tests.support.tiny import tiny_llama

    paths = {
        "model.layers.0.self_attn.q_proj": (64, 64),
        "model.layers.1.self_attn.v_proj": (32, 64),
        "model.layers.1.mlp.down_proj": (64, 128),
    }
    adapters = [make_adapter(81, 4, shapes=paths), make_adapter(82, 6, rslora=True, shapes=paths)]
    combined = combine(adapters, [0.6, 0.4], "cat", device="cpu").modules
    combined["model.layers.1.mlp.down_proj"] = LoraFactors(
        combined["model.layers.1.mlp.down_proj"].A[:3],
        combined["model.layers.1.mlp.down_proj"].B[:, :3],
        0.37,
    )  # a module with another rank and scale: needs rank_pattern and alpha_pattern
    state, config = build_peft_state_dict(combined)
    save_file(state, str(tmp_path / "adapter_model.safetensors"))
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    loaded = PeftModel.from_pretrained(tiny_llama(0), tmp_path)
    layers = _peft_layers(loaded)
    assert set(layers) == set(paths)
    for path, layer in layers.items():
        assert rel(layer.get_delta_weight("default").to(F64), combined[path].delta(F64)) <= 1e-6
    # and it parses back to the same factors
    again = split_peft_state_dict(state, config)
    for path, f in combined.items():
        assert torch.equal(again[path].A, f.A) and again[path].scale == pytest.approx(f.scale)


def test_split_refuses_what_it_cannot_represent():
    a = torch.zeros(2, 4)
    b = torch.zeros(3, 2)
    key = "base_model.model.m.lora_{}.weight"
    config = {"r": 2, "lora_alpha": 4}
    with pytest.raises(JobInputError, match="config says 3"):
        split_peft_state_dict({key.format("A"): a, key.format("B"): b}, {**config, "r": 3})
    with pytest.raises(JobInputError, match="no lora_B"):
        split_peft_state_dict({key.format("A"): a}, config)
    with pytest.raises(JobInputError, match="unsupported tensor"):
        split_peft_state_dict({"base_model.model.m.lora_magnitude_vector": a}, config)
    with pytest.raises(JobInputError, match="DoRA"):
        split_peft_state_dict({key.format("A"): a, key.format("B"): b}, {**config, "use_dora": 1})
    with pytest.raises(JobInputError, match="rank mismatch"):
        LoraFactors(torch.zeros(2, 4), torch.zeros(3, 5))
