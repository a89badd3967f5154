"""Disentangled Anomaly Generator (DAG) of DISYRE v2.

DISYRE v2 (Naval Marimont et al., 2024, arXiv 2407.06635) trains a restorer on healthy images
corrupted by synthetic anomalies whose shape, texture and intensity are drawn independently.
:func:`corrupt` draws one such anomaly on a (C, H, W) image in [0, 1]:

1. **Shape** S in [0, 1]^(H, W): rectangle (rotated by up to ±15°), disc or random blob (noise
   thresholded around an ellipse in a random bounding box), 1:1:1, with sides / diameters in
   [10/64, 44/64]·min(H, W) (the paper's 10–44 px in 64² windows) and, with probability 0.7,
   edges blurred by σ ~ U(0, 5/64·min(H, W)). S is centred on a random foreground pixel and
   multiplied by the foreground mask: background pixels (every channel <= ``background``)
   never change. Values below ``mask_floor`` are zeroed so the mask S > 0 skips the far tail.
2. **Texture**: a crop F of another image (the ``textures`` pool, else the image itself
   shifted and flipped), min–max rescaled per channel to the target's range inside S, blended
   as x·(1 − α_tex·S) + F·α_tex·S with α_tex ~ U(0, 1).
3. **Intensity bias**: foreground intensities (channel mean) are quantised into K = 5 clusters
   by 1-D k-means; a random non-empty subset of the clusters present inside S is shifted by
   ±α_b (α_b ~ U(0, 1), random sign) through the profile β = G_1(1[cluster in subset])·S, and
   the result is clipped to [0, 1].

The severity is α = max(α_tex, b_eff) with the *effective bias* b_eff = Σ_p |Δ(p)| / Σ_p β(p),
where Δ(p) is the change the bias step made at pixel p after clipping (mean over channels).
Without clipping Δ = α_b·β, so b_eff = α_b exactly; clipping lowers it to α_b times the
β-weighted fraction of the bias that survived; b_eff = 0 if β is zero everywhere. All
randomness comes from ``rng``: a seed fixes the anomaly bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, label

#: Shape kinds, in the order of :attr:`DAGConfig.shape_probs`.
SHAPES: tuple[str, ...] = ("rectangle", "disc", "blob")
#: Values this far outside [0, 1] are accepted (and clipped); anything further is an error.
RANGE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class DAGConfig:
    """Distribution parameters of the generator (defaults: the DISYRE v2 settings).

    Parameters
    ----------
    shape_probs : (float, float, float)
        Probabilities of rectangle, disc and blob (see :data:`SHAPES`); sum to 1.
    size_range, min_size_px : (float, float), int
        Side / diameter range as a fraction of ``min(H, W)``, and the smallest side in pixels.
    max_rotation_deg : float
        Rectangles are rotated by an angle ~ U(−max, max) degrees.
    blur_prob, blur_sigma_range : float, (float, float)
        Probability of blurring the shape's edges; σ range as a fraction of ``min(H, W)``.
    min_texture_alpha, max_texture_alpha, min_bias, max_bias : float
        α_tex ~ U(min_texture_alpha, max_texture_alpha), α_b ~ U(min_bias, max_bias); a
        maximum of 0 switches that component off.
    n_clusters : int
        K, the number of intensity clusters.
    bias_sigma : float
        σ (pixels) of the Gaussian that smooths the bias's cluster indicator.
    mask_floor : float
        Shape values below this are set to 0 (changes there would be < ``mask_floor``·α).

    Raises
    ------
    ValueError
        If a parameter is out of its range (all problems are named).
    """

    shape_probs: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    size_range: tuple[float, float] = (10 / 64, 44 / 64)
    min_size_px: int = 2
    max_rotation_deg: float = 15.0
    blur_prob: float = 0.7
    blur_sigma_range: tuple[float, float] = (0.0, 5 / 64)
    min_texture_alpha: float = 0.0
    max_texture_alpha: float = 1.0
    min_bias: float = 0.0
    max_bias: float = 1.0
    n_clusters: int = 5
    bias_sigma: float = 1.0
    mask_floor: float = 0.01

    def __post_init__(self) -> None:
        p = self.shape_probs
        probs_ok = len(p) == 3 and min(p) >= 0 and bool(np.isclose(sum(p), 1.0))
        tex, bias = (self.min_texture_alpha, self.max_texture_alpha), (self.min_bias, self.max_bias)
        rules = {
            "shape_probs: 3 values >= 0 summing to 1": probs_ok,
            "size_range: 0 <= min <= max <= 1": _ordered(0, *self.size_range, 1),
            "blur_sigma_range: 0 <= min <= max": _ordered(0, *self.blur_sigma_range),
            "texture alpha: 0 <= min <= max <= 1": _ordered(0, *tex, 1),
            "bias: 0 <= min <= max <= 1": _ordered(0, *bias, 1),
            "min_size_px, n_clusters >= 1": min(self.min_size_px, self.n_clusters) >= 1,
            "max_rotation_deg, bias_sigma >= 0": min(self.max_rotation_deg, self.bias_sigma) >= 0,
            "blur_prob in [0, 1]": _ordered(0, self.blur_prob, 1),
            "mask_floor in [0, 1)": 0 <= self.mask_floor < 1,
        }
        broken = [rule for rule, holds in rules.items() if not holds]
        if broken:
            raise ValueError(f"invalid DAGConfig ({'; '.join(broken)}): {self}")


def _ordered(*values: float) -> bool:
    return all(a <= b for a, b in zip(values[:-1], values[1:], strict=True))


def _check_values(arr: np.ndarray, what: str) -> None:
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or inf")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        raise ValueError(f"{what} must lie in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]")


def _check_inputs(image: object, rng: object, background: float, batch: bool) -> np.ndarray:
    """The image as an array, (C, H, W) / (H, W) or, with ``batch``, (N, C, H, W) / (N, H, W)."""
    arr = np.asarray(image)
    lead = int(batch)
    form = "(N, C, H, W) or (N, H, W)" if batch else "(C, H, W) or (H, W)"
    if arr.ndim not in (2 + lead, 3 + lead) or min(arr.shape) < 1:
        raise ValueError(f"image must have shape {form}, got shape {arr.shape}")
    if arr.ndim == 3 + lead and arr.shape[lead] not in (1, 3):
        raise ValueError(
            f"image must have 1 or 3 channels in layout {form}, got shape "
            f"{arr.shape} (move the channel axis of a channels-last image)"
        )
    if min(arr.shape[-2:]) < 2:
        raise ValueError(f"image is too small: shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"image must be a float array in [0, 1], got dtype {arr.dtype}")
    _check_values(arr, "image")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            "rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    if isinstance(background, bool) or not np.isfinite(background):
        raise ValueError(f"background must be a finite number, got {background!r}")
    return arr


def _check_textures(textures: object, chw: tuple[int, ...], grey2d: bool) -> np.ndarray:
    arr = np.asarray(textures)
    arr = arr[:, None] if grey2d and arr.ndim == 3 else arr
    if arr.ndim != 4 or arr.shape[1:] != chw or len(arr) == 0:
        raise ValueError(
            f"textures must have shape (N, {', '.join(map(str, chw))}) with N >= 1 "
            f"to match the image, got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"textures must be a float array in [0, 1], got dtype {arr.dtype}")
    return arr


def _side(rng: np.random.Generator, base: int, config: DAGConfig) -> float:
    lo, hi = config.size_range
    return max(float(config.min_size_px), rng.uniform(lo, hi) * base)


def sample_shape(
    foreground: np.ndarray, rng: np.random.Generator, config: DAGConfig = DAGConfig()
) -> tuple[np.ndarray, str]:
    """Draw the shape map S of one anomaly, centred on a random foreground pixel.

    Parameters
    ----------
    foreground : numpy.ndarray
        Boolean (H, W) mask with at least one True pixel.
    rng : numpy.random.Generator
        Source of randomness.
    config : DAGConfig
        Shape probabilities, sizes, rotation and blur.

    Returns
    -------
    (S, kind) : (numpy.ndarray, str)
        S is float64 (H, W) in [0, 1], zero on background, with maximum 1 before the
        foreground cut; kind is one of :data:`SHAPES`.

    Raises
    ------
    ValueError
        If ``foreground`` is not 2-D or is empty.
    """
    if foreground.ndim != 2 or not foreground.any():
        raise ValueError("foreground must be a non-empty 2-D boolean mask")
    h, w = foreground.shape
    base = min(h, w)
    kind = SHAPES[int(rng.choice(3, p=np.asarray(config.shape_probs)))]
    ys, xs = np.nonzero(foreground)
    i = int(rng.integers(len(ys)))
    cy, cx = float(ys[i]), float(xs[i])
    yy, xx = np.ogrid[:h, :w]
    dy, dx = yy - cy, xx - cx
    if kind == "rectangle":
        sh, sw = _side(rng, base, config), _side(rng, base, config)
        t = np.deg2rad(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
        u, v = np.cos(t) * dx + np.sin(t) * dy, -np.sin(t) * dx + np.cos(t) * dy
        shape = (np.abs(u) <= sw / 2) & (np.abs(v) <= sh / 2)
    elif kind == "disc":
        r = _side(rng, base, config) / 2
        shape = dx**2 + dy**2 <= r * r
    else:
        bh, bw = _side(rng, base, config), _side(rng, base, config)
        noise = gaussian_filter(rng.standard_normal((h, w)), min(bh, bw) / 6, mode="wrap")
        noise = np.clip(noise / (noise.std() + 1e-12), -1.0, 1.0)
        r2 = (2 * dy / bh) ** 2 + (2 * dx / bw) ** 2  # 1 on the bounding ellipse
        # Thresholding r² between 0.2 and 1 keeps the blob inside its bounding box and always
        # keeps an elliptic core (radius ≥ 0.45 of the box), so it never collapses to a dot.
        labels, _ = label(r2 <= 0.6 + 0.4 * noise)
        shape = labels == labels[ys[i], xs[i]]  # one piece: drop islands cut off by the noise
    s = shape.astype(np.float64)
    if rng.random() < config.blur_prob:
        lo, hi = config.blur_sigma_range
        sigma = rng.uniform(lo, hi) * base
        if sigma > 0:
            s = gaussian_filter(s, sigma)
            s /= s.max()  # small shapes keep full strength at their core
    s[s < config.mask_floor] = 0.0
    return s * foreground, kind


def _texture_pixels(
    source: np.ndarray, rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray, own: bool
) -> np.ndarray:
    """Texture values (C, M) at pixels (rows, cols) of a shifted, flipped mirror of source.

    With ``own`` (the image is its own texture) the shift stays a quarter side or more away
    from the identity, so the texture differs from what it replaces.
    """
    index = []
    for pos, n in ((rows, source.shape[1]), (cols, source.shape[2])):
        q = max(1, n // 4) if own else 0
        i = np.mod(pos + rng.integers(q, 2 * n - q), 2 * n)  # shift on the period-2n mirror
        i = np.where(i >= n, 2 * n - 1 - i, i)
        index.append(n - 1 - i if rng.random() < 0.5 else i)  # random flip
    return source[:, index[0], index[1]].astype(np.float64)


def _kmeans_1d(values: np.ndarray, k: int, iters: int = 60, tol: float = 1e-5) -> np.ndarray:
    """Sorted cluster centres of 1-D values (Lloyd's algorithm, deterministic).

    In 1-D the clusters are intervals of the sorted values, so a step needs only a search for
    the midpoints and prefix sums. Lloyd's algorithm can stall with two centres in one big
    group, so it runs from quantile seeds and from evenly spaced seeds side by side (rows of
    ``centres``) and keeps the run with the smaller within-cluster sum of squares.
    """
    v = np.sort(values)
    csum = np.concatenate([[0.0], np.cumsum(v)])
    csq = np.concatenate([[0.0], np.cumsum(v * v)])
    q = (np.arange(k) + 0.5) / k
    centres = np.stack([np.quantile(v, q), v[0] + (v[-1] - v[0]) * q])
    ends = np.array([[0, len(v)], [0, len(v)]])  # first and last edge of each run

    def segments(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        edges = np.concatenate(
            [ends[:, :1], np.searchsorted(v, (c[:, :-1] + c[:, 1:]) / 2), ends[:, 1:]], axis=1
        )
        return edges, np.maximum(edges[:, 1:] - edges[:, :-1], 1)

    for _ in range(iters):
        edges, counts = segments(centres)
        sums = csum[edges[:, 1:]] - csum[edges[:, :-1]]
        new = np.where(edges[:, 1:] > edges[:, :-1], sums / counts, centres)
        moved = np.abs(new - centres).max()
        centres = new
        if moved <= tol:  # smaller moves relabel almost nothing among five intensity classes
            break
    edges, counts = segments(centres)
    sums = csum[edges[:, 1:]] - csum[edges[:, :-1]]
    # Within-cluster sum of squares per run: Σ (Σv² − (Σv)²/n) over the clusters.
    sse = (csq[edges[:, 1:]] - csq[edges[:, :-1]] - sums**2 / counts).sum(axis=1)
    return centres[int(np.argmin(sse))]


def _corrupt_one(
    x: np.ndarray,
    rng: np.random.Generator,
    pool: np.ndarray | None,
    skip: int | None,
    background: float,
    config: DAGConfig,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Corrupt a validated (C, H, W) image; ``skip`` is x's own index in ``pool``, if any."""
    out = np.clip(x, 0.0, 1.0)  # a copy; also absorbs the tolerated out-of-range values
    fg = (out > background).any(axis=0)
    if not fg.any():
        return out, fg, 0.0
    s_map, _ = sample_shape(fg, rng, config)
    mask = s_map > 0
    rows, cols = np.nonzero(mask)
    s = s_map[rows, cols]
    xs = out[:, rows, cols].astype(np.float64)  # (C, M): only pixels inside S are touched

    # Texture: another image (never x itself when x is in the pool) or x moved around.
    if pool is None or (skip is not None and len(pool) == 1):
        source, own = out, True
    else:
        j = int(rng.integers(len(pool) - (skip is not None)))
        if skip is not None and j >= skip:
            j += 1
        source, own = pool[j], False
        _check_values(source, f"textures[{j}]")
    fs = _texture_pixels(source, rng, rows, cols, own)
    # Min–max rescale per channel to the target's range inside S (a flat texture: its middle).
    t_lo, t_hi = xs.min(axis=1, keepdims=True), xs.max(axis=1, keepdims=True)
    f_lo, span = fs.min(axis=1, keepdims=True), np.ptp(fs, axis=1, keepdims=True)
    scaled = t_lo + (fs - f_lo) * (t_hi - t_lo) / np.maximum(span, 1e-12)
    fs = np.where(span > 1e-12, scaled, (t_lo + t_hi) / 2)
    a_tex = rng.uniform(config.min_texture_alpha, config.max_texture_alpha)
    y = np.clip(xs * (1.0 - a_tex * s) + fs * (a_tex * s), 0.0, 1.0)

    # Intensity bias on a random subset of the intensity clusters present inside S.
    grey = out.mean(axis=0)
    centres = _kmeans_1d(grey[fg].astype(np.float64), config.n_clusters)
    labels = np.searchsorted((centres[:-1] + centres[1:]) / 2, grey)
    present = np.unique(labels[rows, cols])
    chosen = rng.choice(present, size=int(rng.integers(1, len(present) + 1)), replace=False)
    a_b = rng.uniform(config.min_bias, config.max_bias)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    indicator = (np.isin(labels, chosen) & fg).astype(np.float64)
    beta = gaussian_filter(indicator, config.bias_sigma)[rows, cols] * s
    z = np.clip(y + sign * a_b * beta, 0.0, 1.0)
    total = beta.sum()
    b_eff = float(np.abs(z - y).mean(axis=0).sum() / total) if total > 0 else 0.0

    out[:, rows, cols] = z
    severity = float(min(1.0, max(a_tex, b_eff)))
    return out, mask, severity


def corrupt(
    image: np.ndarray,
    rng: np.random.Generator,
    textures: np.ndarray | None = None,
    background: float = 0.0,
    config: DAGConfig = DAGConfig(),
) -> tuple[np.ndarray, np.ndarray, float]:
    """Add one disentangled synthetic anomaly (shape × texture × intensity bias) to an image.

    Parameters
    ----------
    image : numpy.ndarray
        Float image in [0, 1], (C, H, W) with C = 1 or 3, or (H, W). Values at most
        :data:`RANGE_TOLERANCE` outside [0, 1] are accepted and clipped.
    rng : numpy.random.Generator
        Source of all randomness; the same seed gives the same anomaly bit for bit.
    textures : numpy.ndarray, optional
        Pool (N, C, H, W) (or (N, H, W) for a 2-D image) of *other* training images, one of
        which is drawn and cropped (leave the image itself out); values are checked on the
        drawn image only, so a large pool costs nothing per call. Default: the image itself,
        shifted and flipped.
    background : float
        Pixels whose value in every channel is <= this are background and never change.
    config : DAGConfig
        Distribution parameters; ``DAGConfig(max_texture_alpha=0, max_bias=0)`` gives the
        image back unchanged.

    Returns
    -------
    corrupted : numpy.ndarray
        Same shape and dtype as ``image``, in [0, 1].
    mask : numpy.ndarray
        Boolean (H, W), True where S > 0; every changed pixel is inside it (empty if the
        image has no foreground).
    severity : float
        α = max(α_tex, effective bias) in [0, 1] (0 for an image without foreground).

    Raises
    ------
    ValueError
        For a wrong shape or dtype, NaN / inf, values outside [0, 1], textures that do not
        match the image, an ``rng`` that is not a Generator or a non-finite background.
    """
    arr = _check_inputs(image, rng, background, batch=False)
    x = arr[None] if arr.ndim == 2 else arr
    pool = None if textures is None else _check_textures(textures, x.shape, arr.ndim == 2)
    out, mask, severity = _corrupt_one(x, rng, pool, None, background, config)
    return out.reshape(arr.shape).astype(arr.dtype, copy=False), mask, severity


def corrupt_batch(
    images: np.ndarray,
    rng: np.random.Generator,
    textures: np.ndarray | None = None,
    background: float = 0.0,
    config: DAGConfig = DAGConfig(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corrupt every image of a batch independently (one anomaly each, in order).

    Parameters
    ----------
    images : numpy.ndarray
        (N, C, H, W) with C = 1 or 3, or (N, H, W), float in [0, 1].
    textures : numpy.ndarray, optional
        Texture pool as in :func:`corrupt`. Default: the batch itself, each image taking its
        texture from another image of the batch (from itself if N = 1).
    rng, background, config
        As in :func:`corrupt`.

    Returns
    -------
    (corrupted, masks, severities) : (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Same shape and dtype as ``images``; boolean (N, H, W); float64 (N,) in [0, 1].

    Raises
    ------
    ValueError
        As :func:`corrupt`.
    """
    arr = _check_inputs(images, rng, background, batch=True)
    x = arr[:, None] if arr.ndim == 3 else arr
    own_pool = textures is None
    pool = x if own_pool else _check_textures(textures, x.shape[1:], arr.ndim == 3)
    out = np.empty_like(arr)
    masks = np.zeros((len(x), *x.shape[2:]), dtype=bool)
    severities = np.zeros(len(x))
    for i, xi in enumerate(x):
        res, masks[i], severities[i] = _corrupt_one(
            xi, rng, pool, i if own_pool else None, background, config
        )
        out[i] = res.reshape(arr.shape[1:])
    return out, masks, severities
