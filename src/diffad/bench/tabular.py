"""ADBench tabular benchmark: run detectors over data sets, protocols and seeds.

``run_tabular`` returns one record per (data set, method, seed); ``summarize`` averages the
records per published data set (multi-file families such as MVTec-AD are averaged over
their files first, per seed) and sets them next to the published DTE-paper ROC-AUC.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from diffad.bench.methods import METHODS, make_detector
from diffad.bench.published import PUBLISHED_ROCAUC
from diffad.data.adbench import PROTOCOLS, dataset_name, family_name, list_datasets, load_npz
from diffad.data.adbench import make_split as _make_split
from diffad.metrics.detection import detection_metrics

DETERMINISTIC = frozenset({"knn", "lof", "ocsvm", "dte-np"})
"""Methods whose scores depend on the data only (no random_state)."""

MULTI_FILE_FAMILIES = frozenset(
    {"20news", "agnews", "CIFAR10", "SVHN", "MVTec-AD", "FashionMNIST", "MNIST-C"}
)
"""Published rows that average several ADBench files (compare only when all are present)."""

ANCHOR_PROTOCOL = {"semi-paper": "semi", "semi": "semi", "unsup": "unsup"}
"""Our protocol -> the published protocol it is compared with."""


def select_files(data_dir: str | Path, datasets: list[str] | None = None) -> list[Path]:
    """The ``.npz`` files of ``data_dir``, optionally restricted to some names.

    A requested name matches a file by its stem (``6_cardio``), its name without the index
    (``cardio``) or its family (``MVTec-AD`` selects every MVTec-AD file); case-insensitive.

    Raises
    ------
    ValueError
        If a requested name matches no file (the message lists the available names).
    """
    files = list_datasets(data_dir)
    if not datasets:
        return files
    chosen: list[Path] = []
    for want in datasets:
        key = want.strip().lower()
        hits = [
            f
            for f in files
            if key in (f.stem.lower(), dataset_name(f).lower(), family_name(f).lower())
        ]
        if not hits:
            names = ", ".join(dataset_name(f) for f in files)
            raise ValueError(f"unknown data set {want!r} in {data_dir}; available: {names}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def run_tabular(
    files: list[Path],
    protocol: str,
    methods: list[str],
    seeds: list[int],
    *,
    device: str = "auto",
    method_params: dict[str, dict[str, Any]] | None = None,
    verbose: bool = True,
    on_record=None,
    reuse_identical_splits: bool = True,
) -> list[dict]:
    """Fit and score every method on every file and seed.

    Parameters
    ----------
    files : list of Path
        ADBench ``.npz`` files.
    protocol : {"semi-paper", "semi", "unsup"}
    methods : list of str
        Names from ``diffad.bench.methods.METHODS``.
    seeds : list of int
        Each seed sets the protocol's row selections and the detector's ``random_state``.
    device : str
        Device of diffad's torch detectors.
    method_params : dict, optional
        Extra constructor arguments per method name, e.g. ``{"dte-c": {"epochs": 50}}``.
    verbose : bool
        Progress bar over (data set, method, seed).
    on_record : callable, optional
        Called with each record as soon as it exists (e.g. to save partial results).
    reuse_identical_splits : bool
        For deterministic methods (``DETERMINISTIC``), when a seed yields exactly the same
        split as an earlier seed (e.g. ``semi`` on a set that is neither over- nor
        subsampled), copy that seed's result instead of refitting; such records carry
        ``"reused_from_seed"`` and the original timings.

    Returns
    -------
    list of dict
        Records with ``dataset, family, file, method, seed, protocol, roc_auc, ap, f1,
        fit_s, score_s, n_train, n_test, n_features``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if not files or not methods or not seeds:
        raise ValueError("nothing to run: need at least one data set, method and seed")
    method_params = method_params or {}
    known = list(PUBLISHED_ROCAUC["semi"])
    records: list[dict] = []
    done: dict[tuple, dict] = {}
    bar = tqdm(total=len(files) * len(methods) * len(seeds), disable=not verbose, unit="run")
    try:
        for path in files:
            X, y = load_npz(path)
            for seed in seeds:
                split = _make_split(X, y, protocol, seed)
                fingerprint = _fingerprint(split.X_train, split.X_test, split.y_test)
                for method in methods:
                    bar.set_description(f"{dataset_name(path)} {method} seed {seed}")
                    previous = done.get((path, method, fingerprint))
                    if reuse_identical_splits and method in DETERMINISTIC and previous:
                        record = {**previous, "seed": int(seed)}
                        record["reused_from_seed"] = previous["seed"]
                        records.append(record)
                        if on_record is not None:
                            on_record(record)
                        bar.update()
                        continue
                    record = _fit_and_score(
                        path, split, method, seed, protocol, known, device,
                        method_params.get(method, {}),
                    )  # fmt: skip
                    done[(path, method, fingerprint)] = record
                    records.append(record)
                    if on_record is not None:
                        on_record(record)
                    bar.update()
    finally:
        bar.close()
    return records


