"""int8 quantisation for the TVM int8 kernels: the math in numpy, and the activation kernel in TIR.

Weights: int8, **symmetric per output channel** (one scale per output row,
``sw[n] = max|W[n, :]| / 127``, values in [-127, 127]). Per-row scales cost nothing
at run time (they fold into the output's dequantisation) and keep rows with small
weights from being flushed to a few levels by one large row.

Activations: quantised **dynamically per token** at run time, inside the compiled
graph: ``sx[m] = max|x[m, :]| / 127`` over each token's features of the current
input, ``q = rint(x / sx[m])`` in [-127, 127] stored as **u8 with zero point 128**
(``u = q + 128``). VNNI's ``vpdpbusd`` multiplies u8 by s8, so the signed
activation is shifted by 128 and the shift is taken back with a per-output-column
precomputed sum of weights::

    y[m, n] = sx[m] * sw[n] * (sum_k u[m, k] * W[n, k] - 128 * sum_k W[n, k])

(``corr[n] = 128 * sum_k W[n, k]``, int32). No calibration data is needed and the
scales follow each input. Why per token, not per tensor as ONNX Runtime's dynamic
quantisation: a token with large activations no longer flattens every other token
of the batch to a few levels, and the price is nil (the scale is one more load in
the output's dequantisation, and the absmax pass was already there). Measured on the
real MiniLM with a trained 8-class head (``benchmarks/int8_top1.py --task wordnet``,
512 held-out WordNet definitions, fake-quantised in PyTorch): int8 kept the fp32
answer for 94.9% of them with per-tensor scales and 97.9% with per-token scales
(int8 weights alone: 99.6%, the floor any activation scheme can reach here). The
alternative, **static** per-tensor scales from a calibration set (OpenVINO/NNCF's
default), saves the absmax pass and lets the quantisation fuse into the previous op,
but needs representative data and clips outliers that calibration did not see.

The activation kernel also lays the quantised input out for the int8 GEMMs:
``XP[K / 4, M_pad, 4]`` (4 consecutive input features of one token are one 32-bit
word, tokens consecutive), so a token tile of a 4-column block group is one
contiguous run; tokens are padded to a multiple of 16 with u = 128 (x = 0).
"""

from __future__ import annotations

import numpy as np

ZERO_POINT = 128
QMAX = 127
TOKEN_MULTIPLE = 16


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``W[N, K]`` float -> (int8 ``[N, K]``, float32 scale ``[N]``); an all-zero row gets scale 1."""
    weight = np.asarray(weight, dtype=np.float32)
    amax = np.abs(weight).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(QMAX), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(weight / scale[:, None]), -QMAX, QMAX).astype(np.int8)
    return q, scale


def column_correction(qweight: np.ndarray) -> np.ndarray:
    """``128 * sum_k W[n, k]`` (int32 ``[N]``): what the zero point adds to every output."""
    return (ZERO_POINT * qweight.astype(np.int32).sum(axis=1)).astype(np.int32)


def activation_scale(x: np.ndarray) -> np.ndarray:
    """``max|x[m, :]| / 127`` per token (row), float32 ``[M]`` (1 for an all-zero row), as the kernel computes it."""
    amax = np.abs(np.asarray(x, dtype=np.float32)).max(axis=1)
    return np.where(amax > 0, amax / np.float32(QMAX), np.float32(1)).astype(np.float32)


def quantize_activation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x[M, K]`` float -> (u8 ``[M, K]`` with zero point 128, scales ``[M]``): the kernel's math, bit for bit."""
    x = np.asarray(x, dtype=np.float32)
    scale = activation_scale(x)
    inverse = (np.float32(1) / scale).astype(np.float32)
    q = np.clip(np.rint(x * inverse[:, None]), -QMAX, QMAX).astype(np.int32) + ZERO_POINT
    return q.astype(np.uint8), scale


def padded_scale(scale: np.ndarray, tokens: int | None = None) -> np.ndarray:
    """Per-token scales ``[M]`` -> ``[tokens]`` (padding tokens get 1): the kernels' ``x_scale`` operand."""
    scale = np.asarray(scale, np.float32).reshape(-1)
    padded = np.ones(tokens or padded_tokens(len(scale)), np.float32)
    padded[:len(scale)] = scale
    return padded


