"""core.whatif.rest_of_model's pure parts: kernel symbols named as the estimate's tables, in-model medians.
(The rest's real build is timed in tests/test_whatif_estimate.py, slow.)"""

import pytest

from core.whatif.rest_of_model import RestSamples, family, family_block, kernel_label


@pytest.mark.parametrize("symbol, label", [
    ("bsr_128_3072_768_16_1_rows_8", "bsr 768x3072"),  # bsr_{tokens}_{in}_{out}_...: out x in, as the tables
    ("bsr_int8_128_768_3072_16_4_rows_8_1", "bsr 3072x768"),
    ("bsr_amx_128_768_768_bias_gelu", "bsr 768x768"),
    ("dense_128_768_3072_16_32_bias_gelu", "dense 3072x768"),
    ("dense_int8_128_3072_768_8_2_1", "dense 768x3072"),
    ("dense_amx_128_768_768", "dense 768x768"),
    ("quantize_128_3072_128", "quantize 3072"),
    ("fused_add3_reshape12_fast_gelu", None),
    ("matmul1", None),
    ("bsr_rows", None),
])
def test_kernel_symbols_are_named_as_the_tables_they_are_read_against(symbol, label):
    assert kernel_label(symbol) == label


def test_in_model_times_are_per_call_medians_over_the_given_pairs():
    runs = [{"bsr 8x8": (3.0, 3), "quantize 8": (0.2, 2)},  # 1 ms per call
            {"bsr 8x8": (6.0, 3)},  # 2 ms per call, and no quantisation in this run
            {"bsr 8x8": (9.0, 3), "quantize 8": (0.6, 2)},
            {"bsr 8x8": (90.0, 3)}]  # a slow pair, left out
    samples = RestSamples([(1.0, 0.5)] * 4, [], runs)
    assert samples.in_model([0, 1, 2]) == {"bsr 8x8": 2.0, "quantize 8": pytest.approx(0.2)}
    assert samples.in_model([]) == {}


def test_quantisation_calls_are_counted_in_the_last_instrumented_run():
    runs = [{"bsr 8x8": (3.0, 3), "quantize 8": (0.2, 2)}, {"quantize 8": (0.3, 4), "quantize 32": (0.1, 1)}]
    assert RestSamples([(1.0, 0.5)] * 2, [], runs).quantize_calls == {8: 4, 32: 1}
    assert RestSamples([], [], []).quantize_calls == {}


def test_families_and_their_blocks():
    assert [family(b) for b in ((1, 1), (4, 4), (16, 1), (32, 1), (16, 4))] == ["tokens"] * 2 + ["rows"] * 3
    assert family_block("rows") == (16, 1) and family_block("tokens", "int8") == (1, 4)
