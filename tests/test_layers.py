"""The layering of radtrack/, read from the source with ``ast`` (issue #14), so that it stays true.

- Only the shell (cli.py, daemon.py) imports radtrack.config: every other part defines its own
  settings value and config.py builds it.
- No import cycle anywhere in radtrack/.
- No ``noqa: F401``: nothing is imported only for what importing it does.

What counts as an import: every ``import`` and ``from ... import`` statement in a module, wherever
it stands. At module level, including the ones under ``if TYPE_CHECKING:`` (they never run, but
a cycle that only the type checker sees is still two modules that need each other, and the fix
is the same: a Protocol or a value owned by the lower one). Inside functions too: a deferred
import still depends on the module; deferring it is how a cycle hides (``build_schema`` once
imported the modules that imported it). ``from radtrack import config`` imports the module
radtrack.config; an edge goes to the module named, not to the packages above it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "radtrack"
SHELL = frozenset({"radtrack.cli", "radtrack.daemon"})


def modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file under ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_names(name: str, path: Path) -> Iterator[str]:
    """Every dotted name an import statement of the module may refer to."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one level up per extra dot
                parts = name.split(".")
                parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # a submodule, maybe


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    found = modules(package)
    return {
        name: {target for target in imported_names(name, path) if target in found} - {name}
        for name, path in found.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (``[a, b, a]``), or None: a depth-first walk."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        branches = [iter(sorted(graph[start]))]
        while branches:
            target = next(branches[-1], None)
            if target is None:  # every import of path[-1] explored: no cycle through it
                branches.pop()
                done.add(path.pop())
            elif target in path:
                return [*path[path.index(target) :], target]
            elif target not in done:
                path.append(target)
                branches.append(iter(sorted(graph[target])))
    return None


def test_only_the_shell_imports_config() -> None:
    importers = sorted(
        name
        for name, targets in import_graph(PACKAGE).items()
        if "radtrack.config" in targets and name not in SHELL
    )
    assert importers == [], (
        f"{importers} import radtrack.config: a part takes the settings value it defines "
        "itself, and config.py builds it (only cli.py and daemon.py read the config)"
    )


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_nothing_is_imported_for_its_side_effects() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in modules(PACKAGE).values()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if "noqa: F401" in line
    ]
    assert offenders == [], f"imports kept only for what importing does: {offenders}"


def test_the_checks_see_deferred_type_only_and_relative_imports(tmp_path: Path) -> None:
    """The walk above is what the other tests trust: a cycle closed by a deferred import, an
    import under TYPE_CHECKING and a relative import are all edges."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import low\n")
    (package / "sub" / "low.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import top\n"
    )
    (package / "top.py").write_text("def f():\n    from pkg.sub.low import g\n")
    graph = import_graph(package)
    assert graph == {
        "pkg": set(),
        "pkg.sub": {"pkg.sub.low"},
        "pkg.sub.low": {"pkg", "pkg.top"},
        "pkg.top": {"pkg.sub.low"},
    }
    assert find_cycle(graph) == ["pkg.sub.low", "pkg.top", "pkg.sub.low"]
    assert find_cycle({**graph, "pkg.top": set()}) is None


# -- sizes: a module fits one sitting, a function one screen -------------------------------------
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80
LONG = "# long:"  # the comment that says why a file or a function is longer


def too_long(package: Path) -> list[str]:
    """Files over MAX_FILE_LINES without a ``# long:`` comment in their first 30 lines, and
    functions over MAX_FUNCTION_LINES without one on the line above their ``def`` (or its
    decorators) or on the ``def`` line."""
    found = []
    for path in sorted(package.rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > MAX_FILE_LINES and not any(LONG in line for line in lines[:30]):
            found.append(f"{path.relative_to(package.parent)}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            said = LONG in lines[node.lineno - 1] or (first > 1 and LONG in lines[first - 2])
            if length > MAX_FUNCTION_LINES and not said:
                found.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name}")
    return found


def test_modules_and_functions_stay_short_or_say_why() -> None:
    assert too_long(PACKAGE) == []


def test_the_size_check_sees_a_long_file_and_a_long_function(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (package / "a.py").write_text(f"def long_one():\n{body}\n")
    (package / "b.py").write_text(f"{LONG} a reason\ndef long_one():\n{body}\n")
    (package / "c.py").write_text("x = 1\n" * (MAX_FILE_LINES + 1))
    assert too_long(package) == ["pkg/a.py:1 long_one", f"pkg/c.py: {MAX_FILE_LINES + 1} lines"]
