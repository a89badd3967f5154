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
    p.add_argument("--n-samples", type=int, default=1, help="reconstructions averaged per image")
    p.add_argument("--seed", type=int, default=0, help="reconstruction noise seed")
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
    from diffad.cli._images import check_levels, load_localizer, read_images, set_threads
    from diffad.image.postprocess import foreground_mask, postprocess
    from diffad.report.entries import finish_report, image_entries, model_summary, run_context
    from diffad.report.run_folder import save_run

    check_levels(q=args.q, alpha=args.alpha)
    set_threads(args.threads)
    loc = load_localizer(args.model, args.device, args.quiet, args.resize)
    raw = read_images(args, args.images, loc.image_shape_[1])
    data, rec, maps, scores = loc.score_and_map(raw.images, args.seed, args.n_samples)
    if args.postprocess:
        fg = raw.masks if raw.masks is not None else foreground_mask(data)
        maps = postprocess(maps, fg, erosion=args.erosion)
        scores = loc.reduce_maps(maps)
    # The calibration scores and thresholds come from single, unprocessed reconstructions:
    # other scores are not exchangeable with them, so they get no p-value, flag or mask.
    comparable = not args.postprocess and args.n_samples == 1
    calibrated = hasattr(loc, "threshold_") and comparable
    masks = loc.masks_from_maps(maps) if calibrated else None
    if hasattr(loc, "threshold_") and not comparable:
        print("note: --postprocess / --n-samples differ from the calibration: no p-values")
    report = {
        "kind": "localize",
        "title": f"diffad localize: {args.images}",
        **run_context("localize"),
        "model": model_summary(loc, args.model),
        "alpha": args.alpha,
        "q": args.q if calibrated else None,
        "synthetic_lesions": False,
        "images": image_entries(loc, raw.names, scores, masks, args.q, comparable),
        "calibration": None,
        "null_p_values": {},
    }
    arrays = {"images": data, "reconstructions": rec, "maps": maps}
    if masks is not None:
        arrays["masks"] = masks
    out = save_run(args.out, report, arrays)
    html = finish_report(out, args.overlays)
    n_sel = sum(bool(e["bh_selected"]) for e in report["images"])
    what = f"; {n_sel} selected by BH at q = {args.q:g}" if report["q"] is not None else ""
    print(f"{len(raw)} images scored ({loc.image_score} of the {loc.score} map){what}")
    print(f"report: {html}")
    return 0
