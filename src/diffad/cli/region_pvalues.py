"""``diffad test``: a p-value for the region a trained model flags in each image."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from diffad.cli._images import add_input_args, add_runtime_args
from diffad.selective import DEFAULT_NULL, METHODS, TERMINATIONS


def parse_noise_var(value: str | None) -> float | np.ndarray | None:
    """A positive number (scalar variance), a ``.npy`` file (per-pixel variances or a
    matrix), or None (the model's estimate)."""
    if value is None:
        return None
    try:
        var: Any = float(value)
    except ValueError:
        path = Path(value)
        if not path.is_file():
            raise ValueError(
                f"--noise-var must be a number or a .npy file, got {value!r}"
            ) from None
        try:
            var = np.load(path, allow_pickle=False).astype(np.float64)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read --noise-var file {path}: {err}") from err
    if not np.all(np.isfinite(var)) or np.any(np.asarray(var) < 0) or np.size(var) == 0:
        raise ValueError("--noise-var must be finite and non-negative")
    if np.ndim(var) == 0 and var <= 0:
        raise ValueError(f"--noise-var must be positive, got {value}")
    return var


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``diffad test``."""
    p = subparsers.add_parser(
        "test",
        help="a p-value for the region a diffusion model flags in each image",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "For each image: select the region where the model's map exceeds λ and test whether "
            "its mean differs from the reference's. By default (rank) the most extreme "
            "connected component of the map at a lower level λ_rank is ranked among held-out "
            "healthy images (or, with too few of them, data fission: select on X + τZ, test "
            "on X - Z/τ); --method parametric is the exact DAL-Test (conditions "
            "on the exact region by tracing the network). Defaults come from the model's "
            "calibrated region test: λ, the noise covariance, the reference and the healthy "
            "null. Every run also reports "
            "the healthy calibration check (the share of held-out healthy images rejected at "
            "--alpha) and the noise-model check. Writes OUT/report.json, OUT/arrays.npz and "
            "OUT/report.html."
        ),
    )
    p.add_argument("--model", required=True, help="checkpoint folder from train-image")
    add_input_args(p, "--images")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--reference", default=None, help="one healthy reference image file")
    ref.add_argument(
        "--references", default=None, help="healthy images whose mean is the reference"
    )
    ref.add_argument(
        "--paired-references",
        default=None,
        help="one healthy reference per image: a folder matched by file name, or a registered "
        "healthy brain (mni152, colin27) matched by slice position; required for a model "
        "calibrated with paired references",
    )
    p.add_argument(
        "--noise-var",
        default=None,
        help="noise covariance: a scalar variance or a .npy of per-pixel variances / matrix "
        "(default: the model's estimate from healthy images)",
    )
    p.add_argument("--lam", type=float, default=None, help="threshold λ (default: the model's)")
    p.add_argument(
        "--method",
        default=None,
        choices=METHODS,
        help="default: rank when the model's region test kept more than 1/alpha - 1 healthy "
        "null images, else fission with the scaled null, else (no calibration) "
        "parametric -- the most powerful valid tests in docs/benchmarks/region_power.md. "
        "rank: the most extreme connected component of the map at λ_rank (its z), ranked "
        "among held-out healthy images (a conformal p-value, valid whenever the image is "
        "exchangeable with them; --lam, --noise-var and --reference(s) are refused with "
        "it); fission: select on X + τZ, test on X - Z/τ against --null; parametric: the "
        "exact DAL-Test (conditions on the exact region); tile: exact, conditioned only on a "
        "fixed tile having a pixel above λ (Bonferroni over the tiles); oc, naive, "
        "bonferroni, permutation",
    )
    p.add_argument(
        "--null",
        default=None,
        choices=("gaussian", "scaled", "conformal"),
        help="what the fission / naive statistic is compared with: conformal = its rank among "
        "held-out healthy images (exact whenever the image and those are exchangeable); "
        "scaled = Student t with the healthy scale; gaussian = N(0, 1). Default: scaled for "
        "fission, gaussian for naive",
    )
    p.add_argument("--tau", type=float, default=None, help="fission τ (default: the model's, 1)")
    p.add_argument(
        "--tile-size", type=int, default=8,
        help="side in pixels of the fixed tiles of --method tile (Bonferroni over the tiles)",
    )  # fmt: skip
    p.add_argument(
        "--filter-size", type=int, default=None, help="mean filter side (default: the model's, 3)"
    )
    p.add_argument(
        "--t-start", type=int, default=None, help="DDPM noise level (default: the model's)"
    )
    p.add_argument("--ddim-steps", type=int, default=None, help="DDPM: default: the model's")
    p.add_argument(
        "--seed", type=int, default=None, help="DDPM reconstruction noise (default: the model's)"
    )
    p.add_argument(
        "--termination",
        default="precision",
        choices=TERMINATIONS,
        help="precision: p bracketed to --precision; exhaustive: the whole [-z_max, z_max]; "
        "decision: stop once p < alpha or p >= alpha is certain (prints the bracket, not a p)",
    )
    p.add_argument("--precision", type=float, default=1e-3)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--z-max", type=float, default=10.0)
    p.add_argument("--permutations", type=int, default=1000)
    p.add_argument(
        "--check",
        type=int,
        default=None,
        help="healthy images of the calibration check (default: all the model kept; 0: skip)",
    )
    p.add_argument("--resize", action="store_true", help="resize images to the model's size")
    p.add_argument(
        "--out",
        default=None,
        help="output folder (results.jsonl, report.json, arrays.npz, report.html), or a "
        ".jsonl file (results only); each p-value is written as it finishes and a rerun "
        "with the same --out and options resumes",
    )
    add_runtime_args(p)
    add_backend_args(p)
    p.set_defaults(func=run)


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """``--backend``, ``--workers`` and the Ray options."""
    from diffad.selective.batch import BACKENDS

    p.add_argument(
        "--backend",
        default="joblib",
        choices=BACKENDS,
        help="where the p-values are computed: joblib (this machine) or ray (one task per "
        "image on a Ray cluster or a local Ray instance; pip install 'diffad[ray]')",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="joblib: worker processes (default 1: in this process; -1: all cores); ray: "
        "images tested at once (default: twice the cluster's CPUs, or GPUs / "
        "--gpus-per-task), also the CPUs of a local Ray instance started for the run",
    )
    p.add_argument(
        "--address",
        default=None,
        help="ray: the cluster to connect to (auto, ray://HEAD:10001, …); default: "
        "$RAY_ADDRESS, else a new local instance",
    )
    p.add_argument(
        "--gpus-per-task",
        type=float,
        default=0,
        help="ray: GPUs each task requests (a fraction shares a GPU); 0: tasks see no GPU",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        help="ray: reruns of a task whose worker process died",
    )


def check_backend_args(args: argparse.Namespace) -> None:
    """The backend options must fit together (one clear error otherwise)."""
    from diffad.selective.batch import check_backend

    if args.backend != "ray":
        for flag, value, default in (
            ("--address", args.address, None),
            ("--gpus-per-task", args.gpus_per_task, 0),
            ("--max-retries", args.max_retries, 3),
        ):
            if value != default:
                raise ValueError(f"{flag} needs --backend ray")
    if args.workers is not None and (args.workers == 0 or args.workers < -1):
        raise ValueError(f"--workers must be a positive integer or -1, got {args.workers}")
    if not args.gpus_per_task >= 0:
        raise ValueError(f"--gpus-per-task must be >= 0, got {args.gpus_per_task}")
    if args.max_retries < 0:
        raise ValueError(f"--max-retries must be >= 0, got {args.max_retries}")
    if args.backend == "ray" and args.device == "cuda" and not args.gpus_per_task:
        # Ray hides the GPUs from tasks that request none: every image would fail.
        raise ValueError("--device cuda with --backend ray needs --gpus-per-task > 0")
    check_backend(args.backend, args.address, args.gpus_per_task, args.max_retries)


def _reference(
    args: argparse.Namespace, loc: Any, tester: Any
) -> tuple[np.ndarray | None, float | None]:
    """The reference image and its variance factor f (None, None: the calibrated one)."""
    from diffad.cli._images import read_images

    spec = args.reference or args.references
    if getattr(tester, "offset_", None) is not None and spec is not None:
        raise ValueError(
            "this model's region test was calibrated with paired references: give "
            "--paired-references, not --reference/--references"
        )
    if spec is None:
        if not tester.calibrated:
            raise ValueError(
                "this model is not calibrated: give --reference or --references "
                "(or retrain with calibration)"
            )
        return None, None
    refs = loc.prepare(read_images(args, spec, loc.image_shape_[1]).images).astype(np.float64)
    if args.reference is not None and len(refs) != 1:
        raise ValueError(f"--reference must be one image, {spec} holds {len(refs)}")
    return refs.mean(axis=0), 1.0 / len(refs)


def describe(result: Any, termination: str, alpha: float) -> str:
    """One line per image for the terminal."""
    if isinstance(result, str):
        return f"failed: {result}"
    if not result.selected:
        return "no region selected"
    naive = f"naive p {result.naive_p_value:.3g}"
    if termination == "decision" and result.p_value_bounds is not None:
        lo, hi = result.p_value_bounds
        return (
            f"{result.region_size} px, p in [{lo:.3g}, {hi:.3g}]: {result.decision(alpha)} "
            f"at alpha = {alpha:g} ({naive})"
        )
    if result.method in ("parametric", "oc", "tile"):
        return f"{result.region_size} px, selective p {result.p_value:.3g} ({naive})"
    if result.method == "rank":
        return (
            f"{result.region_size} px, rank p {result.p_value:.3g} "
            f"(z {result.z:.2f}, among healthy images)"
        )
    return f"{result.region_size} px, {result.method} p {result.p_value:.3g} ({result.null} null)"


def map_overrides(args: argparse.Namespace, loc: Any) -> None:
    """Apply ``--t-start``, ``--ddim-steps`` and ``--seed`` to the model: they change its map,
    so the map shown and the region tested change together."""
    given = {
        name: value
        for name, value in (
            ("t_start", args.t_start), ("ddim_steps", args.ddim_steps), ("seed", args.seed)
        )
        if value is not None
    }  # fmt: skip
    if not given:
        return
    unknown = sorted(set(given) - set(loc.get_params()))
    if unknown:
        flags = ", ".join("--" + name.replace("_", "-") for name in unknown)
        raise ValueError(f"{flags} do not apply to a {type(loc).__name__} (no noise level or seed)")
    loc.set_params(**given)


def _paired(args: argparse.Namespace, loc: Any, tester: Any, raw: Any) -> list | None:
    """Each image's own reference (prepared) from ``--paired-references``; None without it.

    Raises
    ------
    ValueError
        A region test calibrated with paired references run without them.
    """
    paired = getattr(tester, "offset_", None) is not None
    if args.paired_references is None:
        if paired:
            raise ValueError(
                "this model's region test was calibrated with paired references: give "
                "--paired-references (a folder matched by file name, or e.g. mni152)"
            )
        return None
    if tester.calibrated and not paired:
        raise ValueError(
            "this model's region test was calibrated against the mean healthy image: give "
            "--reference/--references, or retrain with train-image --paired-references"
        )
    from diffad.data.references import paired_references

    refs = paired_references(
        raw, args.images, args.paired_references, loc.image_shape_[1],
        npy_3d=args.npy_3d, axis=args.axis,
    )  # fmt: skip
    tester.reference_var_factor = None if paired else 1.0
    return list(loc.prepare(refs).astype(np.float64))


def choose_test(args: argparse.Namespace, tester: Any) -> str:
    """Resolve ``--method`` and ``--null`` left at their defaults (into ``args`` and the test)
    and say why: rank when the calibration kept enough healthy null images for a conformal
    p-value below --alpha, else fission against the scaled null, else (no
    calibration) the exact DAL-Test."""
    from diffad.selective.dal import healthy_null_of

    why = ""
    if args.method is None:
        args.method, null, why = tester.recommended_test(args.alpha)
        args.null = args.null or null
    if args.null is None:
        args.null = DEFAULT_NULL if args.method == "fission" else "gaussian"
    tester.method, tester.null = args.method, args.null
    if tester.calibrated and healthy_null_of(args.method, args.null) is not None:
        options = (
            ("--lam", args.lam), ("--noise-var", args.noise_var),
            ("--reference", args.reference), ("--references", args.references),
        )  # fmt: skip
        given = [flag for flag, value in options if value is not None]
        if given:
            way_out = (
                "use --method parametric" if args.method == "rank"
                else "use --method parametric or --null gaussian"
            )  # fmt: skip
            raise ValueError(
                f"{', '.join(given)} would compare against healthy null statistics computed "
                f"with the calibrated values: {way_out}, or recalibrate with train-image"
            )
    return why


def make_tester(args: argparse.Namespace, loc: Any) -> Any:
    """The region test of ``loc`` with the options of ``args``: calibrated from the model
    folder's ``region_test`` when ``train-image`` stored one."""
    from diffad.selective import REGION_TEST_FOLDER
    from diffad.selective.dal import SelectiveTest

    params = {
        "noise_var": parse_noise_var(args.noise_var),
        "lam": args.lam,
        "termination": args.termination,
        "precision": args.precision,
        "alpha": args.alpha,
        "z_max": args.z_max,
        "n_permutations": args.permutations,
        "tile_size": args.tile_size,
        "device": args.device,
    }
    stored = Path(args.model) / REGION_TEST_FOLDER
    if not stored.is_dir():
        return SelectiveTest(loc, filter_size=args.filter_size or 3, tau=args.tau or 1.0, **params)
    # A stored calibration (λ, healthy nulls) belongs to the map and settings it was made
    # with: options that change them would silently compare against stale numbers.
    changed = [
        flag
        for flag, value in (
            ("--t-start", args.t_start), ("--ddim-steps", args.ddim_steps), ("--seed", args.seed),
            ("--filter-size", args.filter_size), ("--tau", args.tau),
        )
        if value is not None
    ]  # fmt: skip
    if changed:
        raise ValueError(
            f"{', '.join(changed)} change(s) what the model's stored region-test calibration "
            "was made for: retrain (or recalibrate) with train-image"
        )
    return SelectiveTest.load(stored, loc, **params)


def run(args: argparse.Namespace) -> int:
    """Execute ``diffad test``."""
    from diffad.cli._images import check_levels, read_images, set_threads
    from diffad.image.localizers import load_localizer
    from diffad.report.entries import build_report, finish_report
    from diffad.report.run_folder import save_run

    check_levels(alpha=args.alpha)
    check_backend_args(args)
    set_threads(args.threads)
    loc = load_localizer(args.model, args.device, verbose=not args.quiet, resize=args.resize)
    map_overrides(args, loc)
    raw = read_images(args, args.images, loc.image_shape_[1])
    tester = make_tester(args, loc)
    why = choose_test(args, tester)
    if why:
        print(f"region test: {why}")
    references = _paired(args, loc, tester, raw)
    if references is None:
        reference, factor = _reference(args, loc, tester)
        tester.reference_var_factor = factor
        references = None if reference is None else [reference] * len(raw)
    # A setting that fails every image fails once, here, before the maps are computed.
    tester.validate(loc.image_shape_)
    # One reconstruction per image: the report's maps and the tested regions come from it.
    result = loc.localize(raw.images)
    log = result_log(args)
    if log is not None and len(log):
        print(f"resuming: {len(log)} result(s) already in {log.path}")
    results = compute_results(args, tester, raw.names, result.image, references, log)
    check, check_p = None, []
    user_reference = args.reference or args.references
    checked = not user_reference and args.method in ("rank", "parametric", "fission", "tile")
    kept = getattr(tester, "check_images_", None)
    n_check = 0 if kept is None or not checked else len(kept)
    n_check = n_check if args.check is None else min(max(args.check, 0), n_check)
    if n_check:
        from diffad.selective.noise import healthy_check

        kept_refs = tester.check_references_
        check, check_p = healthy_check(
            tester, kept[:n_check], args.alpha, not args.quiet,
            references=None if kept_refs is None else kept_refs[:n_check],
        )  # fmt: skip
        print(check.message())
    if getattr(tester, "noise_check_", None) is not None:
        print(tester.noise_check_.message())
    if args.out and not args.out.endswith(".jsonl"):
        report, arrays = build_report(
            "test", f"diffad test: {args.images}", loc, args.model, raw.names, result,
            alpha=args.alpha, region_results=results, exact=args.termination != "decision",
            check=(check, check_p) if check is not None else None,
            noise_check=getattr(tester, "noise_check_", None),
        )  # fmt: skip
        html = finish_report(save_run(args.out, report, arrays))
        print(f"report: {html}")
    return 0


def compute_results(
    args: argparse.Namespace,
    tester: Any,
    names: list[str],
    data: np.ndarray,
    references: list | None,
    log: Any,
) -> list[Any]:
    """Each image's result (an error message for a failed test), in input order.

    Finished results come from ``log``; the others are computed on the chosen backend and
    written to ``log`` as each arrives, with one line on the terminal per image (in the order
    they finish). A failing image is recorded with its message and the others go on, except
    when it is the only image: then its error is the answer (exit 2).
    """
    from tqdm.auto import tqdm

    from diffad.selective.batch import iter_tests

    results: list[Any] = [None if log is None else log.get(name) for name in names]
    todo = [i for i, res in enumerate(results) if res is None]
    for name, res in zip(names, results, strict=True):  # finished earlier: shown at once
        if res is not None:
            tqdm.write(f"{name}: {describe(res, args.termination, args.alpha)}")
    stream = iter_tests(
        tester,
        [data[i] for i in todo],
        None if references is None else [references[i] for i in todo],
        args.method,
        backend=args.backend,
        n_jobs=args.workers,
        address=args.address,
        gpus_per_task=args.gpus_per_task,
        max_retries=args.max_retries,
    )
    bar = tqdm(
        total=len(names), initial=len(names) - len(todo), desc="p-values", disable=args.quiet
    )
    # closing(): an error or Ctrl-C cancels the pending Ray tasks and stops a Ray started here.
    with contextlib.closing(stream), bar:
        for k, res in stream:
            i = todo[k]
            if isinstance(res, Exception):
                if len(names) == 1:
                    raise ValueError(str(res)) from res  # one image: its error is the answer
                res = str(res)  # one failing image does not stop the others
            if log is not None:
                log.put(names[i], res)
            results[i] = res
            bar.update()
            tqdm.write(f"{names[i]}: {describe(res, args.termination, args.alpha)}")
    return results


def result_log(args: argparse.Namespace) -> Any:
    """The JSON-lines log of finished p-values: ``--out`` itself when it ends in ``.jsonl``,
    else ``OUT/results.jsonl``; None without ``--out``. Its settings are the model's files and
    every option a p-value depends on, so a rerun resumes only an identical run."""
    if not args.out:
        return None
    from diffad.selective.result_log import ResultLog

    path = Path(args.out) if args.out.endswith(".jsonl") else Path(args.out) / "results.jsonl"
    model_files = sorted(Path(args.model).glob("*"))
    settings = {
        "model": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in model_files],
        **{
            k: v
            for k, v in vars(args).items()
            # Where and how the p-values run does not change them: a run resumes across
            # backends, worker counts and devices.
            if k not in ("func", "command", "out", "quiet", "threads", "check", "device")
            and k not in ("backend", "workers", "address", "gpus_per_task", "max_retries")
        },
    }
    return ResultLog(path, settings)
