"""The image demo: a small DDPM on healthy brain slices finds, outlines and tests lesions.

1. **Train** (or load from the cache) a DDPMLocalizer (or, with ``method="disyre"``, a
   DisyreLocalizer) on healthy axial slices of the MNI152 template (nilearn).
2. **Calibrate** it on the even slices of another brain, Colin27 (Debian ``mricron-data``):
   image threshold, pixel thresholds, noise model and λ of the region test; half of these
   images are kept aside for the healthy calibration check.
3. **Test batch**: odd Colin27 slices, half of them with one SYNTHETIC lesion each (made by
   :func:`diffad.data.synthetic.lesion_dataset`, bright or dark blobs; no real lesion masks
   exist offline), half left healthy; the two halves are different slices.
4. For every test image: anomaly map, image score, conformal p-value against the healthy
   calibration scores, Benjamini-Hochberg at q, the pixel mask, and the selective (DAL-Test)
   p-value of the region the model flags with the naive one beside it.
5. The healthy calibration check of the region test on the kept-aside healthy slices.
6. ``report.json``, ``arrays.npz`` and ``report.html`` in the output folder.

The trained model is cached (``~/.cache/diffad`` or ``$XDG_CACHE_HOME/diffad``), and so is
each finished p-value: an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Settings of the full demo and of ``--quick`` (the smoke test).
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "size": 32,
        "channels": [16, 32, 64],
        "train_steps": 1500,
        "t_start": 150,
        "ddim_steps": 2,
        "n_lesion": 5,
        "n_healthy": 5,
        "n_check": 8,
        "lam_percentile": 99.0,
    },
    "quick": {
        "size": 16,
        "channels": [8, 16],
        "train_steps": 300,
        "t_start": 150,
        "ddim_steps": 2,
        "n_lesion": 3,
        "n_healthy": 3,
        "n_check": 6,
        "lam_percentile": 97.0,
    },
}
#: Synthetic lesions of the demo: one bright or dark blob of 10-18 % of the image side.
LESIONS = {"effects": ("hyper", "hypo"), "delta": (0.5, 0.8), "radius": (0.10, 0.18)}
Q = 0.1
ALPHA = 0.05
PRECISION = 0.01  # width of the bracket of each region p-value


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/diffad`` (default ``~/.cache/diffad``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diffad"


def _key(settings: dict[str, Any], seed: int, method: str = "ddpm") -> str:
    from diffad import __version__
    from diffad.image.localizer_base import NOISE_RULE

    # The noise rule is in the key: a model cached under another rule is never reused.
    spec = {
        "settings": settings, "seed": seed, "lesions": LESIONS, "v": __version__,
        "noise": NOISE_RULE, "region_test": "paired references, rank of the most extreme component",
    }  # fmt: skip
    if method != "ddpm":
        spec["method"] = method
    text = json.dumps(spec)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def demo_data(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """Training, calibration and test images (with synthetic-lesion truth) of the demo, and
    each Colin27 slice's reference: the MNI152 slice at the same position."""
    from diffad.data.brain import brain_split, same_position_references
    from diffad.data.synthetic import lesion_dataset

    size = settings["size"]
    split = brain_split(size)
    test = split["test"]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(test), settings["n_lesion"] + settings["n_healthy"], replace=False)
    lesion_idx, healthy_idx = (
        np.sort(picked[: settings["n_lesion"]]),
        np.sort(picked[settings["n_lesion"] :]),
    )
    # Every Colin27 slice that is not tested calibrates: the more healthy images, the finer
    # the conformal null of the region test.
    spare = np.setdiff1d(np.arange(len(test)), picked)
    calibration = np.concatenate([split["calibration"].images, test.images[spare]])
    colin_names = split["calibration"].names + test.names
    reference_of = dict(
        zip(colin_names, same_position_references(colin_names, colin_names, split["train"]),
            strict=True)
    )  # fmt: skip
    calibration_names = split["calibration"].names + [test.names[i] for i in spare]
    lesioned, truth = lesion_dataset(
        test.images[lesion_idx],
        test.masks[lesion_idx],
        donors=split["calibration"].images,
        seed=seed,
        **LESIONS,
    )
    images = np.concatenate([lesioned, test.images[healthy_idx]])
    tested = [test.names[i] for i in np.r_[lesion_idx, healthy_idx]]
    names = [f"{test.names[i]} + SYNTHETIC lesion" for i in lesion_idx]
    names += [test.names[i] for i in healthy_idx]
    has_lesion = np.r_[np.ones(len(lesion_idx), bool), np.zeros(len(healthy_idx), bool)]
    truth_all = np.concatenate([truth[:, 0], np.zeros((len(healthy_idx), size, size), bool)])
    return {
        "train": split["train"].images,
        "calibration": calibration,
        "calibration_references": np.stack([reference_of[n] for n in calibration_names]),
        "images": images,
        "references": np.stack([reference_of[n] for n in tested]),
        "names": names,
        "has_lesion": has_lesion,
        "truth": truth_all,
    }


