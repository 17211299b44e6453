"""Combine benchmark: loreg's ``svd`` and ``ties`` vs PEFT ``add_weighted_adapter``, one run.

Llama-7B-shaped layers (hidden 4096, intermediate 11008), ``--layers`` of them,
7 target modules each (q, k, v, o: 4096×4096; gate, up: 11008×4096; down:
4096×11008, out×in), 4 adapters of rank 16 with random non-zero factors. Only
those Linear layers are built (no embeddings, no full model), wrapped by PEFT
with the 4 adapters; loreg reads the very same factor tensors.

Measured, on the same device and inputs:

* ``svd`` to rank 16: loreg (QR + small SVD, never the dense delta) vs PEFT
  ``combination_type="svd"`` (dense delta + full SVD). Reports the relative
  difference ``‖B'A'_ours - B'A'_PEFT‖ / ‖B'A'_PEFT‖``, each side's distance
  from the exact truncated SVD (float64, see below) and the energy kept;
* ``ties`` (density 0.5, equal weights): loreg (TIES on the true deltas, then
  back to rank 16) vs PEFT ``"ties"`` (TIES on the A's and B's separately: fast,
  but a different result) and PEFT ``"ties_svd"`` (TIES on the dense deltas, then
  a full SVD: the same definition as ours, with equal weights).

The "exact" reference is the float64 truncated SVD of the exact sum
``Σ w_i s_i B_i A_i`` computed from the factors by the QR method in float64;
the unit tests check it against a dense float64 SVD.

Run: ``.venv/bin/python bench/combine.py [--device auto|cuda|cpu] [--layers N]``.
On CPU, PEFT's dense SVDs take minutes per 11008-wide module: use ``--layers 1``
and, to keep a run short, ``--targets`` to pick modules.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
F64 = torch.float64


def module_shapes(hidden: int, intermediate: int) -> dict[str, tuple[str, int, int]]:
    """module name -> (parent, out_features, in_features), Llama layout."""
    return {
        "q_proj": ("self_attn", hidden, hidden),
        "k_proj": ("self_attn", hidden, hidden),
        "v_proj": ("self_attn", hidden, hidden),
        "o_proj": ("self_attn", hidden, hidden),
        "gate_proj": ("mlp", intermediate, hidden),
        "up_proj": ("mlp", intermediate, hidden),
        "down_proj": ("mlp", hidden, intermediate),
    }


class Skeleton(nn.Module):
    """``model.layers.N.{self_attn,mlp}.<proj>`` Linear layers only, uninitialised weights."""

    def __init__(self, layers: int, targets: list[str], shapes: dict, device: torch.device):
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList()
        for _ in range(layers):
            layer = nn.Module()
            layer.self_attn, layer.mlp = nn.Module(), nn.Module()
            for name in targets:
                parent, out_f, in_f = shapes[name]
                linear = torch.nn.utils.skip_init(nn.Linear, in_f, out_f, bias=False, device=device)
                setattr(getattr(layer, parent), name, linear)
            self.model.layers.append(layer)


def lora_layers(model) -> dict:
    """``{module_path: LoraLayer}`` of a PEFT-wrapped skeleton."""
    from peft.tuners.lora import LoraLayer

    return {
        name.removeprefix("base_model.model."): module
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }


def build(args, device):
    """The PEFT model with adapters a0..a{n-1} and loreg's view of the same tensors."""
    from peft import LoraConfig, get_peft_model

    from workers.ops.lora import LoraFactors

    config = LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, target_modules=args.targets, lora_dropout=0.0
    )
    names = [f"a{i}" for i in range(args.adapters)]
    skeleton = Skeleton(
        args.layers, args.targets, module_shapes(args.hidden, args.intermediate), device
    )
    model = get_peft_model(skeleton, config, adapter_name="a0")
    for name in names[1:]:
        model.add_adapter(name, config)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    adapters = [{} for _ in names]
    with torch.no_grad():
        for path, layer in lora_layers(model).items():
            for i, name in enumerate(names):
                A, B = layer.lora_A[name].weight, layer.lora_B[name].weight
                A.copy_(torch.randn(A.shape, generator=gen, device=device) / math.sqrt(A.shape[1]))
                B.copy_(torch.randn(B.shape, generator=gen, device=device) / math.sqrt(B.shape[1]))
                adapters[i][path] = LoraFactors(A.detach(), B.detach(), layer.scaling[name])
    return model.eval(), names, adapters


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    """(seconds, result) of one call."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def peft_combine(model, names, weights, kind, args, device):
    """Run PEFT add_weighted_adapter once; (seconds, {path: LoraFactors}) of the result."""
    from workers.ops.lora import LoraFactors

    kwargs = {"svd_rank": args.target_rank}
    if kind.startswith("ties"):
        kwargs.update(density=args.density, majority_sign_method="total")
    seconds, _ = timed(
        lambda: model.add_weighted_adapter(names, weights, "out", combination_type=kind, **kwargs),
        device,
    )
    result = {}
    for path, layer in lora_layers(model).items():
        result[path] = LoraFactors(
            layer.lora_A["out"].weight.detach().clone(),
            layer.lora_B["out"].weight.detach().clone(),
            layer.scaling["out"],
        )
    model.delete_adapter("out")
    return seconds, result


def ours(adapters, weights, method, args, device, repeat):
    """(best, median, result) of ``repeat`` timed runs of loreg's combine.

    On CUDA one untimed warm-up run comes first (kernel and cuSOLVER start-up).
    """
    from workers.ops.combine import combine

    kwargs = {"rank": args.target_rank}
    if method == "ties":
        kwargs["density"] = args.density
    run = lambda: combine(adapters, weights, method, device=device, **kwargs)  # noqa: E731
    if device.type == "cuda":
        run()
    times, result = [], None
    for _ in range(repeat):
        seconds, result = timed(run, device)
        times.append(seconds)
    return min(times), statistics.median(times), result


def product(f):
    return f.scale * (f.B.to(F64) @ f.A.to(F64))


def rel_diff(left: dict, right: dict) -> float:
    """sqrt(Σ ‖ΔW_left - ΔW_right‖² / Σ ‖ΔW_right‖²) over modules, densely, in float64."""
    num = den = 0.0
    for path in right:
        ref = product(right[path])
        num += float(torch.linalg.norm(product(left[path]) - ref) ** 2)
        den += float(torch.linalg.norm(ref) ** 2)
    return math.sqrt(num / den)


def exact_truncated(adapters, weights, rank):
    """float64 truncated SVD of Σ w_i s_i B_i A_i per module, and the sum's energy."""
    from workers.ops.lora import LoraFactors
    from workers.ops.svd import lowrank_svd

    out, energy = {}, 0.0
    for path in adapters[0]:
        U = torch.cat(
            [
                a[path].B.to(F64) * (w * a[path].scale)
                for a, w in zip(adapters, weights, strict=True)
            ],
            1,
        )
        V = torch.cat([a[path].A.to(F64) for a in adapters], 0)
        B, A, sigma = lowrank_svd(U, V, rank)
        out[path] = LoraFactors(A, B, 1.0)
        energy += float((sigma**2).sum())
    return out, energy


