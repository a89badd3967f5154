"""Can whole stretches of z be ruled out of the truncation set without tracing every piece?

The parametric search traces every network piece it needs, although far from z_obs the
selection usually differs from M_obs for hundreds of pieces in a row. If a *sound*
over-approximation of the filtered difference F over an interval [z1, z2] showed one pixel
certainly on the other side of ±λ than in M_obs, the whole interval could be dropped at
once and the p-value would stay exact. This script measures whether that pays off.

1. **Ideal** (perfect bounds): walks the exact pieces of [−10, 10] and counts the pieces
   that must still be traced (no pixel certainly differs on them) plus the runs of
   consecutive pieces over which one pixel keeps differing.
2. **Real bounds** on spans of k consecutive pieces, each span bounded by a zonotope:
   F = c + Σ_j g_j·ε_j + r with ε_j ∈ [−1, 1] and a box term |r|. Generator 0 is the
   direction of z; every ReLU that may switch inside the span is replaced by its tightest
   linear relaxation, which adds one generator (DeepZ). ``--max-generators`` keeps the
   largest generators and moves the rest into the box; 0 gives plain interval
   arithmetic on the z-affine form. Reported: share of spans certified "selection ≠ M_obs",
   final number of generators and seconds per span, against seconds per point of the
   ordinary batched trace (same process, one thread).

Usage::

    python benchmarks/si_interval_bounds.py --size 8 --trials 3 --out F.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from si_models import get_localizer  # noqa: E402
from si_validity import LAM, draw_trial  # noqa: E402

from diffad.bench.machine import machine_info  # noqa: E402
from diffad.bench.results import write_json  # noqa: E402
from diffad.selective.affine import (  # noqa: E402
    avg_pool_pair,
    conv_pair,
    mean_filter_pair,
    upsample_pair,
)
from diffad.selective.selective_test import SelectiveTest  # noqa: E402
from diffad.selective.tracer import ReconstructionTracer  # noqa: E402

Z_RANGE = 10.0


class Zonotope:
    """Centre and generators (C, 1 + G, H, W), column 0 the centre, plus a box radius."""

    def __init__(self, gens: torch.Tensor, box: torch.Tensor) -> None:
        self.gens, self.box = gens, box

    def linear(self, op) -> Zonotope:
        # Only for maps with non-negative weights (pooling, up-sampling, filtering), which
        # act on the box as they do on the generators.
        return Zonotope(op(self.gens), op(self.box))

    def padded(self, width: int) -> torch.Tensor:
        return _pad(self.gens, width)


def _pad(cols: torch.Tensor, width: int) -> torch.Tensor:
    """Zero columns appended to (C, k, H, W) up to (C, width, H, W)."""
    extra = cols.new_zeros((cols.shape[0], width - cols.shape[1], *cols.shape[2:]))
    return torch.cat([cols, extra], 1)


def _combine(a: Zonotope, ca: float, b: Zonotope, cb: float) -> Zonotope:
    width = max(a.gens.shape[1], b.gens.shape[1])
    return Zonotope(ca * a.padded(width) + cb * b.padded(width), abs(ca) * a.box + abs(cb) * b.box)


def _concat(a: Zonotope, b: Zonotope) -> Zonotope:
    width = max(a.gens.shape[1], b.gens.shape[1])
    return Zonotope(torch.cat([a.padded(width), b.padded(width)]), torch.cat([a.box, b.box]))


def _relu(z: Zonotope, slope: float, max_generators: int) -> Zonotope:
    g, box = z.gens, z.box
    centre = g[:, :1]
    spread = g[:, 1:].abs().sum(1, keepdim=True) + box
    lo, hi = centre - spread, centre + spread
    mixed = (lo < 0) & (hi > 0)
    # DeepZ: on [lo, hi], relu(x) lies within λx + μ ± μ with λ = hi/(hi − lo), μ = −λ·lo/2.
    lam = torch.where(hi <= 0, 0.0, torch.where(lo >= 0, 1.0, hi / (hi - lo)))
    mu = torch.where(mixed, -lam * lo / 2, 0.0) * (1 - slope)
    factor = slope + (1 - slope) * lam  # leaky: slope·x + (1 − slope)·relu(x)
    g = g * factor
    g[:, :1] += mu
    box = box * factor
    where = mixed.nonzero()
    if len(where):
        new = g.new_zeros((g.shape[0], len(where), *g.shape[2:]))
        cols = torch.arange(len(where))
        new[where[:, 0], cols, where[:, 2], where[:, 3]] = mu[
            where[:, 0], 0, where[:, 2], where[:, 3]
        ]
        g = torch.cat([g, new], 1)
    extra = g.shape[1] - 2 - max_generators  # columns 0 and 1 (centre, z) always stay
    if extra > 0:
        size = g[:, 2:].abs().sum((0, 2, 3))
        order = torch.argsort(size, descending=True)
        keep, drop = order[:max_generators] + 2, order[max_generators:] + 2
        box = box + g[:, drop].abs().sum(1, keepdim=True)
        g = torch.cat([g[:, :2], g[:, keep]], 1)
    return Zonotope(g, box)


def _block(tracer, z, blk, max_generators) -> Zonotope:
    _, _, const, k, _, weight = blk
    z = Zonotope(
        conv_pair(z.gens, weight, k, 1, const), conv_pair(z.box, weight.abs(), k, 0, const)
    )
    return _relu(z, tracer.negative_slope, max_generators)


def _unet(tracer, z, step, max_generators) -> Zonotope:
    skips = []
    for j, blk in enumerate(step["down"]):
        if j > 0:
            z = z.linear(avg_pool_pair)
        z = _block(tracer, z, blk, max_generators)
        skips.append(z)
    skips.pop()
    for blk in step["up"]:
        z = _concat(z.linear(lambda t: upsample_pair(t, tracer.upsample)), skips.pop())
        z = _block(tracer, z, blk, max_generators)
    weight, bias, k = step["out"]
    return Zonotope(
        conv_pair(z.gens, weight, k, 1, bias), conv_pair(z.box, weight.abs(), k, 0, bias)
    )


def bound_filtered_difference(
    tracer: ReconstructionTracer,
    a: np.ndarray,
    b: np.ndarray,
    z1: float,
    z2: float,
    max_generators: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Sound lower and upper bounds of F over [z1, z2] and the number of generators used."""
    c, h, w = tracer.image_shape
    at = torch.as_tensor(a, dtype=torch.float64).reshape(c, h, w)
    bt = torch.as_tensor(b, dtype=torch.float64).reshape(c, h, w)
    x = torch.stack([at + bt * (z1 + z2) / 2, bt * (z2 - z1) / 2], 1)  # z = centre + half·ε
    z = Zonotope(tracer.in_scale * x, x.new_zeros((c, 1, h, w)))
    z.gens[:, 0] += tracer.in_noise
    with torch.no_grad():
        for step in tracer.steps:
            eps = _unet(tracer, z, step, max_generators)
            z = _combine(z, step["c_x"], eps, step["c_eps"])
            if step["noise"] is not None:
                z.gens[:, 0] += step["noise"]
        width = z.gens.shape[1]
        diff = Zonotope(z.gens - _pad(x, width), z.box)
        filt = diff.linear(lambda t: mean_filter_pair(t, tracer.filter_size))
    centre = filt.gens[:, 0].reshape(-1)
    spread = filt.gens[:, 1:].abs().sum(1).reshape(-1) + filt.box.reshape(-1)
    return (centre - spread).numpy(), (centre + spread).numpy(), width - 1


