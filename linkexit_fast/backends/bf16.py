r"""HeaRT's MLP pair scorer in bfloat16 (fp32 accumulation), with a rigorous per-pair error bound.

:func:`score_pairs_bf16` returns bf16-path logits :math:`\hat s` and bounds :math:`B` such that
both the exact (real) logit :math:`s` and the logit :math:`s_{32}` that ANY fp32 scorer of the
same MLP computes (the C++ one, the torch one, whatever its summation order) lie within
:math:`B` of :math:`\hat s`. Exact rankings (:mod:`linkexit_fast.ranking`) re-score in fp32 only
the pairs whose interval :math:`[\hat s - B, \hat s + B]` can reach what they are compared with.

Kernel and ISA. The C++ op ``torch.ops.linkexit_fast.score_pairs_bf16``
(``csrc/ops/cpu/score_pairs_bf16_kernel.cpp``) runs, per block of 32 pairs and in one pass:
:math:`x = z_u \circ z_v` in fp32; for each hidden layer, the input :math:`y` (fp32) split into
:math:`y_{hi} = \mathrm{bf16}(y)`, :math:`y_{lo} = \mathrm{bf16}(y - y_{hi})`; the products
:math:`W_{hi} y_{hi} + W_{hi} y_{lo} + W_{lo} y_{hi}` (``products=3``) or :math:`W_{hi} y_{hi}`
(``products=1``) with fp32 accumulation, on AMX tiles where the CPU has them (``tdpbf16ps``),
else with AVX512-BF16 ``vdpbf16ps``; bias and ReLU in fp32; the last layer as an fp32 dot
product. :math:`W_{hi} = \mathrm{bf16}(W)`, :math:`W_{lo} = \mathrm{bf16}(W - W_{hi})` are made
here (bf16 subnormals set to 0: the hardware reads them as 0). The ISA is chosen at run time
(:func:`bf16_isa`: cpuid, XCR0 and Linux's AMX permission request). Without either ISA, without
the C++ ops, on a non-CPU device, with ``LINKEXIT_BF16=0`` or ``force_fp32=True`` the scores are
the fp32 scorer's and every bound is 0. ``products=3`` keeps the bound near 1e-4 of the
magnitudes :math:`|W||h|` (~160x tighter than ``products=1`` on random 2-layer scorers): the
re-scored share of CiteSeer's HeaRT test negatives fell from 14.0% to 0.21%, ogbl-ddi's from
49.6% to 0.62%. It is the default on AMX. The extra products are not free there: three took
1.8-2.5x the kernel time of one (three runs of 15 interleaved rounds, 227,955 pairs at width 256,
2 threads, this Intel Xeon with AMX, 2026-11-30), so with few near-ties one product plus a larger
fp32 re-scoring may rank faster end to end; that trade-off has not been measured.

Error bound (standard forward error analysis, Higham, *Accuracy and Stability of Numerical
Algorithms*, 2nd ed., §2.2, §3.1-3.5). :math:`u_{16} = 2^{-8}`, :math:`u_{32} = 2^{-24}`,
:math:`\gamma_k = k u_{32} / (1 - k u_{32})`: a sum of :math:`k` terms in fp32, in any order and
with or without FMA, errs by at most :math:`\gamma_{k}` times the sum of the terms' magnitudes.
Every rounding may also flush a result below :math:`2^{-126}` to 0 (AMX, ``vdpbf16ps`` and the
bf16 conversions do; FTZ / DAZ modes might), an absolute error :math:`< 2^{-126}` per
operation, collected in the :math:`\tau` terms below. Layers :math:`l = 0..L-1`,
:math:`W_l` is :math:`d_{l+1} \times d_l`, exact values :math:`h_0 = x`, :math:`a_l = W_l h_l
+ b_l`, :math:`h_{l+1} = \mathrm{relu}(a_l)`, :math:`s = a_{L-1}`; hats are the kernel's values,
superscript 32 the fp32 scorer's. :math:`E_l` bounds :math:`|\hat h_l - h_l| + |h^{32}_l - h_l|`.

* Input: both compute :math:`\mathrm{fl}_{32}(z_u z_v)`, so :math:`E_0 \le 2u_{32}|\hat h_0| +
  2^{-125}`.
* Split (``products=3``) of an fp32 vector :math:`y`: :math:`|y - y_{hi}| \le u_{16}|y| +
  2^{-126}` (round to nearest), :math:`y - y_{hi}` is exact (Sterbenz), so
  :math:`|y_{lo}| \le (1+u_{16})u_{16}|y| + 2^{-124}` and :math:`\delta y = y - y_{hi} - y_{lo}`
  has :math:`|\delta y| \le u_{16}^2|y| + 2^{-124}`. With :math:`|W_{hi}|, |W_{lo}|` and
  :math:`D = |W - W_{hi} - W_{lo}|` the exact matrices (float64, from the actual bf16 values):
  :math:`Wy - S = W_{hi}\delta y + W_{lo}(y - y_{hi}) + (W - W_{hi} - W_{lo})y` for the sum
  :math:`S` of the three products, each exact in fp32, and the accumulation of :math:`N = 3d_l`
  products plus the bias errs by :math:`\gamma_{N+1}(\sum|\text{products}| + |b|)`. Hence
  :math:`|\hat a - (W\hat h + b)| \le M|\hat h| + \gamma_{N+1}|b| + \tau`,

  .. math:: M = \gamma_{N+1}\big((1+u_{16})^2|W_{hi}| + (1+u_{16})|W_{lo}|\big) + u_{16}^2|W_{hi}|
     + u_{16}|W_{lo}| + D.

  ``products=1``: :math:`W_{lo} = 0`, :math:`D = |W - W_{hi}|`, :math:`N = d_l`, and
  :math:`(1+u_{16})^2, u_{16}^2` become :math:`1+u_{16}, u_{16}`.
  The last layer (fp32 on both sides): :math:`M = \gamma_{d+1}|W|`.
* The fp32 scorer: :math:`|a^{32} - a| \le |W||h^{32} - h| + \gamma_{d_l+1}(|W||h^{32}| + |b|) +
  \tau^{32}` and :math:`|h^{32}| \le |\hat h| + E`, so with ReLU 1-Lipschitz:
  :math:`E_{l+1} \le (1+\gamma_{d_l+1})|W_l|E_l + (M_l + \gamma_{d_l+1}|W_l|)|\hat h_l| +
  (\gamma_{N+1} + \gamma_{d_l+1})|b_l| + \tau_l + \tau^{32}_l`, with
  :math:`\tau_l + \tau^{32}_l \le 2^{-120}((|W_{hi}| + |W_{lo}| + |W|)\mathbf 1 + N + d_l + 4)`.

Unrolling with :math:`g_{L-1} = 1`, :math:`g_{l-1} = (1+\gamma_{d_l+1})|W_l|^\top g_l`
(fixed vectors, float64, from the weights):

.. math::
    |\hat s - s|,\ |\hat s - s_{32}| \le E_L \le \sum_l m_l \cdot |\hat h_l| + C, \quad
    m_l = (M_l + \gamma_{d_l+1}|W_l|)^\top g_l \;(+\, 2u_{32}g_{-1} \text{ for } l = 0),

:math:`C = \sum_l g_l \cdot ((\gamma_{N+1} + \gamma_{d_l+1})|b_l| + \tau_l + \tau^{32}_l) +
2^{-125}\, g_{-1} \cdot \mathbf 1`. The kernel evaluates :math:`m_l \cdot |\hat h_l|` on the
fp32 values it already holds (one extra fp32 dot product per layer and pair). Those sums of
non-negative terms can only under-estimate by rounding: :math:`m_l` goes to fp32 rounded up and
at least :math:`2^{-126}`, each dot product is divided by :math:`1 - \gamma_{d_l+1}`, their sum by
:math:`1 - \gamma_{L+1}`, :math:`2^{-126}(\sum m_l + 2d_l + 2)` per layer covers flushed
products, and a factor :math:`1 + 2^{-19}` the final multiply and add. A non-finite
:math:`\hat s` or bound gives :math:`B = \infty` (always re-scored). Embeddings with fp32
subnormal entries take the fp32 path (a flushed :math:`z` entry times a large one has no
small absolute error).
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from . import cpu

__all__ = ["bf16_isa", "score_pairs_bf16", "default_products"]

U16 = 2.0 ** -8
U32 = 2.0 ** -24
NORMAL_MIN = 2.0 ** -126
TINY = 2.0 ** -120  # per-output absolute slack for flushed results (module docstring: tau)

Scorer = Callable[..., torch.Tensor]


def _gamma(k: int) -> float:
    return k * U32 / (1 - k * U32)


def bf16_isa(device: torch.device = torch.device("cpu")) -> Optional[str]:
    """``"amx-bf16"`` or ``"avx512-bf16"``: the bf16 hardware the C++ kernel uses on this CPU
    (:func:`linkexit_fast.backends.cpu.bf16_isa`); ``None`` without it, without the C++ ops, on a
    non-CPU device, or with ``LINKEXIT_BF16=0`` in the environment (for tests)."""
    if os.environ.get("LINKEXIT_BF16", "1") == "0" or torch.device(device).type != "cpu":
        return None
    return cpu.bf16_isa()


def default_products(isa: Optional[str]) -> int:
    """bf16 products per multiply-add: 3 on AMX (a ~160x tighter bound, so the fp32 re-scoring
    all but disappears, for 1.3x the kernel time in its first measurement and 1.8-2.5x in a
    later one: see the module docstring); 1 with ``vdpbf16ps`` only, where three products
    measured 3x slower than one, slower than the fp32 scorer (on this Xeon, forced)."""
    return 3 if isa == "amx-bf16" else 1


def _up32(t: torch.Tensor) -> torch.Tensor:
    """float32 values >= the float64 ``t >= 0``, and at least the smallest normal float32."""
    t32 = t.to(torch.float32)
    t32 = torch.where(t32.double() < t, torch.nextafter(t32, torch.full_like(t32, float("inf"))), t32)
    return t32.clamp(min=NORMAL_MIN)


def _bf16(t: torch.Tensor) -> torch.Tensor:
    """bf16 rounding with subnormals set to 0, as AMX and ``vdpbf16ps`` read them."""
    b = t.to(torch.bfloat16)
    return torch.where(b.float().abs() < NORMAL_MIN, torch.zeros_like(b), b)


class _Plan:
    """The kernel's arguments for one call: bf16 weight parts, bound vectors and constants."""

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], products: int):
        L = len(weights)
        split = products == 3
        self.hidden: List[torch.Tensor] = []
        ours: List[torch.Tensor] = []  # M_l (float64), our error's magnitude matrix
        n_terms: List[int] = []
        for w in weights[:-1]:
            w = w.detach().float()
            hi = _bf16(w)
            lo = _bf16(w - hi.float()) if split else torch.zeros_like(hi)
            self.hidden.append(torch.stack([hi, lo]) if split else hi[None])
            hi64, lo64, w64 = hi.double().abs(), lo.double().abs(), w.double()
            d = (w64 - hi.double() - lo.double()).abs()
            n = products * w.shape[1]
            y_hi, y_err = ((1 + U16) ** 2, U16 ** 2) if split else (1 + U16, U16)
            g = _gamma(n + 1)
            ours.append(g * (y_hi * hi64 + (1 + U16) * lo64) + y_err * hi64 + U16 * lo64 + d)
            n_terms.append(n)
        d_last = weights[-1].shape[1]
        ours.append(_gamma(d_last + 1) * weights[-1].detach().double().abs())
        n_terms.append(d_last)

        g = torch.ones(1, dtype=torch.float64, device=weights[0].device)
        m: List[Optional[torch.Tensor]] = [None] * L
        const = 0.0
        for l in range(L - 1, -1, -1):
            w64, b64 = weights[l].detach().double(), biases[l].detach().double()
            d_in = w64.shape[1]
            g32 = _gamma(d_in + 1)
            m[l] = (ours[l] + g32 * w64.abs()).T @ g
            parts = self.hidden[l].double().abs().sum(0) if l < L - 1 else w64.abs()
            tau = TINY * ((parts + w64.abs()).sum(1) + n_terms[l] + d_in + 4)
            const += float(g @ ((_gamma(n_terms[l] + 1) + g32) * b64.abs() + tau))
            g = (1 + g32) * w64.abs().T @ g
        m[0] = m[0] + 2 * U32 * g  # the input rounding fl32(z_u z_v), on both sides
        const += 2.0 ** -125 * float(g.sum())
        # float64 sums of non-negative terms: relative error < 1000 * 2^-53
        self.bound_vectors = [_up32(v * (1 + 1e-12)) for v in m]
        dmax = max(w.shape[1] for w in weights)
        for v in self.bound_vectors:  # the kernel's magnitude dot products, flushed
            const += NORMAL_MIN * (float(v.double().sum()) + 2 * v.numel() + 2)
        slack = 1 + 2.0 ** -19  # the kernel's final multiply and add, and float64 -> float32
        self.bound_scale = slack / ((1 - _gamma(dmax + 1)) * (1 - _gamma(L + 1)))
        self.bound_const = const * (1 + 1e-12) * slack
        self.biases = [b.detach().float() for b in biases]
        self.last = weights[-1].detach().float()


