"""Supply-chain checks on what sb3_expo's packaging would install."""

import pathlib
import re

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def denied_packages() -> set[str]:
    lines = (ROOT / "tests" / "denied_packages.txt").read_text().splitlines()
    return {line.strip().lower() for line in lines if line.strip() and not line.startswith("#")}


def requirement_name(requirement: str) -> str:
    """The project name of a PEP 508 requirement, normalised (``Foo_Bar[x]>=1`` -> ``foo-bar``)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def test_no_dependency_or_extra_names_a_denied_package():
    # A package on the deny-list imitates a real project's name on PyPI (see the list's comments): naming it in
    # any extra would install it for users who ask for that feature, and `import` would then silently succeed.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra, extra_requirements in project.get("optional-dependencies", {}).items():
        requirements += extra_requirements
        assert requirement_name(extra) not in denied_packages(), f"extra {extra!r} is named after a denied package"
    named = {requirement_name(requirement) for requirement in requirements}
    assert denied_packages(), "the deny-list must not be empty"
    assert not named & denied_packages(), f"pyproject.toml names denied packages: {sorted(named & denied_packages())}"


def test_requirement_name_normalises():
    assert requirement_name("MimicGen>=1.0") == "mimicgen"
    assert requirement_name("minari[hdf5,hf]>=0.5") == "minari"
    assert requirement_name("sb3_contrib>=2.4,<3") == "sb3-contrib"
