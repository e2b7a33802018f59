"""Every transformers family end to end: prune (default selection), store int8 bit-exact, TVM allclose, What-if.

Families are the tiny config architectures (2 blocks, hidden 128, seeded random weights): BERT, DistilBERT and
RoBERTa encoders; GPT-2 (Conv1D projections), OPT and Llama (RMSNorm, rotary, SwiGLU, grouped-query attention)
decoders, which load with their LM head and compile as one full-sequence forward with a causal mask.
"""

import copy

import pytest

from core.errors import SparseLabError
from core.model_source import linear_layers, resolve
from core.pruning import PruneConfig, prune_model
from core.pruning.selection import select_linear_layers
from core.pruning.session import prune_and_measure
from core.run_store import RunStore
from core.storage.store import StoreConfig, store_model, verify_file
from core.tvm.benchmark import compare
from core.tvm.relax_import import InputShape, import_model
from core.whatif.estimate import estimate
from core.whatif.request import WhatIfRequest
from tests.fixtures_tvm import SEQ_LEN

pytestmark = pytest.mark.slow

ENCODERS = ("bert-tiny", "distilbert-tiny", "roberta-tiny")
DECODERS = ("gpt2-tiny", "opt-tiny", "llama-tiny")
FAMILIES = ENCODERS + DECODERS
# The Linear layers of one repeated block, by their name inside the block (2 blocks each).
BLOCK_LINEARS = {
    "bert-tiny": ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                  "intermediate.dense", "output.dense"),
    "distilbert-tiny": ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1",
                        "ffn.lin2"),
    "roberta-tiny": ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                     "intermediate.dense", "output.dense"),
    "gpt2-tiny": ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
    "opt-tiny": ("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj", "fc1", "fc2"),
    "llama-tiny": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                   "mlp.up_proj", "mlp.down_proj"),
}
BLOCKS_PATH = {"bert-tiny": "encoder.layer", "distilbert-tiny": "transformer.layer", "roberta-tiny": "encoder.layer",
               "gpt2-tiny": "transformer.h", "opt-tiny": "model.decoder.layers", "llama-tiny": "model.layers"}
HEADS = {"bert-tiny": {"pooler.dense"}, "distilbert-tiny": set(), "roberta-tiny": {"pooler.dense"},
         "gpt2-tiny": {"lm_head"}, "opt-tiny": {"lm_head"}, "llama-tiny": {"lm_head"}}


def task_of(family: str) -> str:
    return "causal-lm" if family in DECODERS else "base"


