"""What a non-editable install (the Pi's) ships: every subpackage and every data file the code loads."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "firmware_bridge").rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert "firmware_bridge.dbc" in listed  # the repository's dbc/ folder, mapped by package-dir


def test_the_readme_stands_alone_and_the_licence_matches():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for outside in ("DESIGN", "REFERENCE.md", "../shared"):
        assert outside not in readme, f"the README points outside the repository: {outside}"
    licence = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith(f"{licence} License")
