"""Damaged and hostile model files are refused with a message, before anything large is read.

Each case starts from a valid file of bert-tiny (encoder pruned to 90% with
core.pruning's magnitude masks), rewrites one part of it with h5py, and checks
the refusal: a SparseLabError whose message names the tensor and the problem,
never a crash, a raw exception or a large allocation.
"""

import functools
import json
import re
import shutil
import time
import tracemalloc

import h5py
import numpy as np
import pytest
import torch

from core.errors import SparseLabError
from core.model_source import resolve
from core.pruning.magnitude import magnitude_masks
from core.storage import prunebert_format, sparselab_format
from core.storage.gap_coding import encode_positions
from core.storage.quantization import prepare_for_storage
from core.storage.store import StoreConfig, load_file, save_state, stored_state
from tests.test_cli import run_cli

SOURCE = "bert-tiny"
LAYER = "encoder.layer.0.attention.self.query"
WEIGHT = LAYER + "._packed_params.weight"
RAW_EXCEPTIONS = re.compile(r"\b(IndexError|KeyError|MemoryError|ValueError|TypeError|OSError|RuntimeError|"
                            r"AttributeError|OverflowError|UnicodeDecodeError|struct\.error)\b")


@functools.cache
def pruned_bert_tiny() -> torch.nn.Module:
    """bert-tiny with every encoder Linear 90% zero (per-layer magnitude pruning)."""
    model = resolve(SOURCE).load_model()
    layers = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and name.startswith("encoder.")]
    with torch.no_grad():
        for layer, keep in zip(layers, magnitude_masks([m.weight for m in layers], 0.9)):
            layer.weight.mul_(keep)
    return model


def write_model_file(path, fmt: str, per_channel: bool = False, embeddings: str = "none"):
    config = StoreConfig(format=fmt, per_channel=per_channel, embeddings=embeddings)
    quantized = prepare_for_storage(pruned_bert_tiny(), per_channel, embeddings)
    save_state(stored_state(quantized, config), config, path, SOURCE)
    return path


@functools.cache
def _valid_bytes(fmt: str, per_channel: bool = False, embeddings: str = "none") -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        return write_model_file(Path(folder) / "m.h5", fmt, per_channel, embeddings).read_bytes()


def valid_file(tmp_path, fmt: str, per_channel: bool = False, embeddings: str = "none"):
    path = tmp_path / f"{fmt}.h5"
    path.write_bytes(_valid_bytes(fmt, per_channel, embeddings))
    return path


def replace_dataset(path, name: str, data=None, **kwargs) -> None:
    with h5py.File(path, "r+") as h5:
        if data is None and "shape" not in kwargs:
            data = h5[name][()]
        del h5[name]
        h5.create_dataset(name, data=data, **kwargs)


def edit_dataset(path, name: str, change) -> None:
    """Rewrite dataset ``name`` with ``change(array)`` (same dtype unless ``change`` returns another)."""
    with h5py.File(path, "r+") as h5:
        array = h5[name][()]
    replace_dataset(path, name, change(array.copy()))


def set_attr(path, name: str, value) -> None:
    with h5py.File(path, "r+") as h5:
        h5.attrs[name] = value


def refusal(path, source=SOURCE) -> str:
    """The SparseLabError message for loading ``path``; fails on a clean load or any other exception."""
    with pytest.raises(SparseLabError) as caught:
        load_file(path, resolve(source))
    message = str(caught.value)
    assert not RAW_EXCEPTIONS.search(message), message
    return message


# --- valid files still load ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["prunebert", "sparselab"])
@pytest.mark.parametrize("per_channel, embeddings", [(False, "none"), (True, "fp16")])
def test_valid_files_load(tmp_path, fmt, per_channel, embeddings):
    path = valid_file(tmp_path, fmt, per_channel, embeddings)
    model, config, _ = load_file(path, resolve(SOURCE))
    expected = prepare_for_storage(pruned_bert_tiny(), per_channel, embeddings).state_dict()
    loaded = model.state_dict()
    weight, _ = loaded[LAYER + "._packed_params._packed_params"]
    assert torch.equal(weight.int_repr(), expected[LAYER + "._packed_params._packed_params"][0].int_repr())
    assert config.per_channel == per_channel and config.embeddings == embeddings


