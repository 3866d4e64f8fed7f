"""tools/release.py builds one distribution, checks its wheel and installs it alone."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import release  # noqa: E402


def test_release_helper_installs_unet3d_alone(tmp_path: pathlib.Path) -> None:
    # unet3d declares a sibling (stemforge-kernels), so the wheel house path is exercised too.
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "release.py"), "packages/unet3d", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("stemforge_unet3d-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert all(n.startswith(("stemforge/unet3d/", "stemforge_unet3d-")) for n in names)
    assert next((tmp_path / "wheelhouse").glob("stemforge_kernels-*.whl"))


def test_wheel_check_rejects_foreign_files(tmp_path: pathlib.Path) -> None:
    wheel = tmp_path / "stemforge_midi-0.1.0-py3-none-any.whl"
    version = release.static_version(ROOT / "packages" / "midi")
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("stemforge/__init__.py", "")
        zf.writestr("stemforge/data/io.py", "")
        zf.writestr(f"stemforge_midi-{version}.dist-info/METADATA", "")
    problems = release.check_wheel(wheel, ROOT / "packages" / "midi")
    text = "\n".join(problems)
    assert "unexpected file stemforge/data/io.py" in text
    assert "contains stemforge/__init__.py" in text
    assert "py.typed is missing" in text


def test_sibling_order_puts_dependencies_first() -> None:
    order = [p.name for p in release.sibling_dirs(ROOT / "apps" / "train")]
    assert order.index("midi") < order.index("data")


def test_missing_pyproject_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(release.ReleaseError, match=r"no pyproject\.toml"):
        release.release(tmp_path, tmp_path / "out", tmp_path / "venv")
