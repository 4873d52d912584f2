"""The package metadata, read by setuptools as a build reads it: no deprecation warning at install."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import pytest
from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_expression_with_its_file_and_no_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`project.license` is the SPDX string `Apache-2.0` with `license-files` (PEP 639), not the
    deprecated `{text = …}` table that made every install print a SetuptoolsDeprecationWarning;
    setuptools reads pyproject.toml without any warning, and the build asks for a setuptools that
    understands it (77 or later)."""
    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert dist.metadata.license_expression == "Apache-2.0"
    assert [Path(p).name for p in dist.metadata.license_files or []] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8").splitlines()[0]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"][
        "requires"
    ]
    assert "setuptools>=77" in requires
