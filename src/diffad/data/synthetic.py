"""Seeded, labelled synthetic lesions for evaluating anomaly localisation.

A lesion is a soft-edged shape (a rotated ellipse or a random star-shaped blob, blurred at
the rim) with one effect inside it:

- ``hyper`` / ``hypo``: additive intensity shift of ±``delta`` (clipped to [0, 1]);
- ``texture``: a patch of another image (``donors``), min–max rescaled to the target's
  intensity range inside the lesion, alpha-blended in (falls back to ``noise`` without donors);
- ``noise``: smoothed Gaussian noise texture, rescaled and blended the same way (a
  structural change at nearly unchanged mean intensity).

The ground-truth mask is the lesion's core (blend weight >= 0.5), restricted to the
foreground mask when one is given. The same seed gives the same lesions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LESION_SHAPES = ("ellipse", "blob")
LESION_EFFECTS = ("hyper", "hypo", "texture", "noise")


def lesion_alpha(
    height: int,
    width: int,
    center: tuple[float, float],
    radii: tuple[float, float],
    angle: float,
    shape: str,
    softness: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Soft lesion weight in [0, 1] of shape ``(height, width)``.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    center : (float, float)
        Row, column of the centre.
    radii : (float, float)
        Semi-axes in pixels (row-wise and column-wise before rotation).
    angle : float
        Rotation in radians.
    shape : {"ellipse", "blob"}
        ``blob`` perturbs the ellipse's radius with random low-order harmonics
        (star-shaped, so always one connected piece).
    softness : float
        σ (pixels) of the Gaussian blur of the rim; 0 gives a hard edge.
    rng : numpy.random.Generator
        Source of the blob's harmonics.
    """
    if shape not in LESION_SHAPES:
        raise ValueError(f"lesion shape must be one of {LESION_SHAPES}, got {shape!r}")
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    dy, dx = yy - center[0], xx - center[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dy + s * dx, -s * dy + c * dx
    rho = np.sqrt((u / radii[0]) ** 2 + (v / radii[1]) ** 2)
    if shape == "blob":
        theta = np.arctan2(v / radii[1], u / radii[0])
        bump = np.zeros_like(theta)
        for k in (2, 3, 4, 5):
            bump += rng.uniform(0.0, 0.35 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        rho = rho / np.clip(1.0 + bump, 0.4, None)
    hard = (rho <= 1.0).astype(np.float64)
    if softness > 0:
        hard = ndimage.gaussian_filter(hard, softness, mode="constant")
        hard /= max(hard.max(), 1e-12)  # small lesions: keep the core at full weight
    return np.clip(hard, 0.0, 1.0)


def _texture(
    image: np.ndarray,
    alpha: np.ndarray,
    donor: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """A foreign texture rescaled to the target's intensity range inside the lesion."""
    h, w = image.shape
    if donor is None:
        source = ndimage.gaussian_filter(rng.normal(size=(h, w)), rng.uniform(0.5, 1.5))
    else:
        # A random shift of the donor: the patch comes from a different place in another image.
        source = np.roll(donor, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
    inside = alpha >= 0.5
    lo, hi = float(source[inside].min()), float(source[inside].max())
    tlo, thi = float(image[inside].min()), float(image[inside].max())
    if thi - tlo < 0.2:  # flat target region: use a visible range around its mean
        mid = 0.5 * (tlo + thi)
        tlo, thi = max(mid - 0.2, 0.0), min(mid + 0.2, 1.0)
    scaled = (source - lo) / max(hi - lo, 1e-12)
    return tlo + scaled * (thi - tlo)


def add_lesions(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    n_lesions: int = 1,
    shapes: tuple[str, ...] = LESION_SHAPES,
    effects: tuple[str, ...] = LESION_EFFECTS,
    radius: tuple[float, float] = (0.08, 0.18),
    delta: tuple[float, float] = (0.25, 0.5),
    softness: tuple[float, float] = (0.5, 1.5),
    donor: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Insert ``n_lesions`` synthetic lesions into one image.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W)`` or ``(C, H, W)`` in [0, 1]; every channel gets the same lesion.
    mask : np.ndarray, optional
        ``(H, W)`` (or ``(1, H, W)``) boolean foreground: lesion centres are drawn inside it
        and lesions are cut to it.
    n_lesions : int
        Lesions per image (they may overlap).
    shapes, effects : tuple of str
        Allowed shapes (:data:`LESION_SHAPES`) and effects (:data:`LESION_EFFECTS`), drawn
        uniformly per lesion.
    radius : (float, float)
        Range of the semi-axes as a fraction of the image side (at least 1.5 px).
    delta : (float, float)
        Range of the intensity shift of ``hyper``/``hypo`` lesions.
    softness : (float, float)
        Range of the rim blur σ in pixels.
    donor : np.ndarray, optional
        ``(H, W)`` image that ``texture`` lesions take their patch from.
    rng : numpy.random.Generator or int, optional
        Generator or seed.

    Returns
    -------
    image : np.ndarray
        The image with lesions, same shape and dtype (float32).
    lesion_mask : np.ndarray
        ``(H, W)`` bool ground truth (the union of the lesion cores).
    """
    rng = np.random.default_rng(rng)
    img = np.asarray(image, dtype=np.float64)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[None]
    if img.ndim != 3:
        raise ValueError(f"image must be (H, W) or (C, H, W), got shape {np.shape(image)}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or infinite values")
    if n_lesions < 1:
        raise ValueError(f"n_lesions must be >= 1, got {n_lesions}")
    bad = [e for e in effects if e not in LESION_EFFECTS] + [
        s for s in shapes if s not in LESION_SHAPES
    ]
    if bad or not effects or not shapes:
        raise ValueError(f"unknown or empty lesion shapes/effects: {bad or (shapes, effects)}")
    _, h, w = img.shape
    fg = np.ones((h, w), dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(h, w)
    if not fg.any():
        raise ValueError("the foreground mask is empty: nowhere to put a lesion")
    if donor is not None:
        donor = np.asarray(donor, dtype=np.float64).reshape(h, w)
    side = min(h, w)
    r_lo, r_hi = (max(f * side, 1.5) for f in radius)
    # Centres at least the smallest radius inside the foreground, when there is room.
    inner = ndimage.binary_erosion(fg, iterations=max(int(r_lo), 1))
    centres = np.argwhere(inner if inner.any() else fg)
    gray = img.mean(axis=0)
    out = img.copy()
    truth = np.zeros((h, w), dtype=bool)
    for _ in range(n_lesions):
        for _attempt in range(20):
            cy, cx = centres[rng.integers(len(centres))] + rng.uniform(-0.5, 0.5, size=2)
            radii = (rng.uniform(r_lo, max(r_hi, r_lo)), rng.uniform(r_lo, max(r_hi, r_lo)))
            alpha = lesion_alpha(
                h, w, (cy, cx), radii, rng.uniform(0, np.pi),
                shapes[rng.integers(len(shapes))], rng.uniform(*softness), rng,
            )  # fmt: skip
            alpha *= fg
            if (alpha >= 0.5).any():
                break
        else:
            raise ValueError("could not place a lesion inside the foreground mask")
        effect = effects[rng.integers(len(effects))]
        if effect in ("hyper", "hypo"):
            shift = rng.uniform(*delta) * (1.0 if effect == "hyper" else -1.0)
            out = out + alpha * shift
        else:
            tex = _texture(gray, alpha, donor if effect == "texture" else None, rng)
            out = out * (1.0 - alpha) + tex[None] * alpha
        truth |= alpha >= 0.5
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return (out[0] if squeeze else out), truth


def lesion_dataset(
    images: np.ndarray,
    masks: np.ndarray | None = None,
    donors: np.ndarray | None = None,
    seed: int = 0,
    n_lesions: int | tuple[int, int] = 1,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Add lesions to every image of a batch.

    Parameters
    ----------
    images : np.ndarray
        ``(N, C, H, W)`` in [0, 1].
    masks : np.ndarray, optional
        ``(N, 1, H, W)`` or ``(N, H, W)`` boolean foreground masks.
    donors : np.ndarray, optional
        ``(M, C, H, W)`` pool of images for ``texture`` lesions (e.g. other healthy images);
        image ``i`` takes a random donor (a different index when ``donors is images``).
    seed : int
        Image ``i`` uses the generator ``default_rng([seed, i])``.
    n_lesions : int or (int, int)
        Lesions per image, fixed or drawn uniformly from the inclusive range.
    **kwargs
        Passed to :func:`add_lesions`.

    Returns
    -------
    images : np.ndarray
        ``(N, C, H, W)`` float32 with lesions.
    lesion_masks : np.ndarray
        ``(N, 1, H, W)`` bool ground truth.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) array, got {images.shape}")
    n, _, h, w = images.shape
    if masks is not None:
        masks = np.asarray(masks, dtype=bool).reshape(n, h, w)
    same_pool = donors is images
    out = np.empty_like(images)
    truth = np.zeros((n, 1, h, w), dtype=bool)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        k = (
            n_lesions
            if isinstance(n_lesions, int)
            else int(rng.integers(n_lesions[0], n_lesions[1] + 1))
        )
        donor = None
        if donors is not None and len(donors) > (1 if same_pool else 0):
            j = int(rng.integers(len(donors)))
            if same_pool and j == i:
                j = (j + 1) % len(donors)
            donor = np.asarray(donors[j], dtype=np.float64).mean(axis=0)
        out[i], truth[i, 0] = add_lesions(
            images[i],
            None if masks is None else masks[i],
            n_lesions=k,
            donor=donor,
            rng=rng,
            **kwargs,
        )
    return out, truth
