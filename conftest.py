"""Repository-wide pytest options: ``--run-slow`` enables tests marked ``slow`` (long sweeps)."""

import pytest


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="run tests marked slow (long sweeps: >= 1e5 bound trials, large RTL configs)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: opt in with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _piped_terminal_size(monkeypatch):
    """Tests see the CLI as a user piping its output sees it: pytest-xdist's workers inherit
    COLUMNS=80/LINES=24 from execnet, which would fold the tables; a test that wants a width sets it."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