def demo_localizer(
    settings: dict[str, Any], seed: int, verbose: bool = False, method: str = "ddpm"
) -> Any:
    """The demo's unfitted localiser for ``settings`` (one of :data:`SETTINGS`): a
    DDPMLocalizer, or for ``method="disyre"`` a DisyreLocalizer of the same width and budget."""
    common = {
        "unet": {"channels": settings["channels"]},
        "train_steps": settings["train_steps"],
        "batch_size": 32,
        "lr": 2e-3,
        "random_state": seed,
        "device": "cpu",
        "verbose": verbose,
        "image_score": "mean",
    }
    if method == "disyre":
        from diffad.image.disyre_localizer import DisyreLocalizer

        return DisyreLocalizer(foreground_threshold=0.0, **common)  # zero background
    from diffad.image.ddpm_localizer import DDPMLocalizer

    return DDPMLocalizer(
        t_start=settings["t_start"],
        ddim_steps=settings["ddim_steps"],
        hflip=True,
        max_shift=2,
        # Localisation never calls the network above t_start: train only there.
        max_train_t=settings["t_start"],
        score="l1",
        **common,
    )


def cached_model(
    settings: dict[str, Any],
    data: dict[str, Any],
    folder: Path,
    seed: int,
    verbose: bool,
    method: str = "ddpm",
) -> tuple[Any, Any, bool]:
    """The trained and calibrated demo model and its calibrated region test: loaded from
    ``folder`` or trained and saved there (written to a temporary folder first, so an
    interrupted save is never loaded)."""
    from diffad.image.localizers import load_localizer
    from diffad.selective import REGION_TEST_FOLDER
    from diffad.selective.dal import SelectiveTest

    model_dir = folder / "model"
    test_params = {"device": "cpu", "precision": PRECISION}
    if (model_dir / REGION_TEST_FOLDER / "config.json").is_file():
        loc = load_localizer(model_dir, device="cpu")
        loc.set_params(verbose=verbose)
        return loc, SelectiveTest.load(model_dir / REGION_TEST_FOLDER, loc, **test_params), True
    loc = demo_localizer(settings, seed, verbose, method).fit(data["train"])
    loc.calibrate(data["calibration"])
    tester = SelectiveTest(loc, **test_params).calibrate(
        data["calibration"],
        data["calibration_references"],
        check_fraction=settings["n_check"] / len(data["calibration"]),
        lam_percentile=settings["lam_percentile"],
    )
    tmp = folder / "model.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    loc.save(tmp)
    tester.save(tmp / REGION_TEST_FOLDER)
    tmp.rename(model_dir)
    return loc, tester, False


def region_tests(
    tester: Any, result: Any, references: np.ndarray, results: Any, verbose: bool
) -> list[Any]:
    """The region test of each image of ``result`` (a ``LocalizationResult``: its maps are
    the ones tested) against its own reference; finished ones are taken from ``results``, a
    :class:`~diffad.selective.result_log.ResultLog`."""
    from tqdm.auto import tqdm

    pairs = tqdm(
        list(zip(result.image, references, strict=True)), desc="region p-values",
        disable=not verbose,
    )  # fmt: skip
    return [
        results.get_or_run(
            f"test/{k}", lambda x=x, r=r: tester.test_prepared(x, r.astype(np.float64))
        )
        for k, (x, r) in enumerate(pairs)
    ]


