"""Time the dense engines a user would really run (PyTorch, ONNX Runtime, OpenVINO; fp32, bf16, int8) side by side.

Each engine runs in its own process with the same thread count, timed in
interleaved rounds so host drift hits all alike; each is scored against PyTorch
fp32 (sentence-embedding fidelity for models with a tokenizer, e.g. minilm).
ONNX exports and quantized models are cached. Every engine's latency is recorded
in the run store as kind 'peer'; engines that fail are listed with the reason.
"""

import logging

from core.peers.engines import engine_names
from core.peers.jobs import peers_job
from core.peers.request import PeerRequest


def add_arguments(parser) -> None:
    defaults = PeerRequest()
    parser.add_argument("--model", default=defaults.model, help="bert-base, bert-tiny, minilm or a model folder")
    parser.add_argument("--engines", default=None,
                        help=f"comma-separated subset of: {', '.join(engine_names())} (default: all)")
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="threads for every engine")
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="interleaved timing rounds")
    parser.add_argument("--calls", type=int, default=defaults.calls_per_round, help="timed calls per engine per round")
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--no-fidelity", action="store_true", help="skip the sentence-pair fidelity check")


def run(args) -> dict:
    return peers_job({"model": args.model, "engines": args.engines, "seq_len": args.seq_len, "batch": args.batch,
                      "threads": args.threads, "rounds": args.rounds, "calls_per_round": args.calls,
                      "warmup": args.warmup, "fidelity": not args.no_fidelity},
                     progress=lambda fraction, message: logging.info("peers %3.0f%% %s", 100 * fraction, message))
