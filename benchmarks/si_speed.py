"""Seconds per DAL-Test p-value and milliseconds per traced piece.

For ``--images`` null test images of size D (X, X′ i.i.d. N(0, 1), regions non-empty) and the
cached synthetic-setting model (``si_models.py``), times the parametric p-value with the
``precision`` stop (1e-3, si4onnx's default) and, with ``--exhaustive``, the full search over
[−10, 10]. Wall and CPU seconds are both recorded: on a shared machine wall time depends on
the load, CPU time much less. ``--setup`` times the tracer's construction (once per image:
the reconstruction noise differs).

Example: ``python benchmarks/si_speed.py --size 8 --images 5 --out F.json``;
``--images 0 --setup`` times only the set-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from si_models import get_localizer  # noqa: E402

LAM = 0.8  # the published synthetic setting

from diffad.provenance import machine_info, write_json  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402
from diffad.selective.tracer import ReconstructionTracer  # noqa: E402


def null_pairs(tester: SelectiveTest, size: int, count: int, seed: int) -> list:
    """The first ``count`` null pairs with a non-empty selected region (float64 pairs in
    model layout, tested as they are with ``test_prepared``)."""
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < count:
        x, r = rng.standard_normal((size, size)), rng.standard_normal((size, size))
        if tester.test_prepared(x, r, "naive").selected:
            pairs.append((x, r))
    return pairs


def timed(fn):
    """(result, wall seconds, CPU seconds) of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def setup_times(loc, size: int, repeats: int = 5) -> dict:
    """Median CPU seconds of one tracer construction (once per image: each image has its own
    reconstruction noise)."""
    chain = loc.chain()
    noises = chain.draw_noise((1, 1, size, size), 0)
    cpus = [
        timed(lambda: ReconstructionTracer(loc.model_, chain, noises))[2] for _ in range(repeats)
    ]
    return {"tracer_cpu_seconds_median": float(np.median(cpus)), "repeats": repeats}


def walk(tester: SelectiveTest, x, r, pieces: int, batch: int = 4) -> dict:
    """Trace ``pieces`` consecutive pieces right of z_obs (as the search does, with the
    prefix cache): measured CPU ms per piece and mean piece width. For sizes where a full
    p-value does not fit the time budget; the width only gives a rough piece density."""
    from diffad.selective.prefix_cache import PrefixCache

    a, b, z_obs, region = tester.conditioning_line(x, r)
    tracer = tester._tracer((1, *x.shape))
    cache, z, found, evals = PrefixCache(), z_obs, set(), 0
    c0, w0 = time.process_time(), time.perf_counter()
    while len(found) < pieces:
        widths = [hi - lo for lo, hi in found]
        delta = float(np.median(widths)) if widths else 1e-3
        tr = tracer.evaluate(a, b, z + delta * np.arange(batch), cache=cache)
        evals += batch
        found |= set(zip(tr.lo.round(12).tolist(), tr.hi.round(12).tolist(), strict=True))
        moved = True
        while moved:  # advance over the contiguous pieces found so far
            moved = False
            for lo, hi in found:
                if lo <= z + 1e-9 < hi:
                    z, moved = hi + 1e-9 * max(1.0, abs(hi)), True
    widths = [hi - lo for lo, hi in found]
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {
        "region_size": int(region.sum()),
        "z": z_obs,
        "evaluations": evals,
        "pieces": len(found),
        "cpu_ms_per_evaluation": 1000 * cpu / evals,
        "wall_ms_per_evaluation": 1000 * wall / evals,
        "median_piece_width": float(np.median(widths)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--exhaustive", action="store_true")
    parser.add_argument("--setup", action="store_true", help="time the tracer set-up")
    parser.add_argument(
        "--model-size", type=int, default=None, help="train size of the model (default D)"
    )
    parser.add_argument(
        "--walk", type=int, default=0, help="only trace this many pieces per image (large D)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU cores used)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_info()
    msize = args.model_size or args.size
    loc = get_localizer(msize, args.train_steps, 0, batch_size=args.train_batch_size)
    if msize != args.size:
        # The U-Net is fully convolutional: run the model of size msize on D × D images. The
        # localiser's image shape is what its inputs are checked against and what its noise
        # draws (seed 0) are shaped by.
        loc.image_shape_ = (loc.image_shape_[0], args.size, args.size)
    modes = {"precision_1e-3": {"termination": "precision", "precision": 1e-3}}
    if args.exhaustive:
        modes["exhaustive_zmax10"] = {"termination": "exhaustive", "z_max": 10.0}
    base = SelectiveTest(loc, 1.0, lam=LAM, device="cpu")
    pairs = null_pairs(base, args.size, args.images, args.seed)
    doc = {"size": args.size, "model_train_size": msize, "images": len(pairs), "modes": {}}
    if args.walk or not pairs:
        modes = {}
    if args.walk:
        doc["walk"] = [walk(base, x, r, args.walk) for x, r in pairs]
        print(doc["walk"], flush=True)
    for name, kw in modes.items():
        tester = SelectiveTest(loc, 1.0, lam=LAM, device="cpu", batch_size=args.batch_size, **kw)
        rows = []
        for x, r in pairs:
            res, wall, cpu = timed(lambda x=x, r=r, t=tester: t.test_prepared(x, r))
            rows.append(
                {
                    "p_value": res.p_value,
                    "p_bounds": list(res.p_value_bounds),
                    "z": res.z,
                    "region_size": res.region_size,
                    "pieces": res.n_pieces,
                    "wall_seconds": wall,
                    "cpu_seconds": cpu,
                }
            )
            print(name, rows[-1], flush=True)
            doc["modes"][name] = {"rows": rows, "partial": True}
            write_json(args.out, doc, indent=1)
        doc["modes"][name] = {
            "median_wall_seconds": float(np.median([r["wall_seconds"] for r in rows])),
            "median_cpu_seconds": float(np.median([r["cpu_seconds"] for r in rows])),
            "mean_wall_seconds": float(np.mean([r["wall_seconds"] for r in rows])),
            "mean_cpu_seconds": float(np.mean([r["cpu_seconds"] for r in rows])),
            "mean_pieces": float(np.mean([r["pieces"] for r in rows])),
            "ms_per_piece_cpu": 1000
            * float(np.sum([r["cpu_seconds"] for r in rows]))
            / float(np.sum([r["pieces"] for r in rows])),
            "rows": rows,
        }
    if args.setup:
        doc["setup"] = setup_times(loc, args.size)
        print(doc["setup"], flush=True)
    doc["command"] = machine["command"]
    doc["machine"] = {**machine, "load_average_now": os.getloadavg()}
    write_json(args.out, doc, indent=1)
    print(json.dumps({k: v for k, v in doc.items() if k != "modes"}, indent=1))


if __name__ == "__main__":
    main()
