import copy
import json
import re

import pytest
import torch

from core.errors import SparseLabError
from core.fidelity import (
    PAIRS_PATH,
    RANDOM_LENGTH,
    RANDOM_SEQUENCES,
    NextTokens,
    Outputs,
    TokenBatches,
    decoder_fidelity,
    decoder_inputs,
    fidelity,
    model_outputs,
    next_token_outputs,
    pair_sentences,
    retrieval_accuracy,
    sentence_pairs,
)
from core.model_source import resolve
from core.pruning.apply import PruneConfig, prune_model
from core.pruning.session import PruneSession, prune_and_measure
from core.run_store import RunStore

FEW_PAIRS = 6


def _words(sentence: str) -> set[str]:
    return set(re.findall(r"[a-z]+", sentence.lower()))


def test_sentence_pairs_are_many_varied_real_paraphrases():
    data = json.loads(PAIRS_PATH.read_text())
    assert len(data["pairs"]) >= 60 and len(sentence_pairs()) == len(data["pairs"])
    assert len({pair["topic"] for pair in data["pairs"]}) >= 8
    sentences = pair_sentences(sentence_pairs())
    assert len(set(sentences)) == len(sentences)
    for a, b in sentence_pairs():  # reworded, not copied: at most 60% shared words
        assert len(_words(a) & _words(b)) / len(_words(a) | _words(b)) < 0.6, (a, b)


def _on_circle(degrees: list[float]) -> torch.Tensor:
    radians = torch.tensor(degrees) * torch.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=1)


def test_retrieval_accuracy_counts_partner_neighbours():
    # sentences i and i + 3 are partners
    assert retrieval_accuracy(_on_circle([0, 90, 180, 5, 95, 185])) == 1.0
    # sentence 3 moves to 88 degrees: its nearest is 1 (at 90), and 1's nearest becomes 3; 0 still finds 3
    assert retrieval_accuracy(_on_circle([0, 90, 180, 88, 95, 185])) == pytest.approx(4 / 6)


