"""Recovery by distillation (core/recovery) on bert-tiny: schedule, masks held, loss, resume, cancel, refusals."""

import json
import math

import pytest

from core.errors import SparseLabError
from core.jobs import JobCancelled
from core.model_source import resolve
from core.pruning.apply import plan
from core.pruning.calibration import corpus_sentences
from core.recovery import distill
from core.recovery.distill import load_checkpoint, train
from core.recovery.request import RecoveryRequest
from core.recovery.schedule import PolynomialSchedule

TEXT = corpus_sentences(64)


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return resolve("bert-tiny").find_tokenizer()


def _request(**changes):
    params = {"model": "bert-tiny", "sparsity": 0.8, "steps": 12, "minutes": 5, "batch": 8, "seq_len": 24,
              "texts": TEXT, "lr": 1e-3, **changes}
    return RecoveryRequest.from_params(params)


def _layers(model, request):
    return plan(model, request.prune_config())


# ------------------------------------------------------------------------------------------------ schedule
def test_schedule_values_at_begin_end_and_midpoint():
    schedule = PolynomialSchedule(initial_sparsity=0.1, final_sparsity=0.9, begin_step=100, end_step=300,
                                  power=3, frequency=50)
    assert schedule.sparsity(0) == 0.1
    assert schedule.sparsity(100) == 0.1
    assert schedule.sparsity(300) == 0.9
    assert schedule.sparsity(1000) == 0.9
    assert schedule.sparsity(200) == pytest.approx(0.9 + (0.1 - 0.9) * 0.5 ** 3, abs=1e-12)  # 0.8
    assert [s for s in range(0, 400) if schedule.should_update(s)] == [100, 150, 200, 250, 300]
    assert PolynomialSchedule.from_config(schedule.get_config()) == schedule
    assert json.loads(json.dumps(schedule.get_config())) == schedule.get_config()


def test_learning_rate_warms_up_then_decays_to_its_floor_over_the_whole_run():
    request = RecoveryRequest.from_params({"model": "minilm", "sparsity": 0.8, "lr": 1e-3, "warmup": 0.1})
    assert distill.learning_rate(request, 0.0) == pytest.approx(1e-5)
    assert distill.learning_rate(request, 0.05) == pytest.approx(5e-4)
    assert distill.learning_rate(request, 0.1) == pytest.approx(1e-3)
    assert distill.learning_rate(request, 0.55) == pytest.approx(1e-3 * (distill.MIN_LR_SHARE + 1) / 2)
    assert distill.learning_rate(request, 1.0) == pytest.approx(1e-3 * distill.MIN_LR_SHARE)
    rates = [distill.learning_rate(request, k / 100) for k in range(10, 101)]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_run_fraction_follows_the_clock_or_the_step_cap_whichever_is_further():
    clock = RecoveryRequest.from_params({"model": "minilm", "sparsity": 0.8, "minutes": 10})
    assert distill.run_fraction(clock, 5000, 150.0) == pytest.approx(0.25)  # steps do not count without a cap
    assert distill.run_fraction(clock, 10, 900.0) == 1.0
    capped = RecoveryRequest.from_params({"model": "minilm", "sparsity": 0.8, "minutes": 10, "steps": 100})
    assert distill.run_fraction(capped, 40, 60.0) == pytest.approx(0.4)
    assert distill.run_fraction(capped, 10, 300.0) == pytest.approx(0.5)


def test_schedule_refuses_falling_or_bad_values():
    with pytest.raises(SparseLabError, match="must not fall"):
        PolynomialSchedule(0.5, 0.2)
    with pytest.raises(SparseLabError, match="outside"):
        PolynomialSchedule(0.0, 1.0)
    with pytest.raises(SparseLabError, match="begin_step"):
        PolynomialSchedule(0.0, 0.5, begin_step=10, end_step=5)


