"""The shape of the code: a thin app.py over a package whose modules import downward only, each
small enough to read in one sitting, and a package whose import does no work."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "connected_todos"


def module_map() -> list[str]:
    """The modules in the order app.py's docstring lists them, the ground floor first."""
    docstring = ast.get_docstring(ast.parse((ROOT / "app.py").read_text()))
    return re.findall(r"^  (\w+) ", docstring, re.MULTILINE)


def package_imports(module: str) -> set[str]:
    """The modules of the package that ``module`` imports at its top level."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            imported.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
    return imported


def test_app_py_is_a_thin_entry_point_whose_docstring_maps_every_module():
    assert len((ROOT / "app.py").read_text().splitlines()) < 100
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert set(module_map()) == modules


def test_each_module_imports_only_the_modules_above_it():
    order = module_map()
    for position, module in enumerate(order):
        below = set(order[:position])
        assert package_imports(module) <= below, f"{module} imports {package_imports(module) - below}"


def test_each_module_opens_with_what_it_owns_and_is_readable_in_one_sitting():
    for path in PACKAGE.glob("*.py"):
        source = path.read_text()
        assert ast.get_docstring(ast.parse(source)), f"{path.name} has no docstring"
        assert len(source.splitlines()) <= 600, f"{path.name} is over 600 lines"


IMPORT_ONLY = """
import hashlib, sys
from joserfc.jwk import RSAKey
work = []
hashlib.scrypt = lambda *a, **k: work.append("hash")
RSAKey.generate_key = lambda *a, **k: work.append("key")
import connected_todos
print(work, "sqlalchemy.dialects.sqlite.pysqlite" in sys.modules)
"""


def test_importing_the_package_does_nothing(tmp_path):
    # No database, no migration, no key, no hash and no demo data: create_app() does that work.
    database = tmp_path / "never.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "SECRET_KEY": "k" * 40}
    result = subprocess.run([sys.executable, "-c", IMPORT_ONLY], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "False"] and not database.exists()


def test_the_code_is_clean_under_ruff():
    ruff = [sys.executable, "-m", "ruff"]
    for check in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(ruff + check, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
