"""Picture of DISYRE v2 synthetic anomalies (DAG) on an axial MNI152 brain slice.

    python benchmarks/dag_examples.py --out docs/images/dag_examples.png

Top row: the corrupted slices with the anomaly mask (S > 0) outlined and the severity α;
bottom row: the absolute change (colour scale 0–0.5). Texture donors are the other slices of
the same brain band. Needs nilearn (the MNI152 template ships in its wheel; see
``diffad.data.brain``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from diffad.data.brain import brain_slices
from diffad.image.dag import corrupt


def main(argv: list[str] | None = None) -> int:
    """Draw ``--n`` corrupted copies of one slice and save the grid to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/dag_examples.png"))
    parser.add_argument("--n", type=int, default=8, help="number of examples")
    parser.add_argument("--size", type=int, default=64, help="slice side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slices = brain_slices("mni152", args.size, slice_fraction=(0.35, 0.65), step=2).images
    target = len(slices) // 2
    image = slices[target]
    donors = np.delete(slices, target, axis=0)  # texture from *other* slices
    rng = np.random.default_rng(args.seed)

    fig, axes = plt.subplots(2, args.n, figsize=(1.6 * args.n, 3.6), squeeze=False)
    for k in range(args.n):
        corrupted, mask, severity = corrupt(image, rng, textures=donors)
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(corrupted[0], cmap="gray", vmin=0, vmax=1)
        top.contour(mask, levels=[0.5], colors="tab:red", linewidths=0.8)
        top.set_title(f"α = {severity:.2f}", fontsize=9)
        bottom.imshow(np.abs(corrupted[0] - image[0]), cmap="magma", vmin=0, vmax=0.5)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("corrupted", fontsize=9)
    axes[1, 0].set_ylabel("|change|", fontsize=9)
    fig.suptitle("DISYRE v2 disentangled anomalies on an MNI152 slice (mask outlined)", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
