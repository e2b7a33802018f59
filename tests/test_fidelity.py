import copy
import json
import re

import pytest
import torch

from core.fidelity import (
    PAIRS_PATH,
    Outputs,
    fidelity,
    model_outputs,
    pair_sentences,
    retrieval_accuracy,
    sentence_pairs,
)
from core.model_source import resolve
from core.pruning.apply import PruneConfig, prune_model

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