def run_brain_demo(
    out: str | os.PathLike,
    quick: bool = False,
    seed: int = 0,
    cache: str | os.PathLike | None = None,
    verbose: bool = True,
    log: Any = print,
    method: str = "ddpm",
) -> Path:
    """Run the image demo (see the module docstring) and return the path of report.html.

    Parameters
    ----------
    out : path
        Output folder (report.html, report.json, arrays.npz).
    quick : bool
        The small ``--quick`` settings (16 x 16 slices, a short training).
    seed : int
        Seed of the model, the lesions and the choice of test slices.
    cache : path, optional
        Cache folder (default :func:`cache_root`).
    verbose : bool
        Progress bars.
    log : callable
        Receives one line of text per step.
    method : {"ddpm", "disyre"}
        The localiser to train.
    """
    from diffad.report.entries import build_report, finish_report
    from diffad.report.run_folder import save_run
    from diffad.selective.noise import healthy_check
    from diffad.selective.result_log import ResultLog

    start = time.perf_counter()
    settings = SETTINGS["quick" if quick else "full"]
    folder = Path(cache or cache_root()) / f"brain-demo-{_key(settings, seed, method)}"
    folder.mkdir(parents=True, exist_ok=True)
    data = demo_data(settings, seed)
    log(
        f"data: {len(data['train'])} healthy MNI152 slices to train, "
        f"{len(data['calibration'])} Colin27 slices to calibrate, {len(data['images'])} test "
        f"slices ({int(data['has_lesion'].sum())} with a SYNTHETIC lesion)"
    )
    loc, tester, cached = cached_model(settings, data, folder, seed, verbose, method)
    log(f"model: {'loaded from cache' if cached else 'trained'} ({folder / 'model'})")
    tester.method, tester.null, why = tester.recommended_test(ALPHA)
    log(f"region test: {why}")
    result = loc.localize(data["images"])
    # Finished p-values, kept for a rerun of the same model (its training loss identifies it).
    model_id = {
        "loss": float(loc.loss_history_[-1]), "precision": PRECISION, "alpha": ALPHA,
        "method": tester.method, "null": tester.null,
    }  # fmt: skip
    results = ResultLog(folder / "tests.jsonl", model_id)
    region_results = region_tests(
        tester, result, loc.prepare(data["references"]), results, verbose
    )
    check, check_p = healthy_check(
        tester,
        tester.check_images_[: settings["n_check"]],  # kept in random order by calibrate()
        ALPHA,
        verbose,
        cached=lambda k, compute: results.get_or_run(f"check/{k}", compute),
        references=tester.check_references_[: settings["n_check"]],
    )
    log(tester.noise_check_.message())
    log(check.message())
    report, arrays = build_report(
        "demo", "diffad demo: brain MRI, SYNTHETIC lesions", loc, str(folder / "model"),
        data["names"], result, alpha=ALPHA, q=Q, region_results=region_results,
        check=(check, check_p), noise_check=tester.noise_check_, synthetic_lesions=True,
        extra={
            "settings": {**settings, "method": method, "lesions": LESIONS, "seed": seed,
                         "quick": quick},
        },
    )  # fmt: skip
    for entry, lesion in zip(report["images"], data["has_lesion"], strict=True):
        entry["has_lesion"] = bool(lesion)
    n_sel = sum(bool(e["bh_selected"]) for e in report["images"])
    log(f"conformal p-values + Benjamini-Hochberg at q = {Q}: {n_sel} images selected")
    report["null_p_values"] = {
        "conformal, healthy test slices": [
            e["p_conformal"] for e in report["images"] if not e["has_lesion"]
        ],
    }
    report["seconds"] = round(time.perf_counter() - start, 1)
    arrays["truth"] = data["truth"]
    return finish_report(save_run(out, report, arrays))
