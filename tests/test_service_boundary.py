"""One command API for every write: the adapters in api/http and api/cli call DataEngine's
methods; they never reach its plumbing (the repository, a UnitOfWork, ``run``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ("api/http", "api/cli")
FORBIDDEN_ATTRIBUTES = {"repository", "run"}  # app.repository, app.run(...)
FORBIDDEN_NAMES = {"UnitOfWork"}


def _reaches(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            # ``app.run`` / ``service.app.run`` / ``x.repository``: the application's
            # plumbing. Other ``.run`` (a flywheel, uvicorn, a read pool) are not the app's.
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if node.attr == "repository" or name in ("app", "engine"):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.alias) and node.name.split(".")[-1] in FORBIDDEN_NAMES:
            found.append((getattr(node, "lineno", 0), node.name))
    return found


def test_adapters_use_the_command_api_only() -> None:
    offences = []
    for folder in ADAPTERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, what in _reaches(ast.parse(path.read_text())):
                offences.append(f"{path.relative_to(ROOT)}:{line} {what}")
    assert not offences, "\n".join(offences)


def test_the_check_sees_an_offence() -> None:
    sample = (
        "from domain.service.unit_of_work import UnitOfWork\n"
        "def f(call):\n"
        "    call.service.app.run((), lambda uow: None)\n"
        "    return app.repository.get(1)\n"
    )
    assert sorted(w for _, w in _reaches(ast.parse(sample))) == [
        "UnitOfWork",
        "app.repository",
        "call.service.app.run",
    ]
