"""Training seconds per step and maps per second of the DDPM and DISYRE localisers.

Both use the brain benchmark's presets (``image_brain.py``: U-Net 16-32-64 at 32 px,
16-32-64-128 at 64 px; DDPM maps = SSIM-ens of 4 averaged 5-call reconstructions from
t_start 150; DISYRE maps = the 4-pass severity ensemble) on MNI152 slices. Speed does not
depend on what the weights learnt, so each model trains only ``--steps`` steps (the figure is
their mean time per step), and maps per second are the median of 3 timed map batches. Both
localisers run in the same process, one after the other, on the same images, with the load
average recorded before and after each.

    python benchmarks/localizer_speed.py --sizes 32,64 --threads 2 --out F.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_brain import BAND, PRESETS  # noqa: E402
from image_brain_disyre import DISYRE_PRESETS  # noqa: E402

from diffad.image.ddpm_localizer import DDPMLocalizer  # noqa: E402
from diffad.image.disyre_localizer import DisyreLocalizer  # noqa: E402
from diffad.provenance import machine_info, write_json  # noqa: E402


def _models(size: int, steps: int) -> dict:
    preset = "quick" if size <= 32 else "full"
    ddpm = PRESETS[preset]
    disyre = DISYRE_PRESETS[preset]
    return {
        "ddpm": DDPMLocalizer(
            unet={"channels": ddpm["channels"]}, t_start=ddpm["t_start"], ddim_steps=5,
            n_samples=ddpm["n_samples"], score="ssim-ens",
            train_steps=steps, batch_size=ddpm["batch_size"], hflip=True,
            max_shift=max(1, size // 16), max_train_t=ddpm["t_start"], verbose=False,
            device="cpu",
        ),  # fmt: skip
        "disyre": DisyreLocalizer(
            unet={"channels": disyre["channels"]}, train_steps=steps,
            batch_size=disyre["batch_size"], foreground_threshold=0.0, verbose=False,
            device="cpu",
        ),  # fmt: skip
    }


def measure(size: int, steps: int, n_maps: int) -> dict:
    """Seconds per training step and maps per second of both localisers at ``size``."""
    from diffad.data.brain import brain_slices

    images = brain_slices("mni152", size, slice_fraction=BAND).images
    batch = images[:n_maps]
    out = {}
    for name, loc in _models(size, steps).items():
        load_before = os.getloadavg()
        cpu0 = time.process_time()
        loc.fit(images)
        train_cpu = time.process_time() - cpu0
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            loc.anomaly_map(batch)  # DDPM: SSIM-ens of the preset's n_samples reconstructions
            walls.append(time.perf_counter() - t0)
        out[name] = {
            "seconds_per_training_step": round(loc.train_seconds_ / steps, 4),
            "cpu_seconds_per_training_step": round(train_cpu / steps, 4),
            "maps_per_second": round(len(batch) / statistics.median(walls), 2),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        }
        print(f"{size}px {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure, write JSON."""
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="32,64", help="image sides, comma-separated")
    p.add_argument("--steps", type=int, default=40, help="training steps timed per model")
    p.add_argument("--maps", type=int, default=32, help="images per timed map batch")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = machine_info()
    results = {s: measure(int(s), args.steps, args.maps) for s in args.sizes.split(",")}
    write_json(
        args.out,
        {
            "command": "python benchmarks/localizer_speed.py " + " ".join(argv),
            "machine": machine,
            "settings": vars(args),
            "results": results,
        },
        indent=1,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
