"""p-values on real images: the region test on brain MRI and image-level conformal FDR.

``--part region`` (brain): the demo's model (``diffad.demo.brain.SETTINGS["full"]``) trained
on MNI152 slices, calibrated on the even Colin27 slices (noise model ``auto`` = tapered
Ledoit-Wolf covariance, λ = healthy 99th percentile). Region tests (termination
``decision`` at α) on
- healthy images the calibration did not estimate from: the odd Colin27 slices and the
  calibration images kept for the check → the rejection rate with its 95 % Clopper-Pearson
  band (a valid test has a rate ≤ α up to that band);
- the odd slices with a SYNTHETIC lesion, from the brain benchmark's generator (``bench``:
  shapes, intensity and texture effects) and from the demo's (``demo``: bright or dark
  blobs) → the share rejected by the selective, naive and Bonferroni p-values.

``--part conformal``: image-level conformal p-values and Benjamini-Hochberg at q over
``--seeds`` random splits, computed per seed exactly as the README teaches
(``ConformalDetector(loc, prefit=True).fit(calibration).p_values(test)``, then
``benjamini_hochberg(p, q)``), with the mean false-discovery proportion (FDR), its standard
error and the power:
- brain: the demo's model; per seed the 86 healthy Colin27 slices are shuffled into 43
  calibration images, and 43 test slices of which half get a demo SYNTHETIC lesion;
- Fashion-MNIST (class ``--fmnist-class``): a model of the same size trained on 2000 of
  that class's training images; per seed 200 calibration and 100 null test images from that
  class's test split and 100 anomalies from the other classes' test split.

``--part power``: the region tests' validity and power table on brain MRI (every test, both
references, with n and bands), run by ``benchmarks/region_power.py``; the options after
``--part power --out FILE`` are passed on to it (``--localizer``, ``--splits``, ``--exact``, …),
with ``--threads``; ``--seeds``, ``--q`` and ``--noise-kind`` do not apply to it.

Examples::

    python benchmarks/image_pvalues.py --part power --out benchmarks/results/region_power.json \\
        --splits 5 --exact 6 --oc 12 --threads 1 --plot docs/images/region_power_contrast.png

    python benchmarks/image_pvalues.py --part all --seeds 20 --threads 2 \\
        --out benchmarks/results/image_pvalues.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_brain import load_brain_split  # noqa: E402

from diffad.conformal.conformal_detector import ConformalDetector  # noqa: E402
from diffad.conformal.fdr import benjamini_hochberg  # noqa: E402
from diffad.data.synthetic import lesion_dataset  # noqa: E402
from diffad.demo.brain import LESIONS, SETTINGS, demo_localizer  # noqa: E402
from diffad.image.ddpm_localizer import DDPMLocalizer  # noqa: E402
from diffad.provenance import machine_info, write_json  # noqa: E402
from diffad.selective.comparators import bonferroni_p_value  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402
from diffad.selective.noise import clopper_pearson, healthy_rejection_rate  # noqa: E402

ALPHA = 0.05


def train(images: np.ndarray, seed: int) -> DDPMLocalizer:
    """A localiser with the full demo's settings, fitted on ``images``."""
    return demo_localizer(SETTINGS["full"], seed).fit(images)


def band(k: int, n: int) -> list[float]:
    """95 % Clopper-Pearson interval of k/n."""
    return list(clopper_pearson(k, n))


def region_tests(tester: SelectiveTest, images: np.ndarray) -> dict[str, Any]:
    """Selective (decision at α), naive and Bonferroni rejections over ``images``."""
    rows = []
    for x in images:
        r = tester.test(x.astype(np.float64))
        if not r.selected:
            rows.append({"region": 0, "selective": False, "naive": False, "bonferroni": False})
            continue
        rows.append(
            {
                "region": r.region_size,
                "p_selective": r.p_value,
                "p_bounds": list(r.p_value_bounds),
                "selective": bool(r.p_value_bounds[1] < ALPHA),
                "naive": bool(r.naive_p_value < ALPHA),
                "bonferroni": bool(bonferroni_p_value(r.z, x.size) < ALPHA),
                "seconds": r.seconds,
            }
        )
    n = len(rows)
    out: dict[str, Any] = {"n": n, "with_region": sum(r["region"] > 0 for r in rows)}
    for m in ("selective", "naive", "bonferroni"):
        k = sum(r[m] for r in rows)
        out[m] = {"rejected": k, "rate": k / n, "band": band(k, n)}
    out["median_seconds"] = float(np.median([r.get("seconds", 0.0) for r in rows]))
    out["per_image"] = rows
    return out


def part_region(seed: int, noise_kind: str = "auto") -> dict[str, Any]:
    d = load_brain_split(SETTINGS["full"]["size"], seed)
    start = time.perf_counter()
    loc = train(d["train"], seed)
    loc.calibrate(d["val"])
    tester = SelectiveTest(loc, device="cpu", termination="decision", alpha=ALPHA)
    tester.calibrate(d["val"], noise_kind=noise_kind)
    healthy = np.concatenate([d["test_healthy"], tester.check_images_])
    demo_lesions, _ = lesion_dataset(
        d["test_healthy"], d["test_masks"], donors=d["val"], seed=seed, **LESIONS
    )
    out = {
        "train_seconds": loc.train_seconds_,
        "noise_kind": tester.noise_kind_,
        "lam": tester.lam_,
        "healthy": region_tests(tester, healthy),
        "lesion_bench": region_tests(tester, d["test"]),
        "lesion_demo": region_tests(tester, demo_lesions),
    }
    check = healthy_rejection_rate(
        [r.get("p_selective") for r in out["healthy"]["per_image"]], ALPHA
    )
    out["healthy_check_message"] = check.message()
    out["seconds"] = time.perf_counter() - start
    return out