def block_linears(family: str) -> list[str]:
    return [f"{BLOCKS_PATH[family]}.{block}.{name}" for block in (0, 1) for name in BLOCK_LINEARS[family]]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return RunStore(tmp_path_factory.mktemp("architectures-store") / "runs.sqlite")


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, store):
    """Per family, once: the default pruning (magnitude 0.5) saved to a folder, and its summary."""
    done = {}

    def get(family: str) -> tuple[dict, str]:
        if family not in done:
            folder = tmp_path_factory.mktemp(f"pruned-{family}") / "model"
            summary = prune_and_measure(family, PruneConfig(method="magnitude", sparsity=0.5), task_of(family),
                                        save=str(folder), store=store)
            done[family] = summary, str(folder)
        return done[family]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_prune_default_selection_takes_exactly_the_block_linears(family, pruned):
    summary, folder = pruned(family)
    assert summary["selected_by"] == "structure" and summary["task"] == task_of(family)
    selected = [layer["name"] for layer in summary["layers"] if layer["selected"]]
    all_layers = {layer["name"] for layer in summary["layers"]}
    assert sorted(selected) == sorted(block_linears(family))
    assert HEADS[family] <= all_layers and not HEADS[family] & set(selected)
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-3)
    for name in HEADS[family]:
        assert summary["selection"][name] == "out: task head"
    first = block_linears(family)[0]
    assert summary["selection"][first] == f"in: block 0 of {BLOCKS_PATH[family]} (2 repeated blocks)"
    if family in DECODERS:
        fidelity = summary["fidelity"]
        assert 0.0 < fidelity["next_token_agreement"] <= 1.0 and fidelity["perplexity_ratio"] > 0
        assert "random" in fidelity["note"]  # the tiny families have no tokenizer
    elif family == "roberta-tiny":  # its own vocabulary, no tokenizer: pruned, not scored
        assert "fidelity" not in summary and "no tokenizer" in summary["fidelity_skipped"]
    else:  # BERT's uncased vocabulary: MiniLM's tokenizer
        assert {"mean_cosine", "retrieval_accuracy"} <= set(summary["fidelity"])
    back = resolve(folder).load_model(task_of(family))  # the saved folder reloads, pruned
    weight = linear_layers(back)[first].weight
    assert float((weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("family", FAMILIES)
def test_store_int8_reloads_bit_exact(family, pruned, tmp_path):
    _, folder = pruned(family)
    source = resolve(folder)
    config = StoreConfig(task=task_of(family))
    result = store_model(source, config, tmp_path / "model.h5", inputs_count=3)
    assert result.bit_exact and result.linear_sparsity > 0.3
    assert verify_file(tmp_path / "model.h5", source, inputs_count=3)["bit_exact"]


@pytest.mark.parametrize("family", FAMILIES)
def test_tvm_bsr_matches_pytorch(family, module_cache):
    dense = resolve(family).load_model(task_of(family))
    sparse = copy.deepcopy(dense)
    prune_model(sparse, PruneConfig(method="random", sparsity=0.9, block=(16, 1)))
    result = compare(dense, sparse, shape=InputShape(1, SEQ_LEN), threads=1, block=(16, 1), repeats=2, warmup=1,
                     name=family, cache=module_cache).as_dict()
    assert result["allclose"], (result["max_abs_error"], result["dense_max_abs_error"])
    bsr = sorted(layer["name"] for layer in result["layers"] if layer["kernel"] == "bsr")
    assert bsr == sorted(block_linears(family))
    graph = {layer["name"] for layer in result["layers"]}
    assert graph - set(bsr) == ({"lm_head"} if family in DECODERS else set())  # poolers: not in the graph


@pytest.mark.parametrize("family", FAMILIES)
def test_whatif_estimates_the_family(family, module_cache, store):
    # peers=(): the family's own kernels and rest are what this checks; peer lines have their tests in test_whatif_*
    result = estimate(WhatIfRequest(model=family, sparsities=(0.9,), blocks=((16, 1),), seq_len=SEQ_LEN, threads=1,
                                    peers=()), cache=module_cache, store=store)
    point = result.estimates[0]
    assert point.sparse_layers == len(block_linears(family)) and point.dense_layers == 0
    assert 0 < point.estimate_ms and result.dense_ms > 0 and point.estimate_ms == pytest.approx(
        point.linear_ms + point.rest_ms)


def test_default_selection_of_a_base_decoder_is_its_blocks():
    model = resolve("gpt2-tiny").load_model()  # GPT2Model: no LM head
    assert sorted(select_linear_layers(model)) == sorted(name.removeprefix("transformer.")
                                                         for name in block_linears("gpt2-tiny"))


def test_an_op_tvm_cannot_import_is_named_with_its_module(monkeypatch):
    import tvm.relax.frontend.torch.exported_program_translator as translator

    convert_map = translator.ExportedProgramImporter.create_convert_map

    def without_rsqrt(self):
        return {op: f for op, f in convert_map(self).items() if op != "rsqrt.default"}

    monkeypatch.setattr(translator.ExportedProgramImporter, "create_convert_map", without_rsqrt)
    with pytest.raises(SparseLabError, match=r"importer failed \(op 'rsqrt.default' in "
                                             r"layers\.0\.input_layernorm \(LlamaRMSNorm\)\)"):
        import_model(resolve("llama-tiny").load_model(), InputShape(1, 8))
