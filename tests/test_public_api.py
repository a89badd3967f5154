"""The public API imports lazily, the CLI starts without torch, deprecated paths still work."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import diffad

PUBLIC = [
    "DTENonParametric",
    "DTEInverseGamma",
    "DTECategorical",
    "DDPMDetector",
    "DDPMLocalizer",
    "SelectiveTest",
    "ConformalDetector",
    "benjamini_hochberg",
    "conformal_p_values",
]


def _fresh_python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def test_import_diffad_and_cli_help_do_not_import_torch():
    out = _fresh_python(
        "import sys, contextlib, io\n"
        "import diffad\n"
        "from diffad.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'scipy', 'pyod') if m in sys.modules))"
    )
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_import_from_the_top_level(name):
    obj = getattr(diffad, name)
    assert obj.__name__ == name
    assert name in dir(diffad) and name in diffad.__all__


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute"):
        diffad.NotAThing  # noqa: B018


def test_subpackages_export_their_classes():
    from diffad.conformal import ConformalDetector
    from diffad.image import DDPMLocalizer
    from diffad.selective import SelectiveTest
    from diffad.tabular import DTECategorical

    assert ConformalDetector is diffad.ConformalDetector
    assert DDPMLocalizer is diffad.DDPMLocalizer
    assert SelectiveTest is diffad.SelectiveTest
    assert DTECategorical is diffad.DTECategorical


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("diffad.inference.selective", "diffad.selective.selective_test"),
        ("diffad.inference.conformal", "diffad.conformal.conformal_detector"),
        ("diffad.image.localizer", "diffad.image.ddpm_localizer"),
        ("diffad.image.reconstruct", "diffad.diffusion.chain"),
    ],
)
def test_moved_modules_still_import_with_a_warning(old, new):
    out = _fresh_python(
        "import warnings, importlib\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        "print(old is new, any('moved to' in str(w.message) for w in caught))"
    )
    assert out.split() == ["True", "True"]


def test_renamed_keywords_warn_and_map():
    from diffad import DDPMLocalizer, DTEInverseGamma, SelectiveTest

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loc = DDPMLocalizer(n_steps=3)
        ig = DTEInverseGamma(schedule="fast")
        st = SelectiveTest(loc, sigma=0.5)
    assert loc.ddim_steps == 3 and ig.training_schedule == "fast" and st.noise_var == 0.5
    assert sum("was renamed" in str(w.message) for w in caught) == 3
    with pytest.raises(TypeError, match="unexpected keyword"):
        DDPMLocalizer(nonsense=1)
