"""``diffad report``: the HTML page of a run folder, its figures and the command's errors.

The runs here are synthetic (random arrays and hand-written entries, no model): rendering
must not depend on how a run was made.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from diffad.cli import main
from diffad.report import figures
from diffad.report.render import format_p, render_report
from diffad.report.run_folder import save_run
from diffad.selective.noise import healthy_rejection_rate

PNG_URI = "data:image/png;base64,"
#: A 1x1 PNG: what the figure functions return in tests of the page's structure.
TINY_PNG = PNG_URI + (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
EVIL_NAME = "<b>bold</b> & co"


def write_run(
    folder: Path,
    *,
    synthetic: bool = True,
    adequate: bool = True,
    localize: bool = False,
    alpha: float = 0.05,
) -> Path:
    """A run folder of 6 random 16x16 images with a mix of numbers and nulls.

    ``localize=True`` writes what ``diffad localize`` has: scores and masks, no p-values,
    no calibration.
    """
    rng = np.random.default_rng(0)
    n, side = 6, 16
    images = rng.random((n, 1, side, side)).astype(np.float32)
    recs = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1).astype(np.float32)
    maps = np.abs(images - recs)[:, 0]
    truth = np.zeros((n, side, side), bool)
    truth[1, 4:9, 5:10] = truth[3, 8:13, 2:6] = True
    maps[truth] += 0.5
    masks = maps > np.percentile(maps, 95)
    regions = masks.copy()
    regions[2] = False
    entries = [
        # p_selective, bounds, rejected, region: a tested region, a tiny p, no region, a
        # decision-only search (bracket but no p), nothing at all, a name that needs escaping.
        ("healthy0", False, 0.03, None, True, 40),
        ("lesion1", True, 3e-6, [1e-6, 5e-6], True, 25),
        ("unknown2", None, None, None, None, 0),
        ("lesion3", True, None, [0.001, 0.002], True, 12),
        ("blank4", False, None, None, None, None),
        (EVIL_NAME, False, 0.4, None, False, 9),
    ]
    report_images = []
    for i, (name, lesion, p, bounds, rejected, region) in enumerate(entries):
        report_images.append(
            {
                "id": i,
                "name": name,
                "has_lesion": lesion,
                "image_score": float(maps[i].max()),
                "flagged": None if localize else bool(maps[i].max() > 0.5),
                "p_conformal": None if localize or i == 4 else [0.5, 2e-5, 0.2, 0.001, 0, 0.9][i],
                "bh_selected": None if localize or i == 4 else i in (1, 3),
                "mask_pixels": int(masks[i].sum()),
                "region_pixels": None if localize else region,
                "p_selective": None if localize else p,
                "p_selective_bounds": None if localize else bounds,
                "p_naive": None if localize or p is None else p / 10,
                "rejected": None if localize else rejected,
                "test_message": None if localize or i != 3 else "decided: p <= alpha is certain",
            }
        )
    calibration = None
    if not localize:
        healthy_p = [0.01] * 12 if not adequate else list(np.linspace(0.02, 0.98, 12)) + [None]
        check = healthy_rejection_rate(healthy_p, alpha)
        calibration = {**check.to_dict(), "message": check.message(), "p_values": healthy_p}
    report = {
        "kind": "localize" if localize else "test",
        "title": "synthetic run",
        "command": "diffad test --model m --images x --out run",
        "machine": {"cpu": "Test CPU", "cores": 2},
        "created_utc": "2026-01-01T00:00:00Z",
        "model": {
            "path": "models/m",
            "image_shape": [1, side, side],
            "score": "ssim-ens",
            "image_score": "max",
            "preprocessing": {"intensity": "range", "resize": False},
            "threshold": 0.5,
        },
        "alpha": alpha,
        "q": None if localize else 0.1,
        "synthetic_lesions": synthetic,
        "images": report_images,
        "calibration": calibration,
        "null_p_values": {} if localize else {"healthy conformal": [0.1, 0.5, 0.7, 0.95]},
    }
    arrays = {"images": images, "reconstructions": recs, "maps": maps, "masks": masks}
    if not localize:
        arrays |= {"regions": regions, "truth": truth}
    return save_run(folder, report, arrays)


class Page(HTMLParser):
    """Every start tag of a page as (tag, attributes), and its text pieces."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.decisions: list[str] = []
        self._in_decision = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_decision = "decision" in self.tags[-1][1].get("class", "").split()

    def handle_endtag(self, tag: str) -> None:
        self._in_decision = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_decision:
            self.decisions.append(data)

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.tags if name in a.get("class", "").split()]

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if "id" in a}

    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture
