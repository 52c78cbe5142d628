r"""The fused pair scorer in Triton: gather, Hadamard product and MLP to one logit per pair.

For pairs ``(u_p, v_p)``: :math:`x_p = z_{u_p} \odot z_{v_p}`, then ``Linear+ReLU`` layers and a
final ``Linear`` to one logit (HeaRT's MLP scorer; ``weights[i]`` is ``[out, in]``).

For MLPs of one or two layers ``_pair_logit_kernel`` fuses all of it. A program gathers its
``[BLOCK_P, K]`` Hadamard tile once, loops over the hidden layer in ``BLOCK_J`` column blocks
(``tl.dot`` + bias + ReLU), and folds each block straight into the logit with the final weight
row, so neither ``z[u] * z[v]`` nor the hidden ``[P, H]`` activations reach global memory. With a
single Linear layer it is a gathered dot product.

MLPs with three or more layers (HeaRT's default) need each earlier layer's full output before the
next product, and a whole ``[in, out]`` weight tile (256 x 256 fp32 = 256 KB) fits neither
registers nor shared memory. Their hidden layers are plain dense products over a staged chunk of
pairs, so they run on cuBLAS through torch, and the kernel adds only the final Linear (a dot per
pair). A Triton kernel for the earlier layers (since removed) ran 6x (fp32) to 40x (tf32x3) slower
than cuBLAS on an H100 (benchmarks/results/gpu_notes.md), and fusing the last hidden layer into
this kernel, as for two layers, ran 7 % slower than cuBLAS there (2.78 against 2.59 ms for 228k
pairs, 3 layers, benchmarks/results/gpu_check.json): its 16-pair tiles feed the tensor cores
poorly, and on a staged input there is no gather to fuse. Chunks are large (65536 pairs, 64 MB
at m = 256): each chunk costs about six launches of host time, while re-reading a staged chunk
from HBM costs tens of microseconds.

``precision`` is ``tl.dot``'s ``input_precision``: ``"ieee"`` multiplies in plain fp32 on the CUDA
cores; ``"tf32x3"`` splits each fp32 operand into two TF32 parts and runs three tensor-core
products (errors near fp32's, measured by ``benchmarks/gpu_check.py``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from .aggregate import block_size

__all__ = ["score_pairs"]

# Pairs per program (>= 16 for tl.dot). The program also holds a hidden block and its product:
# at [32, 256] inputs the gathering variant spilled ~6 KB per thread to the stack on sm_90
# (cuobjdump --dump-resource-usage); at 16 no variant spills (at most 178 registers for K = 512).
BLOCK_P = 16
# Pairs per staged chunk of a 3+-layer MLP (see the module docstring).
CHUNK = 65536
# tl.dot's input precision (see the module docstring).
PRECISION = "tf32x3"
# Output features per tl.dot step: a [256, 32] weight tile (32 KB) per step, re-read from L2.
BLOCK_J = 32
# The input tile spans the whole input width in registers; 512 (32 KB at BLOCK_P = 16) is the
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
    # 4 warps: at K = 256 (tf32x3) they ran 2x faster than 8 on an H100 (1.17 ms against 2.39 ms
    # for 228k pairs); 8 only for the widest tiles, to keep the per-thread share of the input tile.
    return 8 if block_k >= 512 else 4


def _logits(x, u, v, w, b, w_out, b_out, out, gather: bool, precision: str, block_p: int,
            num_warps: Optional[int]) -> None:
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
        GATHER=gather, HAS_HIDDEN=has_hidden, BLOCK_P=block_p, BLOCK_K=BLOCK_K, BLOCK_J=BLOCK_J,
        PRECISION=precision, num_warps=num_warps or _warps(BLOCK_K),
    )


def score_pairs(z: torch.Tensor, u: torch.Tensor, v: torch.Tensor, weights: Sequence[torch.Tensor],
                biases: Sequence[torch.Tensor], chunk: int = CHUNK, precision: str = PRECISION, *,
                block_p: int = BLOCK_P, num_warps: Optional[int] = None) -> torch.Tensor:
    """Launch the fused scorer; inputs are trusted (``backends/triton.py`` validates them).

    ``z [n, m]`` float32, ``u``/``v [P]`` int64, ``weights[i] [out, in]`` and ``biases[i] [out]``
    float32 with ``weights[-1]`` of shape ``[1, in]``; returns logits ``[P]``. ``chunk`` bounds the
    pairs per staged buffer when the MLP has three or more layers; with one or two layers nothing
    is staged and it is unused. ``block_p`` and ``num_warps`` only change the tiling.
    """
    P = u.numel()
    out = torch.empty(P, dtype=torch.float32, device=z.device)
    if P == 0:
        return out
    u, v = u.contiguous(), v.contiguous()
    biases = [b.contiguous() for b in biases]
    tiling = dict(precision=precision, block_p=block_p, num_warps=num_warps)
    w_out, b_out = weights[-1], biases[-1]
    if len(weights) <= 2:
        w_last, b_last = (weights[-2], biases[-2]) if len(weights) == 2 else (None, None)
        _logits(z, u, v, w_last, b_last, w_out, b_out, out, gather=True, **tiling)
        return out
    for s in range(0, P, chunk):
        uc, vc = u[s:s + chunk], v[s:s + chunk]
        x = z[uc] * z[vc]
        for w, b in zip(weights[:-1], biases[:-1]):  # cuBLAS: see the module docstring
            x = torch.relu(torch.addmm(b, x, w.T))
        _logits(x, uc, vc, None, None, w_out, b_out, out[s:s + chunk], gather=False, **tiling)
    return out
