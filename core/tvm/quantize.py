"""int8 quantisation for the TVM int8 kernels: the math in numpy, and the activation kernel in TIR.

Weights: int8, **symmetric per output channel** (one scale per output row,
``sw[n] = max|W[n, :]| / 127``, values in [-127, 127]). Per-row scales cost nothing
at run time (they fold into the output's dequantisation) and keep rows with small
weights from being flushed to a few levels by one large row.

Activations: quantised **dynamically per token, asymmetric**, at run time inside the
compiled graph. Each token's range ``[lo, hi]`` (its min and max, widened to hold 0)
maps onto u8: ``sx[m] = (hi - lo) / 255``, zero point ``z[m] = rint(-lo / sx[m])``,
``u = clip(rint(x / sx[m]) + z[m], 0, 255)``. VNNI's ``vpdpbusd`` (and AMX's
``tdpbusd``) multiply u8 by s8, so u8 is what they want anyway, and the zero point is
taken back in the output's dequantisation with a precomputed sum of each weight row::

    y[m, n] = sx[m] * sw[n] * (sum_k u[m, k] * W[n, k] - z[m] * sum_k W[n, k])

(``sums[n] = sum_k W[n, k]``, int32). No calibration data is needed and the
parameters follow each input. Measured on the real MiniLM with a trained 8-class head
(``benchmarks/int8_top1.py --task wordnet``, 512 held-out WordNet definitions,
fake-quantised in PyTorch), the share of answers int8 keeps: per tensor symmetric
(ONNX Runtime's dynamic scheme, and ours before) 94.9%, per token symmetric 97.9%,
**per token asymmetric 99.4%**; int8 weights alone 99.6%, the floor any activation
scheme can reach. A token with large activations no longer flattens the others of
the batch to a few levels, and the GELU outputs the second FFN Linear reads (from
-0.17 up to large positive values) use all 256 levels instead of the upper half of a
symmetric range. The price: two loads in the dequantisation, and a min/max pass
where the absmax pass was. The alternative, **static** scales from a
calibration set (OpenVINO/NNCF's default), saves that pass and lets the quantisation
fuse into the previous op, but needs representative data and clips what calibration
did not see.

The activation kernel also lays the quantised input out for the int8 GEMMs:
``XP[K / 4, M_pad, 4]`` (4 consecutive input features of one token are one 32-bit
word, tokens consecutive), so a token tile of a 4-column block group is one
contiguous run; tokens are padded to a multiple of 16 with u = 0 and zero point 0.
Its second output ``params[2, M_pad]`` holds each token's scale (row 0) and zero
point (row 1, a whole number in [0, 255], exact in float32): one operand for the
kernels' epilogues.
"""

from __future__ import annotations

import numpy as np

QMAX = 127  # weights: symmetric int8 in [-127, 127]
UMAX = 255  # activations: u8
TOKEN_MULTIPLE = 16


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``W[N, K]`` float -> (int8 ``[N, K]``, float32 scale ``[N]``); an all-zero row gets scale 1."""
    weight = np.asarray(weight, dtype=np.float32)
    amax = np.abs(weight).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(QMAX), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(weight / scale[:, None]), -QMAX, QMAX).astype(np.int8)
    return q, scale


def weight_sums(qweight: np.ndarray) -> np.ndarray:
    """``sum_k W[n, k]`` (int32 ``[N]``): what a zero point of 1 adds to every output of row ``n``."""
    return qweight.astype(np.int32).sum(axis=1).astype(np.int32)


def activation_params(x: np.ndarray) -> np.ndarray:
    """Per token (row): float32 ``[2, M]``, scale ``(hi - lo) / 255`` (1 for an all-zero row) and zero point
    ``rint(-lo / scale)``, with ``lo = min(0, min x)``, ``hi = max(0, max x)``; as the kernel computes them."""
    x = np.asarray(x, dtype=np.float32)
    lo = np.minimum(x.min(axis=1), np.float32(0))
    hi = np.maximum(x.max(axis=1), np.float32(0))
    span = (hi - lo).astype(np.float32)
    scale = np.where(span > 0, span / np.float32(UMAX), np.float32(1)).astype(np.float32)
    inverse = (np.float32(1) / scale).astype(np.float32)
    zero = np.clip(np.rint(-lo * inverse), 0, UMAX).astype(np.float32)
    return np.stack([scale, zero])


def quantize_activation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x[M, K]`` float -> (u8 ``[M, K]``, params ``[2, M]``: scales and zero points): the kernel's math, bit for
    bit."""
    x = np.asarray(x, dtype=np.float32)
    params = activation_params(x)
    inverse = (np.float32(1) / params[0]).astype(np.float32)
    u = np.clip(np.rint(x * inverse[:, None]) + params[1][:, None], 0, UMAX)
    return u.astype(np.uint8), params


