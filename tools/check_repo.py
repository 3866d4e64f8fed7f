#!/usr/bin/env python3
"""Repository consistency checks, run by CI.

Fails (exit 1) on:
- a stray namespace ``src/stemforge/__init__.py`` in any distribution;
- a ``stemforge.<x>`` import in a distribution whose pyproject does not declare ``stemforge-<x>``
  (its own name, a dependency or an optional extra), or that the package table of DESIGN.md
  (``ALLOWED`` below) does not allow; apps that must stay free of the training stack
  (``FORBIDDEN_THIRD_PARTY``) importing it;
- a distribution without a static ``__about__.py`` version, ``CHANGELOG.md`` with an
  ``## Unreleased`` section, ``README.md`` or ``py.typed``;
- a test module path used by two distributions (pytest runs with ``--import-mode=importlib`` but
  unique names keep reports readable).

Usage: python tools/check_repo.py [REPO_ROOT]
"""

from __future__ import annotations

import ast
import pathlib
import re
import sys
import tomllib

LIBRARIES = {"kernels", "codec", "unet3d", "samplers", "conditioning", "midi", "data", "metrics"}
#: DESIGN.md, "Packages and what each may import": the stemforge siblings each distribution may use.
ALLOWED: dict[str, set[str]] = {
    "kernels": set(),
    "codec": set(),
    "unet3d": {"kernels"},
    "samplers": set(),
    "conditioning": set(),
    "midi": set(),
    "data": {"midi"},
    "metrics": set(),
    "pipelines": LIBRARIES,
    "train": LIBRARIES | {"pipelines"},
    "insert": LIBRARIES | {"pipelines"},
    "evaluate": LIBRARIES | {"pipelines"},
}
#: Third-party top-level modules a distribution must never import (DESIGN.md: the insertion app runs
#: without stemforge-train and DeepSpeed).
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "insert": {"deepspeed", "lightning_fabric", "lightning"},
    "pipelines": {"deepspeed", "lightning_fabric", "lightning", "yaml"},
    "evaluate": {"deepspeed", "lightning_fabric", "lightning"},
}

VERSION_RE = re.compile(r'^__version__\s*=\s*"(\d+\.\d+\.\d+(?:[a-z0-9.+-]*)?)"\s*$', re.MULTILINE)


def distributions(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        p.parent for p in [*root.glob("packages/*/pyproject.toml"), *root.glob("apps/*/pyproject.toml")]
    )


def declared_names(meta: dict) -> set[str]:
    deps = list(meta.get("dependencies", []))
    for extra in meta.get("optional-dependencies", {}).values():
        deps.extend(extra)
    return {re.split(r"[<>=!~\[; @]", d, maxsplit=1)[0].strip().lower().replace("_", "-") for d in deps}


def all_imports(py: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(py.read_text(), filename=str(py))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def stemforge_imports(py: pathlib.Path) -> list[tuple[int, str]]:
    return [(line, mod) for line, mod in all_imports(py) if mod.startswith("stemforge.")]


def check_distribution(root: pathlib.Path, dist: pathlib.Path) -> list[str]:
    problems: list[str] = []
    rel = dist.relative_to(root)
    meta = tomllib.loads((dist / "pyproject.toml").read_text()).get("project", {})
    name = meta.get("name", "")
    module = dist.name.replace("-", "_")
    if name != f"stemforge-{dist.name}":
        problems.append(f"{rel}/pyproject.toml: project name is {name!r}, expected 'stemforge-{dist.name}'")
    pkg = dist / "src" / "stemforge" / module
    if (dist / "src" / "stemforge" / "__init__.py").exists():
        problems.append(
            f"{rel}/src/stemforge/__init__.py: a namespace package must not have this file; delete it"
        )
    about = pkg / "__about__.py"
    if not about.is_file() or not VERSION_RE.search(about.read_text()):
        problems.append(f'{rel}: no static version; add __version__ = "X.Y.Z" to {about.relative_to(root)}')
    changelog = dist / "CHANGELOG.md"
    if not changelog.is_file() or "## Unreleased" not in changelog.read_text():
        problems.append(f"{rel}: CHANGELOG.md with an '## Unreleased' section is missing")
    if not (dist / "README.md").is_file():
        problems.append(f"{rel}: README.md is missing")
    if not (pkg / "py.typed").is_file():
        problems.append(f"{rel}: py.typed is missing in {pkg.relative_to(root)}")
    declared = declared_names(meta)
    allowed = ALLOWED.get(dist.name)
    if allowed is None:
        problems.append(
            f"{rel}: not in the package table of tools/check_repo.py (DESIGN.md); add it to ALLOWED"
        )
        allowed = set()
    forbidden = FORBIDDEN_THIRD_PARTY.get(dist.name, set())
    for py in sorted((dist / "src").rglob("*.py")):
        try:
            imports = all_imports(py)
        except SyntaxError as err:
            problems.append(f"{py.relative_to(root)}: syntax error {err}")
            continue
        for line, mod in imports:
            top = mod.split(".")[0]
            if top in forbidden:
                problems.append(f"{py.relative_to(root)}:{line}: imports {mod}, which {name} must not use")
            if top != "stemforge":
                continue
            short = mod.split(".")[1]
            sibling = f"stemforge-{short}"
            if short == dist.name:
                continue
            if sibling not in declared:
                problems.append(
                    f"{py.relative_to(root)}:{line}: imports {mod} but {name} does not declare {sibling}"
                )
            elif short not in allowed:
                problems.append(
                    f"{py.relative_to(root)}:{line}: imports {mod}, which DESIGN.md's package table does not "
                    f"allow {name} to use (allowed: {', '.join(sorted(allowed)) or 'no stemforge package'})"
                )
    return problems


def check_test_names(root: pathlib.Path) -> list[str]:
    seen: dict[str, pathlib.Path] = {}
    problems = []
    for test in sorted(
        [*root.glob("packages/*/tests/**/test_*.py"), *root.glob("apps/*/tests/**/test_*.py")]
    ):
        if test.name in seen:
            problems.append(
                f"{test.relative_to(root)}: test module name also used by {seen[test.name].relative_to(root)}"
            )
        seen[test.name] = test
    return problems


def check(root: pathlib.Path) -> list[str]:
    problems: list[str] = []
    dists = distributions(root)
    if not dists:
        problems.append(f"{root}: no distributions found under packages/ or apps/")
    for dist in dists:
        problems += check_distribution(root, dist)
    problems += check_test_names(root)
    return problems


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    problems = check(root)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"repository checks passed ({len(distributions(root))} distributions)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
