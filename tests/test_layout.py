"""The folder tree shows the architecture: each flow's package keeps its private names private."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOW_PACKAGES = ("agents.chat", "agents.aggregates")
SOURCE_DIRS = ("agents", "api", "schemas", "tokenwire", "tests")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_imports_across_packages() -> list[str]:
    found = []
    for folder in SOURCE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            importer = _module_name(path)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ImportFrom) or node.module is None:
                    continue
                owner = next((p for p in FLOW_PACKAGES if node.module.startswith(p)), None)
                if owner is None or importer.startswith(owner):
                    continue
                for alias in node.names:
                    if alias.name.startswith("_"):
                        found.append(f"{importer} imports {node.module}.{alias.name}")
    return found


def test_no_module_outside_a_flow_imports_its_private_names() -> None:
    assert _private_imports_across_packages() == []


def test_the_shared_agents_folder_holds_only_what_both_flows_share() -> None:
    top = sorted(p.name for p in (ROOT / "agents").glob("*.py"))
    assert top == ["__init__.py", "app.py", "metrics.py", "web.py", "worker.py"]


def test_each_flow_package_says_what_flows_in_and_out() -> None:
    for package in FLOW_PACKAGES:
        init = ROOT / package.replace(".", "/") / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "In:" in doc and "Out:" in doc, package
