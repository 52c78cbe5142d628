r"""The fused exit head in Triton: confidence MLP, exit rule and SAS step size in one pass over ``h``.

For rows ``h [n, k]``:

.. math::
    l = \mathrm{relu}(h W_1^\top + b_1) W_2^\top + b_2, \quad exit = l_1 - l_0 \ge margin\_bound,
    \quad p_{exit} = \sigma(l_1 - l_0)

and, with the temperature head, :math:`\nu = \max(\mathrm{softplus}(h w_\nu + b_\nu) + \tau_0, 0.1)`
and :math:`step = \sigma(-(l_1 - l_0) / \nu)` (Eq. 7). Each program reads a ``[BLOCK_N, k]`` slab
of ``h`` once, in ``BLOCK_K`` column steps that feed both the ``W_1`` product (``tl.dot``) and
the ``w_nu`` dot product; the hidden layer never leaves registers.

``margin_bound`` is ``logit(threshold)`` as a float32 (``+inf`` for threshold 1), from
``linkexit_fast.backends.torch_ops.exit_margin_bound``: the exit is decided on the margin
because the float32 sigmoid saturates.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from .aggregate import block_size

__all__ = ["exit_decision"]

# Rows per program: 64 rows x 32 hidden units is an 8 KB fp32 accumulator, and n in the
# hundreds of thousands still gives thousands of programs.
BLOCK_N = 64
# Feature columns per step: a [64, 32] h tile plus a [32, 32] W1 tile, both >= 16 as tl.dot needs.
BLOCK_K = 32
# tl.dot's input precision. "tf32x3" splits each fp32 operand into two TF32 parts and runs three
# tensor-core products: on an H100 (1M rows, k = 256) 0.74 ms against 2.54 ms for "ieee" (plain
# fp32 on the CUDA cores), with EXIT probabilities within 5e-7 of fp32 torch
# (benchmarks/results/gpu_check.json, exit-head sweep): a margin error of about 2e-6 where
# p_exit is near 0.5, inside the contract's near-tie band on the margin (tests/test_engine.py,
# NEAR_TIE). The margin's own error was not measured where p_exit saturates.
PRECISION = "tf32x3"
# The hidden layer is held whole in one block; the exit heads use 32 units.
MAX_BLOCK_H = 256


@triton.jit
def _exit_head_kernel(
    # pointers: inputs, parameters, outputs
    h_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, w_nu_ptr, b_nu_ptr, p_ptr, flag_ptr, step_ptr,
    # sizes and strides
    n, k, hidden, stride_hn, stride_hk, stride_w1h, stride_w1k, stride_w2o, stride_w2h, stride_wnu,
    # scalars
    margin_bound, tau0,
    # meta-parameters
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr, HAS_NU: tl.constexpr,
    PRECISION: tl.constexpr,
):
    offs_n = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < n
    offs_h = tl.arange(0, BLOCK_H)
    mask_h = offs_h < hidden

    acc = tl.zeros((BLOCK_N, BLOCK_H), dtype=tl.float32)
    nu_acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(0, k, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < k
        x = tl.load(h_ptr + offs_n[:, None] * stride_hn + offs_k[None, :] * stride_hk,
                    mask=mask_n[:, None] & mask_k[None, :], other=0.0).to(tl.float32)
        w1t = tl.load(w1_ptr + offs_k[:, None] * stride_w1k + offs_h[None, :] * stride_w1h,
                      mask=mask_k[:, None] & mask_h[None, :], other=0.0).to(tl.float32)
        acc = tl.dot(x, w1t, acc, input_precision=PRECISION)
        if HAS_NU:
            w_nu = tl.load(w_nu_ptr + offs_k * stride_wnu, mask=mask_k, other=0.0).to(tl.float32)
            nu_acc += tl.sum(x * w_nu[None, :], axis=1)

    b1 = tl.load(b1_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
    hid = tl.maximum(acc + b1[None, :], 0.0)
    w2_0 = tl.load(w2_ptr + offs_h * stride_w2h, mask=mask_h, other=0.0).to(tl.float32)
    w2_1 = tl.load(w2_ptr + stride_w2o + offs_h * stride_w2h, mask=mask_h, other=0.0).to(tl.float32)
    l0 = tl.sum(hid * w2_0[None, :], axis=1) + tl.load(b2_ptr).to(tl.float32)
    l1 = tl.sum(hid * w2_1[None, :], axis=1) + tl.load(b2_ptr + 1).to(tl.float32)
    diff = l1 - l0
    p_exit = tl.sigmoid(diff)
    tl.store(p_ptr + offs_n, p_exit, mask=mask_n)
    tl.store(flag_ptr + offs_n, (diff >= margin_bound).to(tl.int8), mask=mask_n)
    if HAS_NU:
        a = nu_acc + tl.load(b_nu_ptr).to(tl.float32)
        # softplus(a) = max(a, 0) + log(1 + exp(-|a|)): never overflows, within 1 ulp of torch's.
        softplus = tl.maximum(a, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(a)))
        nu = tl.maximum(softplus + tau0, 0.1)
        tl.store(step_ptr + offs_n, tl.sigmoid(-diff / nu), mask=mask_n)


def exit_decision(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                  b2: torch.Tensor, margin_bound: float, w_nu: Optional[torch.Tensor] = None,
                  b_nu: Optional[torch.Tensor] = None, tau0: float = 0.0, *,
                  block_n: int = BLOCK_N, block_k: int = BLOCK_K, num_warps: int = 4,
                  precision: str = PRECISION
                  ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Launch the fused exit head; inputs are trusted (``backends/triton.py`` validates them).

    ``h [n, k]``, ``w1 [H, k]``, ``b1 [H]``, ``w2 [2, H]``, ``b2 [2]``, optional ``w_nu [k]`` and
    ``b_nu [1]``, all float32 on one device; ``margin_bound`` a float32-representable float
    (``exit = l_1 - l_0 >= margin_bound``).
    Returns ``(p_exit [n], exit [n] bool, step [n] or None)``.
    """
    n, k = h.shape
    hidden = w1.shape[0]
    has_nu = w_nu is not None
    p_exit = torch.empty(n, dtype=torch.float32, device=h.device)
    flag = torch.empty(n, dtype=torch.int8, device=h.device)
    step = torch.empty(n, dtype=torch.float32, device=h.device) if has_nu else None
    if n == 0:
        return p_exit, flag.view(torch.bool), step

    BLOCK_H = block_size(hidden, cap=MAX_BLOCK_H, floor=16, name="hidden")
    wn = w_nu if has_nu else p_exit  # stands in for the absent head; never read (HAS_NU is False)
    grid = lambda META: (triton.cdiv(n, META["BLOCK_N"]),)  # noqa: E731
    _exit_head_kernel[grid](
        h, w1, b1.contiguous(), w2, b2.contiguous(), wn, b_nu if has_nu else p_exit,
        p_exit, flag, step if has_nu else p_exit,
        n, k, hidden, h.stride(0), h.stride(1), w1.stride(0), w1.stride(1), w2.stride(0),
        w2.stride(1), wn.stride(0),
        float(margin_bound), float(tau0),
        BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_H=BLOCK_H, HAS_NU=has_nu, PRECISION=precision,
        num_warps=num_warps,
    )
    return p_exit, flag.view(torch.bool), step
