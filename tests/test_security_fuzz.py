"""schemathesis against our own /openapi.json (issue 13): every check, at least 1,000 cases,
no server error and nothing undocumented. A real uvicorn server on a fresh store; about
30 s, so marked slow. The full run with more cases is ``python -m bench.schemathesis_run``."""

from __future__ import annotations

import pytest

from bench import schemathesis_run

pytest.importorskip("schemathesis")
pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_server_error_and_nothing_undocumented(capsys) -> None:
    code = schemathesis_run.main(["--max-examples", "3", "--seed", "7"])
    out = capsys.readouterr().out
    figures = schemathesis_run.summary(out)
    assert figures["cases"] >= 1000, out[-3000:]
    assert figures["server_errors"] == 0 and figures["undocumented"] == 0, out[-6000:]
    assert code == 0
