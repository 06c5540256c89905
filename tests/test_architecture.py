"""The layering of docs/design.md, checked on every module's imports: no module imports a
layer above its own, no project import hides inside a function, and no import cycle."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pixelnet_jax"

# docs/design.md, "Layers": a module may import its own layer and the ones before it.
LAYERS = [
  ("registry", "errors", "utils"),
  ("sampling", "hypercolumn", "metrics"),
  ("models",),
  ("tasks", "data"),
  (
    "optimizers",
    "config_base",
    "state",
    "checkpoints",
    "distributed",
    "step",
    "parallel",
    "writers",
    "pictures",
  ),
  ("evaluate", "predict", "train"),
  ("cli", "main", "eval_boundaries", "sweep", "demo"),
]


def _modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    yield ".".join(parts), path


def _layer(module: str) -> int | None:
  parts = module.split(".")
  if len(parts) < 2:
    return None  # the package itself
  for index, names in enumerate(LAYERS):
    if parts[1] in names:
      return index
  raise AssertionError(f"{module} is in no layer of docs/design.md; add it to LAYERS.")


def _project_imports(tree: ast.Module, module: str):
  """(imported module, lineno, inside a function) for every pixelnet_jax import."""
  functions = {
    id(n)
    for f in ast.walk(tree)
    if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
    for n in ast.walk(f)
  }
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      base = node.module
      if node.level:  # relative import
        base = ".".join(module.split(".")[: -node.level] + [node.module])
      names = [f"{base}.{a.name}" for a in node.names] + [base]
    for name in names:
      if name.startswith("pixelnet_jax."):
        yield name, node.lineno, id(node) in functions


MODULES = dict(_modules())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_no_layer_above_its_own(module):
  tree = ast.parse(MODULES[module].read_text())
  own = _layer(module)
  for name, line, in_function in _project_imports(tree, module):
    assert not in_function, f"{module}:{line} imports {name} inside a function"
    target = _layer(name)
    if own is not None and target is not None:
      assert target <= own, (
        f"{module} (layer {own + 1}) imports {name} (layer {target + 1}) at line {line}"
      )


def test_no_import_cycle():
  graph = {}
  for module, path in MODULES.items():
    edges = set()
    for name, _, _ in _project_imports(ast.parse(path.read_text()), module):
      while name and name not in MODULES:
        name = name.rpartition(".")[0]
      if name and name != module and not module.startswith(name + "."):
        edges.add(name)
    graph[module] = edges
  done, active = set(), []

  def visit(node):
    if node in active:
      raise AssertionError("import cycle: " + " -> ".join(active[active.index(node) :] + [node]))
    if node in done:
      return
    active.append(node)
    for nxt in sorted(graph[node]):
      if not node.startswith(nxt + ".") and not nxt.startswith(node + "."):
        visit(nxt)
    active.pop()
    done.add(node)

  for module in sorted(graph):
    visit(module)
