"""The public API imports lazily, the CLI starts without torch, unknown keywords are errors."""

from __future__ import annotations

import subprocess
import sys

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


def test_unknown_keywords_are_errors():
    from diffad import DDPMLocalizer

    with pytest.raises(TypeError, match="unexpected keyword"):
        DDPMLocalizer(nonsense=1)