# ------------------------------------------------------------------------------------------------ requests
@pytest.mark.parametrize("changes, message", [
    ({"sparsity": 1.0}, "outside"),
    ({"sparsity": -0.1}, "outside"),
    ({"texts": []}, "empty"),
    ({"texts": ["one sentence", "two"]}, "too short"),
    ({"texts": ["  ", "..."] * 20}, "empty"),
    ({"minutes": 61}, "minutes"),
    ({"minutes": 0}, "minutes"),
    ({"block": "16x4", "mn": "2:4"}, "either"),
    ({"block": "axb"}, "Block shape"),
    ({"method": "nonsense"}, "Unknown pruning method"),
    ({"cosine_weight": 0, "hidden_weight": 0}, "not all zero"),
    ({"attention_weight": -1.0}, "non-negative"),
    ({"seq_len": 2}, "too short"),
    ({"lr": 0}, "Learning rate"),
    ({"colour": "red"}, "Unknown recovery option"),
    ({"corpus_name": "novels"}, "Unknown training text 'novels'"),
    ({"precision": "fp16"}, "Unknown recovery precision 'fp16'"),
])
def test_bad_requests_are_refused(changes, message):
    with pytest.raises(SparseLabError, match=message):
        _request(**changes)


def test_the_default_training_text_is_both_shipped_texts_and_calibration_stays_on_the_corpus():
    from core.pruning.calibration import wordnet_sentences
    from core.recovery.request import RecoveryRequest

    request = RecoveryRequest()
    assert request.sentences() == corpus_sentences() + wordnet_sentences()
    assert request.calibration_sentences() == corpus_sentences()
    assert RecoveryRequest(corpus_name="wordnet").sentences() == wordnet_sentences()
    assert request.key_params()["corpus_name"] == "both"  # a different text is a different trained model
    given = _request()
    assert given.sentences() == list(TEXT) == given.calibration_sentences()


def test_precision_auto_follows_the_cpu_and_keys_what_it_trains_with(monkeypatch):
    from core import environment
    from core.recovery.request import RecoveryRequest

    def cpu_with(*flags):
        monkeypatch.setattr(environment, "cpu_info", lambda: environment.CpuInfo("test", "", 6, 2, tuple(flags)))

    cpu_with("avx512f", "amx_bf16")
    assert RecoveryRequest().uses_bf16 and RecoveryRequest().key_params()["precision"] == "bf16"
    cpu_with("avx2", "fma")
    assert not RecoveryRequest().uses_bf16 and RecoveryRequest().key_params()["precision"] == "fp32"
    assert RecoveryRequest(precision="bf16").uses_bf16 and not RecoveryRequest(precision="fp32").uses_bf16
    # an fp32 run asked for by name and an auto run on a CPU without bf16 are the same trained model
    assert RecoveryRequest(precision="fp32").key_params() == RecoveryRequest().key_params()


def test_request_round_trips_and_maps_methods():
    request = _request(block="16x4")
    assert RecoveryRequest.from_params(request.as_params()) == request
    assert request.prune_config().method == "block" and request.prune_config().block == (16, 4)
    assert not request.one_shot
    assert _request(mn="2:4").prune_config().method == "mn" and _request(mn="2:4").one_shot
    assert _request(method="sparsegpt").one_shot
    assert "resume" not in request.key_params()


def test_bad_requests_write_nothing(sparselab_home):
    from core.recovery.jobs import recover_job

    for params in ({"model": "bert-tiny", "sparsity": 1.2}, {"model": "bert-tiny", "texts": []},
                   {"model": "bert-tiny", "sparsity": 0.8, "block": "7x3"},
                   {"model": "bert-tiny", "sparsity": 0.8, "texts": ["a b c"] * 5}):
        with pytest.raises(SparseLabError):
            recover_job({**params, "steps": 2})
    assert not sparselab_home.exists() or not any(p.is_file() for p in sparselab_home.rglob("*"))


