"""jvssl's modules import each other without cycles.

The graph is read from the source with `ast`, nothing is imported. An import inside a function
counts (a lazy import hides a cycle from the interpreter, not from the design); one under
`if TYPE_CHECKING:` does not. Importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`,
so it adds edges to those packages too.

The parsing runs in a fresh interpreter: CPython's AST constructor keeps its recursion depth in
state shared by threads, and after hundreds of tests the pytest process has background threads
(orbax, TensorFlow) that make `ast.parse` fail at random with "AST constructor recursion depth
mismatch" (cpython#106905).
"""

import ast
import collections
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _is_type_checking(test: ast.expr) -> bool:
  return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
  )


def _import_nodes(tree: ast.Module):
  """Every Import and ImportFrom node, at any depth, except those under `if TYPE_CHECKING:`."""
  stack = [tree]
  while stack:
    node = stack.pop()
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      yield node
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
      stack.extend(node.orelse)
    else:
      stack.extend(ast.iter_child_nodes(node))


def import_graph(root: str, package: str) -> dict[str, dict[str, str]]:
  """The import graph of the package `package`, whose folder is `root/package`.

  Returns {module: {imported module: "path:line" of the first import}} over the package's
  modules only (a package is named by its `__init__.py`); imports of other packages and
  self-edges are left out.
  """
  files = {}  # Dotted module name -> path relative to root.
  for folder, dirs, names in os.walk(os.path.join(root, package)):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for name in sorted(names):
      if name.endswith(".py"):
        path = os.path.relpath(os.path.join(folder, name), root)
        parts = path[: -len(".py")].split(os.sep)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

  def known_prefixes(dotted: str) -> list[str]:
    # `a.b.c` runs a, a.b and a.b.c: each of them that is one of the package's modules.
    parts = dotted.split(".")
    return [m for m in (".".join(parts[: i + 1]) for i in range(len(parts))) if m in files]

  graph = {}
  for module, path in files.items():
    with open(os.path.join(root, path)) as f:
      tree = ast.parse(f.read(), filename=path)
    is_package = os.path.basename(path) == "__init__.py"
    edges = {}
    for node in sorted(_import_nodes(tree), key=lambda n: n.lineno):
      targets = []
      if isinstance(node, ast.Import):
        for alias in node.names:
          targets += known_prefixes(alias.name)
      else:
        base = node.module or ""
        if node.level:
          # `from . import x` in a/b.py (or in a/__init__.py) is relative to the package a.
          parent = module.split(".") if is_package else module.split(".")[:-1]
          parent = parent[: len(parent) - (node.level - 1)]
          base = ".".join(parent + ([node.module] if node.module else []))
        targets += known_prefixes(base)
        # `from pkg import name` imports the submodule pkg.name when there is one, else an attribute of pkg.
        targets += [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in files]
      for target in targets:
        if target != module and target not in edges:
          edges[target] = f"{path}:{node.lineno}"
    graph[module] = edges
  return graph


def import_graph_in_fresh_python(root: str, package: str) -> dict[str, dict[str, str]]:
  """`import_graph` run by this file as a script in a new interpreter without other threads."""
  proc = subprocess.run(
    [sys.executable, os.path.abspath(__file__), root, package], capture_output=True, text=True, timeout=120
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout)


def strongly_connected_components(graph: dict[str, dict[str, str]]) -> list[list[str]]:
  """Tarjan's algorithm, iterative. Each component is a sorted list of modules."""
  index, low, on_stack, stack, components = {}, {}, set(), [], []
  for start in sorted(graph):
    if start in index:
      continue
    work = [(start, iter(sorted(graph[start])))]
    index[start] = low[start] = len(index)
    stack.append(start)
    on_stack.add(start)
    while work:
      node, successors = work[-1]
      for succ in successors:
        if succ not in index:
          index[succ] = low[succ] = len(index)
          stack.append(succ)
          on_stack.add(succ)
          work.append((succ, iter(sorted(graph.get(succ, ())))))
          break
        if succ in on_stack:
          low[node] = min(low[node], index[succ])
      else:
        work.pop()
        if work:
          low[work[-1][0]] = min(low[work[-1][0]], low[node])
        if low[node] == index[node]:
          component = []
          while True:
            member = stack.pop()
            on_stack.discard(member)
            component.append(member)
            if member == node:
              break
          components.append(sorted(component))
  return components


def find_cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
  """Cycles, each as [a, b, ..., a], that between them use every edge lying on some cycle.

  For each edge u -> v inside a strongly connected component, the cycle is u -> v and then the
  shortest path back from v to u; so every import that takes part in a cycle shows up in one.
  """
  cycles = set()
  for component in strongly_connected_components(graph):
    members = set(component)
    for u in component:
      for v in sorted(graph[u]):
        if v not in members or v == u:
          continue
        # Breadth-first from v back to u, inside the component.
        came_from, queue = {v: None}, collections.deque([v])
        while u not in came_from:
          node = queue.popleft()
          for succ in sorted(graph[node]):
            if succ in members and succ not in came_from:
              came_from[succ] = node
              queue.append(succ)
        path, node = [], u
        while node is not None:
          path.append(node)
          node = came_from[node]
        ring = [u] + path[::-1][:-1]  # u, v, ..., (back to u)
        first = ring.index(min(ring))
        cycles.add(tuple(ring[first:] + ring[:first]))
  return [list(c) + [c[0]] for c in sorted(cycles)]


def describe(graph: dict[str, dict[str, str]], cycle: list[str]) -> str:
  """The cycle as "a -> b -> a" and, below it, the file and line of each import on the way."""
  lines = [" -> ".join(cycle)]
  lines += [f"    {a} -> {b}  ({graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
  return "\n".join(lines)


def test_no_import_cycles():
  graph = import_graph_in_fresh_python(REPO, "jvssl")
  assert "jvssl.train" in graph, "the graph builder found no jvssl modules"
  cycles = find_cycles(graph)
  assert not cycles, f"{len(cycles)} import cycles in jvssl:\n" + "\n".join(describe(graph, c) for c in cycles)


def test_checker_reports_a_cycle(tmp_path):
  files = {
    "pkg/__init__.py": "",
    "pkg/a.py": "from pkg import b\nfrom pkg.sub import x\n",
    "pkg/b.py": "def f():\n  from . import a  # Lazy, still a cycle.\n",
    # Only under TYPE_CHECKING: no edge, so no cycle a -> c -> a.
    "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n  from pkg import a\n",
    # The package's __init__ imports a module that imports the package.
    "pkg/sub/__init__.py": "from .x import VALUE\n",
    "pkg/sub/x.py": "import pkg.sub\nVALUE = 1\n",
  }
  for name, text in files.items():
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
  graph = import_graph_in_fresh_python(str(tmp_path), "pkg")
  assert graph["pkg.a"] == {
    "pkg": "pkg/a.py:1",
    "pkg.b": "pkg/a.py:1",
    "pkg.sub": "pkg/a.py:2",
    "pkg.sub.x": "pkg/a.py:2",
  }
  assert graph["pkg.c"] == {}
  assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.sub", "pkg.sub.x", "pkg.sub"]]
  assert describe(graph, ["pkg.a", "pkg.b", "pkg.a"]).splitlines()[1:] == [
    "    pkg.a -> pkg.b  (pkg/a.py:1)",
    "    pkg.b -> pkg.a  (pkg/b.py:2)",
  ]


if __name__ == "__main__":
  print(json.dumps(import_graph(sys.argv[1], sys.argv[2])))
