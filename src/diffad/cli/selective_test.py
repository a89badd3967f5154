"""``diffad test``: selective p-value (DAL-Test) for the region a trained localizer flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from diffad.selective import METHODS, TERMINATIONS


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as float64: ``.npy`` as stored, ``.png``/``.jpg`` grey-scale in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float64)
    if suffix in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        try:
            from PIL import Image
        except ImportError as err:  # pragma: no cover - pillow is in the [image] extra
            raise ValueError(
                "reading PNG/JPEG images needs pillow: pip install diffad[image]"
            ) from err
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L"), dtype=np.float64)
        return arr / 255.0
    raise ValueError(f"unsupported image format {suffix!r} (use .npy or .png)")


def parse_noise_var(value: str) -> float | np.ndarray:
    """A number (scalar variance) or a ``.npy`` file (per-pixel variances or a matrix)."""
    try:
        return float(value)
    except ValueError:
        pass
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"--noise-var must be a number or a .npy file, got {value!r}")
    return np.load(path, allow_pickle=False).astype(np.float64)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``diffad test``."""
    p = subparsers.add_parser(
        "test",
        help="selective p-value for the region a diffusion model flags (DAL-Test)",
        description=__doc__,
    )
    p.add_argument("--model", required=True, help="DDPMLocalizer checkpoint folder")
    p.add_argument("--image", required=True, help="test image (.npy or .png)")
    p.add_argument("--reference", required=True, help="reference normal image, same size")
    p.add_argument(
        "--noise-var",
        "--sigma",
        required=True,
        help="noise covariance: a scalar variance, or a .npy of per-pixel variances / matrix",
    )
    p.add_argument("--method", default="parametric", choices=METHODS)
    p.add_argument("--lam", type=float, default=0.8, help="threshold λ (default 0.8)")
    p.add_argument("--filter-size", type=int, default=3)
    p.add_argument("--t-start", type=int, default=None, help="default: the model's")
    p.add_argument("--ddim-steps", "--n-steps", type=int, default=None, help="default: the model's")
    p.add_argument("--seed", type=int, default=0, help="reconstruction noise seed")
    p.add_argument(
        "--termination",
        default="precision",
        choices=TERMINATIONS,
        help="precision: stop when p is bracketed to --precision (default); exhaustive: "
        "search the whole [-z_max, z_max]; decision: stop once p <= alpha is certain",
    )
    p.add_argument("--precision", type=float, default=1e-3)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--z-max", type=float, default=10.0)
    p.add_argument("--permutations", type=int, default=1000)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``diffad test``."""
    from diffad.image.ddpm_localizer import DDPMLocalizer
    from diffad.selective.selective_test import SelectiveTest

    loc = DDPMLocalizer.load(args.model, device=args.device)
    image, reference = read_image(args.image), read_image(args.reference)
    tester = SelectiveTest(
        loc,
        parse_noise_var(args.noise_var),
        lam=args.lam,
        filter_size=args.filter_size,
        t_start=args.t_start,
        ddim_steps=args.ddim_steps,
        seed=args.seed,
        termination=args.termination,
        precision=args.precision,
        alpha=args.alpha,
        z_max=args.z_max,
        n_permutations=args.permutations,
        device=args.device,
    )
    res = tester.test(image, reference, method=args.method)
    if not res.selected:
        print(f"region size: 0 ({res.message}); no test performed")
    else:
        print(f"region size: {res.region_size} pixels")
        print(f"statistic T = mean_M(X) - mean_M(X'): {res.statistic:.6g} (z = {res.z:.4f})")
        print(f"{args.method} p-value: {res.p_value:.6g}")
        print(f"naive p-value: {res.naive_p_value:.6g}")
        if res.method in ("parametric", "oc"):
            print(f"truncation intervals: {len(res.intervals)}; pieces traced: {res.n_pieces}")
        print(f"seconds: {res.seconds:.2f}")
    if args.out:
        out = res.to_dict()
        opts = {k: v for k, v in vars(args).items() if k not in ("func", "command", "out")}
        out["command"] = "diffad test " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in opts.items() if v is not None
        )
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out}")
    return 0
