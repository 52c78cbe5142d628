r"""The fused pair scorer in Triton: gather, Hadamard product and MLP to one logit per pair.

For pairs ``(u_p, v_p)``: :math:`x_p = z_{u_p} \odot z_{v_p}`, then ``Linear+ReLU`` layers and a
final ``Linear`` to one logit (HeaRT's MLP scorer; ``weights[i]`` is ``[out, in]``).

Two kernels share one input loader (a gathered Hadamard tile, or a dense tile of a previous
layer's output):

* ``_pair_logit_kernel`` fuses the **last two** layers. A program keeps its ``[BLOCK_P, K]`` input
  tile in registers, loops over the hidden layer in ``BLOCK_J`` column blocks
  (``tl.dot`` + bias + ReLU), and folds each block straight into the logit with the final weight
  row, so the hidden ``[P, H]`` activations never reach global memory. With a single Linear layer
  it is a gathered dot product.
* ``_pair_hidden_kernel`` computes one earlier ``Linear+ReLU`` layer into a global buffer. A layer's
  full output is needed before the next layer's product, and a whole ``[in, out]`` weight tile
  (256 x 256 fp32 = 256 KB) fits neither registers nor shared memory, so MLPs with three or more
  layers stage those activations in global memory, one ``chunk`` of pairs at a time so that a
  buffer (32768 x 256 fp32 = 32 MB) stays in the H100's 50 MB L2 between the producing and the
  consuming kernel, while 228k pairs need only 7 chunks (each chunk costs two launches of tens of
  microseconds of host time).

``precision`` is ``tl.dot``'s ``input_precision``: ``"ieee"`` multiplies in plain fp32 on the CUDA
cores; ``"tf32x3"`` splits each fp32 operand into two TF32 parts and runs three tensor-core
products (errors near fp32's, measured by ``benchmarks/gpu_check.py``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl

from .aggregate import block_size

__all__ = ["score_pairs"]

# Pairs per program: >= 16 for tl.dot; a [32, 256] fp32 input tile is 32 KB, 32 registers per
# thread at 8 warps, and 228k pairs still make ~7k programs.
BLOCK_P = 32
# Pairs per program of the logit kernel, which also holds the hidden block and its product: at
# [32, 256] inputs its gathering variant spilled ~6 KB per thread to the stack on sm_90 (cuobjdump
# --dump-resource-usage); at 16 no variant spills (at most 178 registers for K = 512).
BLOCK_P_LOGIT = 16
# Pairs per staged chunk of a 3+-layer MLP (see the module docstring).
CHUNK = 32768
# tl.dot's input precision (see the module docstring).
PRECISION = "tf32x3"
# Output features per tl.dot step: a [256, 32] weight tile (32 KB) per step, re-read from L2.
BLOCK_J = 32
# The input tile spans the whole input width in registers; 512 (64 KB at BLOCK_P = 32) is the
# widest that does not spill at 8 warps.
MAX_BLOCK_K = 512


@triton.jit
def _load_pair_input(
    x_ptr, u_ptr, v_ptr, offs_p, mask_p, offs_k, mask_k, stride_xn, stride_xk,
    GATHER: tl.constexpr,
):
    """``[BLOCK_P, BLOCK_K]`` input rows: ``x[u] * x[v]`` when gathering, else ``x[offs_p]``."""
    mask = mask_p[:, None] & mask_k[None, :]
    cols = offs_k[None, :] * stride_xk
    if GATHER:
        a = tl.load(u_ptr + offs_p, mask=mask_p, other=0)
        b = tl.load(v_ptr + offs_p, mask=mask_p, other=0)
        za = tl.load(x_ptr + a[:, None] * stride_xn + cols, mask=mask, other=0.0).to(tl.float32)
        zb = tl.load(x_ptr + b[:, None] * stride_xn + cols, mask=mask, other=0.0).to(tl.float32)
        x = za * zb
    else:
        x = tl.load(x_ptr + offs_p[:, None] * stride_xn + cols, mask=mask, other=0.0).to(tl.float32)
    return x


@triton.jit
def _pair_hidden_kernel(
    # pointers: input (z or previous layer), pair ends, layer parameters, output
    x_ptr, u_ptr, v_ptr, w_ptr, b_ptr, y_ptr,
    # sizes and strides
    P, K, H, stride_xn, stride_xk, stride_wh, stride_wk, stride_yn, stride_yh,
    # meta-parameters
    GATHER: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_J: tl.constexpr,
    PRECISION: tl.constexpr,
):
    offs_p = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < P
    offs_k = tl.arange(0, BLOCK_K)
    mask_k = offs_k < K
    offs_j = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
    mask_j = offs_j < H

    x = _load_pair_input(x_ptr, u_ptr, v_ptr, offs_p, mask_p, offs_k, mask_k, stride_xn, stride_xk,
                         GATHER=GATHER)
    wt = tl.load(w_ptr + offs_k[:, None] * stride_wk + offs_j[None, :] * stride_wh,
                 mask=mask_k[:, None] & mask_j[None, :], other=0.0).to(tl.float32)
    b = tl.load(b_ptr + offs_j, mask=mask_j, other=0.0).to(tl.float32)
    # "ieee": full fp32 products, as the torch reference computes them (no TF32 rounding).
    y = tl.maximum(tl.dot(x, wt, input_precision=PRECISION) + b[None, :], 0.0)
    tl.store(y_ptr + offs_p[:, None] * stride_yn + offs_j[None, :] * stride_yh, y,
             mask=mask_p[:, None] & mask_j[None, :])


@triton.jit
def _pair_logit_kernel(
    # pointers: input (z or previous layer), pair ends, hidden and final layers, logits
    x_ptr, u_ptr, v_ptr, w_ptr, b_ptr, w_out_ptr, b_out_ptr, out_ptr,
    # sizes and strides
    P, K, H, stride_xn, stride_xk, stride_wh, stride_wk, stride_wo,
    # meta-parameters
    GATHER: tl.constexpr, HAS_HIDDEN: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_J: tl.constexpr, PRECISION: tl.constexpr,
):
    offs_p = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < P
    offs_k = tl.arange(0, BLOCK_K)
    mask_k = offs_k < K

    x = _load_pair_input(x_ptr, u_ptr, v_ptr, offs_p, mask_p, offs_k, mask_k, stride_xn, stride_xk,
                         GATHER=GATHER)
    if HAS_HIDDEN:
        logit = tl.zeros((BLOCK_P,), dtype=tl.float32)
        for j0 in range(0, H, BLOCK_J):
            offs_j = j0 + tl.arange(0, BLOCK_J)
            mask_j = offs_j < H
            wt = tl.load(w_ptr + offs_k[:, None] * stride_wk + offs_j[None, :] * stride_wh,
                         mask=mask_k[:, None] & mask_j[None, :], other=0.0).to(tl.float32)
            b = tl.load(b_ptr + offs_j, mask=mask_j, other=0.0).to(tl.float32)
            hid = tl.maximum(tl.dot(x, wt, input_precision=PRECISION) + b[None, :], 0.0)
            w_out = tl.load(w_out_ptr + offs_j * stride_wo, mask=mask_j, other=0.0).to(tl.float32)
            logit += tl.sum(hid * w_out[None, :], axis=1)
    else:
        w_out = tl.load(w_out_ptr + offs_k * stride_wo, mask=mask_k, other=0.0).to(tl.float32)
        logit = tl.sum(x * w_out[None, :], axis=1)
    logit += tl.load(b_out_ptr).to(tl.float32)
    tl.store(out_ptr + offs_p, logit, mask=mask_p)


def _warps(block_k: int) -> int:
    # 8 warps once the input tile reaches [32, 256], keeping it at <= 64 registers per thread.
    return 8 if block_k >= 256 else 4


def _hidden_layer(x, u, v, w, b, gather: bool, precision: str) -> torch.Tensor:
    """``relu(input @ w.T + b)`` for ``u.numel()`` pairs, into a new ``[P, H]`` buffer."""
    P, (H, K) = u.numel(), w.shape
    y = torch.empty(P, H, dtype=torch.float32, device=x.device)
    BLOCK_K = block_size(K, cap=MAX_BLOCK_K, floor=16, name="layer input width")
    grid = lambda META: (triton.cdiv(P, META["BLOCK_P"]),  # noqa: E731
                         triton.cdiv(H, META["BLOCK_J"]))
    _pair_hidden_kernel[grid](
        x, u, v, w, b, y,
        P, K, H, x.stride(0), x.stride(1), w.stride(0), w.stride(1), y.stride(0), y.stride(1),
        GATHER=gather, BLOCK_P=BLOCK_P, BLOCK_K=BLOCK_K, BLOCK_J=BLOCK_J, PRECISION=precision,
        num_warps=_warps(BLOCK_K),
    )
    return y


def _logits(x, u, v, w, b, w_out, b_out, out, gather: bool, precision: str) -> None:
    """Last hidden layer (if ``w`` is given) and the final Linear, written into ``out [P]``."""
    P = out.numel()
    K = x.shape[1]
    has_hidden = w is not None
    if not has_hidden:
        w, b = w_out, b_out  # stand-ins, never read (HAS_HIDDEN is False)
    BLOCK_K = block_size(K, cap=MAX_BLOCK_K, floor=16, name="layer input width")
    grid = lambda META: (triton.cdiv(P, META["BLOCK_P"]),)  # noqa: E731
    _pair_logit_kernel[grid](
        x, u, v, w, b, w_out, b_out, out,
        P, K, w.shape[0], x.stride(0), x.stride(1), w.stride(0), w.stride(1), w_out.stride(1),
        GATHER=gather, HAS_HIDDEN=has_hidden, BLOCK_P=BLOCK_P_LOGIT, BLOCK_K=BLOCK_K, BLOCK_J=BLOCK_J,
        PRECISION=precision, num_warps=_warps(BLOCK_K),
    )


def score_pairs(z: torch.Tensor, u: torch.Tensor, v: torch.Tensor, weights: Sequence[torch.Tensor],
                biases: Sequence[torch.Tensor], chunk: int = CHUNK,
                precision: str = PRECISION) -> torch.Tensor:
    """Launch the fused scorer; inputs are trusted (``backends/triton.py`` validates them).

    ``z [n, m]`` float32, ``u``/``v [P]`` int64, ``weights[i] [out, in]`` and ``biases[i] [out]``
    float32 with ``weights[-1]`` of shape ``[1, in]``; returns logits ``[P]``. ``chunk`` bounds the
    pairs per staged buffer when the MLP has three or more layers; with one or two layers nothing
    is staged and it is unused.
    """
    P = u.numel()
    out = torch.empty(P, dtype=torch.float32, device=z.device)
    if P == 0:
        return out
    u, v = u.contiguous(), v.contiguous()
    biases = [b.contiguous() for b in biases]
    w_out, b_out = weights[-1], biases[-1]
    if len(weights) == 1:
        _logits(z, u, v, None, None, w_out, b_out, out, gather=True, precision=precision)
        return out
    if len(weights) == 2:
        _logits(z, u, v, weights[0], biases[0], w_out, b_out, out, gather=True, precision=precision)
        return out
    for s in range(0, P, chunk):
        uc, vc = u[s:s + chunk], v[s:s + chunk]
        x = _hidden_layer(z, uc, vc, weights[0], biases[0], gather=True, precision=precision)
        for w, b in zip(weights[1:-2], biases[1:-2]):
            x = _hidden_layer(x, uc, vc, w, b, gather=False, precision=precision)
        _logits(x, uc, vc, weights[-2], biases[-2], w_out, b_out, out[s:s + chunk], gather=False,
                precision=precision)
    return out
