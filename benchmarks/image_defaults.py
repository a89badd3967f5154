"""Image-level ROC-AUC of every candidate default of ``diffad train-image`` / ``localize``.

Candidates: method (``ddpm``: DDPMLocalizer, ``disyre``: DisyreLocalizer) × map (``l1``,
``ssim-ens`` for the DDPM; DISYRE has its own map) × image score (``max``, ``mean``, ``p99``)
× DDPM noise level ``t_start`` × training budget (``B`` and ``B/4`` optimiser updates). One
model is fitted per method, data set (group) and budget; every map / image score / t_start is
computed from that one model: one reconstruction per t_start (``set_params(t_start=...)``,
``reconstruct``), the maps by :func:`diffad.image.scores.anomaly_score` on the prepared images,
the image scores by ``set_params(image_score=...)`` and ``reduce_maps``.

Everything else is what ``train-image`` does by default: the stored preprocessing
(``intensity="range"``, the model size), U-Net 32-64-128-256 for the DDPM and 16-32-64-128 for
DISYRE, batch 32, lr 1e-3 (cosine), DDIM 5 steps, no DDPM augmentation, DISYRE's augmentation
and severity ensemble, seed 0. The image side (16 or 32 px) is smaller than the CLI default
(64 px), and so is the budget ``B`` on the 32 px sets (``--steps``; on digits ``B`` is the CLI's
2 000), so that the whole run fits in about 40 minutes on one core; the JSON records what each
data set used.

Data sets (smallest first; a column of the summary each):

- ``digits-other`` / ``digits-blob``: scikit-learn's 8×8 digits written as PNGs and read the
  way ``train-image --data FOLDER`` reads them (upsampled to 16 px by the preprocessing).
  Normal = one digit; test = held-out images of that digit against images of the other nine
  digits (``other``) and against the same held-out images with a bright blob pasted on their
  background (``blob``);
- ``fmnist``: Fashion-MNIST one-class (Debian ``dataset-fashion-mnist``), 28 → 32 px, 250
  normal + 250 other-class test images per class, sampled as in ``image_fmnist.py``;
- ``brain``: train on MNI152 axial slices, test on Colin27 slices (a different brain) with
  and without synthetic lesions (:func:`diffad.bench.image_brain.load_brain_split`);
  image level: lesioned slices against the same slices healthy;
- ``elpv``: ELPV solar cells (optional PyPI ``elpv-dataset``, benchmarks only), defect
  probability 0 against 1, split as in ``image_elpv.py``.

The training-free |x − mean training image| map (in the model's scale) is scored as a
reference row. The summary ranks the candidates per column (1 = highest ROC-AUC, ties
averaged) and averages the ranks.

    python benchmarks/image_defaults.py --out benchmarks/results/image_defaults.json
    python benchmarks/image_defaults.py --table benchmarks/results/image_defaults.json
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _oneclass_image import set_threads  # noqa: E402

from diffad.image.ddpm_localizer import DDPMLocalizer  # noqa: E402
from diffad.image.disyre_localizer import DisyreLocalizer  # noqa: E402
from diffad.image.scores import anomaly_score  # noqa: E402
from diffad.metrics.localization import image_auroc  # noqa: E402
from diffad.provenance import machine_info, write_json  # noqa: E402

MAPS = ("l1", "ssim-ens")
IMAGE_SCORES = ("max", "mean", "p99")
BUDGETS = ("B", "B/4")
#: The summary columns, in order (a data set can give more than one: digits has two tests).
COLUMNS = ("digits-other", "digits-blob", "fmnist", "brain", "elpv")
BASELINE = "mean-image baseline"
#: What ``train-image`` passes besides the preprocessing (src/diffad/cli/train_image.py).
CLI_COMMON = {"batch_size": 32, "lr": 1e-3, "random_state": 0, "device": "cpu", "verbose": False}


# ---------------------------------------------------------------------------- data sets
def _paste_blob(img: np.ndarray, rng: np.random.Generator, peak: float) -> np.ndarray:
    """``img`` with a Gaussian blob (σ = 1 px, height ``peak``) centred on a background pixel
    (below a quarter of ``peak``) away from the border, combined by the pixel-wise maximum."""
    h, w = img.shape
    inner = np.zeros_like(img, dtype=bool)
    inner[1:-1, 1:-1] = True
    candidates = np.argwhere(inner & (img < 0.25 * peak))
    if not len(candidates):
        candidates = np.argwhere(inner)
    r, c = candidates[rng.integers(len(candidates))]
    yy, xx = np.mgrid[:h, :w]
    blob = peak * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 2.0)
    return np.maximum(img, blob)


def _write_pngs(folder: Path, images: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(folder / f"{i:05d}.png")


def digits_task(digit: int, n_test: int, seed: int, tmp: Path) -> dict:
    """Digit ``digit`` as normal: raw training pictures and the test pictures, read from PNG
    folders like ``train-image --data`` does; subsets ``other`` and ``blob``."""
    from sklearn.datasets import load_digits

    from diffad.data.raw_images import load_raw_images

    bunch = load_digits()
    images, labels = bunch.images / 16.0, bunch.target
    rng = np.random.default_rng([seed, digit])
    normal = rng.permutation(np.flatnonzero(labels == digit))
    test_idx, train_idx = normal[:n_test], np.sort(normal[n_test:])
    other_idx = rng.choice(np.flatnonzero(labels != digit), n_test, replace=False)
    blob = np.stack([_paste_blob(images[i], rng, 1.0) for i in test_idx])
    test = np.concatenate([images[test_idx], images[other_idx], blob])
    root = tmp / f"digit{digit}"
    _write_pngs(root / "train", images[train_idx])
    _write_pngs(root / "test", test)
    train_raw = load_raw_images(str(root / "train"))
    test_raw = load_raw_images(str(root / "test"))
    assert test_raw.names[0] == "00000.png" and len(test_raw) == 3 * n_test
    zeros, ones = np.zeros(n_test, int), np.ones(n_test, int)
    k = np.arange(n_test)
    return {
        "train": train_raw.images,
        "test": test_raw.images,
        "subsets": {
            "digits-other": (np.r_[k, n_test + k], np.r_[zeros, ones]),
            "digits-blob": (np.r_[k, 2 * n_test + k], np.r_[zeros, ones]),
        },
        "info": {
            "source": "sklearn.datasets.load_digits, 8x8, /16, written as 8-bit PNGs",
            "n_train": len(train_idx),
            "n_test_normal": n_test,
            "n_test_other_digit": n_test,
            "n_test_blob": n_test,
        },
    }


def fmnist_task(cls: int, size: int, n_test: int, seed: int) -> dict:
    """One-class Fashion-MNIST as in ``image_fmnist.py`` (one seeded generator per class)."""
    from diffad.data.fashion_mnist import CLASSES, fashion_mnist_set

    rng = np.random.default_rng([seed, cls])
    test = fashion_mnist_set("all", split="test", size=size)
    train = fashion_mnist_set(cls, split="train", size=size)
    normal = rng.choice(np.flatnonzero(test.labels == cls), n_test, replace=False)
    other = rng.choice(np.flatnonzero(test.labels != cls), n_test, replace=False)
    y = np.r_[np.zeros(n_test, int), np.ones(n_test, int)]
    return {
        "train": train.images,
        "test": test.images[np.r_[normal, other]],
        "subsets": {"fmnist": (np.arange(2 * n_test), y)},
        "info": {
            "class": CLASSES[cls],
            "n_train": len(train),
            "n_test_normal": n_test,
            "n_test_anomalous": n_test,
        },
    }


def brain_task(size: int, seed: int) -> dict:
    """MNI152 training slices; Colin27 odd slices healthy (0) and with a lesion (1)."""
    from image_brain import load_brain_split

    from diffad.data.brain import BAND

    data = load_brain_split(size, seed=seed)
    n = len(data["test"])
    return {
        "train": data["train"],
        "test": np.concatenate([data["test_healthy"], data["test"]]),
        "subsets": {"brain": (np.arange(2 * n), np.r_[np.zeros(n, int), np.ones(n, int)])},
        "info": {
            "band": list(BAND),
            "n_train": len(data["train"]),
            "n_test_normal": n,
            "n_test_anomalous": n,
            "lesion_pixels_share": round(float(data["truth"].mean()), 4),
        },
    }


def elpv_task(size: int, n_test_normal: int, seed: int) -> dict:
    """ELPV, defect probability 0 against 1, split as in ``image_elpv.py``."""
    from diffad.data.elpv import elpv_set

    normal = elpv_set("normal", size=size)
    defective = elpv_set("defective", size=size)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(normal))
    test_idx, train_idx = perm[:n_test_normal], perm[n_test_normal:]
    n_def = len(defective)
    x_test = np.concatenate([normal.images[test_idx], defective.images])
    y = np.r_[np.zeros(len(test_idx), int), np.ones(n_def, int)]
    return {
        "train": normal.images[train_idx],
        "test": x_test,
        "subsets": {"elpv": (np.arange(len(y)), y)},
        "info": {
            "n_train": len(train_idx),
            "n_test_normal": len(test_idx),
            "n_test_anomalous": n_def,
        },
    }


# ---------------------------------------------------------------------------- scoring
def _aucs(maps: np.ndarray, loc, subsets: dict) -> dict[str, dict[str, float]]:
    """``{image_score: {subset: ROC-AUC}}`` of one map kind."""
    out = {}
    for score in IMAGE_SCORES:
        loc.set_params(image_score=score)
        s = loc.reduce_maps(maps)
        out[score] = {name: round(image_auroc(y, s[idx]), 4) for name, (idx, y) in subsets.items()}
    return out


def fit_and_score(method: str, task: dict, size: int, steps: int, t_starts: list[int]) -> dict:
    """Fit one localiser as ``train-image`` would and score every candidate of ``method``."""
    cls = DDPMLocalizer if method == "ddpm" else DisyreLocalizer
    preprocessing = {"intensity": "range", "resize": False, "size": (size, size)}
    cpu0 = time.process_time()
    loc = cls(train_steps=steps, preprocessing=preprocessing, **CLI_COMMON).fit(task["train"])
    fit_cpu = time.process_time() - cpu0
    run = {
        "method": method,
        "train_steps": steps,
        "channels": list(loc.model_.config.channels),
        "fit_seconds": round(loc.train_seconds_, 2),
        "fit_cpu_seconds": round(fit_cpu, 2),
        "final_loss": round(float(np.mean(loc.loss_history_[-50:])), 5),
        "preprocessing": loc.preprocessing_.to_dict(),
        "auc": {},
        "map_seconds": {},
    }
    prepared = loc.prepare(task["test"])
    subsets = task["subsets"]
    if method == "ddpm":
        for t in t_starts:
            t0 = time.perf_counter()
            loc.set_params(t_start=t)
            rec = loc.reconstruct(task["test"])
            for name in MAPS:
                maps = anomaly_score(prepared, rec, name)
                for score, per in _aucs(maps, loc, subsets).items():
                    run["auc"][f"ddpm / {name} / t{t} / {score}"] = per
            run["map_seconds"][f"t{t}"] = round(time.perf_counter() - t0, 2)
    else:
        t0 = time.perf_counter()
        maps = loc.anomaly_map(task["test"])
        run["map_seconds"]["disyre"] = round(time.perf_counter() - t0, 2)
        for score, per in _aucs(maps, loc, subsets).items():
            run["auc"][f"disyre / {score}"] = per
    return run


def baseline_aucs(task: dict, size: int) -> dict:
    """|x − mean training image| in the model's scale (the same fitted preprocessing)."""
    from diffad.image.preprocessing import ImagePreprocessing

    pre = ImagePreprocessing(intensity="range", size=(size, size)).fit(task["train"])
    mean_image = pre.transform(task["train"]).mean(axis=0, keepdims=True)
    maps = np.abs(pre.transform(task["test"]) - mean_image).mean(axis=1)
    probe = DDPMLocalizer(image_score="max")
    return {
        f"{BASELINE} / {score}": per for score, per in _aucs(maps, probe, task["subsets"]).items()
    }


