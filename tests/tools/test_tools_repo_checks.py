"""tools/check_repo.py on copies of the repository with one defect each."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHECK = ROOT / "tools" / "check_repo.py"


def run_check(root: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True, text=True)


@pytest.fixture()
def repo_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    for part in ("packages", "apps"):
        shutil.copytree(
            ROOT / part,
            tmp_path / part,
            ignore=shutil.ignore_patterns("__pycache__", "*.flac", "*.wav", "*.safetensors"),
        )
    return tmp_path


def test_repository_passes() -> None:
    result = run_check(ROOT)
    assert result.returncode == 0, result.stdout


def test_stray_namespace_init_fails(repo_copy: pathlib.Path) -> None:
    (repo_copy / "packages/midi/src/stemforge/__init__.py").write_text("")
    result = run_check(repo_copy)
    assert result.returncode == 1
    assert "packages/midi/src/stemforge/__init__.py" in result.stdout


def test_undeclared_sibling_import_fails(repo_copy: pathlib.Path) -> None:
    module = repo_copy / "packages/samplers/src/stemforge/samplers/_leak.py"
    module.write_text("from stemforge.unet3d import UNet3D\n")
    result = run_check(repo_copy)
    assert result.returncode == 1
    assert (
        "_leak.py:1: imports stemforge.unet3d but stemforge-samplers does not declare stemforge-unet3d"
        in result.stdout
    )


def test_declared_sibling_import_passes(repo_copy: pathlib.Path) -> None:
    # stemforge-data declares stemforge-midi.
    (repo_copy / "packages/data/src/stemforge/data/_uses_midi.py").write_text("import stemforge.midi\n")
    assert run_check(repo_copy).returncode == 0


def test_declared_but_disallowed_import_fails(repo_copy: pathlib.Path) -> None:
    # Declaring a sibling is not enough: DESIGN.md's table says samplers never import a network.
    pyproject = repo_copy / "packages/samplers/pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"torch>=2.4",', '"torch>=2.4",\n    "stemforge-unet3d",')
    )
    (repo_copy / "packages/samplers/src/stemforge/samplers/_net.py").write_text("import stemforge.unet3d\n")
    result = run_check(repo_copy)
    assert result.returncode == 1
    assert (
        "_net.py:1: imports stemforge.unet3d, which DESIGN.md's package table does not allow" in result.stdout
    )


def test_insert_importing_the_training_stack_fails(repo_copy: pathlib.Path) -> None:
    (repo_copy / "apps/insert/src/stemforge/insert/_train.py").write_text("import deepspeed\n")
    result = run_check(repo_copy)
    assert result.returncode == 1
    assert "_train.py:1: imports deepspeed, which stemforge-insert must not use" in result.stdout


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("packages/codec/CHANGELOG.md", "CHANGELOG.md with an '## Unreleased' section is missing"),
        ("packages/codec/src/stemforge/codec/py.typed", "py.typed is missing"),
        ("packages/codec/src/stemforge/codec/__about__.py", "no static version"),
        ("packages/codec/README.md", "README.md is missing"),
    ],
)
def test_missing_release_file_fails(repo_copy: pathlib.Path, path: str, message: str) -> None:
    (repo_copy / path).unlink()
    result = run_check(repo_copy)
    assert result.returncode == 1
    assert message in result.stdout


def test_changelog_without_unreleased_fails(repo_copy: pathlib.Path) -> None:
    (repo_copy / "packages/midi/CHANGELOG.md").write_text("# Changelog\n\n## 0.1.0\n")
    result = run_check(repo_copy)
    assert result.returncode == 1
    assert "packages/midi: CHANGELOG.md" in result.stdout


def test_duplicate_test_module_name_fails(repo_copy: pathlib.Path) -> None:
    for pkg in ("midi", "data"):
        (repo_copy / f"packages/{pkg}/tests/test_same_name.py").write_text("def test_x():\n    assert True\n")
    result = run_check(repo_copy)
    assert result.returncode == 1
    assert "test_same_name.py: test module name also used by" in result.stdout
