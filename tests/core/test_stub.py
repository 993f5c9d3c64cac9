"""``_core.pyi`` describes the compiled core: every name the code imports from it is in the stub, and every
name in the stub is in the module."""

import ast
from pathlib import Path

import fastmock._core

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "src" / "fastmock" / "_core.pyi"


def stub_names():
    names = set()
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
    return names


def imported_names():
    names = set()
    for path in [*ROOT.glob("src/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "fastmock._core":
                names |= {alias.name for alias in node.names}
    return names


def test_every_imported_name_is_in_the_stub():
    assert imported_names() - stub_names() == set()


def test_every_stub_name_is_in_the_module():
    assert {name for name in stub_names() if not hasattr(fastmock._core, name)} == set()
