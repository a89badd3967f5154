"""``diffad localize``: anomaly maps, image scores, conformal p-values and a report."""

from __future__ import annotations

import argparse

from diffad.cli._images import add_input_args, add_runtime_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``localize``."""
    p = subparsers.add_parser(
        "localize",
        help="anomaly maps, image scores and per-image p-values with a trained model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Reconstruct images with a model from `diffad train-image` (its stored "
            "preprocessing applied), map where they differ and score each image. A calibrated "
            "model also gives each image a conformal p-value against its healthy calibration "
            "scores, Benjamini-Hochberg selection at --q and a pixel mask (pixels above the "
            "healthy 99th percentile). Writes OUT/report.json, OUT/arrays.npz (images, "
            "reconstructions, maps, masks), OUT/report.html and, with --overlays, one PNG per "
            "image in OUT/overlays/."
        ),
    )
    p.add_argument("--model", required=True, help="checkpoint folder from train-image")
    add_input_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--q", type=float, default=0.1, help="Benjamini-Hochberg FDR level")
    p.add_argument("--alpha", type=float, default=0.05, help="level shown in the report")
    p.add_argument(
        "--resize", action="store_true", help="resize images of another size to the model's"
    )
    p.add_argument(
        "--postprocess",
        action="store_true",
        help="mask maps to the foreground (pixels > 0, eroded by --erosion) and median-filter",
    )
    p.add_argument("--erosion", type=int, default=1)
    p.add_argument("--overlays", action="store_true", help="also write one PNG per image")
    add_runtime_args(p, device_default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load model and images, compute maps and scores, write the run folder and report."""
    import dataclasses

    from diffad.cli._images import check_levels, read_images, set_threads
    from diffad.image.localizers import load_localizer
    from diffad.image.postprocess import foreground_mask, postprocess
    from diffad.report.entries import build_report, finish_report
    from diffad.report.run_folder import save_run

    check_levels(q=args.q, alpha=args.alpha)
    set_threads(args.threads)
    loc = load_localizer(args.model, args.device, verbose=not args.quiet, resize=args.resize)
    raw = read_images(args, args.images, loc.image_shape_[1])
    result = loc.localize(raw.images)
    if args.postprocess:
        fg = raw.masks if raw.masks is not None else foreground_mask(result.image)
        maps = postprocess(result.anomaly_map, fg, erosion=args.erosion)
        # The calibration scores and thresholds come from unprocessed maps: processed scores
        # are not exchangeable with them, so they get no p-value, flag or mask.
        result = dataclasses.replace(
            result, anomaly_map=maps, pred_score=loc.reduce_maps(maps), pred_mask=None,
            pred_label=None,
        )  # fmt: skip
        if hasattr(loc, "threshold_"):
            print("note: --postprocess changes the maps the model was calibrated on: no p-values")
    report, arrays = build_report(
        "localize", f"diffad localize: {args.images}", loc, args.model, raw.names, result,
        alpha=args.alpha, q=args.q,
    )  # fmt: skip
    html = finish_report(save_run(args.out, report, arrays), args.overlays)
    n_sel = sum(bool(e["bh_selected"]) for e in report["images"])
    what = f"; {n_sel} selected by BH at q = {args.q:g}" if report["q"] is not None else ""
    print(f"{len(raw)} images scored ({loc.image_score} of the {loc.score} map){what}")
    print(f"report: {html}")
    return 0
