import gzip
import importlib.util

import numpy as np
import pytest

from diffad.data.brain import COLIN27_PATH, brain_slices
from diffad.data.fashion_mnist import fashion_mnist_set, parse_class, read_idx
from diffad.data.image_files import read_image_file
from diffad.data.image_ops import (
    foreground_bbox,
    pad_to_square,
    resize_stack,
    scale_percentiles,
    volume_slices,
)
from diffad.data.images import load_image_folder, load_image_set, load_image_source

HAS_NILEARN = importlib.util.find_spec("nilearn") is not None
HAS_ELPV = importlib.util.find_spec("elpv_dataset") is not None


def write_idx(path, array):
    """Independent idx writer: magic (0, 0, 0x08, ndim), big-endian dims, uint8 payload."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    payload = header + array.tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


@pytest.fixture
def fmnist_dir(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 6)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 3)
    monkeypatch.setenv("DIFFAD_FASHION_MNIST_DIR", str(tmp_path))
    return tmp_path


def test_read_idx_roundtrip_gz_and_plain(tmp_path):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a", a)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    assert np.array_equal(read_idx(tmp_path / "a"), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an idx"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes((tmp_path / "a").read_bytes()[:-3])
    with pytest.raises(ValueError, match="payload size"):
        read_idx(tmp_path / "short")


def test_fashion_mnist_class_selection_and_scaling(fmnist_dir):
    raw = read_idx(fmnist_dir / "t10k-images-idx3-ubyte.gz")
    data = load_image_set("fashion-mnist:pullover:test", 28)
    assert data.images.shape == (2, 1, 28, 28)  # labels 0,1,2,0,1,2 -> class 2 twice
    assert np.all(data.labels == 2)
    # size 28 = no resize, so the values are exactly raw / 255
    np.testing.assert_allclose(data.images[0, 0], raw[2] / 255.0, atol=1e-7)
    assert load_image_source("fashion-mnist:all", 16).shape == (12, 1, 16, 16)
    assert parse_class("Ankle boot") == 9 and parse_class(3) == 3 and parse_class("all") is None
    with pytest.raises(ValueError):
        parse_class("hat")
    with pytest.raises(ValueError):
        fashion_mnist_set(0, split="valid")


def test_fashion_mnist_missing_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFAD_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_image_source("fashion-mnist:0", 8)


def test_scale_percentiles_matches_numpy_and_respects_mask():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 20)).astype(np.float32)
    lo, hi = np.percentile(x, [1, 99])
    np.testing.assert_allclose(scale_percentiles(x), np.clip((x - lo) / (hi - lo), 0, 1), atol=1e-6)
    mask = np.zeros_like(x, dtype=bool)
    mask[:5] = True
    hi_m = np.percentile(x[mask], 99)
    out = scale_percentiles(x, low=None, high=99, mask=mask)
    np.testing.assert_allclose(out, np.clip(x / hi_m, 0, 1), atol=1e-6)
    assert np.all(scale_percentiles(np.ones((3, 3))) == 0)
    with pytest.raises(ValueError, match="NaN"):
        scale_percentiles(np.array([[np.nan, 1.0]]))


def test_bbox_pad_resize_and_slices():
    m = np.zeros((10, 12), dtype=bool)
    m[2:5, 3:9] = True
    assert foreground_bbox(m) == (slice(2, 5), slice(3, 9))
    assert foreground_bbox(m, margin=3) == (slice(0, 8), slice(0, 12))
    with pytest.raises(ValueError, match="empty"):
        foreground_bbox(np.zeros((3, 3)))
    assert pad_to_square(np.ones((1, 4, 6))).shape == (1, 6, 6)
    r = resize_stack(np.ones((2, 20, 20)), 8)
    assert r.shape == (2, 8, 8) and np.allclose(r, 1.0)
    vol = np.zeros((6, 6, 5), dtype=np.float32)
    vol[1:5, 1:5, 1:4] = 1.0
    vol[2, 2, 4] = 1.0  # a single voxel: < 5 % foreground, dropped by min_foreground
    slices, index = volume_slices(vol, axis=2, min_foreground=0.05)
    assert list(index) == [1, 2, 3] and slices.shape == (3, 6, 6)
    assert list(volume_slices(vol, axis=2)[1]) == [1, 2, 3, 4]
    assert list(volume_slices(vol, axis=2, slice_range=(2, 5))[1]) == [2, 3, 4]
    with pytest.raises(ValueError):
        volume_slices(vol, slice_range=(3, 9))


def test_folder_of_png_npy_nifti(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "b.jpg")
    np.save(tmp_path / "c.npy", rng.normal(size=(12, 12)))
    import nibabel

    vol = np.zeros((10, 10, 6), dtype=np.float32)
    vol[2:8, 2:8, 1:5] = rng.uniform(1, 2, size=(6, 6, 4))
    nibabel.save(nibabel.Nifti1Image(vol, np.eye(4)), tmp_path / "d.nii.gz")
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_image_folder(tmp_path, 16, crop=True)
    assert data.images.shape == (3 + 4, 1, 16, 16)
    assert data.images.dtype == np.float32
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert data.names[:3] == ["a.png", "b.jpg", "c.npy"]
    assert data.names[3] == "d.nii.gz:axis=2:1"
    # the spec resolver gives the same for a path, and limit keeps a seeded subset
    same = load_image_source(str(tmp_path), 16, crop=True)
    assert np.array_equal(same, data.images)
    sub = load_image_set(str(tmp_path), 16, crop=True, limit=3, seed=5)
    assert len(sub) == 3 and set(sub.names) <= set(data.names)
    assert read_image_file(tmp_path / "a.png").shape == (20, 30)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_source(str(tmp_path / "missing"), 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_image_folder(tmp_path / "empty", 8)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read"):
        load_image_folder(tmp_path, 8)
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        read_image_file(tmp_path / "nan.npy")
    (tmp_path / "x.gif").write_bytes(b"g")
    with pytest.raises(ValueError, match="unsupported"):
        read_image_file(tmp_path / "x.gif")
    with pytest.raises(FileNotFoundError, match="known source"):
        load_image_source("no-such-source:1", 8)


@pytest.mark.skipif(not HAS_NILEARN, reason="nilearn not installed")
def test_mni152_slices_with_masks():
    data = brain_slices("mni152", 16, slice_fraction=(0.4, 0.6))
    assert data.images.shape[1:] == (1, 16, 16) and data.masks.shape == data.images.shape
    assert data.masks.dtype == bool and 5 < len(data) < 40
    # skull-stripped: the background outside the mask is (nearly) zero, the brain is not
    assert data.images[~data.masks].mean() < 0.05 < data.images[data.masks].mean()
    with pytest.raises(ValueError):
        brain_slices("mni152", 16, slice_fraction=(0.7, 0.2))


@pytest.mark.skipif(not COLIN27_PATH.is_file(), reason="mricron-data not installed")
def test_colin27_spec():
    data = load_image_set("colin27:0.45-0.55", 16)
    assert data.masks is not None and data.images.shape[1:] == (1, 16, 16)


def test_colin27_missing_names_package(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFAD_COLIN27", str(tmp_path / "nope.nii.gz"))
    with pytest.raises(FileNotFoundError, match="mricron-data"):
        load_image_source("colin27", 8)


@pytest.mark.skipif(not HAS_ELPV, reason="elpv-dataset not installed")
def test_elpv_labels(monkeypatch):
    from diffad.data import elpv

    paths, probs, types = elpv.read_elpv_labels(elpv.elpv_root())
    assert len(paths) == 2624 and set(np.unique(probs).round(3)) == {0.0, 0.333, 0.667, 1.0}
    # load only a handful of cells to stay fast
    monkeypatch.setattr(elpv, "read_elpv_labels", lambda root: (paths[:40], probs[:40], types[:40]))
    data = elpv.elpv_set("defective", size=8)
    assert np.all(data.labels == 1.0) and data.images.shape == (
        int((probs[:40] == 1).sum()),
        1,
        8,
        8,
    )
