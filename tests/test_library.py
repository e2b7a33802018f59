"""The model library: names, lineage, copies that survive the cache, removal that keeps runs, uploads refused."""

import io
import json
import zipfile

import pytest

from core.errors import SparseLabError
from core.library.store import ModelLibrary, default_library
from core.library.upload import add_upload
from core.model_source import resolve
from core.run_store import RunRecord, default_store


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "bert-tiny"
    resolve("bert-tiny").load_model().save_pretrained(folder)  # safetensors by default
    return folder


def _zip(files: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def _model_files(folder) -> dict[str, bytes]:
    return {f"my-model/{p.name}": p.read_bytes() for p in folder.iterdir()}


def test_builtins_are_listed_and_added_models_get_readable_unique_names(tmp_path, tiny_folder):
    library = ModelLibrary(tmp_path / "lib")
    assert {"minilm", "bert-tiny"} <= {m.name for m in library.entries()}
    first = library.add(tiny_folder, kind="pruned", base_name="bert-tiny magnitude 0.5", parent="bert-tiny")
    second = library.add(tiny_folder, kind="pruned", base_name="bert-tiny magnitude 0.5", parent="bert-tiny")
    assert first.name.startswith("bert-tiny magnitude 0.5 · ") and second.name == first.name + " #2"
    assert library.lineage(second.name) == [second.name, "bert-tiny"]
    again = library.add(tiny_folder, kind="pruned", base_name="x", origin="artifact:1")
    assert library.add(tiny_folder, kind="pruned", base_name="y", origin="artifact:1") == again  # one per origin
    assert first.size_bytes == sum(p.stat().st_size for p in tiny_folder.iterdir())


def test_a_library_model_resolves_by_name_and_runs_keep_it_after_removal(tiny_folder):
    library = default_library()
    model = library.add(tiny_folder, kind="pruned", base_name="bert-tiny pruned", parent="bert-tiny")
    source = resolve(model.name)
    assert source.name == model.name and source.kind == "local"
    assert resolve(f"lib:{model.id}").location == source.location
    assert source.load_model().config.hidden_size == 128
    run_id = default_store().add(RunRecord(kind="prune", model=model.name, accuracy=0.9))
    assert library.best_known(default_store(), [model.name])[model.name]["fidelity"] == 0.9
    library.remove(model.name)
    assert library.get(model.name) is None and not (library.models_dir / model.id).exists()
    assert default_store().query(ids=[run_id])[0].model == model.name  # the run still names it
    with pytest.raises(SparseLabError, match="built in"):
        library.remove("minilm")


def test_a_zipped_model_folder_joins_the_library(tiny_folder):
    model = add_upload(_zip(_model_files(tiny_folder)), "my-model.zip")
    assert model.kind == "uploaded" and model.name.startswith("my-model · ")
    assert model.details["model_type"] == "bert" and model.details["tokenizer"] is False
    assert resolve(model.name).load_model().config.num_hidden_layers == 2
    assert add_upload(_zip(_model_files(tiny_folder)), "my-model.zip") == model  # the same upload, once


@pytest.mark.parametrize("mutate, message", [
    (lambda files: {**files, "my-model/../../evil.txt": b"x"}, "leaves the model folder"),
    (lambda files: {**files, "/etc/cron.d/evil": b"x"}, "leaves the model folder"),
    (lambda files: {**files, "my-model/pytorch_model.bin": b"\x80\x04pickle"}, "pickle weights"),
    (lambda files: {**files, "my-model/inner.zip": b"PK"}, "archive inside the archive"),
    (lambda files: {k: v for k, v in files.items() if not k.endswith("config.json")}, "no config.json"),
    (lambda files: {**files, "my-model/config.json": json.dumps({"model_type": "no-such-arch"}).encode()},
     "does not know"),
    (lambda files: {**files, "my-model/config.json": b"{not json"}, "not valid JSON"),
    (lambda files: {**files, "my-model/config.json": json.dumps({"model_type": "bert",
                                                                 "auto_map": {"AutoModel": "x.Y"}}).encode()},
     "custom code"),
    (lambda files: {k: v for k, v in files.items() if not k.endswith(".safetensors")}, "no .safetensors"),
    (lambda files: {**files, "my-model/model.safetensors": b"garbage"}, "do not load"),
])
def test_hostile_or_broken_uploads_are_refused_and_leave_nothing(tiny_folder, mutate, message):
    with pytest.raises(SparseLabError, match=message):
        add_upload(_zip(mutate(_model_files(tiny_folder))), "bad.zip")
    assert [m for m in default_library().entries() if m.id] == []


def test_links_bombs_oversize_and_non_zips_are_refused(tiny_folder, monkeypatch):
    with pytest.raises(SparseLabError, match="symbolic link"):
        add_upload(_zip(_model_files(tiny_folder), links=("my-model/vocab.txt",)), "link.zip")
    bomb = _zip({**_model_files(tiny_folder), "my-model/tokenizer.json": b"\0" * (300 * 2**20)})
    assert len(bomb) < 20 * 2**20  # 16 MB of random weights, and 300 MB of zeros packed into 0.3 MB
    with pytest.raises(SparseLabError, match="MB, over this server's cap"):
        add_upload(bomb, "bomb.zip")
    monkeypatch.setenv("SPARSELAB_MAX_UPLOAD_BYTES", str(2**20))
    with pytest.raises(SparseLabError, match="at most 1 MB"):
        add_upload(b"x" * (2**20 + 1), "big.zip")
    monkeypatch.delenv("SPARSELAB_MAX_UPLOAD_BYTES")
    with pytest.raises(SparseLabError, match="not a zip file"):
        add_upload(b"GIF89a", "picture.zip")
    assert [m for m in default_library().entries() if m.id] == []


def test_a_zip_that_lies_about_its_sizes_is_stopped_while_unpacking(tiny_folder):
    data = bytearray(_zip({**_model_files(tiny_folder), "my-model/vocab.txt": b"a" * (8 * 2**20)}))
    # shrink the declared size of vocab.txt in both headers: the unpacking must not trust it
    needle = (8 * 2**20).to_bytes(4, "little")
    data = data.replace(needle, (1000).to_bytes(4, "little"))
    with pytest.raises(SparseLabError, match="zip bomb|damaged"):
        add_upload(bytes(data), "liar.zip")
    assert [m for m in default_library().entries() if m.id] == []