def test_prunebert_files_carry_a_format_version(tmp_path):
    with h5py.File(valid_file(tmp_path, "prunebert")) as h5:
        assert int(h5.attrs["version"]) == prunebert_format.VERSION == 1


# --- CSR arrays (PruneBERT layout) -----------------------------------------------------------------------------

def test_non_monotonic_indptr(tmp_path):
    path = valid_file(tmp_path, "prunebert")

    def swap(indptr):
        row = int(np.flatnonzero(np.diff(indptr) > 0)[3])  # a row that has values: swapping makes a decrease
        indptr[row], indptr[row + 1] = indptr[row + 1], indptr[row]
        return indptr

    edit_dataset(path, f"{WEIGHT}.int_repr.indptr", swap)
    message = refusal(path)
    assert LAYER in message and "indptr decreases" in message


def test_indices_out_of_range(tmp_path):
    path = valid_file(tmp_path, "prunebert")

    def out_of_range(indices):
        indices[-1] = 128
        return indices

    edit_dataset(path, f"{WEIGHT}.int_repr.indices", out_of_range)
    message = refusal(path)
    assert LAYER in message and "column index 128 is outside the weight's 128 columns" in message


@pytest.mark.parametrize("change, words", [
    (lambda indptr: indptr[:-1], "indptr has 128 entries; a 128x128 weight needs 129"),
    (lambda indptr: np.concatenate([indptr, indptr[-1:]]), "more than the 129"),
    (lambda indptr: indptr + 1, "indptr runs from 1"),
    (lambda indptr: np.where(np.arange(indptr.size) == 5, 10 ** 6, indptr), "indptr decreases"),
])
def test_indptr_bounds(tmp_path, change, words):
    path = valid_file(tmp_path, "prunebert")
    edit_dataset(path, f"{WEIGHT}.int_repr.indptr", change)
    message = refusal(path)
    assert LAYER in message and words in message


def test_csr_is_checked_without_a_model_too(tmp_path):
    """The format-level reader (no model to compare with) still checks the CSR arrays before using them."""
    path = valid_file(tmp_path, "prunebert")
    edit_dataset(path, f"{WEIGHT}.int_repr.indptr", lambda p: p[::-1].copy())
    with pytest.raises(SparseLabError, match="indptr runs from"):
        prunebert_format.load(path)


# --- sizes: a small file may not declare a huge tensor ---------------------------------------------------------

def _peak_while(call) -> tuple[str, int, float]:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(SparseLabError) as caught:
            call()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return str(caught.value), peak, time.perf_counter() - start


FOUR_GB = 4 * 2 ** 30


