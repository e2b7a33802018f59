"""The guided demo: prune, store, compile and the fastest dense engine on one model, as one summary."""

import logging

from core.demo.jobs import demo_job
from core.demo.request import DemoRequest


def add_arguments(parser) -> None:
    defaults = DemoRequest()
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--method", default=defaults.method, help="pruning method")
    parser.add_argument("--sparsity", type=float, default=defaults.sparsity)
    parser.add_argument("--block", default=defaults.block, help="BSR block of the compiled model")
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len)
    parser.add_argument("--threads", type=int, default=defaults.threads)


def run(args) -> dict:
    params = {name: getattr(args, name) for name in DemoRequest().as_params()}
    return demo_job(params, lambda fraction, message="": logging.info("%3.0f%% %s", 100 * fraction, message))