def test_block_that_does_not_divide_names_the_layer():
    from core.recovery.jobs import recover_job

    with pytest.raises(SparseLabError, match="does not divide layer"):
        recover_job({"model": "bert-tiny", "sparsity": 0.5, "block": "7x3", "steps": 2})


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.slow  # trains
@pytest.mark.parametrize("block", [None, "16x4"])
def test_masks_hold_through_training(tiny_model, tiny_tokenizer, block):
    import copy

    request = _request(block=block, steps=16, frequency=2, end_fraction=0.5)
    teacher = copy.deepcopy(tiny_model)
    seen = []

    def check(fraction, message):  # after every step: masked weights exactly zero
        layers = _layers(tiny_model, request)
        seen.append(sum(int((m.weight == 0).sum()) for m in layers.values()))

    result = train(request, tiny_model, teacher, tiny_tokenizer, progress=check)
    assert result.steps == 16 and not result.forced_final
    layers = _layers(tiny_model, request)
    total = sum(m.weight.numel() for m in layers.values())
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    assert zeros / total == pytest.approx(0.8, abs=0.01)
    assert seen == sorted(seen)  # zeros only ever grow: a pruned weight never comes back
    assert seen[-1] == zeros and seen[-8] == zeros  # held through the fine-tuning after the schedule
    if block:
        for module in layers.values():
            blocks = module.weight.detach().reshape(module.weight.shape[0] // 16, 16, module.weight.shape[1] // 4, 4)
            zero_blocks = (blocks == 0).all(dim=3).all(dim=1)
            assert float(zero_blocks.float().mean()) == pytest.approx(0.8, abs=0.02)  # whole blocks are zero


def test_attention_kl_is_the_mean_kl_of_real_query_rows_over_real_keys():
    import torch

    teacher = torch.tensor([[[[0.5, 0.5, 0.0], [0.25, 0.75, 0.0], [0.3, 0.3, 0.4]]]])  # batch 1, head 1, 3 x 3
    student = torch.tensor([[[[0.25, 0.75, 0.0], [0.25, 0.75, 0.0], [0.9, 0.05, 0.05]]]])
    mask = torch.tensor([[1, 1, 0]])  # the third token is padding: its row and its key column do not count
    assert float(distill.attention_kl([teacher], [teacher], mask)) == 0.0
    first = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # row 2 matches: KL 0
    assert float(distill.attention_kl([student], [teacher], mask)) == pytest.approx(first / 2, rel=1e-6)
    # two layers average: a matching layer halves it
    assert float(distill.attention_kl([student, teacher], [teacher, teacher], mask)) == pytest.approx(first / 4,
                                                                                                       rel=1e-6)


def _train_2_4(model, tokenizer, steps: int, **changes):
    """Prune ``model`` to 2:4 and distil it from a copy of itself for ``steps`` steps: (request, its losses)."""
    import copy

    from core.pruning.apply import prune_model

    request = _request(mn="2:4", steps=steps, lr=2e-3, augment=0.0, texts=corpus_sentences(32), batch=16, **changes)
    teacher = copy.deepcopy(model)
    prune_model(model, request.prune_config())
    result = train(request, model, teacher, tokenizer)
    return request, [loss for _, loss in result.losses]


def _zero_share(model, request) -> float:
    layers = _layers(model, request)
    return sum(int((m.weight == 0).sum()) for m in layers.values()) / sum(m.weight.numel() for m in layers.values())


@pytest.mark.slow  # trains
def test_loss_decreases_on_a_tiny_corpus(tiny_model, tiny_tokenizer):
    _, losses = _train_2_4(tiny_model, tiny_tokenizer, 40)
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


@pytest.mark.slow  # trains
def test_a_clock_budgeted_schedule_is_refitted_to_the_pace_after_the_slow_first_steps(tiny_model, tiny_tokenizer,
                                                                                    monkeypatch):
    import copy

    clock = {"now": 0.0, "steps": 0}

    class FakeTime:  # the loop's clock: 1 s per step for the first three, then 0.25 s
        @staticmethod
        def monotonic():
            return clock["now"]

    texts = distill.batch_texts

    def timed_batch(*args):
        clock["now"] += 1.0 if clock["steps"] < distill.PROBE_STEPS else 0.25
        clock["steps"] += 1
        return texts(*args)

    monkeypatch.setattr(distill, "time", FakeTime)
    monkeypatch.setattr(distill, "batch_texts", timed_batch)
    request = _request(steps=None, minutes=10 / 60, end_fraction=0.7)  # 10 s: 3 + 28 steps
    result = train(request, tiny_model, copy.deepcopy(tiny_model), tiny_tokenizer)
    assert result.steps == 31 and not result.forced_final
    assert result.sparsity == pytest.approx(0.8, abs=0.01)
    # fitted from the probe alone, the pace of 1 s per step planned 9 steps and ended the schedule at step 6
    end = result.schedule["end_step"]
    assert 0.5 * result.steps <= end <= 0.7 * result.steps


@pytest.mark.slow  # trains
def test_bf16_autocast_trains_and_holds_masks(tiny_model, tiny_tokenizer):
    import torch

    request, losses = _train_2_4(tiny_model, tiny_tokenizer, 30, precision="bf16")
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert all(module.weight.dtype == torch.float32 for module in _layers(tiny_model, request).values())  # master
    assert _zero_share(tiny_model, request) == pytest.approx(0.5, abs=0.01)


def test_dropout_off_reaches_the_rates_attention_keeps_as_numbers(tiny_model):
    import torch

    tiny_model.train()
    attention = tiny_model.encoder.layer[0].attention.self
    assert attention.dropout_prob == pytest.approx(0.1)  # what transformers' SDPA attention reads while training
    distill.dropout_off(tiny_model)
    assert attention.dropout_prob == 0.0
    assert all(m.p == 0.0 for m in tiny_model.modules() if isinstance(m, torch.nn.Dropout))
    inputs = {"input_ids": torch.arange(2, 18).reshape(2, 8), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    with torch.no_grad(), distill.attention_backend(True):  # training mode, twice: the same answer
        first, second = tiny_model(**inputs)[0], tiny_model(**inputs)[0]
    assert torch.equal(first, second)


def test_float_mask_factors_zero_what_the_bool_masks_say(tiny_model):
    import torch

    layers = {"q": tiny_model.encoder.layer[0].attention.self.query}
    masks = {"q": torch.rand_like(layers["q"].weight) > 0.5}
    factors = distill.mask_factors(layers, masks)
    assert factors["q"].dtype == layers["q"].weight.dtype
    distill.apply_masks(layers, factors)
    assert torch.equal(layers["q"].weight != 0, masks["q"])


@pytest.mark.slow  # trains
def test_attention_distillation_trains_and_holds_masks(tiny_model, tiny_tokenizer):
    request, losses = _train_2_4(tiny_model, tiny_tokenizer, 20, attention_weight=1.0)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert _zero_share(tiny_model, request) == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow  # trains
def test_resume_continues_the_step_count(tiny_model, tiny_tokenizer, tmp_path, monkeypatch):
    import copy

    monkeypatch.setattr(distill, "CHECKPOINT_STEPS", 5)
    checkpoint = tmp_path / "work" / "checkpoint.pt"
    teacher = copy.deepcopy(tiny_model)
    request = _request(steps=20)

    def cancel_at_7(fraction, message):
        if message.startswith("step 7,"):
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        train(request, copy.deepcopy(tiny_model), teacher, tiny_tokenizer, checkpoint, cancel_at_7)
    state = load_checkpoint(checkpoint)
    assert state["step"] == 5 and set(state) >= {"student", "optimizer", "masks", "schedule", "seconds"}
    assert list(checkpoint.parent.iterdir()) == [checkpoint]  # no temp file left behind
    student = copy.deepcopy(tiny_model)
    result = train(request, student, teacher, tiny_tokenizer, checkpoint)
    assert result.resumed_from == 5 and result.steps == 20
    assert PolynomialSchedule.from_config(result.schedule) == PolynomialSchedule.from_config(state["schedule"])
    fresh = train(request.with_(resume=False), copy.deepcopy(tiny_model), teacher, tiny_tokenizer, checkpoint)
    assert fresh.resumed_from == 0 and fresh.steps == 20


# ------------------------------------------------------------------------------------------------ the job
@pytest.mark.slow  # trains
def test_cancel_leaves_a_loadable_checkpoint_and_no_partial_folder(sparselab_home, monkeypatch):
    from core.artifact_cache import default_cache
    from core.library.store import default_library
    from core.recovery.jobs import checkpoint_path, recover_job, recovery_spec

    monkeypatch.setattr(distill, "CHECKPOINT_STEPS", 4)
    params = {"model": "bert-tiny", "sparsity": 0.75, "block": "16x4", "steps": 10, "batch": 8, "seq_len": 24,
              "texts": TEXT}

    def cancel_at_6(fraction, message):
        if message.startswith("step 6,"):
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        recover_job(params, cancel_at_6)
    cache = default_cache()
    assert not any((cache.root / "objects").iterdir()) and not any((cache.root / "tmp").iterdir())
    assert [m for m in default_library().entries() if m.kind == "recovered"] == []
    request = RecoveryRequest.from_params(params)
    checkpoint = checkpoint_path(recovery_spec(request, resolve("bert-tiny")))
    state = load_checkpoint(checkpoint)
    assert state["step"] == 4
    assert [p.name for p in checkpoint.parent.iterdir()] == ["checkpoint.pt"]

    result = recover_job(params)  # resumes the checkpoint
    assert result["recovery"]["resumed_from"] == 4 and result["recovery"]["steps"] == 10
    assert set(result["recovery"]) >= {"steps", "minutes", "final_loss", "schedule"}
    assert set(result["fidelity"]) == {"dense_vs_one_shot", "dense_vs_recovered"}
    assert not checkpoint.parent.exists()  # published: the checkpoint is gone
    entry = default_library().get(result["library_name"])
    assert entry.kind == "recovered" and entry.parent == "bert-tiny"
    assert result["sparsity"] == pytest.approx(0.75, abs=0.01)
    again = recover_job(params)
    assert again["cache_hit"] and again["library_name"] == result["library_name"]


def test_recovered_folder_is_a_model_source(sparselab_home, tmp_path):
    from core.recovery.jobs import recover_job
    from core.run_store import default_store

    result = recover_job({"model": "bert-tiny", "sparsity": 0.5, "steps": 3, "batch": 8, "texts": TEXT,
                          "save": str(tmp_path / "saved")})
    source = resolve(result["saved"])
    model = source.load_model()
    layers = plan(model, RecoveryRequest.from_params({"sparsity": 0.5}).prune_config())
    total = sum(m.weight.numel() for m in layers.values())
    assert sum(int((m.weight == 0).sum()) for m in layers.values()) / total == pytest.approx(0.5, abs=0.01)
    assert json.loads((tmp_path / "saved" / "pruning.json").read_text())["model"] == "bert-tiny"
    runs = default_store().query(kind="recover")
    assert len(runs) == 1 and runs[0].metrics["steps"] == 3 and runs[0].accuracy is not None


@pytest.mark.slow
def test_prune_command_recovers(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "core", "prune", "--model", "bert-tiny", "--sparsity", "0.5",
                          "--recover", "--minutes", "0.1", "--save", str(tmp_path / "out"), "--json"],
                         capture_output=True, text=True, check=True, timeout=600)
    result = json.loads(out.stdout)
    assert set(result["recovery"]) >= {"steps", "minutes", "final_loss", "schedule"}
    assert (tmp_path / "out" / "pruning.json").is_file()
