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

``--task wordnet`` asks the same of a *trained* head, whose answers have real margins (a random head on a random
model puts many inputs on near ties): the real MiniLM (``--model minilm``, the default for this task) with a
logistic-regression head over its classifier input, fitted on ``--train-per-class`` WordNet noun definitions per
class for 8 of WordNet's noun categories (animal, artifact, body, food, location, person, plant, substance), and
checked on ``--test-per-class`` other definitions per class, padded to 128 tokens. Each build's head is fitted to
that build's own fp32 model (the sparse builds: one-shot block magnitude at 90%, so their accuracy is low; the
question is only whether int8 keeps the fp32 answers). WordNet comes from Debian's ``wordnet-base``:

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb /tmp/wn
    .venv/bin/python benchmarks/int8_top1.py --task wordnet --wordnet /tmp/wn/usr/share/wordnet
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
# WordNet's lexicographer file numbers of the noun categories the trained head tells apart (fixed in WordNet 3.0).
WORDNET_CLASSES = {5: "animal", 6: "artifact", 8: "body", 13: "food", 15: "location", 18: "person", 20: "plant",
                   27: "substance"}


def wordnet_definitions(folder: Path, train: int, test: int, seed: int = 0) -> tuple[list, list]:
    """``(train, test)``: lists of ``(definition, class index)``, ``train`` / ``test`` per class, disjoint."""
    import random

    from scripts.wordnet_corpus import gloss_entries

    data = folder / "data.noun"
    if not data.is_file():
        raise SystemExit(f"No WordNet noun data at {data}: apt-get download wordnet-base && dpkg-deb -x "
                         "wordnet-base_*.deb /tmp/wn, then --wordnet /tmp/wn/usr/share/wordnet")
    by_class: dict[int, list[str]] = {number: [] for number in WORDNET_CLASSES}
    for number, definition, _ in gloss_entries(data):
        if number in by_class and len(definition.split()) >= 4 and not definition.startswith('"'):
            by_class[number].append(definition)
    rng = random.Random(seed)
    train_rows, test_rows = [], []
    for label, number in enumerate(WORDNET_CLASSES):
        texts = sorted(set(by_class[number]))
        rng.shuffle(texts)
        train_rows += [(t, label) for t in texts[:train]]
        test_rows += [(t, label) for t in texts[train:train + test]]
    return train_rows, test_rows


