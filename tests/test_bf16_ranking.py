"""bf16 pair scorer: its error bound holds against float64 and both fp32 scorers on adversarial
inputs; exact rankings equal fp32 HeaRT metrics on near-tied score sets; the run-time CPU choice
and the forced fp32 fallback.

    python -m pytest -q tests/test_bf16_ranking.py
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from linkexit_fast.backends import bf16, cpu, torch_ops
from linkexit_fast.graph import Graph
from linkexit_fast.metrics import heart_metrics
from linkexit_fast.models import EarlyExitLinkPredictor, ModelConfig
from linkexit_fast.ranking import exact_heart_metrics, heart_metrics_from_embeddings

ISA = bf16.bf16_isa()
HAS_BF16 = ISA is not None
FP32_SCORERS = {"torch": torch_ops.score_pairs}
if cpu.available():
    FP32_SCORERS["cpu"] = cpu.score_pairs


def _mlp64(z, u, v, weights, biases):
    """The scorer in float64 (independent of the code under test)."""
    x = z[u].double() * z[v].double()
    for w, b in zip(weights[:-1], biases[:-1]):
        x = torch.relu(x @ w.double().T + b.double())
    return (x @ weights[-1].double().T + biases[-1].double()).reshape(-1)


def _case(kind: str, seed: int):
    """(z, u, v, weights, biases) with adversarial magnitudes; fp32 stays finite."""
    g = torch.Generator().manual_seed(seed)
    n, m, widths = 60, 40, [40, 48, 1]
    z_scale, w_scale = 1.0, 1.0
    if kind == "tiny":  # z ~ 1e-20: products ~1e-40 are fp32 denormals, flushed by AMX
        z_scale = 1e-20
    elif kind == "huge":
        z_scale, w_scale = 1e8, 1e3
    elif kind == "deep":
        widths = [40, 33, 64, 17, 40, 1]
    z = torch.randn(n, m, generator=g) * z_scale
    if kind == "boundaries":  # midpoints between adjacent bf16 values: round-to-nearest-even ties
        zb = torch.randn(n, m, generator=g).to(torch.bfloat16).float()
        z = zb * (1 + 2.0 ** -8)
    weights, biases, d = [], [], m
    for i, w_out in enumerate(widths):
        w = torch.randn(w_out, d, generator=g) * (w_scale / d ** 0.5)
        if kind == "cancel":  # each row sums to ~0 against a constant input: large |W||h|, small W h
            w[:, d // 2:] = -w[:, :d // 2].flip(1)[:, :d - d // 2]
        if kind == "boundaries":
            w = w.to(torch.bfloat16).float() * (1 + 2.0 ** -8)
        weights.append(w)
        biases.append(torch.randn(w_out, generator=g) * (w_scale if kind != "tiny" else 1e-30))
        d = w_out
    if kind == "cancel":
        z = z.abs().mean() + 1e-3 * z  # nearly constant rows: the products nearly cancel
    u = torch.randint(0, n, (700,), generator=g)
    v = torch.randint(0, n, (700,), generator=g)
    u[:50] = v[:50]  # u == v
    return z, u, v, weights, biases


ISAS = {"amx-bf16": ["amx-bf16", "avx512-bf16"], "avx512-bf16": ["avx512-bf16"]}.get(bf16.bf16_isa(), [])


@pytest.mark.skipif(not HAS_BF16, reason="no AVX512-BF16 / AMX here: the bf16 path is not taken")
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("products", [1, 3])
@pytest.mark.parametrize("kind", ["plain", "tiny", "huge", "boundaries", "cancel", "deep"])
@pytest.mark.parametrize("seed", [0, 1])
def test_bound_holds(kind, seed, products, isa):
    z, u, v, weights, biases = _case(kind, seed)
    s, bound = bf16.score_pairs_bf16(z, u, v, weights, biases, products=products, isa=isa)
    assert s.dtype == bound.dtype == torch.float32 and s.shape == bound.shape == u.shape
    exact = _mlp64(z, u, v, weights, biases)
    assert torch.isfinite(bound).all() and (bound > 0).all()
    b64 = bound.double()
    assert ((s.double() - exact).abs() <= b64).all()
    for name, scorer in FP32_SCORERS.items():
        s32 = scorer(z, u, v, weights, biases)
        assert torch.isfinite(s32).all(), name
        assert ((s.double() - s32.double()).abs() <= b64).all(), name
    # Not vacuous: the bound is a small part of the magnitude scale (|W| |h| products): ~u16
    # for one product per multiply-add, ~1e-4 for three (plus the deep case's |W| chains).
    scale = _mag64(z, u, v, weights, biases)
    assert float((b64 / scale).max()) < (0.5 if products == 1 else 0.02 if kind == "deep" else 3e-4)


def _split64(t: torch.Tensor, products: int):
    """(hi, lo) float64 of t's bf16 split as the kernel does it, written out independently:
    bf16 round to nearest even, then the remainder rounded again (lo = 0 for one product)."""
    hi = t.float().to(torch.bfloat16).double()
    lo = (t.float() - hi.float()).to(torch.bfloat16).double() if products == 3 else torch.zeros_like(hi)
    return hi, lo


@pytest.mark.skipif(not HAS_BF16, reason="no AVX512-BF16 / AMX here")
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("products", [1, 3])
def test_kernel_computes_the_split_products(products, isa):
    """The kernel's logits equal a float64 emulation of its bf16 arithmetic up to fp32
    accumulation (1e-5 of the magnitudes; bf16 rounding anywhere else would cost ~4e-3)."""
    z, u, v, weights, biases = _case("deep", 3)
    x = (z[u] * z[v]).double()  # fp32 products, as the kernel forms them
    for w, b in zip(weights[:-1], biases[:-1]):
        xh, xl = _split64(x, products)
        wh, wl = _split64(w, products)
        x = torch.relu(xh @ wh.T + xl @ wh.T + xh @ wl.T + b.double())
        x = x.float().double()  # the kernel holds activations in fp32
    want = (x @ weights[-1].double().T + biases[-1].double()).reshape(-1)
    got, _ = bf16.score_pairs_bf16(z, u, v, weights, biases, products=products, isa=isa)
    assert ((got.double() - want).abs() <= 1e-5 * _mag64(z, u, v, weights, biases)).all()


@pytest.mark.skipif(bf16.bf16_isa() != "amx-bf16", reason="AMX and AVX512-BF16 both needed")
def test_isas_agree_within_bounds():
    z, u, v, weights, biases = _case("plain", 4)
    s_amx, b_amx = bf16.score_pairs_bf16(z, u, v, weights, biases, products=3, isa="amx-bf16")
    s_avx, b_avx = bf16.score_pairs_bf16(z, u, v, weights, biases, products=3, isa="avx512-bf16")
    assert torch.allclose(b_amx, b_avx, rtol=1e-3)  # same formula on slightly different h
    assert ((s_amx - s_avx).abs() <= b_amx + b_avx).all()  # both within their bound of fp32
    auto, _ = bf16.score_pairs_bf16(z, u, v, weights, biases)  # the run-time choice: AMX here
    assert torch.equal(auto, s_amx)


def _mag64(z, u, v, weights, biases):
    x = (z[u].double() * z[v].double()).abs()
    for w, b in zip(weights, biases):
        x = x @ w.double().abs().T + b.double().abs()
    return x.reshape(-1)


def _near_tie_case(seed: int, P: int = 40, K: int = 60):
    """Embeddings and pairs where many negatives land within the bf16 bound of their positive:
    the positive pair itself, reversed, and rows that differ from the positive's by ~1 ulp."""
    g = torch.Generator().manual_seed(seed)
    m, base = 32, 3 * P
    z = torch.rand(base, m, generator=g) * 2  # non-negative products and mostly non-negative
    twins = z[:P] * (1 + torch.randint(-2, 3, (P, m), generator=g) * 2.0 ** -23)
    z = torch.cat([z, twins])  # row base + i: a near copy of row i
    # sparse non-negative hidden weights: little cancellation, so the bound leaves most random
    # negatives decided
    weights = [(torch.rand(48, m, generator=g) < 0.15) * torch.rand(48, m, generator=g),
               (torch.rand(48, 48, generator=g) < 0.15) * torch.rand(48, 48, generator=g) / 3,
               torch.randn(1, 48, generator=g)]
    biases = [torch.randn(48, generator=g) * 0.1, torch.randn(48, generator=g) * 0.1, torch.randn(1, generator=g)]
    pos = torch.stack([torch.arange(P), torch.arange(P, 2 * P)], 1)
    neg = torch.randint(0, base, (P, K, 2), generator=g)
    neg[:, :10] = pos[:, None]  # duplicates of the positive
    neg[:, 10:15] = pos.flip(1)[:, None]  # reversed
    neg[:, 15:30, 0] = torch.arange(P)[:, None] + base  # twin of u with v: within a few ulps
    neg[:, 15:30, 1] = pos[:, 1:2]
    return z, pos, neg, weights, biases


