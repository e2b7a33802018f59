"""Issue 12: does an int8 build keep a classification head's answers? BERT-base, top-1 against fp32.

    .venv/bin/python benchmarks/int8_top1.py [--model bert-base] [--labels 3] [--batches 4] [--json OUT]

The model is the ``bert-base`` config with a sequence-classification head (seeded random weights:
no trained BERT-base classifier can be downloaded here). Three builds of it, each checked on
``--batches`` x 16 inputs of 128 tokens (seeded random ids, the last quarter padding), against
PyTorch fp32 with the same weights:
- TVM int8 dense;
- TVM int8 BSR 16x4 and 1x4, with what-if weights at 90% in the encoder (the head stays dense; the
  fp32 reference has the same sparse weights).
For context, the int8 engines a user would pick instead run the same model (with the same sparse weights for
the sparse rows) on the same inputs: ONNX Runtime dynamic int8 and OpenVINO NNCF int8 (``--peers``; "none"
skips them). They run in this process, as no time is taken.
Printed per build: top-1 agreement, the fp32 margin between the top two classes of every input whose
answer changed (a flip on a near tie is what int8 noise can do), and the logits' cosine.
No timing: this only reads answers.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUILDS = (("TVM int8 dense", None), ("TVM int8 BSR 16x4 @90%", (16, 4)), ("TVM int8 BSR 1x4 @90%", (1, 4)))
BATCH = 16


def agreement(build: str, runner, batches: list, expected: list, layers_int8) -> dict:
    """Top-1 agreement of ``runner`` (``run(inputs) -> logits``) with the fp32 ``expected`` logits."""
    from core.tvm.benchmark import cosine_rows

    same_total, total, cosines, flips = 0, 0, [], []
    for inputs, reference in zip(batches, expected):
        actual = np.asarray(runner.run({k: v.numpy() for k, v in inputs.items()}))
        same = actual.argmax(1) == reference.argmax(1)
        same_total, total = same_total + int(same.sum()), total + len(same)
        cosines.append(cosine_rows(actual, reference))
        top2 = np.sort(reference, axis=1)[:, -2:]
        flips += [float(m) for m in (top2[:, 1] - top2[:, 0])[~same]]
    return {"build": build, "agreement": same_total / total, "same": same_total, "inputs": total,
            "flip_margins": flips, "cosine": float(np.mean(cosines)), "layers_int8": layers_int8}


def main() -> None:
    import torch

    from core.artifact_cache import default_cache
    from core.model_source import resolve
    from core.peers import engines as registry
    from core.peers.model_ref import model_ref
    from core.pruning.apply import PruneConfig, prune_model
    from core.tvm.bsr_rewrite import RewriteOptions
    from core.tvm.compile import CompileOptions, compile_model
    from core.tvm.relax_import import InputShape, example_inputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--labels", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--peers", default="onnxruntime-int8,openvino-int8",
                        help="int8 peer engines to check beside each TVM build (comma list, or none)")
    args = parser.parse_args()
    peers = [] if args.peers.strip().lower() == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]

    torch.set_num_threads(args.threads)
    source = resolve(args.model)
    shape = InputShape(BATCH, args.seq_len)
    cache = default_cache()
    rows = []
    for label, block in BUILDS:
        model = source.load_model("sequence-classification")
        if model.config.num_labels != args.labels:  # a new head of the asked size, seeded
            torch.manual_seed(0)
            model.config.num_labels = args.labels
            model.classifier = torch.nn.Linear(model.config.hidden_size, args.labels)
        if block:
            prune_model(model, PruneConfig(method="random", sparsity=0.9, block=block))  # the encoder's Linears
        compiled = compile_model(model, CompileOptions(shape, args.threads, RewriteOptions(block, precision="int8")),
                                 name=f"{args.model}-classifier")
        batches = [example_inputs(shape, model.config.vocab_size, seed=100 + seed) for seed in range(args.batches)]
        with torch.no_grad():
            expected = [model(**inputs).logits.numpy() for inputs in batches]
        runners = [(label, compiled.runner(), sum(layer.precision == "int8" for layer in compiled.layers))]
        with tempfile.TemporaryDirectory(prefix="sparselab-top1-") as workdir:
            ref = model_ref(model, Path(workdir)) if peers else None
            for name in peers:
                engine = registry.get(name)()
                runner = engine.load(engine.prepare(ref, shape, cache), shape, args.threads)
                runners.append((f"{name} ({runner.precision}){' @90%' if block else ''}", runner, None))
            for build, runner, layers_int8 in runners:
                rows.append(agreement(build, runner, batches, expected, layers_int8))
                print(f"{build}: {rows[-1]['same']}/{rows[-1]['inputs']} same top-1, logits cosine "
                      f"{rows[-1]['cosine']:.5f}", file=sys.stderr)
    print(f"{args.model} + {args.labels}-class head (seeded random weights), batch {BATCH} x seq {args.seq_len}, "
          f"{args.batches * BATCH} inputs; int8 build vs PyTorch fp32 with the same weights\n")
    print("| build | same top-1 | fp32 margin of the changed answers | logits cosine | int8 layers |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        margins = ", ".join(f"{m:.4f}" for m in row["flip_margins"]) or "-"
        print(f"| {row['build']} | {row['agreement']:.1%} ({row['same']}/"
              f"{row['inputs']}) | {margins} | {row['cosine']:.5f} | "
              f"{'-' if row['layers_int8'] is None else row['layers_int8']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
