"""The package's face: lazy public names and the command's entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest

import winnow


def test_import_winnow_loads_nothing_heavy():
    # what keeps `winnow --help` quick and lets the entry point catch a Ctrl-C while the CLI loads
    code = (
        "import sys, winnow; heavy = {'pandas', 'pyarrow', 'numpy', 'jinja2'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", winnow.__all__)
def test_every_public_name_resolves(name: str):
    assert getattr(winnow, name) is not None
    assert name in dir(winnow)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Corpuss'"):
        winnow.Corpuss  # noqa: B018
