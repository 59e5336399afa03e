"""One command API for every write: the adapters in api/http and api/cli call DataEngine's
methods; they never reach its plumbing (the repository, a UnitOfWork, ``run``). And the
edges (api/http, api/web, api/cli) hold no SQL: their reads are projections' queries."""

from __future__ import annotations

import ast
import re
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


# ------------------------------------------------------------------ no SQL in the edges
# The edges parse, call and render: every read query lives in projections/ (queries/
# and the read models' own query functions), so a read's shape has one home and the
# edges cannot grow rules in SQL. SQL keywords are upper case in this code base, so
# prose ("select a model") does not count.
EDGES = ("api/http", "api/web", "api/cli")
SQL = re.compile(r"\b(SELECT|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b")
EXECUTE = {"execute", "executemany", "executescript", "execute_fetchall"}
# (path, line text fragment) pairs allowed to hold SQL, each with why; none is needed
# (a liveness probe such as "SELECT 1" belongs to api/storage, as leases.py's does).
SQL_ALLOWED: set[tuple[str, str]] = set()


def _sql(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            hit = SQL.search(node.value)
            if hit:
                found.append((node.lineno, f"SQL in a string: {hit[0]!r}"))
        elif isinstance(node, ast.Attribute) and node.attr in EXECUTE:
            found.append((node.lineno, f".{node.attr}("))
    return found


def test_edges_hold_no_sql() -> None:
    offences = []
    for folder in EDGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            lines = path.read_text().splitlines()
            for line, what in _sql(ast.parse(path.read_text())):
                if not any(p == name and f in lines[line - 1] for p, f in SQL_ALLOWED):
                    offences.append(f"{name}:{line} {what}")
    assert not offences, "move these reads into projections/queries:\n" + "\n".join(offences)


def test_the_sql_check_sees_an_offence() -> None:
    sample = (
        "async def f(call, conn, ids):\n"
        '    await call.rows("SELECT state FROM trees")\n'
        '    conn.execute(f"DELETE FROM users WHERE user_id IN ({ids})")\n'
        '    conn.executemany("INSERT OR IGNORE INTO t VALUES (?)", ids)\n'
        '    return "select a model, update the page"\n'
    )
    assert sorted((line, what.split(":")[0]) for line, what in _sql(ast.parse(sample))) == [
        (2, "SQL in a string"),
        (3, ".execute("),
        (3, "SQL in a string"),
        (4, ".executemany("),
        (4, "SQL in a string"),
    ]
