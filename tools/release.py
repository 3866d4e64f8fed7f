#!/usr/bin/env python3
"""Build, check and smoke-install one stemforge distribution on its own.

Usage: python tools/release.py packages/NAME [--out DIR]

1. Builds the sdist, then the wheel from that sdist (``python -m build``), so a file missing from
   the sdist breaks the wheel build here rather than for a user.
2. Checks the wheel holds only ``stemforge/<name>/...`` and its dist-info: no namespace
   ``stemforge/__init__.py``, no sibling package, ``py.typed`` present, and the wheel version
   equals ``__about__.py``.
3. Builds the stemforge siblings it declares (recursively) into a local wheel house, creates a
   fresh virtual environment, installs the wheel with its declared dependencies (PyPI for the
   third-party ones, under the root ``constraints.txt``), and imports ``stemforge.<name>`` there,
   checking the imported version.

Exit status 0 when every check passes; each failure is printed with what to fix.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib
import venv
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


class ReleaseError(Exception):
    pass


def project_meta(dist_dir: pathlib.Path) -> dict:
    return tomllib.loads((dist_dir / "pyproject.toml").read_text())["project"]


def static_version(dist_dir: pathlib.Path) -> str:
    module = dist_dir.name.replace("-", "_")
    about = dist_dir / "src" / "stemforge" / module / "__about__.py"
    match = re.search(r'__version__\s*=\s*"([^"]+)"', about.read_text())
    if not match:
        raise ReleaseError(f"{about}: no __version__ string")
    return match.group(1)


def sibling_dirs(dist_dir: pathlib.Path) -> list[pathlib.Path]:
    """Directories of the stemforge distributions this one declares, recursively, deps first."""
    order: list[pathlib.Path] = []

    def visit(d: pathlib.Path) -> None:
        for dep in project_meta(d).get("dependencies", []):
            name = re.split(r"[<>=!~\[; @]", dep, maxsplit=1)[0].strip().lower()
            if not name.startswith("stemforge-"):
                continue
            short = name.removeprefix("stemforge-")
            found = [p for p in (ROOT / "packages" / short, ROOT / "apps" / short) if p.is_dir()]
            if not found:
                raise ReleaseError(f"{d}/pyproject.toml declares {name}, which is not in this repository")
            if found[0] not in order:
                visit(found[0])
                order.append(found[0])

    visit(dist_dir)
    return order


def build(dist_dir: pathlib.Path, out: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    before = set(out.glob("*"))
    cmd = [sys.executable, "-m", "build", "--outdir", str(out), str(dist_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReleaseError(f"building {dist_dir.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    new = set(out.glob("*")) - before
    wheels = [p for p in new if p.suffix == ".whl"]
    sdists = [p for p in new if p.name.endswith(".tar.gz")]
    if len(wheels) != 1 or len(sdists) != 1:
        raise ReleaseError(
            f"expected one wheel and one sdist for {dist_dir.name}, got {sorted(p.name for p in new)}"
        )
    return sdists[0], wheels[0]


def check_wheel(wheel: pathlib.Path, dist_dir: pathlib.Path) -> list[str]:
    module = dist_dir.name.replace("-", "_")
    version = static_version(dist_dir)
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    dist_info = f"stemforge_{module}-{version}.dist-info/"
    for name in names:
        if not (name.startswith(f"stemforge/{module}/") or name.startswith(dist_info)):
            problems.append(
                f"{wheel.name}: unexpected file {name} (the wheel must hold only stemforge/{module}/)"
            )
    if "stemforge/__init__.py" in names:
        problems.append(f"{wheel.name}: contains stemforge/__init__.py, which breaks the namespace package")
    if f"stemforge/{module}/py.typed" not in names:
        problems.append(f"{wheel.name}: py.typed is missing")
    if not any(n.startswith(dist_info) for n in names):
        problems.append(f"{wheel.name}: no {dist_info} (version differs from __about__.py {version}?)")
    return problems


def smoke_install(
    wheel: pathlib.Path, wheelhouse: pathlib.Path, dist_dir: pathlib.Path, env_dir: pathlib.Path
) -> str:
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = dict(os.environ, PIP_CONSTRAINT=str(ROOT / "constraints.txt"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    install = [str(python), "-m", "pip", "install", "-q", "--find-links", str(wheelhouse), str(wheel)]
    proc = subprocess.run(install, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ReleaseError(f"installing {wheel.name} into a fresh environment failed:\n{proc.stderr[-3000:]}")
    module = dist_dir.name.replace("-", "_")
    probe = f"import stemforge.{module} as m; print(m.__version__)"
    proc = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env, cwd=env_dir)
    if proc.returncode != 0:
        raise ReleaseError(
            f"import stemforge.{module} failed in the fresh environment:\n{proc.stderr[-3000:]}"
        )
    return proc.stdout.strip()


def release(dist_dir: pathlib.Path, out: pathlib.Path, env_dir: pathlib.Path) -> dict[str, str]:
    dist_dir = dist_dir.resolve()
    if not (dist_dir / "pyproject.toml").is_file():
        raise ReleaseError(f"{dist_dir}: no pyproject.toml; pass a directory such as packages/midi")
    out.mkdir(parents=True, exist_ok=True)
    wheelhouse = out / "wheelhouse"
    wheelhouse.mkdir(exist_ok=True)
    for sibling in sibling_dirs(dist_dir):
        _, sibling_wheel = build(sibling, wheelhouse)
        problems = check_wheel(sibling_wheel, sibling)
        if problems:
            raise ReleaseError("\n".join(problems))
    sdist, wheel = build(dist_dir, out)
    problems = check_wheel(wheel, dist_dir)
    if problems:
        raise ReleaseError("\n".join(problems))
    imported = smoke_install(wheel, wheelhouse, dist_dir, env_dir)
    expected = static_version(dist_dir)
    if imported != expected:
        raise ReleaseError(f"the installed package reports version {imported}, __about__.py says {expected}")
    return {"sdist": str(sdist), "wheel": str(wheel), "version": imported}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("distribution", type=pathlib.Path, help="packages/NAME or apps/NAME")
    parser.add_argument(
        "--out", type=pathlib.Path, default=None, help="where the sdist and wheel go (default: dist/NAME)"
    )
    args = parser.parse_args(argv)
    out = args.out or ROOT / "dist" / args.distribution.name
    with tempfile.TemporaryDirectory(prefix="stemforge-release-") as tmp:
        env_dir = pathlib.Path(tmp) / "venv"
        try:
            result = release(args.distribution, out, env_dir)
        except ReleaseError as err:
            print(f"release check failed for {args.distribution}: {err}", file=sys.stderr)
            return 1
    print(
        f"stemforge-{args.distribution.name} {result['version']}: {result['sdist']}, {result['wheel']} built, checked and installed alone"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