@pytest.mark.parametrize("scores", ["logit", "probability"])
@pytest.mark.parametrize("scorer", list(FP32_SCORERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_metrics_equal_fp32_metrics(seed, scorer, scores):
    z, pos, neg, weights, biases = _near_tie_case(seed)
    fp32 = FP32_SCORERS[scorer]
    P, K = neg.shape[:2]
    allpairs = torch.cat([pos, neg.reshape(-1, 2)])
    logits = fp32(z, allpairs[:, 0], allpairs[:, 1], weights, biases)  # one fp32 batch, as predict does
    if scores == "probability":  # padded: torch's scalar tail (numel % 32) may differ by an ulp
        padded = torch.cat([logits, torch.zeros(-len(logits) % 64)])
        logits = torch.sigmoid(padded)[:len(logits)]
    want = heart_metrics(logits[:P], logits[P:].view(P, K))
    got = heart_metrics_from_embeddings(z, pos, neg, weights, biases, fp32, scores=scores)
    assert {k: got[k] for k in want} == want
    one_pass = heart_metrics_from_embeddings(z, pos, neg, weights, biases, fp32, scores=scores, cascade=False)
    assert {k: one_pass[k] for k in want} == want
    if HAS_BF16:
        assert 0 < got["rescored"] < P * K  # the near ties are re-scored, the rest is not
        assert got["rescored"] >= P * 15  # at least the duplicates and reversed copies
    if bf16.bf16_isa() == "amx-bf16":  # the cascade: three products for what one leaves open
        assert got["rescored"] <= got["refined_bf16x3"] < P * K
        assert one_pass["refined_bf16x3"] == 0


def test_probability_ties_differ_from_logit_ties():
    """Saturated sigmoids tie distinct logits: the probability metrics must see those ties."""
    z, pos, neg, weights, biases = _near_tie_case(3)
    big = [w * 1 for w in weights]
    big_b = [b.clone() for b in biases]
    big_b[-1] = big_b[-1] + 1000.0  # every probability rounds to 1.0
    fp32 = torch_ops.score_pairs
    got = heart_metrics_from_embeddings(z, pos, neg, big, big_b, fp32, scores="probability")
    assert got["mrr"] == pytest.approx(1 / (1 + neg.shape[1] / 2))  # all tied: rank 1 + K / 2
    got_logit = heart_metrics_from_embeddings(z, pos, neg, big, big_b, fp32, scores="logit")
    assert got_logit["mrr"] != got["mrr"]


# ------------------------------------------------------------------ run-time choice / fallback
def test_isa_probe_matches_cpu_flags():
    flags = open("/proc/cpuinfo").read().split() if __import__("os").path.exists("/proc/cpuinfo") else []
    isa = bf16.bf16_isa()
    if "amx_bf16" in flags and "amx_tile" in flags:
        assert isa == "amx-bf16"
    elif "avx512_bf16" in flags:
        assert isa == "avx512-bf16"
    elif flags:
        assert isa is None


def test_forced_fallback_is_the_fp32_scorer(monkeypatch):
    z, u, v, weights, biases = _case("plain", 0)
    want = torch_ops.score_pairs(z, u, v, weights, biases)
    for kwargs in ({"force_fp32": True}, {}):
        if not kwargs:
            monkeypatch.setenv("LINKEXIT_BF16", "0")
        assert bf16.bf16_isa() is None or kwargs
        s, bound = bf16.score_pairs_bf16(z, u, v, weights, biases, fp32_scorer=torch_ops.score_pairs, **kwargs)
        assert torch.equal(s, want) and torch.equal(bound, torch.zeros_like(bound))


def test_denormal_embeddings_take_the_fp32_path():
    z, u, v, weights, biases = _case("plain", 1)
    z[3, 5] = 1e-40  # fp32 denormal: bf16 rounding has no relative bound there
    s, bound = bf16.score_pairs_bf16(z, u, v, weights, biases, fp32_scorer=torch_ops.score_pairs)
    assert torch.equal(bound, torch.zeros_like(bound))


@pytest.mark.parametrize("force_fp32, backend", [(False, "auto"), (True, "auto"), (False, "reference")])
def test_exact_heart_metrics_matches_predict(force_fp32, backend):
    """End to end on a small random model: same metrics as ``predict`` + ``heart_metrics``."""
    import linkexit_fast as lf
    n = 300
    graph, model, g = _small_model(seed=0, n=n, edges=1500)
    pos = torch.randint(0, n, (30, 2), generator=g)
    neg = torch.randint(0, n, (30, 50, 2), generator=g)
    neg[:, :5] = pos[:, None]
    P, K = neg.shape[:2]
    s = lf.predict(graph, torch.cat([pos, neg.reshape(-1, 2)]), 0.7, model=model, backend=backend)
    want = heart_metrics(s[:P], s[P:].view(P, K))
    got = exact_heart_metrics(model, graph, pos, neg, 0.7, force_fp32=force_fp32, backend=backend)
    assert {k: got[k] for k in want} == want
    with pytest.raises(ValueError, match="shared negatives"):
        exact_heart_metrics(model, graph, pos, neg[:, 0], 0.7)


def _small_model(seed: int = 1, n: int = 200, edges: int = 1000):
    """(graph, untrained embedding model with a 3-layer scorer, the generator that drew the graph,
    for further draws)."""
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, edges), generator=g)
    graph = Graph.from_any(torch.cat([ei, ei.flip(0)], 1))
    torch.manual_seed(seed)
    model = EarlyExitLinkPredictor(ModelConfig(0, n, hidden=32, layers=3, predictor_layers=3)).eval()
    return graph, model, g