def tokenized_batches(tokenizer, texts: list[str], seq_len: int) -> list[dict]:
    batches = []
    for i in range(0, len(texts), BATCH):
        chunk = texts[i:i + BATCH]
        chunk += [chunk[-1]] * (BATCH - len(chunk))  # the compiled shape is fixed: pad the last batch
        encoded = tokenizer(chunk, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
        batches.append({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
    return batches


def fit_head(model, batches: list[dict], labels: list[int]) -> float:
    """Fit ``model.classifier`` (a Linear) as a logistic regression on its own inputs; the training accuracy."""
    import torch
    from sklearn.linear_model import LogisticRegression

    if not isinstance(model.classifier, torch.nn.Linear):
        raise SystemExit(f"{type(model).__name__}'s classifier is not one Linear layer: use a BERT-like model.")
    features = []
    hook = model.classifier.register_forward_pre_hook(lambda module, args: features.append(args[0].detach()))
    with torch.no_grad():
        for inputs in batches:
            model(**inputs)
    hook.remove()
    x = torch.cat(features)[:len(labels)].numpy()
    head = LogisticRegression(max_iter=3000, C=1.0).fit(x, labels)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(head.coef_).float())
        model.classifier.bias.copy_(torch.from_numpy(head.intercept_).float())
    return float(head.score(x, labels))


def agreement(build: str, runner, batches: list, expected: list, layers_int8, labels: list | None = None) -> dict:
    """Top-1 agreement of ``runner`` (``run(inputs) -> logits``) with the fp32 ``expected`` logits (over the first
    ``len(labels)`` inputs when labels are given: the last batch may be padded), and both accuracies."""
    from core.tvm.benchmark import cosine_rows

    actual = np.concatenate([np.asarray(runner.run({k: v.numpy() for k, v in inputs.items()})) for inputs in batches])
    reference = np.concatenate(expected)
    count = len(labels) if labels is not None else len(reference)
    actual, reference = actual[:count], reference[:count]
    same = actual.argmax(1) == reference.argmax(1)
    top2 = np.sort(reference, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]  # fp32: how far the answer is from the runner-up
    row = {"build": build, "agreement": float(same.mean()), "same": int(same.sum()), "inputs": count,
           "flip_margins": [float(m) for m in margins[~same]], "median_margin": float(np.median(margins)),
           "cosine": float(cosine_rows(actual, reference)), "layers_int8": layers_int8}
    if labels is not None:
        truth = np.asarray(labels)
        row.update(accuracy=float((actual.argmax(1) == truth).mean()),
                   fp32_accuracy=float((reference.argmax(1) == truth).mean()))
    return row


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
    parser.add_argument("--task", choices=("random", "wordnet"), default="random",
                        help="random: a seeded random head on random tokens; wordnet: a trained 8-class head")
    parser.add_argument("--model", help="default: bert-base (random task), minilm (wordnet task)")
    parser.add_argument("--labels", type=int, default=3, help="classes of the random head")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batches", type=int, default=4, help="random task: batches of 16 random inputs")
    parser.add_argument("--wordnet", default="/usr/share/wordnet", help="folder of WordNet 3.0's data.noun")
    parser.add_argument("--train-per-class", type=int, default=128)
    parser.add_argument("--test-per-class", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--peers", default="onnxruntime-int8,openvino-int8",
                        help="int8 peer engines to check beside each TVM build (comma list, or none)")
    args = parser.parse_args()
    peers = [] if args.peers.strip().lower() == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]
    trained = args.task == "wordnet"
    model_name = args.model or ("minilm" if trained else "bert-base")

    torch.set_num_threads(args.threads)
    source = resolve(model_name)
    shape = InputShape(BATCH, args.seq_len)
    cache = default_cache()
    classes, labels = (len(WORDNET_CLASSES) if trained else args.labels), None
    if trained:
        train_rows, test_rows = wordnet_definitions(Path(args.wordnet), args.train_per_class, args.test_per_class)
        tokenizer = source.load_tokenizer()
        train_batches = tokenized_batches(tokenizer, [t for t, _ in train_rows], args.seq_len)
        batches = tokenized_batches(tokenizer, [t for t, _ in test_rows], args.seq_len)
        labels = [label for _, label in test_rows]
    rows = []
    for label, block in BUILDS:
        model = source.load_model("sequence-classification")
        if model.config.num_labels != classes:  # a new head of the asked size, seeded
            torch.manual_seed(0)
            model.config.num_labels = classes
            model.classifier = torch.nn.Linear(model.config.hidden_size, classes)
        model.eval()
        if block:  # the encoder's Linears; the head stays dense
            method = "block" if trained else "random"  # real weights: the zeros a user would get
            prune_model(model, PruneConfig(method=method, sparsity=0.9, block=block))
        if trained:
            train_accuracy = fit_head(model, train_batches, [y for _, y in train_rows])
            print(f"{label}: head fitted, training accuracy {train_accuracy:.3f}", file=sys.stderr)
        else:
            batches = [example_inputs(shape, model.config.vocab_size, seed=100 + seed) for seed in range(args.batches)]
        compiled = compile_model(model, CompileOptions(shape, args.threads, RewriteOptions(block, precision="int8")),
                                 name=f"{model_name}-classifier")
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
                rows.append(agreement(build, runner, batches, expected, layers_int8, labels))
                print(f"{build}: {rows[-1]['same']}/{rows[-1]['inputs']} same top-1, logits cosine "
                      f"{rows[-1]['cosine']:.5f}", file=sys.stderr)
    if trained:
        print(f"{model_name} + a trained {classes}-class head (logistic regression on WordNet noun definitions, "
              f"{args.train_per_class} per class), {len(labels)} held-out definitions padded to {args.seq_len} "
              "tokens; int8 build vs PyTorch fp32 with the same weights\n")
    else:
        print(f"{model_name} + {classes}-class head (seeded random weights), batch {BATCH} x seq "
              f"{args.seq_len}, {args.batches * BATCH} inputs; int8 build vs PyTorch fp32 with the same weights\n")
    columns = ["build", "same top-1", "fp32 margins of the changed answers", "median fp32 margin",
               *(["accuracy int8 / fp32"] if trained else []), "logits cosine", "int8 layers"]
    print(f"| {' | '.join(columns)} |")
    print(f"|{' --- |' * len(columns)}")
    for row in rows:
        flips = sorted(row["flip_margins"], reverse=True)
        margins = (", ".join(f"{m:.4f}" for m in flips) if len(flips) <= 4
                   else f"{len(flips)}, the largest {flips[0]:.4f}, {flips[1]:.4f}") or "-"
        accuracy = f" {row['accuracy']:.3f} / {row['fp32_accuracy']:.3f} |" if trained else ""
        print(f"| {row['build']} | {row['agreement']:.1%} ({row['same']}/{row['inputs']}) | {margins} | "
              f"{row['median_margin']:.4f} |{accuracy} {row['cosine']:.5f} | "
              f"{'-' if row['layers_int8'] is None else row['layers_int8']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
