#!/usr/bin/env python3
"""Create the skeleton of a stemforge distribution in the monorepo's shape.

Usage: tools/new_package.py packages/NAME "one-line description" [dep ...]
       tools/new_package.py apps/NAME "one-line description" [dep ...]

Writes pyproject.toml (hatchling, static version read from __about__.py), README.md,
CHANGELOG.md, src/stemforge/NAME/{__init__.py,__about__.py,py.typed} and tests/. The
namespace directory src/stemforge/ gets no __init__.py.
"""

from __future__ import annotations

import pathlib
import sys

PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.26"]
build-backend = "hatchling.build"

[project]
name = "stemforge-{name}"
dynamic = ["version"]
description = "{description}"
readme = "README.md"
requires-python = ">=3.11"
license = "Apache-2.0"
dependencies = [
{deps}]
{scripts}
[tool.hatch.version]
path = "src/stemforge/{module}/__about__.py"

[tool.hatch.build.targets.wheel]
only-include = ["src/stemforge/{module}"]
sources = ["src"]

[tool.hatch.build.targets.sdist]
include = ["src/stemforge/{module}", "tests", "README.md", "CHANGELOG.md"]
"""


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    where = pathlib.Path(sys.argv[1])
    description = sys.argv[2]
    deps = sys.argv[3:]
    name = where.name
    module = name.replace("-", "_")
    is_app = where.parent.name == "apps"
    root = pathlib.Path(__file__).resolve().parent.parent / where
    if root.exists():
        print(f"{root} exists already", file=sys.stderr)
        return 1
    src = root / "src" / "stemforge" / module
    src.mkdir(parents=True)
    (root / "tests").mkdir()
    scripts = f'\n[project.scripts]\nstemforge-{name} = "stemforge.{module}.cli:main"\n' if is_app else ""
    dep_lines = "".join(f'    "{d}",\n' for d in deps)
    (root / "pyproject.toml").write_text(
        PYPROJECT.format(name=name, module=module, description=description, deps=dep_lines, scripts=scripts)
    )
    (src / "__about__.py").write_text('__version__ = "0.1.0"\n')
    (src / "__init__.py").write_text(
        f'"""{description}"""\n\nfrom stemforge.{module}.__about__ import __version__\n\n__all__ = ["__version__"]\n'
    )
    (src / "py.typed").write_text("")
    (root / "README.md").write_text(f"# stemforge-{name}\n\n{description}\n")
    (root / "CHANGELOG.md").write_text(
        f"# Changelog of stemforge-{name}\n\n## Unreleased\n\n- First release.\n"
    )
    print(f"created {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
