"""The dashboard itself: every page runs without exceptions, and the real server answers."""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.run_store import RunRecord, default_store

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "views").glob("*.py"))


def test_every_page_module_is_in_the_navigation_and_no_legacy_pages_folder_exists():
    from ui.navigation import PAGES as NAVIGATION

    assert len(PAGES) >= 10 and sorted(entry.path for entry in NAVIGATION) == PAGES
    assert not (REPO / "pages").exists()  # Streamlit's legacy multipage navigation would take over deep links


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app():
    default_store().add(RunRecord(kind="prune", model="bert-tiny", method="magnitude", sparsity=0.5,
                                  accuracy=0.9, size_bytes=1000, latency_ms=2.0))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs(app, page):
    app.switch_page(page).run()
    assert not app.exception, [e.message for e in app.exception]


def test_home_shows_machine_and_latest_runs(app):
    assert app.title[0].value == "SparseLab"
    assert any(m.label == "Cores" for m in app.metric)
    assert len(app.dataframe) >= 2  # libraries and latest runs


def test_runs_page_filters(app):
    store = default_store()  # beside the fixture's prune run of bert-tiny: runs each filter must drop
    store.add(RunRecord(kind="store", model="minilm", method="sparselab", size_bytes=2000))
    store.add(RunRecord(kind="tvm", model="bert-base", method="bsr", latency_ms=5.0))
    store.add(RunRecord(kind="prune", model="minilm", method="block", sparsity=0.8, accuracy=0.7))
    app.switch_page("views/runs.py").run()
    assert len(app.dataframe[0].value) == 4  # unfiltered: every run

    app.selectbox(key="runs-kind").select("prune").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert set(table["kind"]) == {"prune"}
    assert sorted(table["model"]) == ["bert-tiny", "minilm"]

    app.selectbox(key="runs-model").select("bert-tiny").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert list(zip(table["kind"], table["model"], table["method"])) == [("prune", "bert-tiny", "magnitude")]


@pytest.mark.slow
def test_real_server_health():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, body = time.time() + 90, None
        while time.time() < deadline and body != "ok":
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert body == "ok"
        assert b"<html" in urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().lower()
    finally:
        server.terminate()
        server.wait(timeout=30)
