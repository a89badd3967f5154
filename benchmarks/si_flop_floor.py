"""How close each DAL-Test engine is to the float64 arithmetic floor of one traced point.

Tracing one point z of the line costs two passes of the seeded reconstruction (the value a + b·z
and the slope b) through every U-Net call. This script counts the multiply-adds of one U-Net
call with forward hooks (convolutions and linear layers; element-wise work is ignored, so the
floor is a lower bound), measures this machine's single-thread float64 GEMM rate (median of
``--repeats`` runs), and puts both next to the per-point CPU cost that ``si_vs_si4onnx.py``
measured for diffad (CPU seconds / traced points) and for si4onnx (CPU seconds / pieces
searched) in the given result files.

``floor_ms`` = 2 · 5 · MACs · 2 FLOP / GEMM rate: no float64 engine that runs all five calls for
every piece can trace a point faster on this CPU. diffad's prefix cache lets a point skip the
leading calls it shares with an earlier point; ``--probe-trials`` runs that many null p-values
of ``si_validity.py`` (seed 0) per size with the cached models and records the U-Net calls
actually run per traced point, giving ``floor_ms_cached`` = floor · calls per point / 5.
``--reuse`` takes that fraction instead from ``si_reuse_depth_d*.json`` results (multiply-adds
left to run with the cache, replayed over more p-values). ``max_ratio_same_pieces`` = si4onnx's
cost per piece over the floor (``_cached``: over the cached floor): the largest speed-up over
si4onnx such an engine can reach when both visit the same pieces.

Example: ``python benchmarks/si_flop_floor.py --results benchmarks/results/si_vs_si4onnx_d8.json
benchmarks/results/si_vs_si4onnx_d16.json benchmarks/results/si_vs_si4onnx_d32.json --out F.json``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from si_models import get_localizer  # noqa: E402
from si_validity import LAM, draw_trial  # noqa: E402

from diffad.diffusion.unet import UNet  # noqa: E402
from diffad.provenance import machine_info, write_json  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402


def unet_macs(size: int, channels: int = 1) -> int:
    """Multiply-adds of one U-Net call on one (channels, size, size) image."""
    net = UNet().double().eval()
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules()]
    with torch.no_grad():
        net(torch.zeros(1, channels, size, size, dtype=torch.float64), 460)
    for h in hooks:
        h.remove()
    return total


def gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Median single-thread float64 GEMM rate (GFLOP/s) of an n×n by n×n product."""
    a = torch.randn(n, n, dtype=torch.float64)
    b = torch.randn(n, n, dtype=torch.float64)
    torch.matmul(a, b)  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.process_time()
        torch.matmul(a, b)
        rates.append(2.0 * n**3 / (time.process_time() - t0) / 1e9)
    return float(np.median(rates))


def per_point_costs(path: Path) -> dict:
    """diffad CPU ms per traced point and si4onnx CPU ms per searched piece, default modes."""
    doc = json.loads(path.read_text())
    ours, theirs = [], []
    for image in doc["per_image"]:
        d = image.get("diffad", {}).get("default")
        s = image.get("si4onnx", {}).get("default")
        if d and d.get("n_pieces"):
            ours.append(1e3 * d["cpu_seconds"] / d["n_pieces"])
        if s and s.get("search_count"):
            theirs.append(1e3 * s["cpu_seconds"] / s["search_count"])
    return {
        "size": doc["size"],
        "images": len(ours),
        "diffad_ms_per_point": float(np.median(ours)) if ours else None,
        "si4onnx_ms_per_piece": float(np.median(theirs)) if theirs else None,
    }


def calls_per_point(size: int, train_steps: int, trials: int) -> dict:
    """U-Net calls run per traced point (prefix cache) over ``trials`` null p-values."""
    loc = get_localizer(size, train_steps, 0, verbose=False)
    tester = SelectiveTest(loc, 1.0, lam=LAM, batch_size=16, device="cpu")
    calls = points = done = trial = 0
    c0 = time.process_time()
    while done < trials:
        res = tester.test_prepared(*draw_trial(size, 0.0, "iid", 0, trial))
        trial += 1
        if res.selected:
            calls, points, done = calls + res.n_network_calls, points + res.n_pieces, done + 1
    return {
        "probe_p_values": done,
        "probe_points": points,
        "probe_calls_per_point": calls / points,
        "probe_cpu_ms_per_point": 1e3 * (time.process_time() - c0) / points,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs="+", required=True, help="si_vs_si4onnx JSON files")
    parser.add_argument("--calls", type=int, default=5, help="U-Net calls per reconstruction")
    parser.add_argument("--gemm-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--probe-trials", type=int, default=0)
    parser.add_argument(
        "--reuse",
        nargs="*",
        default=[],
        help="si_reuse_depth.py JSON files: the cache's fraction of multiply-adds per size "
        "(instead of --probe-trials)",
    )
    parser.add_argument(
        "--train-steps",
        default="8:3000,16:3000,32:1000",
        help="size:steps of the cached models used by --probe-trials",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    budgets = {
        int(size): int(steps)
        for size, steps in (item.split(":") for item in args.train_steps.split(","))
    }
    reuse = {
        int(doc["size"]): float(doc["fraction_run_call_cache"])
        for doc in (json.loads(Path(p).read_text()) for p in args.reuse)
    }
    rate = gemm_gflops(args.gemm_size, args.repeats)
    rows = []
    for path in args.results:
        row = per_point_costs(Path(path))
        macs = unet_macs(row["size"])
        floor_ms = 1e3 * 2 * args.calls * macs * 2 / (rate * 1e9)
        row["unet_macs_per_call"] = macs
        row["floor_ms"] = floor_ms
        if row["size"] in reuse:
            # Multiply-adds the prefix cache leaves to run, replayed by si_reuse_depth.py.
            row["cache_fraction"] = reuse[row["size"]]
            row["cache_fraction_source"] = "si_reuse_depth fraction_run_call_cache"
        elif args.probe_trials:
            row.update(calls_per_point(row["size"], budgets[row["size"]], args.probe_trials))
            row["cache_fraction"] = row["probe_calls_per_point"] / args.calls
            row["cache_fraction_source"] = "probe U-Net calls per point / calls"
        if "cache_fraction" in row:
            row["floor_ms_cached"] = floor_ms * row["cache_fraction"]
        for tag, floor in (("", floor_ms), ("_cached", row.get("floor_ms_cached"))):
            if floor is None:
                continue
            if row["diffad_ms_per_point"]:
                row[f"diffad_over_floor{tag}"] = row["diffad_ms_per_point"] / floor
            if row["si4onnx_ms_per_piece"]:
                row[f"max_ratio_same_pieces{tag}"] = row["si4onnx_ms_per_piece"] / floor
        rows.append(row)
        print(row, flush=True)
    machine = machine_info()
    doc = {
        "gemm_gflops_single_thread": rate,
        "gemm_size": args.gemm_size,
        "rows": rows,
        "command": machine["command"],
        "machine": machine,
    }
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
