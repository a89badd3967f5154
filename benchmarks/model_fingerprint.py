"""Fingerprints of every model's outputs on fixed data and seeds, to check a refactor.

Fits DTE-NP, DTE-C (with and without double softmax), DTE-IG, the tabular DDPM (both
reconstructions) and the DDPM localiser (plain and augmented) on small seeded data, and
records a SHA-256 of each output array (training scores, test scores, loss history,
reconstructions, maps) plus its mean. Two runs of two versions of the code give the same
hash exactly when the outputs are bit-identical. Falls back to the older module path and call
signatures (seed, score and n_samples as arguments of each call rather than parameters of the
localiser), so it can be run on an older commit (``git worktree``) too. The localiser's
reconstruction and map differ between versions before and after every image got the same
noise draws (before, image i of a batch used seed + i).

Usage::

    python benchmarks/model_fingerprint.py --out F.json
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shlex
import subprocess
import sys
import warnings

import numpy as np
import torch


def _settings_on_model(loc) -> bool:
    """Whether the reconstruction seed is a parameter of the localiser (current versions)
    rather than an argument of each call (older ones)."""
    return "seed" in loc.get_params()


def _reconstruct(loc, images: np.ndarray, seed: int) -> np.ndarray:
    if _settings_on_model(loc):
        return copy.deepcopy(loc).set_params(seed=seed).reconstruct(images)
    return loc.reconstruct(images, seed=seed)


def _anomaly_map(loc, images: np.ndarray, score: str, seed: int, n_samples: int) -> np.ndarray:
    if _settings_on_model(loc):
        params = {"score": score, "seed": seed, "n_samples": n_samples}
        return copy.deepcopy(loc).set_params(**params).anomaly_map(images)
    return loc.anomaly_map(images, score=score, seed=seed, n_samples=n_samples)


def outputs() -> dict[str, np.ndarray]:
    from diffad.tabular import DDPMDetector, DTECategorical, DTEInverseGamma, DTENonParametric

    try:
        from diffad.image.ddpm_localizer import DDPMLocalizer
    except ImportError:  # versions before the localiser modules were split
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from diffad.image.localizer import DDPMLocalizer
    out = {}
    rng = np.random.default_rng(0)
    X, Xt = rng.normal(size=(300, 6)), rng.normal(size=(50, 6)) * 1.5
    kw = dict(epochs=5, batch_size=32, max_steps=None, verbose=False, random_state=3)
    ddpm = dict(width=16, hidden=16, n_blocks=1, time_dim=16, n_reverse_steps=20, **kw)
    detectors = {
        "dte_np": DTENonParametric(),
        "dte_c": DTECategorical(hidden_sizes=(32, 32), **kw),
        "dte_c_double_softmax": DTECategorical(hidden_sizes=(32, 32), double_softmax=True, **kw),
        "dte_ig": DTEInverseGamma(hidden_sizes=(32, 32), **kw),
        "ddpm": DDPMDetector(**ddpm),
        "ddpm_noised": DDPMDetector(reconstruction="noised", **ddpm),
    }
    for name, det in detectors.items():
        det.fit(X)
        out[f"{name}.train_scores"] = det.decision_scores_
        out[f"{name}.test_scores"] = det.decision_function(Xt)
        if hasattr(det, "loss_history_"):
            out[f"{name}.loss"] = np.asarray(det.loss_history_)
    imgs = rng.random((16, 1, 8, 8)).astype(np.float32)
    for name, extra in {
        "localizer": {},
        "localizer_augmented": {
            "hflip": True,
            "max_shift": 1,
            "lr_schedule": "constant",
            "max_train_t": 300,
        },
    }.items():
        loc = DDPMLocalizer(
            unet={"channels": [8, 16]}, train_steps=30, batch_size=8, t_start=200,
            verbose=False, device="cpu", random_state=2, **extra,
        ).fit(imgs)  # fmt: skip
        out[f"{name}.loss"] = np.asarray(loc.loss_history_)
        out[f"{name}.reconstruction"] = _reconstruct(loc, imgs[:4], seed=5)
        out[f"{name}.ssim_ens_map"] = _anomaly_map(
            loc, imgs[:4], score="ssim-ens", seed=1, n_samples=2
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    import diffad

    table = {
        k: {"sha256": hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest(),
            "mean": float(np.mean(v))}
        for k, v in outputs().items()
    }  # fmt: skip
    payload = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "diffad_path": diffad.__file__,
        "git_head": commit,
        "torch": torch.__version__,
        "outputs": table,
    }
    with open(args.out, "w") as fh:
        json.dump(payload, fh, indent=1)
    print(f"wrote {len(table)} fingerprints to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
