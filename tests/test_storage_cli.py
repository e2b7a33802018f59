import json

import pytest

from core.run_store import default_store
from tests.test_cli import run_cli


@pytest.mark.slow  # two CLI processes that quantize and reload
def test_store_then_load_verify(tmp_path):
    out = tmp_path / "tiny.h5"
    code, stdout, stderr = run_cli("store", "--model", "bert-tiny", "--format", "prunebert", "--out", str(out),
                                   "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["format"] == "prunebert" and result["bit_exact"] is True
    assert result["size_bytes"] == out.stat().st_size and result["dense_size_bytes"] > 0
    assert result["save_s"] > 0 and result["load_s"] > 0
    assert default_store().query(kind="store")[0].size_bytes == result["size_bytes"]

    code, stdout, _ = run_cli("load", str(out), "--model", "bert-tiny", "--verify", "--json")
    assert code == 0 and json.loads(stdout)["bit_exact"] is True


def test_load_refuses_a_non_model_file(tmp_path):
    bogus = tmp_path / "notes.h5"
    bogus.write_text("hello")
    code, stdout, _ = run_cli("load", str(bogus), "--model", "bert-tiny", "--json")
    assert code == 1 and "not an HDF5 file" in json.loads(stdout)["error"]
