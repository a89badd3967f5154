"""How much work a finer prefix cache could skip: per U-Net call against per conv block.

diffad's :class:`~diffad.selective.tracer.PrefixCache` lets a traced point start at the first
U-Net call whose decisions differ from those of an earlier point of the same line. A cache
that resumed *inside* a call, at the first conv block whose decisions differ, would skip
more, at the price of storing every block output (the skip connections) of every point.

This script measures the difference before anyone builds it. It runs null p-values of the
synthetic setting (``si_validity.py``, seed 0) without the cache, records for every traced
point the interval around it on which the decisions of the first j conv blocks are constant
(j = 1 … blocks per call × calls), and replays the search's order of rounds: a point may
reuse any point of an earlier round, as the real cache does. For each point it counts the
multiply-adds still to run when resuming (a) after the deepest shared U-Net call and (b)
after the deepest shared conv block. Multiply-adds per block are conv weights × output
pixels; the output conv of each call is counted with its last block. The same trials are then
run with the real cache: its ``n_network_calls`` checks the replay of (a), and its p-value
must equal the uncached one to 1e-9. The two call counts differ slightly where a point lands
exactly on a cached interval end, and where a round is split into chunks to bound memory
(D ≥ 32): the real cache then also reuses the earlier chunks of the same round, the replay
does not, for either granularity.

Example: ``python benchmarks/si_reuse_depth.py --size 8 --trials 20 --out F.json``
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from si_models import get_localizer  # noqa: E402
from si_validity import LAM, draw_trial  # noqa: E402

from diffad.bench.machine import machine_info  # noqa: E402
from diffad.bench.results import write_json  # noqa: E402
from diffad.selective.selective_test import SelectiveTest  # noqa: E402
from diffad.selective.tracer import ReconstructionTracer  # noqa: E402


def record_blocks(tracer: ReconstructionTracer, rounds: list) -> None:
    """Make ``tracer`` append, per ``evaluate`` call, (z, lo, hi, macs) to ``rounds``.

    ``lo``/``hi`` have shape (points, blocks): absolute ends of the interval on which the
    decisions of the first j + 1 blocks stay constant; ``macs`` (blocks,) per point.
    """
    snaps: list = []
    plain_block, plain_evaluate = tracer._block, tracer.evaluate

    def block(self, state, blk, n, lo, hi, patterns):
        out = plain_block(state, blk, n, lo, hi, patterns)
        macs = blk[5].numel() * state.shape[2] * state.shape[3]
        snaps.append((lo.cpu().numpy().copy(), hi.cpu().numpy().copy(), macs))
        return out

    def evaluate(self, a, b, z, patterns=False, cache=None):
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        # One chunk per call keeps one snapshot per block; chunking only bounds memory.
        self.max_points = max(self.max_points, z.size)
        snaps.clear()
        result = plain_evaluate(a, b, z, patterns, cache)
        lo = np.stack([s[0] for s in snaps], 1) + z[:, None]
        hi = np.stack([s[1] for s in snaps], 1) + z[:, None]
        macs = np.array([s[2] for s in snaps], dtype=np.float64)
        per_call = len(macs) // len(self.steps)
        for k, step in enumerate(self.steps):  # the output conv runs after the last decision
            macs[per_call * (k + 1) - 1] += step["out"][0].numel() * np.prod(self.image_shape[1:])
        rounds.append((z, lo, hi, macs))
        return result

    tracer._block = types.MethodType(block, tracer)
    tracer.evaluate = types.MethodType(evaluate, tracer)


def replay(rounds: list, calls: int) -> dict:
    """Multiply-adds run with no cache, a per-call cache and a per-block cache."""
    macs = rounds[0][3]
    blocks = len(macs)
    per_call = blocks // calls
    done_before = np.concatenate([[0.0], np.cumsum(macs)])  # MACs of the first j blocks
    full = done_before[-1]
    seen_lo: list[np.ndarray] = []
    seen_hi: list[np.ndarray] = []
    total = {"none": 0.0, "call": 0.0, "block": 0.0}
    calls_run = 0
    for z, lo, hi, _ in rounds:
        past_lo = np.array(seen_lo).reshape(-1, blocks)
        past_hi = np.array(seen_hi).reshape(-1, blocks)
        for zi in z:
            inside = (past_lo <= zi) & (zi <= past_hi)
            depth = int(np.cumprod(inside, axis=1).sum(axis=1).max()) if len(past_lo) else 0
            call_depth = min(depth // per_call, calls - 1)  # the last call always runs
            block_depth = min(depth, blocks - 1)
            total["none"] += full
            total["call"] += full - done_before[call_depth * per_call]
            total["block"] += full - done_before[block_depth]
            calls_run += calls - call_depth
        seen_lo.extend(lo)
        seen_hi.extend(hi)
    return {"macs": total, "calls_run": calls_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=None, help="default: 3000, 1000 at D≥32")
    parser.add_argument("--trials", type=int, default=20, help="p-values with a selected region")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: SelectiveTest's default"
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = args.train_steps or (1000 if args.size >= 32 else 3000)
    loc = get_localizer(args.size, steps, 0, verbose=False)
    batch = {} if args.batch_size is None else {"batch_size": args.batch_size}
    plain = SelectiveTest(loc, 1.0, lam=LAM, device="cpu", reuse_prefix=False, **batch)
    cached = SelectiveTest(loc, 1.0, lam=LAM, device="cpu", **batch)
    shape = (1, args.size, args.size)
    rounds: list = []
    tracer = plain._tracer(shape)
    record_blocks(tracer, rounds)
    calls = len(tracer.steps)
    rows = []
    trial = 0
    t0 = time.perf_counter()
    while len(rows) < args.trials:
        pair = draw_trial(args.size, 0.0, "iid", 0, trial)
        rounds.clear()
        res = plain.test(*pair)
        if res.selected:
            rep = replay(rounds, calls)
            real = cached.test(*pair)
            if abs(real.p_value - res.p_value) > 1e-9:
                raise RuntimeError(
                    f"trial {trial}: p {res.p_value} without the cache, {real.p_value} with"
                )
            row = {
                "trial": trial,
                "points": res.n_pieces,
                "p_value": res.p_value,
                "macs_no_cache": rep["macs"]["none"],
                "macs_call_cache": rep["macs"]["call"],
                "macs_block_cache": rep["macs"]["block"],
                "calls_run_replayed": rep["calls_run"],
                "calls_run_real_cache": real.n_network_calls,
            }
            rows.append(row)
            print(
                f"trial {trial}: {res.n_pieces} points, MACs run per-call "
                f"{row['macs_call_cache'] / row['macs_no_cache']:.3f}, per-block "
                f"{row['macs_block_cache'] / row['macs_no_cache']:.3f} of no cache; calls "
                f"replayed {rep['calls_run']} vs real {real.n_network_calls}",
                flush=True,
            )
        trial += 1
    none = sum(r["macs_no_cache"] for r in rows)
    summary = {
        "size": args.size,
        "train_steps": steps,
        "batch_size": plain.search_batch_size(args.size**2),
        "trials": len(rows),
        "points": sum(r["points"] for r in rows),
        "blocks_per_call": len(tracer.steps[0]["down"]) + len(tracer.steps[0]["up"]),
        "fraction_run_call_cache": sum(r["macs_call_cache"] for r in rows) / none,
        "fraction_run_block_cache": sum(r["macs_block_cache"] for r in rows) / none,
        # Points that land exactly on a cached interval end may resolve either way by rounding.
        "calls_run_replayed": sum(r["calls_run_replayed"] for r in rows),
        "calls_run_real_cache": sum(r["calls_run_real_cache"] for r in rows),
        "elapsed_s": time.perf_counter() - t0,
    }
    summary["block_over_call"] = (
        summary["fraction_run_block_cache"] / summary["fraction_run_call_cache"]
    )
    print(summary, flush=True)
    machine = machine_info()
    write_json(
        args.out,
        {**summary, "per_trial": rows, "command": machine["command"], "machine": machine},
    )


if __name__ == "__main__":
    main()
