"""Is the Compare page still fast with 10,000 runs? Times the store query, the Pareto front and
a full render of the page (streamlit.testing) on a temporary store of 10,000 synthetic runs.
Run: .venv/bin/python benchmarks/compare_10k.py"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def fill(store, count: int) -> None:
    from core.run_store import RunRecord

    rng = random.Random(0)
    environment = RunRecord(kind="x", model="x").environment
    for i in range(count):
        store.add(RunRecord(kind=rng.choice(["prune", "store", "tvm", "tflite"]),
                            model=rng.choice(["minilm", "bert-base", "bert-tiny", "digits-cnn"]),
                            method=rng.choice(["magnitude", "block", "mn", "random"]),
                            sparsity=rng.choice([0.5, 0.7, 0.8, 0.9, 0.95]), block=rng.choice(["1x1", "16x1", "2:4"]),
                            size_bytes=rng.randint(10**5, 10**8), latency_ms=rng.uniform(1, 200),
                            accuracy=rng.uniform(0.5, 1.0), metrics={"i": i}, environment=environment))


def main(count: int = 10_000) -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ["SPARSELAB_HOME"] = home
        from streamlit.testing.v1 import AppTest

        from core.compare.pareto import pareto_front
        from core.run_store import default_store

        store = default_store()
        start = time.perf_counter()
        fill(store, count)
        print(f"filled {count} runs in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        rows = store.summary_rows()
        query_s = time.perf_counter() - start
        start = time.perf_counter()
        front = pareto_front(rows)
        front_s = time.perf_counter() - start
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
        at.run()
        start = time.perf_counter()
        at.switch_page("views/compare.py").run()
        render_s = time.perf_counter() - start
        assert not at.exception, at.exception
        print(f"{'step':<28}{'seconds':>9}")
        print(f"{'query 10k summary rows':<28}{query_s:>9.3f}")
        print(f"{'Pareto front':<28}{front_s:>9.3f}   ({sum(front)} on the front)")
        print(f"{'render the Compare page':<28}{render_s:>9.3f}")


if __name__ == "__main__":
    main()
