import h5py
import numpy as np
import pytest
import torch

from core.errors import SparseLabError
from core.model_source import resolve
from core.storage import prunebert_format, sparselab_format
from core.storage.quantization import prepare_for_storage
from core.storage.quantized_state import QuantizedLinear, QuantizedState, QuantizedWeight, load_into
from core.storage.store import StoreConfig, file_settings, load_file, store_model, stored_state, verify_file
from core.storage.verify import outputs_equal, random_inputs

FORMATS = [prunebert_format, sparselab_format]


@pytest.fixture(scope="module")
def pruned_tiny(tmp_path_factory):
    """bert-tiny with its encoder Linear weights 90% zero, saved as a local model folder."""
    model = resolve("bert-tiny").load_model()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.startswith("encoder."):
                w = module.weight
                w[w.abs() < w.abs().flatten().kthvalue(int(w.numel() * 0.9)).values] = 0
    folder = tmp_path_factory.mktemp("models") / "tiny-pruned"
    model.save_pretrained(folder)
    return resolve(str(folder))


@pytest.mark.parametrize("fmt, per_channel, embeddings", [
    pytest.param(fmt, per_channel, embeddings,
                 marks=() if (fmt, per_channel, embeddings) == ("sparselab", False, "none") else pytest.mark.slow)
    for fmt in [f.NAME for f in FORMATS] for per_channel in (False, True) for embeddings in ("none", "fp32", "fp16")])
def test_store_and_reload_bit_exact(pruned_tiny, tmp_path, fmt, per_channel, embeddings):
    out = tmp_path / "m.h5"
    result = store_model(pruned_tiny, StoreConfig(format=fmt, per_channel=per_channel, embeddings=embeddings), out)
    assert result.bit_exact
    assert 0.85 < result.linear_sparsity < 0.95
    assert result.size_bytes == out.stat().st_size < result.dense_size_bytes
    assert file_settings(out)[1].embeddings == embeddings
    assert verify_file(out, pruned_tiny, inputs_count=5)["bit_exact"]


def test_reloaded_model_differs_when_a_weight_changes(pruned_tiny, tmp_path):
    """The equality check can fail: flip one stored int8 value and the outputs differ."""
    quantized = prepare_for_storage(pruned_tiny.load_model(), False, "none")
    state = stored_state(quantized, StoreConfig())
    layer = state.linears["encoder.layer.0.attention.self.query"]
    layer.weight.int_repr[0, 0] = 127 if layer.weight.int_repr[0, 0] != 127 else -127
    sparselab_format.save(state, tmp_path / "x.h5")
    changed = load_into(prepare_for_storage(pruned_tiny.load_model(), False, "none"),
                        sparselab_format.load(tmp_path / "x.h5"))
    assert not outputs_equal(quantized, changed, random_inputs(1000, 64, count=3))


def test_sparselab_smaller_than_prunebert(pruned_tiny, tmp_path):
    sizes = {f: store_model(pruned_tiny, StoreConfig(format=f), tmp_path / f"{f}.h5").size_bytes
             for f in ("prunebert", "sparselab")}
    assert sizes["sparselab"] < 0.8 * sizes["prunebert"]


def _state_with_width(width: int) -> QuantizedState:
    int_repr = np.zeros((2, width), np.int8)
    int_repr[0, [1, width - 1]] = [5, -7]
    int_repr[1, width // 2] = 3
    weight = QuantizedWeight(int_repr, np.array([0.01]), np.array([0]), None)
    return QuantizedState(linears={"wide": QuantizedLinear(weight, np.ones(2, np.float32), 1.0, 0)})


@pytest.mark.parametrize("width, dtype", [(1000, np.uint16), (65535, np.uint16), (70000, np.int32)])
def test_prunebert_index_width_choice(tmp_path, width, dtype):
    path = tmp_path / "wide.h5"
    prunebert_format.save(_state_with_width(width), path)
    with h5py.File(path) as h5:
        assert h5["wide._packed_params.weight.int_repr.indices"].dtype == dtype
    back = prunebert_format.load(path)
    expected = _state_with_width(width).linears["wide"].weight.int_repr
    assert np.array_equal(back.linears["wide"].weight.int_repr, expected)


def test_sparselab_wide_rows(tmp_path):
    path = tmp_path / "wide.h5"
    sparselab_format.save(_state_with_width(70000), path)
    assert np.array_equal(sparselab_format.load(path).linears["wide"].weight.int_repr,
                          _state_with_width(70000).linears["wide"].weight.int_repr)


def test_not_hdf5_is_refused(pruned_tiny, tmp_path):
    bogus = tmp_path / "model.h5"
    bogus.write_bytes(b"this is a text file, not a model")
    with pytest.raises(SparseLabError, match="not an HDF5 file"):
        load_file(bogus, pruned_tiny)


def test_truncated_file_is_refused(pruned_tiny, tmp_path):
    out = tmp_path / "m.h5"
    store_model(pruned_tiny, StoreConfig(), out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    with pytest.raises(SparseLabError):
        load_file(out, pruned_tiny)


def test_foreign_hdf5_is_refused(pruned_tiny, tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5.create_dataset("temperature", data=np.arange(10))
    with pytest.raises(SparseLabError, match="not a SparseLab or PruneBERT model file"):
        load_file(foreign, pruned_tiny)


def test_shape_mismatch_is_named(pruned_tiny, tmp_path):
    out = tmp_path / "tiny.h5"
    store_model(pruned_tiny, StoreConfig(), out)
    with pytest.raises(SparseLabError, match="encoder.layer.0"):
        load_file(out, resolve("minilm"))


def test_interrupted_save_keeps_the_earlier_file(pruned_tiny, tmp_path, monkeypatch):
    out = tmp_path / "m.h5"
    store_model(pruned_tiny, StoreConfig(), out)
    before = out.read_bytes()

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sparselab_format, "encode_positions", explode)
    with pytest.raises(KeyboardInterrupt):
        store_model(pruned_tiny, StoreConfig(), out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]


def test_bad_settings_are_refused(pruned_tiny, tmp_path):
    with pytest.raises(SparseLabError):
        store_model(pruned_tiny, StoreConfig(format="zip"), tmp_path / "x.h5")
    with pytest.raises(SparseLabError):
        store_model(pruned_tiny, StoreConfig(embeddings="int4"), tmp_path / "x.h5")
    with pytest.raises(SparseLabError, match="does not exist"):
        store_model(pruned_tiny, StoreConfig(), tmp_path / "missing" / "x.h5")
    assert not (tmp_path / "x.h5").exists()
