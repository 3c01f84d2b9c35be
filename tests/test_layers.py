"""ebmkit's import layers (DESIGN.md), checked by import-linter from the contracts in pyproject.toml:
no module imports from a layer above its own, lazily inside a function included; no module imports
the `ebmkit` package itself; no import cycle between the modules of any package."""

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"]


def test_import_linter_keeps_every_contract():
    result = subprocess.run([*LINT, str(ROOT / "pyproject.toml")], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_a_lazy_upward_import_breaks_the_layers(tmp_path):
    """The contracts can fail: the same check on a copy of the package with one lazy import of
    the trainer inside the recipe configuration (what `Recipe.fit` used to do) is refused."""
    package = tmp_path / "ebmkit"
    subprocess.run(["cp", "-r", str(ROOT / "ebmkit"), str(package)], check=True)
    base = package / "recipes" / "base.py"
    base.write_text(base.read_text() + "\n\ndef _train(recipe):\n    from ebmkit.training import Trainer\n\n"
                    "    return Trainer(recipe).fit()\n")
    config = tmp_path / "pyproject.toml"
    config.write_text((ROOT / "pyproject.toml").read_text())
    result = subprocess.run([*LINT, str(config)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ebmkit.recipes.base -> ebmkit.training" in result.stdout


def test_the_package_has_no_import_cycle_at_all():
    """Every module, packages' __init__ included: no strongly connected component."""
    graph = grimp.build_graph("ebmkit", cache_dir=None)
    seen, on_path, cycles = set(), [], []

    def visit(module, stack):
        if module in stack:
            cycles.append(stack[stack.index(module):] + [module])
            return
        if module in seen:
            return
        seen.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            visit(imported, stack + [module])

    for module in sorted(graph.modules):
        visit(module, on_path)
    assert cycles == []