def fast_figures(monkeypatch):
    """Skip matplotlib: tests of the page's structure need pictures, not these ones."""
    for name in ("image_panel", "qq_plot", "score_histogram"):
        monkeypatch.setattr(figures, name, lambda *args, **kwargs: TINY_PNG)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def page(run) -> tuple[str, Page]:
    html = render_report(run).read_text()
    return html, Page(html)


def test_page_is_self_contained(page):
    html, parsed = page
    assert 'src="http' not in html and "<script" not in html and "<link" not in html
    srcs = [a["src"] for tag, a in parsed.tags if "src" in a]
    imgs = [a for tag, a in parsed.tags if tag == "img"]
    assert len(srcs) == len(imgs) == 6 + 2  # six panels, the QQ plot, the histogram
    for src in srcs:
        assert src.startswith(PNG_URI)
        assert base64.b64decode(src[len(PNG_URI) :])[:8] == b"\x89PNG\r\n\x1a\n"
    hrefs = [a["href"] for _, a in parsed.tags if "href" in a]
    assert hrefs and all(h.startswith("#") for h in hrefs)


def test_one_row_and_one_card_per_image_linked_by_anchor(page):
    _, parsed = page
    rows = [a for tag, a in parsed.tags if tag == "tr" and "image-row" in a.get("class", "")]
    cards = parsed.with_class("image-card")
    assert len(rows) == len(cards) == 6
    assert [c["id"] for c in cards] == [f"img-{i}" for i in range(6)]
    links = [a["href"] for tag, a in parsed.tags if tag == "a" and a["href"].startswith("#img-")]
    assert links == [f"#{c['id']}" for c in cards]
    assert [a for tag, a in parsed.tags if tag == "table"][0]["id"] == "summary"


def test_numbers_decisions_and_sections(page):
    _, parsed = page
    text = parsed.all_text()
    assert {"summary", "calibration", "qq", "scores", "synthetic-note"} <= parsed.ids()
    assert "calibration-adequate" in parsed.ids()
    assert "<1e-4" in text and "0.03" in text
    # Table, then cards: reject (p 0.03), reject (tiny p), no region, reject (a certain
    # decision without a p-value), nothing, no evidence (p 0.4).
    expected = ["reject", "reject", "no region", "reject", "—", "no evidence"]
    assert parsed.decisions == expected + expected
    assert "decided: p <= alpha is certain" in text
    assert "ssim-ens" in text and "Test CPU (2 cores)" in text
    assert "healthy calibration check: 1 of 12" in text and "1 had no region" in text


def test_decision_column(run):
    from diffad.report.render import decision

    entries = json.loads((run / "report.json").read_text())["images"]
    at_run = [decision(e, 0.05, 0.05) for e in entries]
    assert at_run == ["reject", "reject", "no region", "reject", "—", "no evidence"]
    # Another level: the recorded decision no longer applies; p or its bracket decides.
    assert [decision(e, 0.01, 0.05) for e in entries] == [
        "no evidence",
        "reject",
        "no region",
        "reject",
        "—",
        "no evidence",
    ]
    assert decision(entries[3], 0.0015, 0.05) == "—"  # bracket [0.001, 0.002] straddles


def test_names_are_escaped(page):
    html, parsed = page
    assert "b" not in [tag for tag, _ in parsed.tags]
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in html
    assert EVIL_NAME in parsed.all_text()


@pytest.mark.parametrize("synthetic", [True, False])
@pytest.mark.usefixtures("fast_figures")
def test_synthetic_note_iff_synthetic_lesions(tmp_path, synthetic):
    html = render_report(write_run(tmp_path / "r", synthetic=synthetic)).read_text()
    assert ("synthetic-note" in Page(html).ids()) is synthetic
    assert ("SYNTHETIC" in html) is synthetic


@pytest.mark.usefixtures("fast_figures")
def test_inadequate_calibration_is_a_warning(tmp_path):
    parsed = Page(render_report(write_run(tmp_path / "r", adequate=False)).read_text())
    assert "calibration-inadequate" in parsed.ids()
    assert "calibration-adequate" not in parsed.ids()
    warning = parsed.with_class("note-warning")
    assert len(warning) == 1 and "TOO MANY healthy rejections" in parsed.all_text()


@pytest.mark.usefixtures("fast_figures")
def test_alpha_override_changes_the_decisions(run, tmp_path):
    out = render_report(run, out=tmp_path / "strict.html", alpha=0.01)
    parsed = Page(out.read_text())
    text = parsed.all_text()
    assert "decision at α = 0.01" in text and "the run used 0.05" in text
    expected = ["no evidence", "reject", "no region", "reject", "—", "no evidence"]
    assert parsed.decisions[:6] == expected
    assert not (run / "strict.html").exists()