@pytest.mark.parametrize("fmt, name, dtype, elements, words", [
    ("prunebert", "encoder.layer.0.output.LayerNorm.weight", np.float32, FOUR_GB // 4, "has shape (1073741824,)"),
    ("prunebert", f"{WEIGHT}.int_repr.data", np.int8, FOUR_GB, "more than the 16,384"),
    ("prunebert", f"{WEIGHT}.int_repr.indices", np.uint16, FOUR_GB // 2, "more than the 16,384"),
    ("sparselab", "linear/values", np.int8, FOUR_GB, "(4294967296,) in the file"),
    ("sparselab", "linear/gaps", np.uint8, FOUR_GB, "(4294967296,) in the file"),
    ("sparselab", "tensors/encoder.layer.1.output.LayerNorm.bias", np.float32, FOUR_GB // 4, "(1073741824,)"),
])
def test_declared_4gb_tensor_is_refused_quickly_without_allocating(tmp_path, fmt, name, dtype, elements, words):
    path = valid_file(tmp_path, fmt)
    replace_dataset(path, name, shape=(elements,), dtype=dtype, chunks=(2 ** 20 // np.dtype(dtype).itemsize,),
                    compression="gzip", fillvalue=1)
    assert path.stat().st_size < 6 * 2 ** 20  # the file is small; the tensor it declares is 4 GB
    source = resolve(SOURCE)
    source.load_model()  # model building is not the reader's memory
    message, peak, seconds = _peak_while(lambda: load_file(path, source))
    assert words in message and name.split("/")[-1].split("._packed")[0] in message
    assert seconds < 2, seconds
    assert peak < 64 * 2 ** 20, f"{peak / 2 ** 20:.0f} MB allocated while refusing"


@pytest.mark.parametrize("fmt", ["prunebert", "sparselab"])
def test_million_by_million_shape(tmp_path, fmt):
    path = valid_file(tmp_path, fmt)
    if fmt == "prunebert":
        set_attr(path, f"{WEIGHT}.int_repr.shape", np.array([10 ** 6, 10 ** 6], np.int64))
    else:
        edit_dataset(path, "linear/shapes", lambda shapes: np.vstack([[10 ** 6, 10 ** 6], shapes[1:]]))
    message = refusal(path)
    assert f"'{LAYER}' is (1000000, 1000000) in the file but (128, 128) in the model" in message
    with pytest.raises(SparseLabError, match="1000000x1000000"):  # and without a model to compare with
        {"prunebert": prunebert_format, "sparselab": sparselab_format}[fmt].load(path)


# --- position streams (SparseLab layout) -----------------------------------------------------------------------

def _layer0_stream(path):
    with h5py.File(path) as h5:
        group = h5["linear"]
        names = [n.decode() for n in group["names"][()]]
        gap_bytes, gaps = group["gap_bytes"][()], group["gaps"][()]
        shape = tuple(group["shapes"][()][names.index(LAYER)])
    assert names[0] == LAYER
    return gap_bytes, gaps, shape


def test_gap_stream_past_row_end(tmp_path):
    path = valid_file(tmp_path, "sparselab")
    gap_bytes, gaps, (rows, cols) = _layer0_stream(path)
    from core.storage.gap_coding import decode_positions

    positions = decode_positions(gaps[: gap_bytes[0]])
    positions[-1] = rows * cols + 3  # the last nonzero lands three elements past the last row
    stream = encode_positions(positions)
    replace_dataset(path, "linear/gaps", np.concatenate([stream, gaps[gap_bytes[0]:]]), compression="gzip")
    replace_dataset(path, "linear/gap_bytes", np.concatenate([[stream.size], gap_bytes[1:]]).astype(np.int64))
    message = refusal(path)
    assert LAYER in message and "runs past the end of its rows" in message and f"is row {rows}" in message


def test_gap_stream_length_must_match_declared_count(tmp_path):
    path = valid_file(tmp_path, "sparselab")
    gap_bytes, gaps, _ = _layer0_stream(path)
    extra = np.concatenate([gaps[: gap_bytes[0]], [0], gaps[gap_bytes[0]:]]).astype(np.uint8)  # one more position
    replace_dataset(path, "linear/gaps", extra)
    replace_dataset(path, "linear/gap_bytes", np.concatenate([[gap_bytes[0] + 1], gap_bytes[1:]]).astype(np.int64))
    message = refusal(path)
    assert LAYER in message and f"position stream encodes {gap_bytes[0] + 1 - (gaps[:gap_bytes[0]] == 255).sum()}" \
        in message


def test_gap_stream_ending_mid_gap(tmp_path):
    path = valid_file(tmp_path, "sparselab")
    gap_bytes, gaps, _ = _layer0_stream(path)
    stream = np.concatenate([gaps[: gap_bytes[0] - 1], [255, 255], gaps[gap_bytes[0] - 1:]]).astype(np.uint8)
    stream[gap_bytes[0] + 1] = 255  # the old last byte becomes an escape: the stream ends inside a gap
    replace_dataset(path, "linear/gaps", np.concatenate([stream[: gap_bytes[0] + 1], gaps[gap_bytes[0]:]]))
    replace_dataset(path, "linear/gap_bytes", np.concatenate([[gap_bytes[0] + 1], gap_bytes[1:]]).astype(np.int64))
    message = refusal(path)
    assert LAYER in message and ("ends in the middle of a gap" in message or "encodes" in message)


@pytest.mark.parametrize("table, change, words", [
    ("nnz", lambda n: n + 10 ** 9, "declares 1000001"),
    ("nnz", lambda n: -n, "stored values"),
    ("gap_bytes", lambda n: n * 10 ** 6, "position stream of"),
    ("scale_counts", lambda n: n * 0 + 10 ** 7, "declares 10000000 scales"),
    ("bias_lengths", lambda n: n * 3, "bias of 384 values"),
])
def test_sparselab_tables_bound_the_streams(tmp_path, table, change, words):
    path = valid_file(tmp_path, "sparselab")
    edit_dataset(path, f"linear/{table}", change)
    message = refusal(path)
    assert LAYER in message and words in message


# --- dtypes, missing parts, versions, foreign layers -----------------------------------------------------------

@pytest.mark.parametrize("fmt, name, data, words", [
    ("prunebert", f"{WEIGHT}.int_repr.data", lambda a: a.astype(np.float32), "stored as float32 where int8"),
    ("prunebert", "encoder.layer.0.output.LayerNorm.bias", lambda a: a.astype("S8"), "stored as text"),
    ("sparselab", "linear/values", lambda a: a.astype(np.float64), "stored as float64 where int8"),
    ("sparselab", "linear/gaps", lambda a: a.astype(np.int32), "stored as int32 where uint8"),
])
def test_wrong_dtype(tmp_path, fmt, name, data, words):
    path = valid_file(tmp_path, fmt)
    edit_dataset(path, name, data)
    message = refusal(path)
    assert words in message and name.split("/")[-1].split("._packed")[0].split(".int_repr")[0] in message


@pytest.mark.parametrize("fmt, name, words", [
    ("prunebert", f"{WEIGHT}.int_repr.indices", f"lacks the dataset '{WEIGHT}.int_repr.indices'"),
    ("prunebert", "encoder.layer.1.output.LayerNorm.weight", "lacks 'encoder.layer.1.output.LayerNorm.weight'"),
    ("prunebert", f"{LAYER}._packed_params.bias", f"Layer '{LAYER}' has a bias in only one"),
    ("sparselab", "linear/gaps", "lacks the dataset 'gaps'"),
    ("sparselab", "tensors/encoder.layer.0.attention.output.LayerNorm.bias",
     "lacks 'encoder.layer.0.attention.output.LayerNorm.bias'"),
])
def test_missing_dataset(tmp_path, fmt, name, words):
    path = valid_file(tmp_path, fmt)
    with h5py.File(path, "r+") as h5:
        del h5[name]
    assert words in refusal(path)


def test_missing_group(tmp_path):
    path = valid_file(tmp_path, "sparselab")
    with h5py.File(path, "r+") as h5:
        del h5["linear"]
    assert "group 'linear' (the quantized layers) is missing" in refusal(path)


@pytest.mark.parametrize("fmt, reader", [("prunebert", "PruneBERT"), ("sparselab", "SparseLab")])
def test_newer_format_version(tmp_path, fmt, reader):
    path = valid_file(tmp_path, fmt)
    set_attr(path, "version", 2)
    message = refusal(path)
    assert f"{reader} format version 2" in message and f"reads {reader} format version 1" in message


def test_notebook_file_without_version_still_loads(tmp_path):
    path = valid_file(tmp_path, "prunebert")
    with h5py.File(path, "r+") as h5:
        del h5.attrs["version"]
    load_file(path, resolve(SOURCE))


def test_layer_the_model_lacks(tmp_path):
    path = valid_file(tmp_path, "prunebert")
    with h5py.File(path, "r+") as h5:
        for key in [k for k in h5.keys() if k.startswith(LAYER + ".")]:
            h5.move(key, key.replace("layer.0", "layer.7"))
        for key in [k for k in h5.attrs.keys() if k.startswith(LAYER + ".")]:
            h5.attrs[key.replace("layer.0", "layer.7")] = h5.attrs[key]
            del h5.attrs[key]
    assert "quantized layer 'encoder.layer.7.attention.self.query' that this model does not have" in refusal(path)


def test_sparselab_layer_the_model_lacks(tmp_path):
    path = valid_file(tmp_path, "sparselab")
    with h5py.File(path, "r+") as h5:
        names = h5["linear/names"][()]
        names[0] = b"encoder.layer.9.attention.self.query"
        del h5["linear/names"]
        h5["linear"].create_dataset("names", data=names.astype(object), dtype=h5py.string_dtype())
    assert "quantized layer 'encoder.layer.9.attention.self.query' that this model does not have" in refusal(path)


def test_tensor_the_model_lacks(tmp_path):
    path = valid_file(tmp_path, "sparselab")
    with h5py.File(path, "r+") as h5:
        h5["tensors"].create_dataset("encoder.layer.5.output.LayerNorm.weight", data=np.ones(128, np.float32))
    assert "tensor 'encoder.layer.5.output.LayerNorm.weight' that this model does not have" in refusal(path)


@pytest.mark.parametrize("attr, value, words", [
    ("sparselab_settings", "{not json", "not valid JSON"),
    ("sparselab_settings", json.dumps({"per_channel": "yes"}), "per_channel='yes'"),
    ("sparselab_settings", json.dumps({"turbo": True}), "settings this SparseLab does not know (turbo)"),
    ("metadata", json.dumps({LAYER: {"version": 1}}), f"gives '{LAYER}' version 1"),
    ("metadata", json.dumps([1, 2]), "should be a JSON object"),
    ("sparselab_format", np.array([1, 2, 3]), "should be one string"),
])
def test_damaged_attributes(tmp_path, attr, value, words):
    path = valid_file(tmp_path, "sparselab")
    set_attr(path, attr, value)
    assert words in refusal(path)


@pytest.mark.parametrize("fmt, attr, value, words", [
    ("prunebert", f"{WEIGHT}.scale", -1.0, "not a positive finite number"),
    ("prunebert", f"{WEIGHT}.zero_point", 300, "zero point outside int8's range"),
    ("prunebert", f"{WEIGHT}.int_repr.shape", np.arange(1000), "holds 1,000 values"),
    ("prunebert", f"{LAYER}.scale", np.inf, "output scale inf"),
])
def test_damaged_quantization_parameters(tmp_path, fmt, attr, value, words):
    path = valid_file(tmp_path, fmt)
    set_attr(path, attr, value)
    message = refusal(path)
    assert words in message and LAYER in message


def test_external_storage_is_not_followed(tmp_path):
    """A dataset may point at another file on disk; a model file must not make SparseLab read it."""
    path = valid_file(tmp_path, "prunebert")
    outside = tmp_path / "secret.bin"
    outside.write_bytes(np.ones(128, np.float32).tobytes())
    with h5py.File(path, "r+") as h5:
        del h5["encoder.layer.0.output.LayerNorm.weight"]
        h5.create_dataset("encoder.layer.0.output.LayerNorm.weight", shape=(128,), dtype=np.float32,
                          external=[(str(outside), 0, 512)])
    assert "outside the file" in refusal(path)


def test_not_a_file_and_copies(tmp_path):
    path = valid_file(tmp_path, "prunebert")
    shutil.copy(path, tmp_path / "copy.h5")
    (tmp_path / "copy.h5").write_bytes(path.read_bytes()[:5000])
    assert "truncated or corrupt" in refusal(tmp_path / "copy.h5")


# --- the CLI reports the refusal as JSON -----------------------------------------------------------------------

def test_cli_load_verify_reports_the_problem(tmp_path):
    path = valid_file(tmp_path, "prunebert")
    edit_dataset(path, f"{WEIGHT}.int_repr.indices", lambda i: i + 1000)
    code, stdout, stderr = run_cli("load", str(path), "--model", SOURCE, "--verify", "--json")
    assert code != 0
    error = json.loads(stdout)["error"]
    assert LAYER in error and "outside the weight's 128 columns" in error
    assert "Traceback" not in stderr