def _fit_and_score(
    path: Path,
    split,
    method: str,
    seed: int,
    protocol: str,
    known: list[str],
    device: str,
    params: dict[str, Any],
) -> dict:
    """One record: fit ``method`` on the split's training rows and score its test rows."""
    detector = make_detector(method, seed, device=device, **params)
    t0 = time.perf_counter()
    detector.fit(split.X_train)
    t1 = time.perf_counter()
    scores = np.asarray(detector.decision_function(split.X_test), np.float64)
    t2 = time.perf_counter()
    if not np.isfinite(scores).all():
        raise ValueError(f"{method} returned NaN/inf scores on {path.name} (seed {seed})")
    return {
        "dataset": dataset_name(path),
        "family": family_name(path, known),
        "file": path.name,
        "method": method,
        "seed": int(seed),
        "protocol": protocol,
        **detection_metrics(split.y_test, scores),
        "fit_s": t1 - t0,
        "score_s": t2 - t1,
        "n_train": int(split.X_train.shape[0]),
        "n_test": int(split.X_test.shape[0]),
        "n_features": int(split.X_train.shape[1]),
        "params": _json_params(detector),
    }


def _json_params(detector) -> dict:
    """The detector's constructor parameters that JSON can hold (for provenance)."""
    try:
        params = detector.get_params(deep=False)
    except (AttributeError, TypeError):
        return {}
    out = {}
    for key, value in params.items():
        if isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, bool | int | float | str | list):
            out[key] = value
    return out


def _fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
        digest.update(str(a.shape).encode())
    return digest.hexdigest()


def summarize(
    records: list[dict], published: dict | None = None, protocol: str | None = None
) -> list[dict]:
    """Seed-averaged ROC-AUC (%) per (family, method) next to the published value.

    For a family of several files (e.g. the 15 MVTec-AD categories) the per-seed value is
    the mean over its files, as in the published tables; mean and standard deviation
    (``ddof=0``) are then taken over seeds.

    Parameters
    ----------
    records : list of dict
        Output of ``run_tabular``.
    published : dict, optional
        ``{protocol: {family: {METHOD: (mean, std)}}}``; defaults to the DTE paper's.
    protocol : str, optional
        Our protocol name; defaults to the records' own.

    Returns
    -------
    list of dict
        ``family, method, n_files, n_seeds, roc_auc_mean, roc_auc_std, published,
        published_std, diff`` (ROC-AUC in percent; ``published``/``diff`` None when absent).
    """
    published = PUBLISHED_ROCAUC if published is None else published
    by_key: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    files: dict[tuple[str, str], set] = defaultdict(set)
    for r in records:
        key = (r["family"], r["method"])
        by_key[key][r["seed"]].append(100.0 * r["roc_auc"])
        files[key].add(r["file"])
        protocol = protocol or r["protocol"]
    table = published.get(ANCHOR_PROTOCOL.get(protocol or "", ""), {})
    rows = []
    for (family, method), per_seed in by_key.items():
        values = np.array([np.mean(v) for v in per_seed.values()])
        pub = table.get(family, {}).get(METHODS[method])
        mean = float(values.mean())
        rows.append(
            {
                "family": family,
                "method": method,
                "n_files": len(files[(family, method)]),
                "n_seeds": len(per_seed),
                "roc_auc_mean": mean,
                "roc_auc_std": float(values.std()),
                "published": None if pub is None else float(pub[0]),
                "published_std": None if pub is None else float(pub[1]),
                "diff": None if pub is None else mean - float(pub[0]),
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> str:
    """A markdown table of ``summarize`` rows."""
    lines = [
        "| data set | files | method | seeds | ROC-AUC % (ours) | published | diff |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        pub = "–" if r["published"] is None else f"{r['published']:.2f}"
        diff = "–" if r["diff"] is None else f"{r['diff']:+.2f}"
        ours = f"{r['roc_auc_mean']:.2f} ± {r['roc_auc_std']:.2f}"
        lines.append(
            f"| {r['family']} | {r['n_files']} | {r['method']} | {r['n_seeds']} | {ours} "
            f"| {pub} | {diff} |"
        )
    if any(r["n_files"] > 1 or r["family"] in MULTI_FILE_FAMILIES for r in rows):
        lines.append(
            "\nA family (e.g. MVTec-AD) is averaged over the files present; the published "
            "value averages over all of ADBench's files of that family."
        )
    return "\n".join(lines)