@pytest.mark.usefixtures("fast_figures")
def test_localize_run_without_p_values(tmp_path):
    html = render_report(write_run(tmp_path / "r", localize=True)).read_text()
    parsed = Page(html)
    assert len(parsed.with_class("image-card")) == 6
    assert "calibration" not in parsed.ids() and "qq" not in parsed.ids()
    assert "scores" in parsed.ids()
    assert parsed.decisions == ["—"] * 12


@pytest.mark.usefixtures("fast_figures")
def test_minimal_run_renders(tmp_path):
    # Only what load_run requires: every other field absent.
    zeros = np.zeros((1, 1, 4, 4), np.float32)
    folder = save_run(
        tmp_path / "r",
        {"images": [{"id": 0}]},
        {"images": zeros, "reconstructions": zeros, "maps": zeros[:, 0]},
    )
    parsed = Page(render_report(folder).read_text())
    assert len(parsed.with_class("image-card")) == 1 and parsed.decisions == ["—", "—"]
    assert "image 0" in parsed.all_text() and "calibration" not in parsed.ids()


def test_qq_plots_the_calibration_p_values_once(run):
    from diffad.report import render

    report = json.loads((run / "report.json").read_text())
    assert list(render._qq_series(report)) == ["healthy conformal", "healthy calibration check"]
    check = [p for p in report["calibration"]["p_values"] if p is not None]
    report["null_p_values"] = {"healthy check (selective)": check}
    assert list(render._qq_series(report)) == ["healthy check (selective)"]


def test_format_p():
    assert [format_p(p) for p in (None, 0.0, 3e-6, 0.012345, 0.5, 1.0)] == [
        "—",
        "<1e-4",
        "<1e-4",
        "0.0123",
        "0.5",
        "1",
    ]


def test_figures_are_png_uris_and_close_their_figures():
    from matplotlib import pyplot as plt

    rng = np.random.default_rng(1)
    rgb = rng.random((3, 8, 8))
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    uris = [
        figures.image_panel(rgb, rgb, rng.random((8, 8)), mask, region=mask, truth=mask),
        figures.image_panel(rgb[:1], rgb[:1], np.zeros((8, 8)), None, vmax=0.5, title="x"),
        figures.qq_plot({"a": [0.1, None, 0.7], "empty": []}),
        figures.score_histogram([0.1, 0.2, 0.9], ["healthy", "healthy", "lesion"], 0.5),
    ]
    assert all(u.startswith(PNG_URI) for u in uris)
    assert plt.get_fignums() == []
    with pytest.raises(ValueError, match="groups"):
        figures.score_histogram([0.1], [], None)


@pytest.mark.usefixtures("fast_figures")
def test_cli_report_prints_the_path(run, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["report", str(run), "--out", str(out), "--alpha", "0.1"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out}"
    assert out.stat().st_size > 0


def _corrupt(folder: Path, text: str) -> Path:
    write_run(folder, localize=True)
    (folder / "report.json").write_text(text)
    return folder


@pytest.mark.parametrize(
    ("make", "extra", "match"),
    [
        (lambda d: d / "missing", [], "no such folder"),
        (lambda d: d, [], "has no report.json"),
        (lambda d: _corrupt(d / "r", "{not json"), [], "not valid JSON"),
        (
            lambda d: _corrupt(d / "r", '{"images": [{"id": 0, "p_selective": "x"}]}'),
            [],
            "not a number",
        ),
        (lambda d: write_run(d / "r", localize=True), ["--alpha", "2"], "alpha must be"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, make, extra, match):
    folder = make(tmp_path)
    assert main(["report", str(folder), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffad: error:") and match in err
    assert len(err.strip().splitlines()) == 1


def test_help_and_rendering_import_no_heavy_library_needlessly(run, tmp_path):
    # The command's parser pulls in neither jinja2, matplotlib nor torch; rendering no torch.
    code = (
        "import argparse, contextlib, io, sys\n"
        "from diffad.cli import report\n"
        "parser = argparse.ArgumentParser()\n"
        "report.add_parser(parser.add_subparsers())\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        parser.parse_args(['report', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('jinja2', 'matplotlib', 'torch')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from diffad.report.render import render_report\n"
        f"render_report({str(run)!r}, out={str(tmp_path / 'p.html')!r})\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out == ["[]", "['jinja2', 'matplotlib']"]