def certainly_different(lower, upper, m_obs) -> np.ndarray:
    """Pixels whose selection is certain on the whole interval and differs from M_obs."""
    selected = (lower > LAM) | (upper < -LAM)
    unselected = (lower > -LAM) & (upper < LAM)
    return (selected & ~m_obs) | (unselected & m_obs)


def walk_pieces(tracer, a, b) -> list:
    """Every network piece of [−Z_RANGE, Z_RANGE], in order, with F's value and slope."""
    pieces, z = [], -Z_RANGE
    while z < Z_RANGE:
        tr = tracer.evaluate(a, b, [z])
        lo, hi = max(tr.lo[0], -Z_RANGE), min(tr.hi[0], Z_RANGE)
        pieces.append((lo, hi, z, tr.filt_value[0], tr.filt_slope[0]))
        z = tr.hi[0] + 1e-9 * max(1.0, abs(tr.hi[0]))
    return pieces


def ideal_runs(pieces, m_obs) -> dict:
    """Traced pieces + single-pixel runs needed with perfect bounds (greedy, optimal in 1-D)."""
    must_trace = runs = 0
    common = None
    for lo, hi, z0, fv, fs in pieces:
        ends = np.stack([fv + fs * (lo - z0), fv + fs * (hi - z0)])
        diff = certainly_different(ends.min(0), ends.max(0), m_obs)
        if not diff.any():
            must_trace += 1
            common = None
        elif common is None or not (common & diff).any():
            runs += 1
            common = diff
        else:
            common = common & diff
    return {"pieces": len(pieces), "must_trace": must_trace, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--trials", type=int, default=3, help="null pairs with a region")
    parser.add_argument("--spans", default="2,8,32,64,128", help="pieces per bounded span")
    parser.add_argument("--samples", type=int, default=12, help="spans per length and pair")
    parser.add_argument("--max-generators", default="0,16,1000000", help="comma-separated")
    parser.add_argument("--train-steps", type=int, default=None, help="default: 3000, 1000 at D≥32")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = args.train_steps or (1000 if args.size >= 32 else 3000)
    test = SelectiveTest(
        get_localizer(args.size, steps, 0, verbose=False), 1.0, lam=LAM, device="cpu"
    )
    spans = [int(s) for s in args.spans.split(",")]
    caps = [int(s) for s in args.max_generators.split(",")]
    rng = np.random.default_rng(0)
    rows, trial = [], 0
    while len(rows) < args.trials:
        line = test._line(*draw_trial(args.size, 0.0, "iid", 0, trial))
        trial += 1
        if line is None:
            continue
        tracer = line.tracer
        pieces = walk_pieces(tracer, line.a, line.b)
        ideal = ideal_runs(pieces, line.m_obs)
        pts = np.linspace(-3.0, 3.0, test.search_batch_size(np.size(line.a)))
        t0 = time.perf_counter()
        for _ in range(3):
            tracer.evaluate(line.a, line.b, pts)
        trace_s = (time.perf_counter() - t0) / (3 * len(pts))
        row = {
            "trial": trial - 1,
            "z_obs": line.z,
            **ideal,
            "trace_s_per_point": trace_s,
            "spans": [],
        }
        print(f"trial {trial - 1}: {ideal}, trace {trace_s * 1e3:.2f} ms/point", flush=True)
        for cap in caps:
            for k in spans:
                if k >= len(pieces):
                    continue
                starts = rng.choice(
                    len(pieces) - k, min(args.samples, len(pieces) - k), replace=False
                )
                ok, gens, secs = [], [], []
                for s in starts:
                    t0 = time.perf_counter()
                    lower, upper, g = bound_filtered_difference(
                        tracer, line.a, line.b, pieces[s][0], pieces[s + k - 1][1], cap
                    )
                    secs.append(time.perf_counter() - t0)
                    ok.append(bool(certainly_different(lower, upper, line.m_obs).any()))
                    gens.append(g)
                entry = {
                    "max_generators": cap,
                    "pieces": k,
                    "certified": float(np.mean(ok)),
                    "median_generators": float(np.median(gens)),
                    "median_s_per_span": float(np.median(secs)),
                    "tracing_s_for_span": k * trace_s,
                }
                row["spans"].append(entry)
                print(
                    f"  cap {cap} k {k}: certified {entry['certified']:.2f}, generators "
                    f"{entry['median_generators']:.0f}, {entry['median_s_per_span'] * 1e3:.1f} "
                    f"ms per span vs {entry['tracing_s_for_span'] * 1e3:.1f} ms tracing",
                    flush=True,
                )
        rows.append(row)
    machine = machine_info()
    write_json(
        args.out,
        {"size": args.size, "per_trial": rows, "command": machine["command"], "machine": machine},
    )


if __name__ == "__main__":
    main()