def _fp32_default() -> Scorer:
    from . import get_backend
    return lambda z, u, v, w, b: get_backend("auto", z.device).score_pairs(z, u, v, list(w), list(b))


@torch.no_grad()
def score_pairs_bf16(z: torch.Tensor, u: torch.Tensor, v: torch.Tensor, weights: Sequence[torch.Tensor],
                     biases: Sequence[torch.Tensor], *, products: Optional[int] = None, isa: str = "auto",
                     force_fp32: bool = False, fp32_scorer: Optional[Scorer] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """bf16 logits ``[P]`` and error bounds ``[P]`` (both float32) of HeaRT's MLP scorer.

    ``z [n, m]`` float32; ``u``, ``v [P]`` int64 in ``[0, n)``; ``weights[i] [d_{i+1}, d_i]``
    and ``biases[i] [d_{i+1}]`` float32 in nn.Linear layout, the last ``[1, d_L]`` (inputs are
    trusted: :func:`linkexit_fast.ops.score_pairs` documents and checks the same contract; the
    C++ op re-checks shapes and ranges). For every pair, the exact logit and the logit of any
    fp32 scorer lie in ``[scores - bound, scores + bound]`` (derivation in the module docstring;
    ``inf`` where a value overflowed).

    ``products``: bf16 products per multiply-add, 3 (tight bound) or 1 (``None``:
    :func:`default_products` of the ISA). ``isa``: ``"auto"`` (:func:`bf16_isa`),
    ``"amx-bf16"`` or ``"avx512-bf16"`` (an ISA the CPU lacks raises a RuntimeError). Where
    :func:`bf16_isa` is ``None``, ``z`` holds fp32 subnormals, or ``force_fp32``, this returns
    ``(fp32_scorer(z, u, v, weights, biases), 0)``; ``fp32_scorer`` defaults to the ``"auto"``
    backend's ``score_pairs``.
    """
    if products not in (None, 1, 3):
        raise ValueError(f"products must be 1 or 3, got {products!r}")
    have = bf16_isa(z.device)
    if force_fp32 or have is None or bool(((z != 0) & (z.abs() < NORMAL_MIN)).any()):
        scorer = fp32_scorer or _fp32_default()
        return scorer(z, u, v, weights, biases), torch.zeros(u.numel(), dtype=torch.float32, device=z.device)
    plan = _Plan(weights, biases, products or default_products(have if isa == "auto" else isa))
    return cpu.score_pairs_bf16(z, u, v, plan.hidden, plan.biases, plan.last, plan.bound_vectors,
                                plan.bound_scale, plan.bound_const, isa)
