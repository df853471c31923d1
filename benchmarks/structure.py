"""The package's structure drawn from its imports, and its size (issue 33's targets): rooms, floors, arrows back up,
cycles, lines.

python benchmarks/structure.py [--package gpytorch_vae] [--json benchmarks/results/structure.json]

- **rooms**: the package's top-level subpackages and modules (``models``, ``priors``, ``io.py`` ...); the package's
  own ``__init__.py``, which only re-exports, is not one.
- **arrows**: room A -> room B when any file of A imports from B (module-level or inside a function, absolute or
  relative; ``TYPE_CHECKING`` imports too).
- **cycles**: the groups of rooms that reach each other (strongly connected components with more than one room).
- **arrows back up**: the arrows that close a cycle (back edges of a depth-first walk over the rooms in name
  order); 0 when there is no cycle.
- **floors**: the rooms in the longest chain of arrows (each room one floor above everything it imports), cycles
  contracted to one room.
- **lines**: ``wc -l`` of the package's Python files, and the same without the time-series estimator and its
  modules (``imputer.py``, ``nn/context.py``, ``data/real_series.py``), issue 33's count "before the round's new
  estimator".

Reads files with :mod:`ast`; writes a JSON and prints a table.
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # benchmarks/: common.py
import common

ESTIMATOR = ("imputer.py", "nn/context.py", "data/real_series.py")


def room_of(relative: pathlib.PurePath) -> str | None:
    """The room of a file given relative to the package: its first path part (a module's without ``.py``)."""
    first = relative.parts[0]
    return None if first == "__init__.py" else first.removesuffix(".py")


def imported_rooms(path: pathlib.Path, package_dir: pathlib.Path, package: str) -> set[str]:
    """The rooms that one file imports from."""
    relative = path.relative_to(package_dir)
    here = relative.parent.parts  # the file's package, relative to the package root
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb level - 1 packages from the file's own
                base = list(here[: len(here) - (node.level - 1)]) if node.level > 1 else list(here)
                target = base + (node.module.split(".") if node.module else [])
                names = [target + [alias.name] for alias in node.names] if not target else [target]
            elif node.module and (node.module == package or node.module.startswith(package + ".")):
                target = node.module.split(".")[1:]
                names = [[alias.name] for alias in node.names] if not target else [target]
            else:
                continue
            rooms.update(name[0] for name in names if name)
        elif isinstance(node, ast.Import):
            rooms.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith(package + "."))
    return rooms


def structure(package_dir: pathlib.Path) -> dict:
    package = package_dir.name
    files = sorted(package_dir.rglob("*.py"))
    known = {room_of(f.relative_to(package_dir)) for f in files} - {None}
    arrows: dict[str, set[str]] = {room: set() for room in known}
    for f in files:
        room = room_of(f.relative_to(package_dir))
        if room is not None:
            arrows[room] |= {r for r in imported_rooms(f, package_dir, package) if r in known and r != room}
    components = strongly_connected(arrows)
    cycles = [sorted(c) for c in components if len(c) > 1]
    back = back_arrows(arrows)
    component_of = {room: i for i, c in enumerate(components) for room in c}
    floor: dict[int, int] = {}

    def height(i: int) -> int:  # floors of the contracted graph (a DAG): 1 + the highest room imported
        if i not in floor:
            below = {component_of[t] for room in components[i] for t in arrows[room]} - {i}
            floor[i] = 1 + max((height(j) for j in below), default=0)
        return floor[i]

    lines = {str(f.relative_to(package_dir)): len(f.read_text().splitlines()) for f in files}
    return {
        "rooms": len(known),
        "floors": max(height(i) for i in range(len(components))),
        "arrows": sum(len(t) for t in arrows.values()),
        "arrows_back_up": len(back),
        "cycles": len(cycles),
        "cycle_rooms": cycles,
        "back_arrows": [f"{a} -> {b}" for a, b in back],
        "lines": sum(lines.values()),
        "lines_without_estimator": sum(n for name, n in lines.items() if name not in ESTIMATOR),
        "arrow_list": {room: sorted(t) for room, t in sorted(arrows.items())},
    }


def strongly_connected(arrows: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm over the rooms (a dozen nodes; written out to keep benchmarks free of a graph library)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(room: str) -> None:
        index[room] = low[room] = len(index)
        stack.append(room)
        on_stack.add(room)
        for target in sorted(arrows[room]):
            if target not in index:
                visit(target)
                low[room] = min(low[room], low[target])
            elif target in on_stack:
                low[room] = min(low[room], index[target])
        if low[room] == index[room]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == room:
                    break
            found.append(component)

    for room in sorted(arrows):
        if room not in index:
            visit(room)
    return found


def back_arrows(arrows: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Arrows to a room still on the depth-first path: each closes a cycle."""
    state, back = {}, []

    def walk(room: str) -> None:
        state[room] = "open"
        for target in sorted(arrows[room]):
            if state.get(target) == "open":
                back.append((room, target))
            elif target not in state:
                walk(target)
        state[room] = "done"

    for room in sorted(arrows):
        if room not in state:
            walk(room)
    return back


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = pathlib.Path(__file__).resolve().parents[1]
    parser.add_argument("--package", default=str(root / "gpytorch_vae"))
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    result = structure(pathlib.Path(args.package))
    columns = ["rooms", "floors", "arrows", "arrows_back_up", "cycles", "lines", "lines_without_estimator"]
    print(common.markdown_table([result], columns, {}))
    for line in result["back_arrows"]:
        print("back arrow:", line)
    if args.json:
        common.save(args.json, {"package": args.package, **result})


if __name__ == "__main__":
    main()