def _small_case():
    graph, model, g = _small_model()
    return graph, model, torch.randint(0, 200, (500, 2), generator=g)


def test_predict_bf16_within_its_bound():
    import linkexit_fast as lf
    graph, model, pairs = _small_case()
    want = lf.predict(graph, pairs, 0.7, model=model)
    got, stats = lf.predict(graph, pairs, 0.7, model=model, precision="bf16", return_stats=True)
    assert stats.score_bound.shape == (500,) and "score_bound" not in stats.as_dict()
    # sigmoid is 1/4-Lipschitz; 1e-6 covers the two sigmoids' own rounding
    assert ((got - want).abs() <= stats.score_bound / 4 + 1e-6).all()
    if HAS_BF16:
        assert (stats.score_bound > 0).all() and not torch.equal(got, want)
    with pytest.raises(ValueError, match="precision"):
        lf.predict(graph, pairs, 0.7, model=model, precision="fp16")
    with pytest.raises(ValueError, match="engine backend"):
        lf.predict(graph, pairs, 0.7, model=model, precision="bf16", backend="reference")


def test_embeddings_match_the_reference_forward():
    import linkexit_fast as lf
    graph, model, pairs = _small_case()
    nodes = pairs.reshape(-1)
    z, rows = lf.embeddings(graph, nodes, 0.7, model=model)
    z_ref, rows_ref = lf.embeddings(graph, nodes, 0.7, model=model, backend="reference")
    assert torch.equal(rows_ref, nodes)
    assert torch.allclose(z[rows], z_ref[nodes], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="nodes"):
        lf.embeddings(graph, torch.tensor([graph.num_nodes]), model=model)