# ---------------------------------------------------------------------------- summary
def _rank_table(runs: list[dict]) -> dict:
    """Mean ROC-AUC per candidate and column (over groups), ranks per column, mean rank.

    A candidate is ``"<budget> | <method / map / t / score>"``; only the columns in which
    every candidate of ``runs`` has a value are ranked (1 = highest ROC-AUC, ties averaged).
    """
    table: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for cand, per in run["auc"].items():
            row = table.setdefault(f"{run['budget']} | {cand}", {})
            for col, auc in per.items():
                row.setdefault(col, []).append(auc)
    means = {
        c: {col: round(float(np.mean(v)), 4) for col, v in row.items()} for c, row in table.items()
    }
    cols = [c for c in COLUMNS if means and all(c in row for row in means.values())]
    ranks: dict[str, dict[str, float]] = {c: {} for c in means}
    for col in cols:
        names = list(means)
        values = np.array([means[n][col] for n in names])
        order = (-values).argsort(kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(1, len(values) + 1)
        for v in np.unique(values):  # average the ranks of ties
            r[values == v] = r[values == v].mean()
        for n, rank in zip(names, r, strict=True):
            ranks[n][col] = float(rank)
    return {
        "ranked_columns": cols,
        "mean_auc": means,
        "ranks": ranks,
        "mean_rank": {
            c: round(float(np.mean([ranks[c][col] for col in cols])), 2) if cols else None
            for c in means
        },
        "mean_auc_over_columns": {
            c: round(float(np.mean([means[c][col] for col in cols])), 4) if cols else None
            for c in means
        },
    }


def summarise(runs: list[dict], baselines: list[dict]) -> dict:
    """Rank tables per budget (``by_budget``) and over both budgets together (``all``, on
    the columns both have), and the mean-image baseline's mean ROC-AUC per column."""
    base: dict[str, dict[str, list[float]]] = {}
    for b in baselines:
        for cand, per in b["auc"].items():
            for col, auc in per.items():
                base.setdefault(cand, {}).setdefault(col, []).append(auc)
    budgets = [b for b in BUDGETS if any(r["budget"] == b for r in runs)]
    return {
        "by_budget": {b: _rank_table([r for r in runs if r["budget"] == b]) for b in budgets},
        "all": _rank_table(runs),
        "baseline": {
            c: {col: round(float(np.mean(v)), 4) for col, v in row.items()}
            for c, row in base.items()
        },
    }


def markdown(result: dict, which: str = "B", top: int | None = None) -> str:
    """One rank table of the summary (a budget, or ``all``) as Markdown, by mean rank."""
    s = result["summary"]
    t = s["all"] if which == "all" else s["by_budget"][which]
    cols = [c for c in COLUMNS if any(c in row for row in t["mean_auc"].values())]
    head = "| budget | candidate | " + " | ".join(cols) + " | mean AUC | mean rank |"
    lines = [head, "|" + "---|" * (len(cols) + 4)]
    order = sorted(t["mean_auc"], key=lambda c: (t["mean_rank"][c] is None, t["mean_rank"][c]))
    for c in order[:top]:
        budget, cand = c.split(" | ")
        cells = [f"{t['mean_auc'][c][col]:.3f}" if col in t["mean_auc"][c] else "–" for col in cols]
        mr, ma = t["mean_rank"][c], t["mean_auc_over_columns"][c]
        lines.append(
            f"| {budget} | {cand} | "
            + " | ".join(cells)
            + f" | {'–' if ma is None else f'{ma:.3f}'} | {'–' if mr is None else f'{mr:.1f}'} |"
        )
    for c, row in s["baseline"].items():
        cells = [f"{row[col]:.3f}" if col in row else "–" for col in cols]
        lines.append(f"| – | {c} | " + " | ".join(cells) + " | – | – |")
    return "\n".join(lines)


def markdown_groups(result: dict, candidates: list[str], budget: str = "B") -> str:
    """ROC-AUC of ``candidates`` (``"method / ... / score"``) per data set group and test."""
    keys = [
        (r["dataset"], r["group"], col)
        for r in result["runs"]
        if r["budget"] == budget and r["method"] == "ddpm"
        for col in next(iter(r["auc"].values()))
    ]
    lines = ["| candidate | " + " | ".join(f"{g} ({c})" for _, g, c in keys) + " |"]
    lines.append("|" + "---|" * (len(keys) + 1))
    for cand in candidates:
        cells = []
        for ds, group, col in keys:
            if cand.startswith(BASELINE):
                pool = [b for b in result["baselines"] if (b["dataset"], b["group"]) == (ds, group)]
            else:
                pool = [
                    r
                    for r in result["runs"]
                    if (r["budget"], r["dataset"], r["group"]) == (budget, ds, group)
                    and cand in r["auc"]
                ]
            aucs = pool[0]["auc"]
            cells.append(f"{aucs[cand][col]:.3f}")
        lines.append(f"| {cand} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or print the table of an existing result); returns an exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="digits,fmnist,brain,elpv")
    p.add_argument("--digits", default="0,1,2", help="normal digits")
    p.add_argument("--digits-size", type=int, default=16)
    p.add_argument("--digits-steps", type=int, default=2000, help="budget B on digits")
    p.add_argument(
        "--digits-n-test", type=int, default=70, help="held-out normals (and each anomaly kind)"
    )
    p.add_argument("--fmnist-classes", default="0,1")
    p.add_argument("--fmnist-n-test", type=int, default=250)
    p.add_argument("--elpv-n-test-normal", type=int, default=300)
    p.add_argument("--size", type=int, default=32, help="side of fmnist, brain, elpv")
    p.add_argument("--steps", type=int, default=1000, help="budget B on fmnist, brain, elpv")
    p.add_argument("--budget-divisor", type=int, default=4, help="the small budget is B / this")
    p.add_argument("--t-starts", default="150,250,500")
    p.add_argument("--methods", default="ddpm,disyre")
    p.add_argument("--budgets", default="B,B/4", help="which budgets to fit, in this order")
    p.add_argument(
        "--resume",
        action="store_true",
        help="add to an existing --out: keep its runs, skip fits it already has",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline")
    p.add_argument("--out", default="benchmarks/results/image_defaults.json")
    p.add_argument("--table", default=None, help="print the Markdown tables of this JSON and exit")
    p.add_argument("--top", type=int, default=None, help="with --table: only the best rows")
    p.add_argument(
        "--groups",
        default=None,
        help="with --table: also the per-group ROC-AUC of these candidates (';'-separated)",
    )
    p.add_argument(
        "--resummarise",
        default=None,
        help="recompute the summary of this JSON from its runs (no fitting) and rewrite it",
    )
    args = p.parse_args(argv)
    if args.resummarise:
        import json

        old = json.loads(Path(args.resummarise).read_text())
        old["summary"] = summarise(old["runs"], old["baselines"])
        old["summary_command"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
        write_json(args.resummarise, old, indent=1)
        return 0
    if args.table:
        import json

        res = json.loads(Path(args.table).read_text())
        for which in [*res["summary"]["by_budget"], "all"]:
            print(f"\n### {which}\n\n" + markdown(res, which, args.top))
        if args.groups:
            print("\n### per group\n\n" + markdown_groups(res, args.groups.split(";")))
        return 0
    if args.quick:
        args.digits_steps, args.steps, args.fmnist_n_test = 40, 40, 60
    set_threads(args.threads)
    start = time.perf_counter()
    t_starts = [int(t) for t in args.t_starts.split(",")]
    methods = args.methods.split(",")
    datasets = args.datasets.split(",")
    invocation = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": machine_info(),
        "settings": {
            **vars(args),
            "cli_common": CLI_COMMON,
            "ddim_steps": 5,
            "budgets": {"B": "--digits-steps on digits, --steps elsewhere", "B/4": "B // divisor"},
        },
    }
    result = {
        "benchmark": "image-level ROC-AUC of the candidate defaults of train-image / localize",
        "invocations": [],
        "datasets": {},
        "runs": [],
        "baselines": [],
        "skipped": {},
    }
    if args.resume and Path(args.out).is_file():
        import json

        # Keep the runs of earlier invocations; data sets listed again are reloaded (their
        # baselines and descriptions are rebuilt), fits already present are not repeated.
        result = json.loads(Path(args.out).read_text())
        if "invocations" not in result:  # a file written before --resume existed
            first = {k: result.pop(k) for k in ("command", "machine", "settings")}
            first["total_seconds"] = result.pop("total_seconds", None)
            first["load_average_1min_now"] = result.pop("load_average_1min_now", None)
            for run in result["runs"]:
                run.setdefault("invocation", 0)
            result = {"benchmark": result.pop("benchmark"), "invocations": [first], **result}
        result["baselines"] = [b for b in result["baselines"] if b["dataset"] not in datasets]
        for ds in datasets:
            result["datasets"].pop(ds, None)
            result["skipped"].pop(ds, None)
    result["invocations"].append(invocation)
    done = {(r["dataset"], r["group"], r["budget"], r["method"]) for r in result["runs"]}

    def save() -> None:
        result["summary"] = summarise(result["runs"], result["baselines"])
        invocation["total_seconds"] = round(time.perf_counter() - start, 1)
        invocation["load_average_1min_now"] = round(os.getloadavg()[0], 2)
        write_json(args.out, result, indent=1)

    with tempfile.TemporaryDirectory() as tmpdir:
        tasks: list[tuple[str, str, int, int, dict]] = []  # dataset, group, size, B, task
        for ds in datasets:
            t0 = time.perf_counter()
            try:
                if ds == "digits":
                    for d in args.digits.split(","):
                        task = digits_task(int(d), args.digits_n_test, args.seed, Path(tmpdir))
                        tasks.append((ds, f"digit {d}", args.digits_size, args.digits_steps, task))
                elif ds == "fmnist":
                    for c in args.fmnist_classes.split(","):
                        task = fmnist_task(int(c), args.size, args.fmnist_n_test, args.seed)
                        tasks.append((ds, task["info"]["class"], args.size, args.steps, task))
                elif ds == "brain":
                    tasks.append((ds, "mni152->colin27", args.size, args.steps,
                                  brain_task(args.size, args.seed)))  # fmt: skip
                elif ds == "elpv":
                    task = elpv_task(args.size, args.elpv_n_test_normal, args.seed)
                    tasks.append((ds, "mono+poly", args.size, args.steps, task))
                else:
                    raise ValueError(f"unknown data set {ds!r}")
            except (FileNotFoundError, ImportError) as err:
                result["skipped"][ds] = str(err)
                print(f"{ds}: skipped ({err})", file=sys.stderr, flush=True)
                continue
            result["datasets"][ds] = {
                "load_seconds": round(time.perf_counter() - t0, 2),
                "groups": {
                    g: {"size": s, "B": b, **t["info"]} for d, g, s, b, t in tasks if d == ds
                },
            }
        for ds, group, size, _, task in tasks:
            result["baselines"].append(
                {"dataset": ds, "group": group, "auc": baseline_aucs(task, size)}
            )
        save()
        # Budget B on every data set first, then B/4: a run cut short still has the main table.
        for budget in args.budgets.split(","):
            for ds, group, size, b, task in tasks:
                steps = b if budget == "B" else max(1, b // args.budget_divisor)
                for method in methods:
                    if (ds, group, budget, method) in done:
                        continue
                    print(f"{budget} {ds} {group} {method}: {steps} steps at {size} px",
                          file=sys.stderr, flush=True)  # fmt: skip
                    run = fit_and_score(method, task, size, steps, t_starts)
                    run.update(dataset=ds, group=group, budget=budget, size=size)
                    run["invocation"] = len(result["invocations"]) - 1
                    result["runs"].append(run)
                    best = max(run["auc"].items(), key=lambda kv: np.mean(list(kv[1].values())))
                    print(f"  fit {run['fit_seconds']} s; best {best[0]} {best[1]}",
                          file=sys.stderr, flush=True)  # fmt: skip
                    save()
    save()
    print(markdown(result, "B", top=15))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
