"""One-shot pruning of the real MiniLM: magnitude vs Wanda vs SparseGPT, fidelity on the evaluation pairs.

Run from the repo root: ``.venv/bin/python benchmarks/pruning_fidelity.py`` (about ten minutes on two busy
cores). Prints one markdown table of mean cosine / min cosine / retrieval accuracy against the dense model
at 50% unstructured, 2:4, 16x4 blocks at 50% and 90% unstructured. ``--only 2:4,50%`` picks rows;
``--calibration`` and ``--damping`` change the data-aware methods' settings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.pruning.apply import DEFAULT_CALIBRATION, DEFAULT_DAMPING, PruneConfig  # noqa: E402
from core.pruning.session import PruneSession  # noqa: E402

SETTINGS = {  # row label -> (PruneConfig params per method family)
    "50%": {"sparsity": 0.5},
    "2:4": {"mn": "2:4", "structure": "mn"},
    "16x4 50%": {"block": "16x4", "structure": "block", "sparsity": 0.5},
    "90%": {"sparsity": 0.9},
}
METHODS = ("magnitude", "wanda", "sparsegpt")


def config_for(method: str, setting: dict, extra: dict) -> PruneConfig:
    """The classic methods spell structure as a method (mn, block); the data-aware ones take ``structure``."""
    params = dict(setting)
    structure = params.pop("structure", "unstructured")
    if method == "magnitude":
        params["method"] = {"mn": "mn", "block": "block"}.get(structure, "magnitude")
        if structure == "mn":
            params.pop("sparsity", None)
    else:
        params.update(method=method, structure=structure, **extra)
    return PruneConfig.from_params(params)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--only", default="", help="comma-separated rows: 50%%, 2:4, 16x4 50%%, 90%%")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION)
    parser.add_argument("--damping", type=float, default=DEFAULT_DAMPING)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = [r.strip() for r in args.only.split(",") if r.strip()] or list(SETTINGS)
    extra = {"calibration": args.calibration, "damping": args.damping}
    session = PruneSession.open(args.model)
    lines = ["| setting | method | sparsity | mean_cosine | min_cosine | retrieval_accuracy | prune s |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        for method in args.methods.split(","):
            config = config_for(method, SETTINGS[row], extra)
            start = time.perf_counter()
            result, scored, _ = session.prune(config)
            seconds = time.perf_counter() - start
            line = (f"| {row} | {method} | {result.sparsity:.3f} | {scored.mean_cosine:.3f} | "
                    f"{scored.min_cosine:.3f} | {scored.retrieval_accuracy:.3f} | {seconds:.0f} |")
            lines.append(line)
            print(line, file=sys.stderr, flush=True)
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
