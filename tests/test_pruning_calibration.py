"""The calibration corpus and batches: enough text, disjoint from the evaluation pairs, refusals."""

import re

import pytest
import torch

from core.errors import SparseLabError
from core.fidelity import pair_sentences, sentence_pairs
from core.model_source import resolve
from core.pruning.calibration import (
    CORPUS_PATH,
    WORDNET_PATH,
    as_calibration,
    calibration,
    calibration_batches,
    corpus_sentences,
    random_token_batches,
    shipped_text,
    transformer_blocks,
    wordnet_sentences,
)
from core.pruning.selection import select_linear_layers


@pytest.fixture(scope="module")
def tokenizer():
    return resolve("bert-tiny").load_tokenizer()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_corpus_is_large_unique_english_one_sentence_per_line():
    sentences = corpus_sentences()
    assert len(sentences) >= 2000
    assert len(set(sentences)) == len(sentences)
    assert all(s == s.strip() and s[0].isupper() and s[-1] in ".?!" for s in sentences)
    assert corpus_sentences(limit=5) == sentences[:5]
    assert len(CORPUS_PATH.read_text(encoding="utf-8").splitlines()) == len(sentences)
    assert (CORPUS_PATH.parent / "CORPUS.md").exists()


def test_wordnet_text_is_large_unique_sentences_with_its_licence_noted():
    sentences = wordnet_sentences()
    assert len(sentences) >= 9_000 and len(set(sentences)) == len(sentences)
    assert all(s == s.strip() and s[0].isupper() and s[-1] in ".?!" for s in sentences)
    assert len(WORDNET_PATH.read_text(encoding="utf-8").splitlines()) == len(sentences)
    notes = (WORDNET_PATH.parent / "CORPUS.md").read_text(encoding="utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in notes
    assert shipped_text("both") == corpus_sentences() + sentences
    with pytest.raises(SparseLabError, match="Unknown shipped text 'x'"):
        shipped_text("x")


@pytest.mark.parametrize("text", [corpus_sentences, wordnet_sentences])
def test_corpus_is_disjoint_from_the_evaluation_pairs_exactly_and_nearly(text):
    evaluation = pair_sentences(sentence_pairs())
    assert not set(evaluation) & set(text())
    normalised = {" ".join(sorted(_words(e))) for e in evaluation}
    eval_words = [_words(e) for e in evaluation]
    for sentence in text():
        words = _words(sentence)
        assert " ".join(sorted(words)) not in normalised, sentence
        nearest = max(len(words & e) / len(words | e) for e in eval_words)
        assert nearest < 0.5, sentence


def test_batches_are_seeded_padded_and_truncated(tokenizer):
    batches = calibration_batches(tokenizer, n_samples=20, seq_len=8, batch_size=8, seed=1)
    assert [b["input_ids"].shape[0] for b in batches] == [8, 8, 4]
    assert all(b["input_ids"].shape[1] <= 8 and b["attention_mask"].shape == b["input_ids"].shape for b in batches)
    again = calibration_batches(tokenizer, n_samples=20, seq_len=8, batch_size=8, seed=1)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, again))
    other = calibration_batches(tokenizer, n_samples=20, seq_len=8, batch_size=8, seed=2)
    assert not all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, other))
    described = calibration(tokenizer, n_samples=20, seq_len=64, batch_size=8)
    assert described.describe()["source"] == "corpus" and described.samples == 20
    assert described.tokens == sum(int(b["attention_mask"].sum()) for b in described.batches)


@pytest.mark.parametrize("kwargs, message", [
    ({"sentences": []}, "empty"),
    ({"sentences": ["   ", ""]}, "empty"),
    ({"sentences": ["One short line.", "Another."], "n_samples": 3}, "too short"),
    ({"n_samples": 0}, "at least one sample"),
    ({"seq_len": 1}, "too short"),
    ({"batch_size": 0}, "batch size"),
])
def test_bad_calibration_text_is_refused(tokenizer, kwargs, message):
    with pytest.raises(SparseLabError, match=message):
        calibration_batches(tokenizer, **{"n_samples": 2, "seq_len": 16, "batch_size": 4, "seed": 0, **kwargs})


def test_given_calibration_forms_and_random_ids(tokenizer):
    with pytest.raises(SparseLabError, match="empty"):
        as_calibration([], tokenizer)
    from_text = as_calibration(["The cat sat on the mat.", "It rained all day."], tokenizer)
    assert from_text.samples == 2 and from_text.source == "text"
    from_batches = as_calibration(list(from_text.batches))
    assert from_batches.samples == 2 and from_batches.source == "batches"
    ids = random_token_batches(100, n_samples=5, seq_len=4, batch_size=2, seed=3)
    assert ids.source == "random-token-ids" and [b["input_ids"].shape for b in ids.batches] == [(2, 4), (2, 4), (1, 4)]
    assert all(int(b["input_ids"].max()) < 100 for b in ids.batches)


def test_blocks_are_the_encoder_layers(tiny_model):
    layers = select_linear_layers(tiny_model)
    blocks = transformer_blocks(tiny_model, layers)
    assert [prefix for prefix, _, _ in blocks] == ["encoder.layer.0", "encoder.layer.1"]
    assert sum(len(inside) for _, _, inside in blocks) == len(layers) == 12
    with_pooler = select_linear_layers(tiny_model, ["encoder.", "pooler"])
    assert transformer_blocks(tiny_model, with_pooler)[-1][0:2] == ("", None)
