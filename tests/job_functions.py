"""Job functions the job-runner tests start in real worker processes."""

import time

from core.errors import SparseLabError


def count(params, progress):
    for i in range(params["n"]):
        progress((i + 1) / params["n"], f"step {i + 1}")
        time.sleep(params.get("delay", 0.0))
    return {"counted": params["n"]}


def refuse(params, progress):
    raise SparseLabError("sparsity must be below 1")


def crash(params, progress):
    return 1 / 0
