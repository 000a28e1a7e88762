"""The wheel carries every file the package needs: each file under src/flowstage that git tracks
and that is not Python source is matched by a `[tool.setuptools.package-data]` glob (templates,
the web UI's scripts and styles, the vendored front-end files, migrations, the project template)."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "flowstage"
#: tracked files that only serve to rebuild a vendored bundle, not to run
NOT_SHIPPED = {"web/static/vendor/build.sh", "web/static/vendor/.gitattributes"}


def test_every_tracked_file_of_the_package_is_in_its_package_data() -> None:
    listed = subprocess.run(["git", "ls-files", "src/flowstage"], cwd=ROOT, capture_output=True, text=True, check=True)
    tracked = {Path(line).relative_to("src/flowstage").as_posix() for line in listed.stdout.splitlines()}
    # a link to a folder (the project template is the example project) is listed by its own globs
    needed = {p for p in tracked if not p.endswith(".py") and p not in NOT_SHIPPED and not (PACKAGE / p).is_symlink()}
    assert any(p.startswith("web/templates/") for p in needed)
    assert any(p.startswith("web/static/vendor/") for p in needed)
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"][
        "flowstage"
    ]
    shipped = {path.relative_to(PACKAGE).as_posix() for pattern in globs for path in PACKAGE.glob(pattern)}
    missing = sorted(needed - shipped)
    assert not missing, f"not in [tool.setuptools.package-data] of pyproject.toml: {missing}"


def test_the_built_wheel_carries_every_tracked_file_of_the_package(tmp_path: Path) -> None:
    import sys
    import zipfile

    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("flowstage-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    listed = subprocess.run(["git", "ls-files", "src/flowstage"], cwd=ROOT, capture_output=True, text=True, check=True)
    tracked = {Path(line).relative_to("src").as_posix() for line in listed.stdout.splitlines()}
    needed = {p for p in tracked if p.removeprefix("flowstage/") not in NOT_SHIPPED and not (ROOT / "src" / p).is_symlink()}
    missing = sorted(needed - names)
    assert not missing, f"not in the wheel: {missing}"
    assert "flowstage/web/static/vendor/editor.js" in names
    assert "flowstage/project_template/workflows/daily_sales.yaml" in names  # the linked example project too
