"""The bundled example files: found through spikeglm.examples, and declared as package data for the wheel."""

import fnmatch
import sys
from pathlib import Path

import pytest

import spikeglm as sg

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sg.examples.NAMES)
def test_each_example_is_found_with_the_checkouts_content(name: str) -> None:
    path = sg.examples.path(name)
    assert path.is_file()
    assert path.read_bytes() == (ROOT / "data" / name).read_bytes()


def test_the_default_is_the_recording_that_loads() -> None:
    assert sg.examples.path().name == "example.nwb"
    assert sg.load(sg.examples.path()).n_units == 10


def test_an_unknown_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"example\.nwb"):
        sg.examples.path("example.csv")


def test_every_data_file_is_listed_and_shipped_in_the_wheel() -> None:
    """A file added to data/ must be in NAMES and match the package-data patterns, or the wheel lacks it."""
    shipped = sorted(p.name for p in (ROOT / "data").iterdir() if p.is_file() and p.suffix != ".py")
    assert shipped == sorted(sg.examples.NAMES)
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"]["spikeglm._example_data"] == "data"
    patterns = setuptools["package-data"]["spikeglm._example_data"]
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