def test_top1_agreement_compares_argmax_classes():
    embeddings = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    dense = Outputs(embeddings, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    pruned = Outputs(embeddings, torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    assert fidelity(dense, pruned).top1_agreement == 0.75
    assert "top1_agreement" not in fidelity(Outputs(embeddings, None), Outputs(embeddings, None)).as_dict()


@pytest.fixture(scope="module")
def minilm():
    source = resolve("minilm")
    return source.load_model(), source.load_tokenizer()


def test_embeddings_are_unit_length_and_ignore_padding(minilm):
    model, tokenizer = minilm
    short, long = "Cats sleep a lot.", "A much longer sentence that forces the short one to be padded in the batch."
    together = model_outputs(model, tokenizer, [short, long]).embeddings
    alone = model_outputs(model, tokenizer, [short]).embeddings
    assert torch.allclose(together.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(together[0], alone[0], atol=1e-5)


@pytest.mark.slow  # prunes and scores the real MiniLM
def test_minilm_fidelity_falls_with_sparsity(minilm):
    model, tokenizer = minilm
    sentences = pair_sentences(sentence_pairs()[:FEW_PAIRS])
    dense = model_outputs(model, tokenizer, sentences)
    same = fidelity(dense, dense)
    assert same.retrieval_accuracy == 1.0 and same.mean_cosine == pytest.approx(1.0, abs=1e-5)
    scores = []
    for sparsity in (0.3, 0.9):
        pruned = copy.deepcopy(model)
        prune_model(pruned, PruneConfig(method="magnitude", sparsity=sparsity))
        scores.append(fidelity(dense, model_outputs(pruned, tokenizer, sentences)))
    light, heavy = scores
    assert 0.9 < light.mean_cosine < 0.9999 and heavy.mean_cosine < 0.7
    assert heavy.min_cosine <= heavy.mean_cosine < light.mean_cosine


def test_classification_head_gets_top1_agreement():
    source = resolve("bert-tiny")
    model, tokenizer = source.load_model("sequence-classification"), source.load_tokenizer()
    sentences = pair_sentences(sentence_pairs()[:FEW_PAIRS])
    dense = model_outputs(model, tokenizer, sentences)
    assert dense.logits.shape == (2 * FEW_PAIRS, 2)
    assert fidelity(dense, dense).top1_agreement == 1.0
    # bert-tiny's random encoder gives every sentence the same class; seed 0's random head picks the other one
    prune_model(model, PruneConfig(method="random", sparsity=0.5, block=(1, 1), patterns=("classifier",)))
    assert fidelity(dense, model_outputs(model, tokenizer, sentences)).top1_agreement == 0.0


def test_decoder_fidelity_counts_agreeing_positions_and_compares_perplexity():
    import math

    inputs = TokenBatches(batches=(), source="sentence pairs")
    dense = NextTokens(top1=torch.tensor([1, 2, 3, 4]), nll=torch.tensor([1.0, 1.0, 1.0]))
    pruned = NextTokens(top1=torch.tensor([1, 2, 0, 4]), nll=torch.tensor([2.0, 2.0, 2.0]))
    scored = decoder_fidelity(dense, pruned, inputs)
    assert scored.next_token_agreement == 0.75 and scored.tokens == 4
    assert scored.perplexity_ratio == pytest.approx(math.e) and scored.dense_perplexity == pytest.approx(math.e)
    assert "note" not in scored.as_dict() and scored.as_dict()["source"] == "sentence pairs"


def test_decoder_without_tokenizer_is_scored_on_seeded_random_ids():
    a, b = decoder_inputs(None, vocab_size=1000), decoder_inputs(None, vocab_size=1000)
    assert a.source == "random token ids" and "no tokenizer" in a.note and "random" in a.note
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a.batches, b.batches))
    assert a.tokens == RANDOM_SEQUENCES * RANDOM_LENGTH


def test_decoder_inputs_from_text_are_right_padded_with_a_mask():
    tokenizer = resolve("minilm").load_tokenizer()
    inputs = decoder_inputs(tokenizer, tokenizer.vocab_size, ["A cat.", "A much longer sentence about sparse models."])
    (ids, mask), = inputs.batches
    assert inputs.source == "sentence pairs" and not inputs.note
    assert mask[0].tolist() == sorted(mask[0].tolist(), reverse=True) and mask[0].sum() < mask[1].sum() == ids.shape[1]


def test_pruned_decoder_drifts_from_dense_on_next_tokens():
    model = resolve("gpt2-tiny").load_model("causal-lm")
    inputs = decoder_inputs(None, model.config.vocab_size)
    dense = next_token_outputs(model, inputs)
    same = decoder_fidelity(dense, next_token_outputs(model, inputs), inputs)
    assert same.next_token_agreement == 1.0 and same.perplexity_ratio == pytest.approx(1.0)
    prune_model(model, PruneConfig(method="magnitude", sparsity=0.9))
    heavy = decoder_fidelity(dense, next_token_outputs(model, inputs), inputs)
    assert heavy.next_token_agreement < 1.0 and heavy.perplexity_ratio != pytest.approx(1.0)


@pytest.mark.slow  # prunes decoders end to end
def test_prune_summary_has_decoder_fidelity_and_selected_by(tmp_path):
    summary = prune_and_measure("llama-tiny", PruneConfig(method="magnitude", sparsity=0.5),
                                store=RunStore(tmp_path / "runs.sqlite"))
    assert summary["task"] == "causal-lm" and summary["selected_by"] == "structure"  # base -> the LM head
    assert {"next_token_agreement", "perplexity_ratio", "note"} <= set(summary["fidelity"])
    assert summary["selection"]["lm_head"] == "out: task head"
    by_pattern = prune_and_measure("llama-tiny", PruneConfig(method="magnitude", sparsity=0.5, patterns=("mlp",)),
                                   store=RunStore(tmp_path / "runs.sqlite"))
    assert by_pattern["selected_by"] == "pattern"


def test_an_encoder_without_tokenizer_is_pruned_and_says_why_fidelity_is_skipped(tmp_path):
    resolve("bert-tiny").load_model().save_pretrained(tmp_path / "bare")  # weights and config, no tokenizer
    store = RunStore(tmp_path / "runs.sqlite")
    summary = prune_and_measure(str(tmp_path / "bare"), PruneConfig(method="magnitude", sparsity=0.5),
                                save=str(tmp_path / "pruned"), store=store)
    assert "fidelity" not in summary and summary["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert "has no tokenizer files" in summary["fidelity_skipped"] and "skipped" in summary["fidelity_skipped"]
    assert store.query(kind="prune")[0].metrics["fidelity_skipped"] == summary["fidelity_skipped"]
    assert resolve(str(tmp_path / "pruned")).load_model() is not None  # saved without a tokenizer
    with pytest.raises(SparseLabError, match="Cannot measure fidelity: .*has no tokenizer files"):
        PruneSession.open(str(tmp_path / "bare"))  # a sweep needs fidelity: refused up front