def energy_of(result: dict) -> float:
    return sum(float(torch.linalg.norm(product(f)) ** 2) for f in result.values())


def main() -> int:
    """Run the benchmark and print a side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--layers", type=int, default=None, help="default: 4 on CUDA, 1 on CPU")
    parser.add_argument(
        "--targets",
        default=",".join(MODULES),
        help="comma-separated subset of " + ",".join(MODULES),
    )
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=4096, help="Llama-7B: 4096")
    parser.add_argument("--intermediate", type=int, default=11008, help="Llama-7B: 11008")
    parser.add_argument("--rank", type=int, default=16, help="rank of each input adapter")
    parser.add_argument("--target-rank", type=int, default=16)
    parser.add_argument("--weights", default="0.4,0.3,0.2,0.1", help="svd weights")
    parser.add_argument("--density", type=float, default=0.5, help="ties density")
    parser.add_argument(
        "--peft",
        default="svd,ties,ties_svd",
        help="PEFT combination types to run (subset of svd,ties,ties_svd)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of our svd (best kept)")
    parser.add_argument(
        "--ties-repeat",
        type=int,
        default=None,
        help="timed runs of our ties (default: 3 on CUDA, 1 on CPU)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    args.layers = args.layers or (4 if device.type == "cuda" else 1)
    args.ties_repeat = args.ties_repeat or (3 if device.type == "cuda" else 1)
    args.targets = [t for t in args.targets.split(",") if t]
    unknown = set(args.targets) - set(MODULES)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")
    svd_weights = [float(w) for w in args.weights.split(",")]
    if len(svd_weights) != args.adapters:
        parser.error("--weights needs one weight per adapter")
    ties_weights = [1.0 / args.adapters] * args.adapters
    peft_kinds = [k for k in args.peft.split(",") if k]

    import peft

    t_build, (model, names, adapters) = timed(lambda: build(args, device), device)
    modules = len(adapters[0])
    rows = []

    # ---- svd
    exact, exact_energy = exact_truncated(adapters, svd_weights, args.target_rank)
    best, median, svd_result = ours(adapters, svd_weights, "svd", args, device, args.repeat)
    row = {
        "method": "svd",
        "ours_s": best,
        "ours_median_s": median,
        "ours_err": rel_diff(svd_result.modules, exact),
        "ours_energy": svd_result.stats.energy_kept,
        "exact_energy": sum(energy_of({p: f}) for p, f in exact.items()) / exact_energy,
    }
    if "svd" in peft_kinds:
        seconds, theirs = peft_combine(model, names, svd_weights, "svd", args, device)
        row.update(
            peft="svd",
            peft_s=seconds,
            diff=rel_diff(svd_result.modules, theirs),
            peft_err=rel_diff(theirs, exact),
            peft_energy=energy_of(theirs) / exact_energy,
        )
    rows.append(row)

    # ---- ties
    best, median, ties_result = ours(adapters, ties_weights, "ties", args, device, args.ties_repeat)
    base = {
        "method": f"ties d={args.density}",
        "ours_s": best,
        "ours_median_s": median,
        "ours_energy": ties_result.stats.energy_kept,
    }
    merged_energy = sum(m.energy for m in ties_result.stats.modules.values())
    theirs_svd = None
    if "ties_svd" in peft_kinds:
        seconds, theirs_svd = peft_combine(model, names, ties_weights, "ties_svd", args, device)
        rows.append(
            {
                **base,
                "peft": "ties_svd",
                "peft_s": seconds,
                "diff": rel_diff(ties_result.modules, theirs_svd),
                # both project the same dense TIES delta M: energy = ‖B'A'‖² / ‖M‖²
                "peft_energy": energy_of(theirs_svd) / merged_energy,
            }
        )
    if "ties" in peft_kinds:
        seconds, theirs = peft_combine(model, names, ties_weights, "ties", args, device)
        row = {
            **base,
            "peft": "ties (factor-wise)",
            "peft_s": seconds,
            "diff": rel_diff(ties_result.modules, theirs),
        }
        if theirs_svd is not None:
            row["peft_vs_peft_ties_svd"] = rel_diff(theirs, theirs_svd)
        rows.append(row)
    if not any(r["method"].startswith("ties") for r in rows):
        rows.append(base)

    print_report(args, device, peft.__version__, modules, t_build, rows, svd_weights)
    return 0


def print_report(args, device, peft_version, modules, t_build, rows, svd_weights):
    """The side-by-side table."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = (
            f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        )
    print(f"# bench/combine.py  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}")
    print(
        f"# device: {device} ({where})  torch {torch.__version__}  peft {peft_version}  "
        f"python {platform.python_version()}"
    )
    print(f"# command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"# hidden {args.hidden}, intermediate {args.intermediate}; "
        f"{args.layers} layer(s) × {len(args.targets)} modules = {modules} modules "
        f"({','.join(args.targets)}); {args.adapters} adapters of rank {args.rank} "
        f"(alpha {2 * args.rank}); target rank {args.target_rank}; build {t_build:.1f} s"
    )
    print(
        f"# svd weights {svd_weights}; ties weights equal, density {args.density}, "
        f"sign 'total'; ours = best of {args.repeat} (svd) / {args.ties_repeat} (ties) runs"
        f"{' after a warm-up' if device.type == 'cuda' else ''}, PEFT = one run"
    )
    header = (
        f"{'method':<14}{'PEFT side':<20}{'ours s':>9}{'PEFT s':>10}{'speedup':>9}"
        f"{'diff vs PEFT':>14}{'ours vs exact':>15}{'PEFT vs exact':>15}"
        f"{'energy ours/PEFT/best':>24}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        speed = f"{r['peft_s'] / r['ours_s']:.0f}x" if "peft_s" in r else "-"
        if "peft_s" in r and r["peft_s"] / r["ours_s"] < 10:
            speed = f"{r['peft_s'] / r['ours_s']:.2f}x"
        energy = f"{r['ours_energy']:.4f}"
        if "peft_energy" in r:
            energy += f"/{r['peft_energy']:.4f}"
        if "exact_energy" in r:
            energy += f"/{r['exact_energy']:.4f}"
        print(
            f"{r['method']:<14}{r.get('peft', '-'):<20}{r['ours_s']:>9.3f}"
            f"{_fmt(r.get('peft_s'), '.2f'):>10}{speed:>9}{_fmt(r.get('diff'), '.2e'):>14}"
            f"{_fmt(r.get('ours_err'), '.2e'):>15}{_fmt(r.get('peft_err'), '.2e'):>15}"
            f"{energy:>24}"
        )
    for r in rows:
        if "peft_vs_peft_ties_svd" in r:
            print(
                f"# PEFT factor-wise ties vs PEFT ties_svd (same definition as ours): relative "
                f"difference {r['peft_vs_peft_ties_svd']:.2e}"
            )
    svd = rows[0]
    if "peft_s" in svd:
        ratio = svd["peft_s"] / svd["ours_s"]
        ok = ratio >= 500 and svd["diff"] <= 1e-3
        print(
            f"svd: {ratio:.0f}x faster than PEFT (target >= 500x), relative difference "
            f"{svd['diff']:.1e} (target <= 1e-3): {'PASS' if ok else 'FAIL'}"
        )


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    raise SystemExit(main())