def unit_params(tokens: int) -> np.ndarray:
    """``[2, tokens]`` of scale 1 and zero point 0: what a padding token gets (and a timing run with any input)."""
    return np.stack([np.ones(tokens, np.float32), np.zeros(tokens, np.float32)])


def padded_params(params: np.ndarray, tokens: int | None = None) -> np.ndarray:
    """``[2, M]`` -> ``[2, tokens]`` (padding tokens: ``unit_params``): the kernels' ``x_params`` operand."""
    params = np.asarray(params, np.float32).reshape(2, -1)
    padded = unit_params(tokens or padded_tokens(params.shape[1]))
    padded[:, :params.shape[1]] = params
    return padded


def padded_tokens(m: int) -> int:
    return -(-m // TOKEN_MULTIPLE) * TOKEN_MULTIPLE


def pack_activation(u8: np.ndarray, tokens: int | None = None) -> np.ndarray:
    """u8 ``[M, K]`` -> ``XP[K / 4, tokens, 4]`` (padding tokens are 0): the kernels' input."""
    m, k = u8.shape
    tokens = tokens or padded_tokens(m)
    padded = np.zeros((tokens, k), dtype=np.uint8)
    padded[:m] = u8
    return np.ascontiguousarray(padded.reshape(tokens, k // 4, 4).transpose(1, 0, 2))


def integer_matmul(u8: np.ndarray, qweight: np.ndarray) -> np.ndarray:
    """The exact int32 accumulation ``sum_k u[m, k] * W[n, k]`` (``[M, N]``)."""
    return u8.astype(np.int32) @ qweight.astype(np.int32).T


def dequantize(acc: np.ndarray, x_params: np.ndarray, w_scale: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """float32 ``(acc[m, n] - z[m] * sums[n]) * (sx[m] * sw[n])``, the kernels' epilogue (``x_params``: ``[2, M]``
    for the rows of ``acc``)."""
    x_params = np.asarray(x_params, np.float32)
    zero = x_params[1].astype(np.int32)
    factor = (x_params[0][:, None] * np.asarray(w_scale, np.float32)[None, :]).astype(np.float32)
    return (acc - zero[:, None] * sums[None, :]).astype(np.float32) * factor


def int8_linear(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``x @ W^T`` through the whole int8 path in numpy (the reference the compiled model follows)."""
    qweight, w_scale = quantize_weight(weight)
    u8, x_params = quantize_activation(x)
    return dequantize(integer_matmul(u8, qweight), x_params, w_scale, weight_sums(qweight))


def _word_column(tile_words, w: int, words: int):
    """Word ``w`` of each of the 16 tokens in ``tile_words[16 * words]`` (token-major), as one uint32x16 vector: a
    shuffle of the 16 tokens' word vectors (LLVM lowers it to a few permutes; a strided read went lane by lane)."""
    from tvm import tirx

    if words == 1:
        return tile_words[tirx.Ramp(0, 1, TOKEN_MULTIPLE)]
    rows = [tirx.BufferLoad(tile_words, [tirx.Ramp(t * words, 1, words)]) for t in range(TOKEN_MULTIPLE)]
    return tirx.Shuffle(rows, [t * words + w for t in range(TOKEN_MULTIPLE)])


def quantize_activation_kernel(m: int, k: int, tokens: int):
    """PrimFunc ``(X[m, k] f32) -> (XP[k/4, tokens, 4] u8, params[2, tokens] f32)`` (tokens >= m; padding tokens
    are 0 with scale 1 and zero point 0).

    One parallel pass over 16-token groups: each token's min and max (16 lanes, then across them), its scale and
    zero point, then its 16 consecutive inputs quantised as one vector and written as its 4 words of ``XP``. A
    per-tensor version (a serial absmax first) took 80 / 385 us for 128 x 768 / 128 x 3072 on one thread of an
    Intel Xeon (Emerald Rapids), 7.4 ms of a 43 ms BERT-base int8 inference; the parallel one: see docs/tvm.md.
    Each 16-token x 16-input tile is turned into XP's 4 words x 16 tokens by a shuffle (``_word_column``); read
    one lane at a time, that transposition took half the kernel: 128 x 768 35.5 -> 16.9 us on one thread, 19 ->
    9.9 us on two, 128 x 3072 69 -> 36 us on two (Xeon VM with AMX, session 11)."""
    from tvm.script import tirx as T

    lanes = next(v for v in (16, 8, 4) if k % v == 0)
    words = lanes // 4
    groups = tokens // TOKEN_MULTIPLE

    @T.prim_func(private=True, s_tir=True)
    def kernel(x: T.Buffer((m, k), "float32"), xp: T.Buffer((k // 4, tokens, 4), "uint8"),
               params: T.Buffer((2, tokens), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        with T.sblock("root"):  # Relax's op-pattern analysis wants a block at the top
            words_of = T.decl_buffer((k // 4, tokens), "uint32", data=xp.data)  # XP as 32-bit words
            for g in T.parallel(groups):
                low = T.decl_buffer((lanes,), "float32", scope="global")
                high = T.decl_buffer((lanes,), "float32", scope="global")
                inverse = T.decl_buffer((TOKEN_MULTIPLE,), "float32", scope="global")
                zero = T.decl_buffer((TOKEN_MULTIPLE,), "float32", scope="global")
                for t in range(TOKEN_MULTIPLE):
                    token = T.meta_var(g * TOKEN_MULTIPLE + t)
                    for v in T.vectorized(lanes):
                        low[v] = T.float32(0)
                        high[v] = T.float32(0)
                    if token < m:
                        for jo in range(k // lanes):
                            for v in T.vectorized(lanes):
                                low[v] = T.min(low[v], x[token, jo * lanes + v])
                                high[v] = T.max(high[v], x[token, jo * lanes + v])
                    bounds = T.decl_buffer((2,), "float32", scope="global")
                    bounds[0] = T.float32(0)
                    bounds[1] = T.float32(0)
                    for v in range(lanes):
                        bounds[0] = T.min(bounds[0], low[v])
                        bounds[1] = T.max(bounds[1], high[v])
                    span = T.meta_var(bounds[1] - bounds[0])
                    params[0, token] = T.if_then_else(span > T.float32(0), span / T.float32(UMAX), T.float32(1))
                    inverse[t] = T.float32(1) / params[0, token]
                    zero[t] = T.max(T.min(T.nearbyint(T.float32(0) - bounds[0] * inverse[t]), T.float32(UMAX)),
                                    T.float32(0))
                    params[1, token] = zero[t]
                tile = T.decl_buffer((TOKEN_MULTIPLE * lanes,), "uint8", scope="global")  # 16 tokens x lanes
                tile_words = T.decl_buffer((TOKEN_MULTIPLE * words,), "uint32", data=tile.data)
                for c in range(k // lanes):
                    for t in T.unroll(TOKEN_MULTIPLE):
                        token = T.meta_var(g * TOKEN_MULTIPLE + t)
                        for v in T.vectorized(lanes):
                            tile[t * lanes + v] = T.if_then_else(token < m, T.Cast("uint8", T.Cast(
                                "int32", T.max(T.min(T.nearbyint(x[T.min(token, m - 1), c * lanes + v] * inverse[t])
                                                     + zero[t], T.float32(UMAX)), T.float32(0)))),
                                T.uint8(0))
                    for w in T.unroll(words):  # word w of 16 tokens: one 64-byte run of XP
                        words_of[c * words + w, T.ramp(g * TOKEN_MULTIPLE, 1, TOKEN_MULTIPLE)] = \
                            _word_column(tile_words, w, words)

    return kernel.with_attr("op_pattern", 8)
