"""Seconds and traced pieces per DAL-Test p-value on a given device (CPU or CUDA).

For each size D of ``--size`` it takes the cached model of the published synthetic setting
(``si_models.py``; trained on ``--device`` when missing), draws ``--images`` null pairs (X, X′
i.i.d. N(0, 1)) whose selected region is non-empty and times one exact p-value each (precision
1e-3) with the tracer on ``--device``. It records the device the tracer ran on (and the GPU's
name), so that the same command gives comparable figures on a GPU machine.

``--ci`` is a seconds-long smoke mode for tests: D = 8, a tiny untrained U-Net, one image.

Examples: ``python benchmarks/si_device.py --size 32,64 --device auto --out F.json``;
``python benchmarks/si_device.py --ci --device cpu --out F.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from si_models import get_localizer  # noqa: E402

from diffad.device import resolve_device  # noqa: E402
from diffad.provenance import machine_info, write_json  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402
from diffad.selective.ray_backend import portable  # noqa: E402

LAM = 0.8  # the published synthetic setting


def tiny_localizer(seed: int = 0, size: int = 8) -> Any:
    """An untrained two-level U-Net with the published chain for ``size`` × ``size`` images
    (CI mode: seconds, not hours)."""
    from diffad.diffusion.schedules import NoiseSchedule
    from diffad.diffusion.unet import UNet, UNetConfig
    from diffad.image.ddpm_localizer import DDPMLocalizer

    torch.manual_seed(seed)
    loc = DDPMLocalizer(t_start=460, ddim_steps=5, eta=1.0)
    loc.model_ = UNet(UNetConfig(channels=[4, 8])).eval()
    loc.noise_schedule_ = NoiseSchedule.linear(1000)
    # What fit() would set: the image shape (prepare() and the noise draws read it) and no
    # preprocessing.
    loc.image_shape_ = (1, size, size)
    loc.preprocessing_ = None
    return loc


def null_pairs(tester: SelectiveTest, size: int, count: int, seed: int) -> list:
    """The first ``count`` null pairs whose selected region is non-empty (float64 pairs in
    model layout, tested as they are with ``test_prepared``)."""
    rng = np.random.default_rng(seed)
    pairs: list = []
    while len(pairs) < count:
        x, r = rng.standard_normal((size, size)), rng.standard_normal((size, size))
        if tester.test_prepared(x, r, "naive").selected:
            pairs.append((x, r))
    return pairs


def device_info(device: torch.device) -> dict:
    """The device the tracer runs on, and the GPU's name and memory on CUDA."""
    info: dict[str, Any] = {"device": device.type}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1))
    return info


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_size(tester: SelectiveTest, device: torch.device, size: int, images: int, seed: int):
    """Per-image p-values, pieces and seconds for D = ``size``."""
    rows = []
    for x, r in null_pairs(tester, size, images, seed):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        res = tester.test_prepared(x, r)
        _sync(device)
        rows.append(
            {
                "p_value": res.p_value,
                "region_size": res.region_size,
                "pieces": res.n_pieces,
                "network_calls": res.n_network_calls,
                "wall_seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0,
            }
        )
        print(size, rows[-1], flush=True)
    walls = [r["wall_seconds"] for r in rows]
    pieces = [r["pieces"] for r in rows]
    return {
        "size": size,
        # Where the float64 tracer really ran (the one the test built and cached).
        "tracer_device": str(tester._tracer((1, size, size)).device),
        "images": len(rows),
        "median_seconds_per_p_value": float(np.median(walls)),
        "mean_pieces_per_p_value": float(np.mean(pieces)),
        "ms_per_piece": 1000 * float(np.sum(walls)) / float(np.sum(pieces)),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="32,64", help="comma-separated image sizes D")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--ci", action="store_true", help="tiny smoke run (D = 8, seconds)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        sizes = [8] if args.ci else [int(s) for s in args.size.split(",")]
    except ValueError as err:
        parser.error(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    doc: dict[str, Any] = {
        "mode": "ci" if args.ci else "published model",
        "requested_device": args.device,
        **device_info(device),
        "load_average_before": list(os.getloadavg()),
        "sizes": [],
    }
    for size in sizes:
        if args.ci:
            loc = tiny_localizer(size=size)
        else:
            loc = get_localizer(size, args.train_steps, 0, verbose=False, device=str(device))
        tester = SelectiveTest(loc, 1.0, lam=LAM, device=str(device), termination="precision")
        entry = time_size(tester, device, size, args.images, args.seed)
        # What a Ray run puts in the object store once (the test with its network).
        entry["model_parameters"] = int(sum(p.numel() for p in loc.model_.parameters()))
        entry["pickled_test_bytes"] = len(pickle.dumps(portable(tester)))
        doc["sizes"].append(entry)
        write_json(args.out, {**doc, "command": machine["command"], "machine": machine}, 1)
    doc["load_average_after"] = list(os.getloadavg())
    doc.update(command=machine["command"], machine=machine)
    write_json(args.out, doc, indent=1)
    print(json.dumps({k: v for k, v in doc.items() if k not in ("sizes", "machine")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
