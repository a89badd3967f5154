"""Region p-values for a batch of images on several workers: wall time, agreement, overheads.

For ``--images`` test images of size D (half null N(0, 1), half with a +2 lesion of D/4 × D/4
pixels; each against its own independent N(0, 1) reference, Σ = I, λ = 0.8, precision 1e-3)
and a small DDPM trained on N(0, 1) images of that size (cached), it times:

1. the serial run (``test_many`` in this process, ``--threads`` torch threads);
2. ``test_many`` on ``--backend`` with each worker count of ``--workers``. For Ray, a local
   instance with that many CPUs is started first (its start-up is timed apart) and stopped
   after; the wall time includes the workers' cold start (imports, model deserialisation);
3. the per-task overhead of Ray against joblib: ``--overhead-images`` images through the
   cheap ``naive`` method (one reconstruction each), once to warm the workers and once
   timed; overhead per task = (workers × wall − Σ seconds inside the tests) / images;
4. with ``--rss-images N``: memory while streaming N images of ``--rss-size`` (method
   ``naive``) through :func:`~diffad.selective.batch.iter_tests`, twice: dropping each result
   as it arrives (what the backend itself holds), then into a JSON-lines result log as
   ``diffad test --out`` does (which keeps every result for the report). The driver's current
   and peak RSS after 10 %, 50 % and 100 % of the images, its growth per image over the
   second half, and the peak RSS of every child process, Ray's workers among them (Linux
   ``/proc``). Run it alone (``--skip-scale --overhead-images 0``) so the driver's peak is
   the stream's.

p-values, p brackets, intervals and regions of every run are compared with the serial ones
(exact equality). The load average is recorded before and after: on a shared machine the
times are comparable only together with it.

Example: ``python benchmarks/si_scale.py --size 16 --images 50 --workers 1,2 --backend ray
--out F.json``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from si_models import cache_dir  # noqa: E402

from diffad.image.ddpm_localizer import DDPMLocalizer  # noqa: E402
from diffad.provenance import machine_info, write_json  # noqa: E402
from diffad.selective.batch import iter_tests  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402
from diffad.selective.result_log import ResultLog  # noqa: E402

LAM = 0.8  # the published synthetic setting


def small_model(size: int, channels: list[int], train_steps: int, seed: int = 0) -> tuple:
    """A small DDPM for ``size`` × ``size`` N(0, 1) images (cached) and its description."""
    tag = "-".join(map(str, channels))
    path = cache_dir() / f"scale_d{size}_c{tag}_steps{train_steps}_seed{seed}"
    if (path / "config.json").is_file():
        loc = DDPMLocalizer.load(path, device="cpu")
    else:
        rng = np.random.default_rng(seed)
        loc = DDPMLocalizer(
            unet={"channels": channels},
            t_start=460,
            ddim_steps=5,
            eta=1.0,
            train_steps=train_steps,
            batch_size=32,
            random_state=seed,
            device="cpu",
            verbose=False,
        )
        loc.fit(rng.standard_normal((512, 1, size, size)).astype(np.float32))
        loc.save(path)
    loc.set_params(verbose=False)
    desc = {
        "channels": channels,
        "train_steps": train_steps,
        "train_images": 512,
        "path": str(path),
        "parameters": int(sum(p.numel() for p in loc.model_.parameters())),
    }
    return loc, desc


def make_images(size: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` test images (every second one lesioned) and their references."""
    rng = np.random.default_rng(seed)
    imgs = rng.standard_normal((count, size, size))
    side = max(1, size // 4)
    for i in range(1, count, 2):
        r, c = rng.integers(0, size - side + 1, size=2)
        imgs[i, r : r + side, c : c + side] += 2.0
    return imgs, rng.standard_normal((count, size, size))


def same(a: Any, b: Any) -> bool:
    """Two results agree exactly in p-value, bracket, region and intervals."""
    if (a.p_value, a.p_value_bounds) != (b.p_value, b.p_value_bounds):
        return False
    if not np.array_equal(a.region, b.region):
        return False
    if a.intervals is None or b.intervals is None:
        return a.intervals is None and b.intervals is None
    return np.array_equal(a.intervals, b.intervals)


def largest_p_difference(xs: list, ys: list) -> float:
    """Largest |p − p'| over the images both tested with a region."""
    diffs = [abs(a.p_value - b.p_value) for a, b in zip(xs, ys, strict=True) if a.selected]
    return float(max(diffs, default=0.0))


def start_ray(workers: int) -> tuple[Any, float]:
    """A local Ray instance with ``workers`` CPUs and the seconds it took to start."""
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING")
    return ray, time.perf_counter() - t0


def worker_threads(ray: Any) -> int:
    """Torch threads inside a Ray task of one CPU."""

    @ray.remote(num_cpus=1)
    def threads() -> int:
        return torch.get_num_threads()

    return int(ray.get(threads.remote()))


def timed_batch(tester: SelectiveTest, imgs, refs, method: str, backend: str, workers: int):
    """(results, wall seconds) of ``test_many`` on a backend."""
    t0 = time.perf_counter()
    out = tester.test_many(imgs, refs, method, n_jobs=workers, backend=backend)
    return out, time.perf_counter() - t0


def overhead(results: list, wall: float, workers: int) -> float:
    """Worker-seconds per task not spent inside the tests."""
    inside = sum(r.seconds for r in results)
    return (workers * wall - inside) / len(results)


def per_task_overhead(tester: SelectiveTest, size: int, count: int, workers: list[int]) -> dict:
    """Per-task overhead of Ray and joblib on cheap tasks (warm workers)."""
    imgs, refs = make_images(size, count, 7)
    out: dict[str, Any] = {"images": count, "method": "naive", "size": size}
    serial, wall = timed_batch(tester, imgs, refs, "naive", "joblib", 1)
    out["serial_in_process"] = {"wall_seconds": wall, "per_task": overhead(serial, wall, 1)}
    for w in workers:
        if w > 1:  # joblib with one worker is the serial run above
            timed_batch(tester, imgs, refs, "naive", "joblib", w)  # start the worker pool
            res, wall = timed_batch(tester, imgs, refs, "naive", "joblib", w)
            out[f"joblib_{w}"] = {"wall_seconds": wall, "per_task": overhead(res, wall, w)}
        ray, _ = start_ray(w)
        try:
            timed_batch(tester, imgs, refs, "naive", "ray", w)  # start and warm the workers
            res, wall = timed_batch(tester, imgs, refs, "naive", "ray", w)
        finally:
            ray.shutdown()
        out[f"ray_{w}"] = {"wall_seconds": wall, "per_task": overhead(res, wall, w)}
    out["definition"] = "(workers x wall - sum of seconds inside the tests) / images, warm"
    return out


def _descendants(root: int) -> list[int]:
    """Process ids below ``root`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    out, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _peak_rss_mb(pid: int) -> tuple[str, float] | None:
    """(name, peak RSS in MB) of a process from /proc/PID/status."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return None
    hwm = [ln for ln in status if ln.startswith("VmHWM:")]
    return (Path(cmd).name or "?", int(hwm[0].split()[1]) / 1024) if hwm else None


def driver_peak_mb() -> float:
    """This process's peak RSS in MB (``ru_maxrss`` is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def driver_rss_mb() -> float | None:
    """This process's current RSS in MB (Linux /proc; None elsewhere): unlike the peak, it
    shows growth after a larger earlier step."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    rss = [ln for ln in status if ln.startswith("VmRSS:")]
    return int(rss[0].split()[1]) / 1024 if rss else None


def _stream_pass(tester, imgs, refs, backend: str, workers: int, log: Any) -> dict:
    """Stream the images once; the driver's RSS (MB) after 10 %, 50 % and 100 % of them.
    ``log``: a ResultLog that keeps every result (as ``diffad test``), or None (dropped)."""
    count = len(imgs)
    marks = {max(1, count // 10), max(1, count // 2), count}
    rss, t0 = {}, time.perf_counter()
    stream = iter_tests(tester, imgs, list(refs), "naive", backend=backend, n_jobs=workers)
    for done, (i, res) in enumerate(stream, start=1):
        if log is not None:
            log.put(str(i), res if not isinstance(res, Exception) else str(res))
        if done in marks:
            rss[str(done)] = {"peak": driver_peak_mb(), "current": driver_rss_mb()}
    # Growth over the second half: the first images also pay one-off allocations.
    half = max(1, count // 2)
    lo, hi = rss[str(half)]["current"], rss[str(count)]["current"]
    growth = None if lo is None or count == half else (hi - lo) / (count - half)
    return {
        "wall_seconds": time.perf_counter() - t0,
        "driver_rss_mb_after_images": rss,
        "driver_rss_growth_kb_per_image_second_half": None if growth is None else 1024 * growth,
    }


def stream_rss(args: argparse.Namespace, backend: str, workers: int) -> dict:
    """Memory while streaming ``--rss-images`` images: once dropping each result as it
    arrives (what the backend itself holds), then into a result log (``diffad test``)."""
    loc, desc = small_model(args.rss_size, args.channels, args.train_steps)
    tester = SelectiveTest(loc, 1.0, lam=LAM, device="cpu")
    count = args.rss_images
    imgs, refs = make_images(args.rss_size, count, 11)
    ray = None
    if backend == "ray":
        ray, _ = start_ray(workers)
    out: dict[str, Any] = {"images": count, "size": args.rss_size, "method": "naive"}
    out.update(backend=backend, workers=workers, model=desc)
    out["driver_rss_mb_before"] = {"peak": driver_peak_mb(), "current": driver_rss_mb()}
    try:
        out["results_dropped"] = _stream_pass(tester, imgs, refs, backend, workers, None)
        with tempfile.TemporaryDirectory() as tmp:
            log = ResultLog(Path(tmp) / "results.jsonl", {"rss": 1})
            out["results_logged"] = _stream_pass(tester, imgs, refs, backend, workers, log)
            out["results_logged"]["log_bytes"] = (Path(tmp) / "results.jsonl").stat().st_size
        procs = [_peak_rss_mb(pid) for pid in _descendants(os.getpid())]
        out["child_process_peak_rss_mb"] = sorted(
            ([n, round(mb, 1)] for n, mb in filter(None, procs)), key=lambda p: -p[1]
        )
        # Ray names its worker processes ray::IDLE or ray::<task>; its agents ray::…Agent.
        workers_mb = [
            mb for n, mb in filter(None, procs) if n.startswith("ray::") and "Agent" not in n
        ]
        out["ray_worker_peak_rss_mb_max"] = max(workers_mb, default=None)
    finally:
        if ray is not None:
            ray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--backend", choices=("ray", "joblib"), default="ray")
    parser.add_argument("--channels", default="8,16,32", help="U-Net widths of the model")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="seed of the test images")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the driver")
    parser.add_argument("--overhead-images", type=int, default=200, help="0: skip")
    parser.add_argument("--rss-images", type=int, default=0, help="0: skip the memory run")
    parser.add_argument("--rss-size", type=int, default=8)
    parser.add_argument("--rss-workers", type=int, default=2)
    parser.add_argument("--skip-scale", action="store_true", help="only the other parts")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    args.channels = [int(c) for c in args.channels.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    if min(workers) < 1:
        parser.error("--workers must be positive integers")
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            parser.error("the Ray backend needs Ray: pip install 'diffad[ray]'")
    torch.set_num_threads(args.threads)
    machine = machine_info()
    doc: dict[str, Any] = {"load_average_before": list(os.getloadavg())}
    loc, desc = small_model(args.size, args.channels, args.train_steps)
    desc["pickled_test_bytes"] = len(pickle.dumps(SelectiveTest(loc, 1.0, lam=LAM)))
    tester = SelectiveTest(loc, 1.0, lam=LAM, device="cpu", termination="precision")
    doc.update(size=args.size, backend=args.backend, model=desc)
    doc["settings"] = {
        "lam": LAM,
        "noise_var": 1.0,
        "termination": "precision",
        "precision": 1e-3,
        "seed": args.seed,
        "driver_threads": args.threads,
    }
    if not args.skip_scale:
        imgs, refs = make_images(args.size, args.images, args.seed)
        doc["images"] = args.images
        serial, wall = timed_batch(tester, imgs, refs, "parametric", "joblib", 1)
        doc["serial"] = {
            "wall_seconds": wall,
            "seconds_inside_tests": sum(r.seconds for r in serial),
            "selected": sum(r.selected for r in serial),
            "mean_pieces": float(np.mean([r.n_pieces for r in serial if r.selected])),
            "p_values": [r.p_value for r in serial],
        }
        doc["serial"]["load_average_after"] = list(os.getloadavg())
        print("serial", wall, flush=True)
        doc["workers"], doc["wall_seconds"], doc["startup_seconds"] = [], [], []
        doc["overhead_in_run_per_task"], identical, diff = [], True, 0.0
        doc["seconds_inside_tests"], doc["load_average_after_each"] = [], []
        for w in workers:
            started = 0.0
            if args.backend == "ray":
                ray, started = start_ray(w)
                doc["worker_torch_threads"] = worker_threads(ray)
            try:
                res, wall = timed_batch(tester, imgs, refs, "parametric", args.backend, w)
            finally:
                if args.backend == "ray":
                    ray.shutdown()
            identical &= all(same(a, b) for a, b in zip(serial, res, strict=True))
            diff = max(diff, largest_p_difference(serial, res))
            doc["workers"].append(w)
            doc["wall_seconds"].append(wall)
            doc["startup_seconds"].append(started)
            doc["overhead_in_run_per_task"].append(overhead(res, wall, w))
            # Seconds inside the tests: above the serial sum when the workers compete for
            # the cores (with each other or with other jobs), whatever the backend.
            doc["seconds_inside_tests"].append(sum(r.seconds for r in res))
            doc["load_average_after_each"].append(list(os.getloadavg()))
            print(args.backend, w, wall, flush=True)
            write_json(args.out, doc, indent=1)
        doc["speedup_vs_serial"] = [doc["serial"]["wall_seconds"] / w for w in doc["wall_seconds"]]
        doc["p_values_identical"] = identical
        doc["largest_p_difference"] = diff
    if args.overhead_images:
        doc["per_task_overhead_seconds"] = per_task_overhead(
            tester, args.size, args.overhead_images, workers
        )
        print(doc["per_task_overhead_seconds"], flush=True)
    if args.rss_images:
        doc["memory"] = stream_rss(args, args.backend, args.rss_workers)
        print(doc["memory"], flush=True)
    doc["load_average_after"] = list(os.getloadavg())
    doc["command"] = machine["command"]
    doc["machine"] = machine
    write_json(args.out, doc, indent=1)
    summary = {k: v for k, v in doc.items() if k not in ("serial", "machine", "memory")}
    print(summary)


if __name__ == "__main__":
    main()
