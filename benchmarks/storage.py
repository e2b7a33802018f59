"""Storage benchmark: PruneBERT's method vs the SparseLab format, side by side in one run.

BERT-base (config, seeded random weights) with a QA head, encoder Linear layers pruned
to 94% by magnitude, stored without embeddings (encoder + head, as the notebook did);
then the bundled MiniLM-L6 at 90%, with fidelity. Run: .venv/bin/python benchmarks/storage.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core  # noqa: E402,F401
from core.fidelity import fidelity, model_outputs, pair_sentences, sentence_pairs  # noqa: E402
from core.model_source import resolve  # noqa: E402
from core.pruning.apply import PruneConfig, prune_model  # noqa: E402
from core.pruning.save import save_pruned  # noqa: E402
from core.storage.store import StoreConfig, load_file, store_model  # noqa: E402

PRUNEBERT_REFERENCE_MB = 12.6


def pruned_folder(model_name: str, task: str, sparsity: float, folder: Path):
    source = resolve(model_name)
    model = source.load_model(task)
    config = PruneConfig(method="magnitude", sparsity=sparsity)
    prune_model(model, config)
    save_pruned(model, source.load_tokenizer(), folder, {"model": source.name, "config": config.as_dict()})
    return resolve(str(folder))


def compare_formats(source, config: StoreConfig, folder: Path, load_repeats: int = 7) -> dict:
    """Store in both formats, then time loads alternately so machine noise hits both alike."""
    formats = ("prunebert", "sparselab")
    results = {fmt: store_model(source, replace(config, format=fmt), folder / f"{fmt}.h5") for fmt in formats}
    loads = {fmt: [] for fmt in formats}
    for _ in range(load_repeats):
        for fmt in formats:
            loads[fmt].append(load_file(folder / f"{fmt}.h5", source)[2])
    return {fmt: {"size_mb": r.size_bytes / 1e6, "dense_mb": r.dense_size_bytes / 1e6, "bit_exact": r.bit_exact,
                  "load_ms": statistics.median(loads[fmt]) * 1e3} for fmt, r in results.items()}


def print_rows(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"{'format':<10} {'size MB':>9} {'dense fp32 MB':>14} {'bit-exact':>10} {'load ms (median)':>17}")
    for fmt, row in rows.items():
        print(f"{fmt:<10} {row['size_mb']:>9.2f} {row['dense_mb']:>14.2f} {str(row['bit_exact']):>10} "
              f"{row['load_ms']:>17.0f}")
    ratio = rows["sparselab"]["size_mb"] / rows["prunebert"]["size_mb"]
    speed = rows["sparselab"]["load_ms"] / rows["prunebert"]["load_ms"]
    print(f"sparselab / prunebert: size {ratio:.3f}x, load time {speed:.2f}x")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bert = pruned_folder("bert-base", "question-answering", 0.94, tmp / "bert-base-94")
        rows = compare_formats(bert, StoreConfig(task="question-answering"), tmp)
        print_rows("BERT-base QA, encoder 94% magnitude, encoder + head (no embeddings), per-tensor int8", rows)
        off = rows["prunebert"]["size_mb"] / PRUNEBERT_REFERENCE_MB - 1
        print(f"prunebert vs the {PRUNEBERT_REFERENCE_MB} MB reference: {off:+.1%} (goal within 5%); "
              f"sparselab goal <= 0.75x prunebert")

        minilm = pruned_folder("minilm", "base", 0.90, tmp / "minilm-90")
        sentences = pair_sentences(sentence_pairs())
        tokenizer = minilm.load_tokenizer()
        dense = model_outputs(resolve("minilm").load_model(), tokenizer, sentences)
        pruned = model_outputs(minilm.load_model(), tokenizer, sentences)
        for per_channel in (False, True):
            config = StoreConfig(per_channel=per_channel)
            rows = compare_formats(minilm, config, tmp)
            scales = "per-channel" if per_channel else "per-tensor"
            print_rows(f"MiniLM-L6, encoder 90% magnitude, no embeddings, {scales} int8",
                       rows)
            quantized, _, _ = load_file(tmp / "sparselab.h5", minilm)
            int8 = model_outputs(quantized, tokenizer, sentences)
            for label, reference in (("dense fp32", dense), ("pruned fp32", pruned)):
                score = fidelity(reference, int8)
                print(f"fidelity of int8 vs {label}: mean cosine {score.mean_cosine:.4f}, min cosine "
                      f"{score.min_cosine:.4f}, retrieval accuracy {score.retrieval_accuracy:.3f}")


if __name__ == "__main__":
    main()