@pytest.mark.parametrize("exit", ["node", "subgraph"])
def test_eval_report_bf16_equals_fp32_on_citeseer(exit):
    """``eval --precision bf16`` on CiteSeer's official HeaRT validation negatives (227 x 500):
    the same MRR / Hits@K and pair resolution as the fp32 report, which scores every pair."""
    from conftest import require_data
    from linkexit_fast.checkpoint import Predictor
    from linkexit_fast.datasets import load_heart
    from linkexit_fast.report import eval_report
    require_data("heart", "citeseer")
    split = load_heart("citeseer", require_data())
    torch.manual_seed(0)
    model = EarlyExitLinkPredictor(ModelConfig(split.graph.num_features, split.graph.num_nodes, hidden=32,
                                               layers=3, exit=exit, predictor_layers=3)).eval()
    pred = Predictor(model, split.graph, {}, {}, {}, Path("."))
    fp32 = eval_report(pred, split, threshold=0.6, which=("valid",))
    bf16 = eval_report(pred, split, threshold=0.6, which=("valid",), precision="bf16")
    assert bf16["valid"]["metrics"] == {k: v for k, v in fp32["valid"]["metrics"].items() if k in bf16["valid"]["metrics"]}
    assert set(bf16["valid"]["metrics"]) == {"mrr", "hits@1", "hits@3", "hits@10", "hits@20", "hits@50", "hits@100"}
    assert bf16["valid"]["resolved_fraction_per_layer"] == fp32["valid"]["resolved_fraction_per_layer"]
    assert bf16["valid"]["rescored"]["rescored"] <= 227 * 500
    rescored = bf16["valid"]["rescored"]
    if ISA == "amx-bf16":  # the cascade's three products decide about half of them
        assert rescored["rescored_share"] < 0.5 and rescored["refined_bf16x3"] > 0
    else:  # one product a multiply-add (default_products): no cascade. Its bound is too loose to
        # decide this untrained model's close scores (measured on an AVX512-BF16 EPYC: all 113,500
        # re-scored; three products there would leave 49 %, at more than fp32's cost there)
        assert rescored["refined_bf16x3"] == 0


def test_eval_report_bf16_refuses_shared_negatives():
    from linkexit_fast.checkpoint import Predictor
    from linkexit_fast.datasets import synthetic
    from linkexit_fast.report import eval_report
    split = synthetic(300)
    model = EarlyExitLinkPredictor(ModelConfig(split.graph.num_features, 300, hidden=16, layers=2)).eval()
    pred = Predictor(model, split.graph, {}, {}, {}, Path("."))
    with pytest.raises(ValueError, match="shared set"):
        eval_report(pred, split, precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        eval_report(pred, split, precision="fp16")
