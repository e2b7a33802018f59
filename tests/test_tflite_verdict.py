from core.environment import CpuInfo
from core.tflite.verdict import sparse_verdict

AVX_CPU = CpuInfo(model="AMD EPYC", vendor="AuthenticAMD", family=25, cores=2, flags=("avx", "avx2", "fma"))
ARM_CPU = CpuInfo(model="Cortex-A76", vendor="", family=None, cores=4, flags=("asimd", "neon"))


def test_no_speed_up_on_avx_x86_explains_why_with_the_measured_numbers():
    verdict = sparse_verdict("mn:2:4", "mn", float_bytes=400_000, sparse_bytes=212_000,
                             float_best_ms={1: 0.50, 2: 0.30}, sparse_best_ms={1: 0.51, 2: 0.30},
                             cpu=AVX_CPU, machine="x86_64")
    assert not verdict.faster
    assert abs(verdict.size_saving - 0.47) < 1e-9
    assert "47% smaller" in verdict.explanation
    assert "510.0 µs vs 500.0 µs" in verdict.explanation
    assert "x86 CPUs with AVX" in verdict.explanation and "AMD EPYC" in verdict.explanation
    assert "1x1 convolutions" in verdict.explanation  # mn is not the XNNPACK-shaped pruning


def test_speed_up_is_reported_as_such():
    verdict = sparse_verdict("xnnpack:0.75", "xnnpack", 400_000, 200_000, {1: 0.9}, {1: 0.6},
                             cpu=ARM_CPU, machine="aarch64")
    assert verdict.faster and verdict.speedups == {1: 1.5}
    assert "faster" in verdict.explanation and "1.50x" in verdict.explanation
    assert "AVX" not in verdict.explanation


def test_faster_at_one_thread_count_only_is_not_faster():
    verdict = sparse_verdict("mn:2:4", "mn", 400_000, 300_000, {1: 0.013, 2: 2.0}, {1: 0.010, 2: 2.0},
                             cpu=AVX_CPU, machine="x86_64")
    assert not verdict.faster and abs(verdict.speedups[1] - 1.3) < 1e-9
    assert "1 thread 10.0 µs vs 13.0 µs (1.30x)" in verdict.explanation and "2.00 ms" in verdict.explanation


def test_no_speed_up_elsewhere_does_not_blame_avx():
    verdict = sparse_verdict("xnnpack:0.75", "xnnpack", 300_000, 330_000, {1: 1.0}, {1: 1.02},
                             cpu=ARM_CPU, machine="aarch64")
    assert not verdict.faster
    assert "AVX" not in verdict.explanation and "10% larger" in verdict.explanation
    assert "buys nothing" in verdict.explanation