def fdr_runs(
    loc: Any,
    nulls_pool: np.ndarray,
    anomalies_of: Any,
    n_cal: int,
    n_null: int,
    seeds: int,
    q: float,
) -> dict[str, Any]:
    """Mean FDP (with SE over seeds) and power of the README's recipe.

    Per seed, ``nulls_pool`` is shuffled into ``n_cal`` calibration and ``n_null`` null test
    images; ``anomalies_of(seed, rest)`` gives the anomalous test images (``rest``: the pool
    indices drawn for neither). The p-values come from
    ``ConformalDetector(loc, prefit=True).fit(calibration).p_values(test)``.
    """
    fdp, power, selected = [], [], []
    for s in range(seeds):
        rng = np.random.default_rng(s)
        perm = rng.permutation(len(nulls_pool))
        cal = nulls_pool[perm[:n_cal]]
        nulls = nulls_pool[perm[n_cal : n_cal + n_null]]
        anomalies = anomalies_of(s, perm[n_cal + n_null :])
        test = np.concatenate([nulls, anomalies])
        p = ConformalDetector(loc, prefit=True).fit(cal).p_values(test)
        sel = benjamini_hochberg(p, q)
        false = int(sel[: len(nulls)].sum())
        fdp.append(false / max(int(sel.sum()), 1))
        power.append(float(sel[len(nulls) :].mean()))
        selected.append(int(sel.sum()))
    fdp_arr = np.asarray(fdp)
    return {
        "seeds": seeds,
        "q": q,
        "n_calibration": n_cal,
        "n_null_test": n_null,
        "recipe": "ConformalDetector(loc, prefit=True).fit(calibration).p_values(test); "
        "benjamini_hochberg(p, q)",
        "fdr": float(fdp_arr.mean()),
        "fdr_se": float(fdp_arr.std(ddof=1) / np.sqrt(seeds)),
        "power": float(np.mean(power)),
        "mean_selected": float(np.mean(selected)),
        "fdp_per_seed": fdp,
    }


def part_conformal_brain(seeds: int, q: float) -> dict[str, Any]:
    d = load_brain_split(SETTINGS["full"]["size"], 0)
    loc = train(d["train"], 0)
    healthy = np.concatenate([d["val"], d["test_healthy"]])
    masks = np.concatenate([d["val_masks"], d["test_masks"]])
    half = len(healthy) // 2

    def lesioned(seed: int, rest: np.ndarray) -> np.ndarray:
        # The slices drawn as neither calibration nor nulls, each with a SYNTHETIC lesion.
        return lesion_dataset(healthy[rest], masks[rest], seed=seed, **LESIONS)[0]

    n_null = (len(healthy) - half) // 2
    return fdr_runs(loc, healthy, lesioned, half, n_null, seeds, q)


def part_conformal_fmnist(cls: int, seeds: int, q: float) -> dict[str, Any]:
    from diffad.data.fashion_mnist import fashion_mnist_set

    size = SETTINGS["full"]["size"]
    train_set = fashion_mnist_set(cls, "train", size)
    test_set = fashion_mnist_set("all", "test", size)
    rng = np.random.default_rng(0)
    fit = rng.choice(len(train_set), 2000, replace=False)
    loc = train(train_set.images[fit], 0)
    normal = test_set.images[test_set.labels == cls]
    others = test_set.images[test_set.labels != cls]

    def other_classes(seed: int, _rest: np.ndarray) -> np.ndarray:
        pick = np.random.default_rng([seed, 1]).choice(len(others), 100, replace=False)
        return others[pick]

    out = fdr_runs(loc, normal, other_classes, 200, 100, seeds, q)
    out["class"] = cls
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("region", "conformal", "power", "all"), default="all")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--q", type=float, default=0.1)
    p.add_argument("--fmnist-class", type=int, default=1, help="1 = trouser")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--noise-kind", default="auto", help="noise model of the region test (calibrate())"
    )
    p.add_argument("--out", required=True)
    args, rest = p.parse_known_args(argv)
    if args.part == "power":
        import region_power

        return region_power.main(["--out", args.out, "--threads", str(args.threads), *rest])
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    torch.set_num_threads(args.threads)
    command = "python benchmarks/image_pvalues.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    result: dict[str, Any] = {"command": command, "machine": machine_info(), "alpha": ALPHA}
    if args.part in ("region", "all"):
        result["region_brain"] = part_region(0, args.noise_kind)
        write_json(args.out, result)
        print(result["region_brain"]["healthy_check_message"], flush=True)
    if args.part in ("conformal", "all"):
        result["conformal_brain"] = part_conformal_brain(args.seeds, args.q)
        result["conformal_fmnist"] = part_conformal_fmnist(args.fmnist_class, args.seeds, args.q)
    write_json(args.out, result)
    for key in ("conformal_brain", "conformal_fmnist"):
        if key in result:
            r = result[key]
            print(f"{key}: FDR {r['fdr']:.3f} ± {r['fdr_se']:.3f}, power {r['power']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