def padded_tokens(m: int) -> int:
    return -(-m // TOKEN_MULTIPLE) * TOKEN_MULTIPLE


def pack_activation(u8: np.ndarray, tokens: int | None = None) -> np.ndarray:
    """u8 ``[M, K]`` -> ``XP[K / 4, tokens, 4]`` (padding tokens are the zero point): the kernels' input."""
    m, k = u8.shape
    tokens = tokens or padded_tokens(m)
    padded = np.full((tokens, k), ZERO_POINT, dtype=np.uint8)
    padded[:m] = u8
    return np.ascontiguousarray(padded.reshape(tokens, k // 4, 4).transpose(1, 0, 2))


def integer_matmul(u8: np.ndarray, qweight: np.ndarray) -> np.ndarray:
    """The exact int32 accumulation ``sum_k u[m, k] * W[n, k]`` (``[M, N]``)."""
    return u8.astype(np.int32) @ qweight.astype(np.int32).T


def dequantize(acc: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray, correction: np.ndarray) -> np.ndarray:
    """float32 ``(acc[m, n] - corr[n]) * (sx[m] * sw[n])``, the kernels' epilogue (``x_scale``: one per row of
    ``acc``, or one for all)."""
    x_scale = np.broadcast_to(np.asarray(x_scale, np.float32).reshape(-1), (acc.shape[0],))
    factor = (x_scale[:, None] * np.asarray(w_scale, np.float32)[None, :]).astype(np.float32)
    return (acc - correction[None, :]).astype(np.float32) * factor


def int8_linear(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``x @ W^T`` through the whole int8 path in numpy (the reference the compiled model follows)."""
    qweight, w_scale = quantize_weight(weight)
    u8, x_scale = quantize_activation(x)
    return dequantize(integer_matmul(u8, qweight), x_scale, w_scale, column_correction(qweight))


def quantize_activation_kernel(m: int, k: int, tokens: int):
    """PrimFunc ``(X[m, k] f32) -> (XP[k/4, tokens, 4] u8, scale[tokens] f32)`` (tokens >= m; padding tokens are
    128 with scale 1).

    One parallel pass over 16-token groups: each token's absmax (16 lanes, then across them) and scale, then its
    16 consecutive inputs quantised as one vector and written as its 4 words of ``XP``. A per-tensor version
    (a serial absmax first) took 80 / 385 us for 128 x 768 / 128 x 3072 on one thread of an Intel Xeon (Emerald
    Rapids), 7.4 ms of a 43 ms BERT-base int8 inference; the two-pass parallel one: see docs/tvm.md."""
    from tvm.script import tirx as T

    lanes = next(v for v in (16, 8, 4) if k % v == 0)
    words = lanes // 4
    groups = tokens // TOKEN_MULTIPLE

    @T.prim_func(private=True, s_tir=True)
    def kernel(x: T.Buffer((m, k), "float32"), xp: T.Buffer((k // 4, tokens, 4), "uint8"),
               scale: T.Buffer((tokens,), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        with T.sblock("root"):  # Relax's op-pattern analysis wants a block at the top
            words_of = T.decl_buffer((k // 4, tokens), "uint32", data=xp.data)  # XP as 32-bit words
            for g in T.parallel(groups):
                amax = T.decl_buffer((lanes,), "float32", scope="global")
                inverse = T.decl_buffer((TOKEN_MULTIPLE,), "float32", scope="global")
                for t in range(TOKEN_MULTIPLE):
                    token = T.meta_var(g * TOKEN_MULTIPLE + t)
                    for v in T.vectorized(lanes):
                        amax[v] = T.float32(0)
                    if token < m:
                        for jo in range(k // lanes):
                            for v in T.vectorized(lanes):
                                amax[v] = T.max(amax[v], T.fabs(x[token, jo * lanes + v]))
                    total = T.decl_buffer((1,), "float32", scope="global")
                    total[0] = T.float32(0)
                    for v in range(lanes):
                        total[0] = T.max(total[0], amax[v])
                    scale[token] = T.if_then_else(total[0] > T.float32(0), total[0] / T.float32(QMAX), T.float32(1))
                    inverse[t] = T.float32(1) / scale[token]
                tile = T.decl_buffer((TOKEN_MULTIPLE * lanes,), "uint8", scope="global")  # 16 tokens x lanes
                tile_words = T.decl_buffer((TOKEN_MULTIPLE * words,), "uint32", data=tile.data)
                for c in range(k // lanes):
                    for t in T.unroll(TOKEN_MULTIPLE):
                        token = T.meta_var(g * TOKEN_MULTIPLE + t)
                        for v in T.vectorized(lanes):
                            tile[t * lanes + v] = T.if_then_else(token < m, T.Cast("uint8", T.Cast(
                                "int32", T.max(T.min(T.nearbyint(x[T.min(token, m - 1), c * lanes + v] * inverse[t]),
                                                     T.float32(QMAX)), T.float32(-QMAX))) + ZERO_POINT),
                                T.uint8(ZERO_POINT))
                    for w in T.unroll(words):  # word w of 16 tokens: one 64-byte run of XP
                        for t in T.vectorized(TOKEN_MULTIPLE):
                            words_of[c * words + w, g * TOKEN_MULTIPLE + t] = tile_words[t * words + w]

    return kernel.with_attr("op_pattern", 8)
