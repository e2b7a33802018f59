"""``recover_job``: prune with recovery by distillation, score before and after, save, add to the library.

The trained model is an artifact (kind ``recovered-model``) keyed on the source's fingerprint and the request
(``RecoveryRequest.key_params``); while it trains, its checkpoint lives in the cache's ``work`` folder under
the same key, so a cancelled or crashed run resumes where its last checkpoint left off. The artifact appears
in one rename of a finished folder (``ArtifactCache.get_or_build``), never half-written.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

from core.artifact_cache import ArtifactSpec, default_cache
from core.errors import SparseLabError
from core.jobs import NO_PROGRESS, Progress, stage
from core.pruning.save import SUMMARY_FILE, check_target, save_pruned

RECOVERED_KIND = "recovered-model"


def recovery_spec(request, source) -> ArtifactSpec:
    return ArtifactSpec(RECOVERED_KIND, {"source": source.fingerprint(), "request": request.key_params()},
                        libraries=("torch", "transformers"))


def checkpoint_path(spec: ArtifactSpec) -> Path:
    """Where a recovery's checkpoint lives while it trains: the artifact cache's ``work`` folder, by key."""
    return default_cache().root / "work" / f"recovery-{spec.key}" / "checkpoint.pt"


def _score(model, tokenizer, dense_outputs) -> dict:
    from core.fidelity import fidelity, model_outputs, pair_sentences, sentence_pairs

    return fidelity(dense_outputs, model_outputs(model, tokenizer, pair_sentences(sentence_pairs()))).as_dict()


def recover_job(params: dict, progress: Progress = NO_PROGRESS) -> dict:
    """Prune ``params['model']`` and recover it by distillation for ``minutes``; see ``RecoveryRequest``.

    ``save`` (optional) is a new folder the recovered model is copied to as well. Returns the recovered
    model's pruning summary with ``fidelity`` ({dense_vs_one_shot, dense_vs_recovered}: mean_cosine,
    min_cosine, retrieval_accuracy), ``recovery`` ({steps, minutes, final_loss, schedule, ...}), ``folder``
    (in the artifact cache), ``library_name``, ``run_id`` and ``cache_hit``.
    """
    from core.model_source import resolve
    from core.recovery.request import RecoveryRequest

    request = RecoveryRequest.from_params(params)
    target = check_target(params["save"]) if params.get("save") else None
    source = resolve(request.model)
    spec = recovery_spec(request, source)
    config = request.prune_config()
    summary: dict = {}
    progress(0.01, f"loading {request.model}")
    if source.is_decoder():
        raise SparseLabError("Recovery distils sentence embeddings: it takes encoders (MiniLM, BERT), not "
                             f"decoders like '{request.model}'.")
    teacher, tokenizer = _load_checked(source, config)  # every check that needs the model, before any write
    cache = default_cache()

    def build(folder: Path) -> None:
        summary.update(_train_and_save(request, source, spec, teacher, tokenizer, folder, progress))

    folder, hit = cache.get_or_build(
        spec, build, description=f"{source.name} recovered: {config.label} {config.target_sparsity:g}, "
                                 f"{request.minutes:g} min")
    if hit:
        summary = json.loads((folder / "model" / SUMMARY_FILE).read_text())
    else:
        shutil.rmtree(checkpoint_path(spec).parent, ignore_errors=True)  # the model is published: done with it
    from core.library.store import default_library

    fid = summary["fidelity"]["dense_vs_recovered"]
    entry = default_library().add(
        folder / "model", kind="recovered", parent=source.name, origin=f"artifact:{spec.key}",
        base_name=f"{source.name} {config.label} {config.target_sparsity:g} recovered",
        details={"method": config.method, "label": config.label, "sparsity": summary.get("sparsity"),
                 "mean_cosine": fid.get("mean_cosine"), "recovery": summary["recovery"]})
    result = {**summary, "folder": str(folder / "model"), "cache_hit": hit, "library_name": entry.name}
    if not hit:
        result["run_id"] = _record(request, source, config, summary)
    if target is not None:
        partial = target.parent / f".{target.name}.partial-{spec.key[:8]}"
        try:
            shutil.copytree(folder / "model", partial)
            partial.rename(target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        result["saved"] = str(target)
    progress(1.0, "done")
    return result


def _load_checked(source, config):
    """(dense model, tokenizer), refused if the model has no tokenizer or a layer the pruning cannot take."""
    from core.pruning.apply import plan

    teacher = source.load_model()
    tokenizer = source.find_tokenizer()
    if tokenizer is None:
        raise SparseLabError(f"Recovery distils sentence embeddings of text, and {source.no_tokenizer_reason()}")
    plan(teacher, config)
    return teacher, tokenizer


def _train_and_save(request, source, spec, teacher, tokenizer, folder: Path, progress: Progress) -> dict:
    import torch

    from core.fidelity import model_outputs, pair_sentences, sentence_pairs
    from core.pruning.apply import plan, prune_model
    from core.pruning.block import format_block
    from core.pruning.selection import selection_report
    from core.pruning.stats import layer_sparsities, overall_sparsity
    from core.recovery.distill import train

    torch.set_num_threads(request.threads)
    config = request.prune_config()
    layers = plan(teacher, config)
    progress(0.03, "scoring the dense model")
    dense = model_outputs(teacher, tokenizer, pair_sentences(sentence_pairs()))
    measuring = ": measuring each layer first (minutes)" if config.allocation == "sensitivity" else ""
    progress(0.05, f"one-shot {config.label} at {config.target_sparsity:g}{measuring}")
    one_shot = copy.deepcopy(teacher)
    calibration = None
    if request.one_shot and config.method != "mn":
        from core.pruning.calibration import calibration as corpus_calibration

        text = request.calibration_sentences()
        calibration = corpus_calibration(tokenizer, min(request.calibration, len(text)), seed=request.seed,
                                         sentences=text)
    started = time.perf_counter()
    prune_model(one_shot, config, tokenizer, calibration)
    one_shot_seconds = time.perf_counter() - started
    before = _score(one_shot, tokenizer, dense)
    student = one_shot if request.one_shot else copy.deepcopy(teacher)
    result = train(request, student, teacher, tokenizer, checkpoint_path(spec), stage(progress, 0.08, 0.95))
    progress(0.96, "scoring the recovered model")
    after = _score(student, tokenizer, dense)
    stats = layer_sparsities(student, config.block, layers)
    selection = selection_report(student, config.patterns, config.exclude)
    curve = result.losses[::max(1, len(result.losses) // 40)]
    recovery = {**result.summary(), "one_shot_seconds": round(one_shot_seconds, 2), "lr": request.lr,
                "batch": request.batch, "seq_len": request.seq_len, "loss_curve": curve}
    summary = {"model": source.name, "task": "base", "method": config.method, "label": config.label,
               "pattern": config.pattern, "target_sparsity": config.target_sparsity,
               "sparsity": overall_sparsity(l for l in stats if l.selected), "stats_block": format_block(config.block),
               "layers": [l.as_dict() for l in stats], "selected_by": selection.selected_by,
               "selection": selection.reasons, "fidelity": {"dense_vs_one_shot": before, "dense_vs_recovered": after},
               "recovery": recovery, "request": request.key_params() | {"texts": None if request.texts is None
                                                                         else f"{len(request.texts)} sentences"},
               "config": config.as_dict(), "recovered": True}
    save_pruned(student, tokenizer, folder / "model", summary)
    return summary


def _record(request, source, config, summary: dict) -> int:
    from core.run_store import RunRecord, default_store

    after = summary["fidelity"]["dense_vs_recovered"]
    metrics = {**after, "one_shot": summary["fidelity"]["dense_vs_one_shot"],
               "achieved_sparsity": summary["sparsity"], "label": config.label,
               **{k: v for k, v in summary["recovery"].items() if k != "loss_curve"}}
    return default_store().add(RunRecord(
        kind="recover", model=source.name, method=config.method, sparsity=config.target_sparsity,
        block=config.pattern, accuracy=after.get("retrieval_accuracy", after.get("mean_cosine")), metrics=metrics,
        settings={**config.as_dict(), **{k: v for k, v in request.key_params().items() if k != "texts"}}))
