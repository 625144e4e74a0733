"""How the tree is shaped: lines per top-level folder, the largest application modules,
and the import cycles among application modules.

    .venv/bin/python scripts/tree_report.py [--largest 15] [--json]

Lines are physical lines of ``.py`` files. A cycle is a strongly connected group of two
or more modules that import each other, directly or through others (from grimp, the
import graph that import-linter checks); imports inside ``if TYPE_CHECKING:`` count too,
as they do for import-linter.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What ships and runs: not tests, benchmarks, migrations or scripts.
APPLICATION = (
    "core",
    "geo",
    "fares",
    "dispatch",
    "simulation",
    "web",
    "rider_api",
    "driver_api",
    "server",
    "loadtests",
)
FOLDERS = (*APPLICATION, "tests", "benchmarks", "migrations", "scripts")


def line_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def lines_per_folder() -> dict[str, int]:
    out = {}
    for folder in FOLDERS:
        base = ROOT / folder
        if base.is_dir():
            out[folder] = sum(line_count(p) for p in base.rglob("*.py"))
    return out


def largest_modules(n: int) -> list[tuple[str, int]]:
    sizes = [
        (str(p.relative_to(ROOT)), line_count(p))
        for folder in APPLICATION
        if (ROOT / folder).is_dir()
        for p in (ROOT / folder).rglob("*.py")
    ]
    return sorted(sizes, key=lambda s: (-s[1], s[0]))[:n]


def import_cycles() -> list[list[str]]:
    import grimp

    packages = [p for p in APPLICATION if (ROOT / p).is_dir()]
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*packages, cache_dir=None)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    return [sorted(c) for c in _strongly_connected(modules, edges) if len(c) > 1]


def _strongly_connected(nodes: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph has a few hundred modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            targets = edges.get(node, [])
            while i < len(targets):
                nxt = targets[i]
                i += 1
                if nxt not in index:
                    work.append((node, i))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == node:
                        break
                out.append(group)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--largest", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {
        "lines_per_folder": lines_per_folder(),
        "largest_modules": largest_modules(args.largest),
        "import_cycles": import_cycles(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("lines per top-level folder")
    for folder, n in report["lines_per_folder"].items():
        print(f"  {folder:<12} {n:>6}")
    print(f"largest application modules (top {args.largest})")
    for path, n in report["largest_modules"]:
        print(f"  {n:>5}  {path}")
    cycles = report["import_cycles"]
    print(f"import cycles among application modules: {len(cycles)}")
    for group in cycles:
        print("  " + " <-> ".join(group))
    return 0


if __name__ == "__main__":
    sys.exit(main())
