"""Prune a Keras CNN on digits with TF-MOT, export it to TFLite, and measure size, accuracy and latency.

Trains (or takes from the artifact cache) the dense model, prunes a copy per
--prune choice with fine-tuning, converts each to the --export variants, and
times every file through the TFLite interpreter (XNNPACK) with each thread
count. Every measurement is recorded in the run store (kind "tflite").
"""

import logging

from core.tflite.options import METHODS, MODELS, VARIANTS, TfliteSettings


def add_arguments(parser) -> None:
    parser.add_argument("--model", choices=list(MODELS), default="digits-cnn")
    parser.add_argument("--prune", default="mn:2:4",
                        help="comma-separated: constant:S, poly:S, mn:M:N, xnnpack:S. "
                             + " | ".join(f"{name}: {text}" for name, text in METHODS.items()))
    parser.add_argument("--export", default=",".join(VARIANTS),
                        help="comma-separated variants: " + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()))
    parser.add_argument("--epochs", type=int, default=TfliteSettings.epochs, help="dense training epochs")
    parser.add_argument("--fine-tune-epochs", type=int, help="pruning fine-tuning epochs (default: epochs/2)")
    parser.add_argument("--seed", type=int, default=0, help="data split, initial weights and shuffling")
    parser.add_argument("--threads", default="1,2", help="comma-separated interpreter thread counts")
    parser.add_argument("--repeats", type=int, default=TfliteSettings.repeats, help="timed runs per latency")


def run(args) -> dict:
    settings = TfliteSettings.from_params({
        "model": args.model, "prune": args.prune, "export": args.export, "epochs": args.epochs,
        "fine_tune_epochs": args.fine_tune_epochs, "seed": args.seed, "threads": args.threads,
        "repeats": args.repeats})
    from core.tflite.pipeline import run_pipeline  # TensorFlow loads only once the arguments are valid

    report = run_pipeline(settings, progress=lambda fraction, message: logging.info("%3.0f%% %s", 100 * fraction,
                                                                                      message))
    return report.as_dict()
