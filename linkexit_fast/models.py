r"""Early-exit link predictors: GCN, ResGCN and SAS-GNN backbones with node or subgraph exits.

Method: "Early-Exit Graph Neural Networks for Link Prediction" (Knyazhitskiy and Di Francesco,
2026), on top of "Early-Exit Graph Neural Networks" (Di Francesco et al., 2025,
https://arxiv.org/abs/2505.18088). The forward here is the plain *reference*: it computes every
node at every layer in dense torch. Training uses it with Gumbel-Softmax samples; the engine
(:mod:`linkexit_fast.engine`) must reproduce its deterministic mode exactly.

Exit layers: a node's state :math:`h^l` is judged at layers ``first_exit .. L-1`` (``first_exit``
is 1 for ``gcn``, whose :math:`h^0` is the raw input, else 0); a node that never exits ends at L.
"""
from __future__ import annotations

import math
import numbers
import reprlib
from dataclasses import asdict, dataclass, field, fields
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .backends.torch_ops import exit_margin_bound
from .graph import Graph, csr_tensor, quiet_sparse

__all__ = ["ModelConfig", "EarlyExitLinkPredictor", "NormAdj", "ForwardResult", "BACKBONES",
           "EXIT_MODES", "SEMANTICS", "TRAIN_MODES"]

BACKBONES = ("gcn", "resgcn", "sas")
EXIT_MODES = ("none", "node", "subgraph")
SEMANTICS = ("freeze", "readout")
# How training turns each head's Gumbel-Softmax sample into an exit (``forward(mode=...)``):
#   gumbel       straight-through: hard sample forward, soft gradient (the method as published);
#   gumbel-soft  the soft sample itself (a relaxation: nodes partly exit, every path gets gradient);
#   random-depth hard samples with no gradient to the heads, which is what the paper's released
#                plain-GCN code does (its decisions are hard comparisons): a random-depth baseline;
#   full-depth   no exits, every node runs to L (SAS steps still come from the heads), for warm-up.
TRAIN_MODES = ("gumbel", "gumbel-soft", "random-depth", "full-depth")
CONTINUE, EXIT = 0, 1
# Deepest model accepted: far past the paper's deepest (L = 15), and a bound on the work and the
# [L, N] buffers a checkpoint's config can demand where no stored tensor reflects the depth.
MAX_LAYERS = 256
# Deepest link scorer accepted (HeaRT's MLP scorer has 2 or 3 layers).
MAX_PREDICTOR_LAYERS = 64
SPARSE_FEATURE_DENSITY = 0.05  # below this share of non-zeros a sparse X W pays off (CiteSeer: 0.9 %)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored as JSON in checkpoints.

    Checked on construction, since checkpoints feed it from untrusted JSON: ``in_channels`` is an
    int >= 0; ``num_nodes``, ``hidden``, ``layers``, ``predictor_layers`` and ``exit_hidden`` are
    ints >= 1 (``bool`` is not an int here; numpy ints are converted), ``layers`` at most
    :data:`MAX_LAYERS` and ``predictor_layers`` at most :data:`MAX_PREDICTOR_LAYERS`; ``dropout`` is a real in
    [0, 1]; ``tau0`` and ``sas_step`` are finite reals; ``backbone``, ``exit`` and ``semantics``
    are one of :data:`BACKBONES`, :data:`EXIT_MODES`, :data:`SEMANTICS`. Anything else raises a
    ``ValueError`` naming the field.
    """

    in_channels: int  # 0: no features, a learnable embedding per node is the input
    num_nodes: int
    hidden: int = 256
    layers: int = 8
    backbone: str = "gcn"
    exit: str = "node"
    semantics: str = "freeze"
    dropout: float = 0.5
    predictor_layers: int = 2
    exit_hidden: int = 32
    tau0: float = 0.5  # temperature offset of f_nu (Eq. 7 clamps nu at 0.1 below)
    sas_step: float = 1.0  # fixed step size of SAS without exits

    def __post_init__(self):
        # A wrong type must not reach torch as a TypeError deep inside a constructor; reprlib keeps
        # the message short whatever the value (a checkpoint can hold megabytes of JSON).
        for name, minimum in (("in_channels", 0), ("num_nodes", 1), ("hidden", 1), ("layers", 1),
                              ("predictor_layers", 1), ("exit_hidden", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
                kind = "a positive int" if minimum else "an int >= 0"
                raise ValueError(f"config field {name} must be {kind}, got {reprlib.repr(value)}")
            setattr(self, name, int(value))
        # SAS-GNN shares its weights across layers: no stored tensor bounds its depth, so a
        # checkpoint could otherwise ask for 10**7 layers (each a pass, and an [L, N] buffer); and
        # a config's module counts must stay small enough to build before its tensors are read.
        for name, cap in (("layers", MAX_LAYERS), ("predictor_layers", MAX_PREDICTOR_LAYERS)):
            if getattr(self, name) > cap:
                raise ValueError(f"config field {name} must be at most {cap}, got {getattr(self, name)}")
        for name, low, high in (("dropout", 0.0, 1.0), ("tau0", -math.inf, math.inf),
                                ("sas_step", -math.inf, math.inf)):
            value = getattr(self, name)
            try:  # float() of a huge int overflows
                real = math.nan if isinstance(value, bool) or not isinstance(value, numbers.Real) else float(value)
            except OverflowError:
                real = math.nan
            if not (math.isfinite(real) and low <= real <= high):
                want = f"a real in [{low}, {high}]" if math.isfinite(low) else "a finite real"
                raise ValueError(f"config field {name} must be {want}, got {reprlib.repr(value)}")
            setattr(self, name, real)
        for name, allowed in (("backbone", BACKBONES), ("exit", EXIT_MODES), ("semantics", SEMANTICS)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"config field {name} must be one of {allowed}, got {reprlib.repr(value)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values) -> "ModelConfig":
        """The inverse of :meth:`to_dict`: a dict with exactly its keys, each checked as above.

        Raises ``ValueError`` for another type, an unknown key or a missing one (a default filled
        in silently could give a checkpoint's weights another model).
        """
        if not isinstance(values, dict):
            raise ValueError(f"config must be a JSON object, got {type(values).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names), key=str)
        if unknown:
            raise ValueError(f"config has unknown field(s) {reprlib.repr(unknown)}; expected {names}")
        missing = [name for name in names if name not in values]
        if missing:
            raise ValueError(f"config lacks field(s) {missing}")
        return cls(**values)


class _SparseMM(torch.autograd.Function):
    """``A @ h`` whose backward multiplies by a precomputed ``A^T`` (torch would re-sort A each step)."""

    @staticmethod
    def forward(ctx, a, a_t, h):
        ctx.a_t = a_t
        return torch.sparse.mm(a, h)

    @staticmethod
    def backward(ctx, grad):
        return None, None, torch.sparse.mm(ctx.a_t, grad)


def sparse_mm(a: torch.Tensor, a_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return _SparseMM.apply(a, a_t, h) if h.requires_grad else torch.sparse.mm(a, h)


class NormAdj:
    r"""Symmetric normalised adjacency of a :class:`Graph` as a sparse CSR operator.

    ``self_loops=True``: :math:`D^{-1/2}(A+I)D^{-1/2}` (GCN); ``False``: :math:`D^{-1/2}AD^{-1/2}`
    (SAS-GNN). The self-loop term is kept apart as ``self_weight`` so the engine can reuse it.
    """

    def __init__(self, graph: Graph, self_loops: bool):
        dinv = graph.dinv(self_loops)
        self.graph = graph
        self.weight = graph.edge_weight(self_loops)
        self.self_weight = dinv * dinv if self_loops else None
        n = graph.num_nodes
        self.csr = csr_tensor(graph.rowptr, graph.col, self.weight, (n, n))

    def __matmul__(self, h: torch.Tensor) -> torch.Tensor:
        # Â is symmetric, so it is its own transpose in the backward pass.
        out = sparse_mm(self.csr, self.csr, h) if self.graph.col.numel() else torch.zeros_like(h)
        if self.self_weight is not None:
            out = out + self.self_weight[:, None] * h
        return out

    def neighbor_mean(self, v: torch.Tensor) -> torch.Tensor:
        """Mean of ``v [N]`` over each node's neighbours; isolated nodes get 1 (vacuously ready)."""
        g = self.graph
        s = torch.zeros(g.num_nodes, dtype=v.dtype, device=v.device).index_add_(0, g.row, v[g.col])
        deg = g.deg.to(v.dtype)
        return torch.where(deg > 0, s / deg.clamp(min=1), torch.ones_like(s))


def gumbel_noise(seed: int, layer: int, head: int, ids: torch.Tensor) -> torch.Tensor:
    """Counter-based Gumbel noise ``[len(ids), 2]``: a pure function of (seed, layer, head, node id),
    so any subset of nodes sees the same draws (splitmix64-style integer hash)."""
    key = ids.to(torch.int64)[:, None] * 4 + head * 2 + torch.arange(2, device=ids.device)[None, :]
    x = key * 0x9E3779B1 + (seed * 1000003 + layer * 7919 + 12345)
    for shift, mult in ((16, 0x45D9F3B), (16, 0x45D9F3B), (16, 1)):
        x = (x ^ (x >> shift)) * mult
        x = x & 0x7FFFFFFF
    u = (x.to(torch.float64) + 0.5) / 2147483648.0
    return (-torch.log(-torch.log(u))).to(torch.float32)


def linear_into(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                out: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, written into ``out`` when given: the same kernel (on a CPU
    ``F.linear`` of a matrix is ``addmm``), without a fresh ``[k, m]`` result."""
    if out is None:
        return F.linear(x, weight, bias)
    return torch.mm(x, weight.T, out=out) if bias is None else torch.addmm(bias, x, weight.T, out=out)


def gelu_into(x: torch.Tensor, out: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.gelu(x)`` (exact, erf), written into ``out`` when given (``out`` may be ``x``)."""
    return F.gelu(x) if out is None else torch.ops.aten.gelu.out(x, out=out)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout`` with the mask drawn by ``torch.rand``: on the CPU, ``F.dropout``'s
    ``bernoulli_`` took 12 ms for a [3327, 256] tensor against 3.4 ms for ``rand`` (2-core Xeon,
    torch 2.13), a third of a CiteSeer L = 8 training step."""
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return torch.zeros_like(x)
    return x * (torch.rand_like(x) >= p) * (1.0 / (1.0 - p))


def _gcn_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """The weights of one GCN layer, initialised as PyG's ``GCNConv``: Glorot-uniform weight, zero
    bias. ``nn.Linear``'s default (small weights, a non-zero bias) let the bias swamp the signal
    after a few layers: every node looked alike at initialisation (pairwise cosine about 0.997
    at L = 8 on CiteSeer) and deep GCNs collapsed."""
    lin = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class ExitHead(nn.Module):
    """Confidence head f_c (2-layer MLP -> logits over {CONTINUE, EXIT}) and temperature head f_nu."""

    def __init__(self, in_dim: int, hidden: int, tau0: float):
        super().__init__()
        self.lin1 = nn.Linear(in_dim, hidden)
        self.lin2 = nn.Linear(hidden, 2)
        self.nu = nn.Linear(in_dim, 1)
        self.tau0 = tau0

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.lin2(torch.relu(self.lin1(h)))

    def temperature(self, h: torch.Tensor) -> torch.Tensor:
        # Eq. 7: the clamp keeps the Gumbel-Softmax from collapsing to a hard sample at nu -> 0.
        return torch.clamp(F.softplus(self.nu(h)).squeeze(-1) + self.tau0, min=0.1)


class LinkPredictor(nn.Module):
    """HeaRT's MLP scorer: ``h_u * h_v`` then ``num_layers`` Linear layers (ReLU, dropout) to a logit."""

    def __init__(self, hidden: int, num_layers: int, dropout: float):
        super().__init__()
        dims = [hidden] * num_layers + [1]
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout

    def forward(self, zu: torch.Tensor, zv: torch.Tensor) -> torch.Tensor:
        x = zu * zv
        for lin in self.lins[:-1]:
            x = dropout(torch.relu(lin(x)), self.dropout, self.training)
        return self.lins[-1](x).squeeze(-1)

    def flops_per_pair(self) -> int:
        """Multiply-accumulates per scored pair (the Hadamard product plus each layer), the unit of Eq. 6."""
        return sum(lin.in_features * lin.out_features for lin in self.lins) + self.lins[0].in_features


@dataclass
class ForwardResult:
    """Output embeddings and the exit record of one forward pass."""

    z: torch.Tensor  # [N, m] output embedding of every node
    exit_layer: torch.Tensor  # [N] int64
    active_nodes: List[int] = field(default_factory=list)  # per layer: nodes not yet exited
    active_edges: List[int] = field(default_factory=list)  # per layer: their in-edges (+ self-loops)
    exit_prob: Optional[torch.Tensor] = None  # [L, N] EXIT probability per judged layer (nan elsewhere)


class EarlyExitLinkPredictor(nn.Module):
    r"""GNN encoder with learned per-node exits, plus the HeaRT MLP predictor.

    Backbones (:math:`\hat A` the normalised adjacency, m hidden units):

    * ``gcn``: :math:`H^{l+1} = \mathrm{GELU}(\hat A H^l W_l + b_l)`, none after the last layer,
      dropout between layers, no input projection (:math:`W_0: F \to m`).
    * ``resgcn``: :math:`H^0 = \mathrm{GELU}(X W_{in} + b_{in})` (dropout in training), then
      :math:`H^{l+1} = H^l + \mathrm{GELU}(\hat A H^l W_l + b_l)`, none after the last layer.
    * ``sas``: weight-shared, :math:`H^{l+1} = H^l + \tau\,\sigma_1(-\sigma_2(H^l\Omega_{as}) + \hat A H^l W_s)`,
      :math:`\Omega_{as} = \Omega - \Omega^T`, symmetric :math:`W_s`, :math:`\sigma_1 = \mathrm{ReLU}\circ\tanh`,
      :math:`\sigma_2 = \mathrm{ReLU}`, :math:`\hat A` without self-loops.

    Exit modes ``none`` / ``node`` (§2.1) / ``subgraph`` (§2.2) and semantics ``freeze`` (an exited
    state stays constant and keeps serving as a message) or ``readout`` (all nodes keep updating;
    the exit picks which layer's state is output), as described in the module docstring.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        m = c.hidden
        self.embedding = nn.Embedding(c.num_nodes, m) if c.in_channels == 0 else None
        in_dim = c.in_channels or m
        if c.backbone == "gcn":
            self.input_proj = None
            self.convs = nn.ModuleList(_gcn_linear(in_dim if l == 0 else m, m) for l in range(c.layers))
        else:
            self.input_proj = nn.Linear(in_dim, m)
        if c.backbone == "resgcn":
            self.convs = nn.ModuleList(_gcn_linear(m, m) for _ in range(c.layers))
        if c.backbone == "sas":
            self.omega = nn.Parameter(torch.empty(m, m))
            self.ws_offdiag = nn.Parameter(torch.empty(m, m))
            self.ws_diag = nn.Parameter(torch.empty(m))
            nn.init.normal_(self.omega, std=1 / math.sqrt(m))
            nn.init.normal_(self.ws_offdiag, std=1 / math.sqrt(m))
            nn.init.normal_(self.ws_diag, std=1 / math.sqrt(m))
        self.first_exit = 1 if c.backbone == "gcn" else 0
        n_heads = 0 if c.exit == "none" else (1 if c.backbone == "sas" else c.layers - self.first_exit)
        self.heads = nn.ModuleList(ExitHead(m, c.exit_hidden, c.tau0) for _ in range(n_heads))
        self.hard_heads = nn.ModuleList(ExitHead(m + 1, c.exit_hidden, c.tau0) for _ in range(
            n_heads if c.exit == "subgraph" else 0))
        self.predictor = LinkPredictor(m, c.predictor_layers, c.dropout)
        # Inference: "threshold" (deterministic, default) or "sample" (seeded Gumbel, as the paper's code).
        self.eval_mode = "threshold"
        self.sample_seed = 0

    # ------------------------------------------------------------------ parameters used by the engine
    def head(self, l: int) -> ExitHead:
        return self.heads[0 if len(self.heads) == 1 else l - self.first_exit]

    def hard_head(self, l: int) -> ExitHead:
        return self.hard_heads[0 if len(self.hard_heads) == 1 else l - self.first_exit]

    def omega_as(self) -> torch.Tensor:
        return self.omega - self.omega.T

    def w_sym(self) -> torch.Tensor:
        upper = torch.triu(self.ws_offdiag, diagonal=1)
        return upper + upper.T + torch.diag(self.ws_diag)

    def sas_matrices(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(Ω_as, W_s)``, shared by every SAS layer. Without autograd they are built once per
        version of the weights, not once per layer: the transposes and ``triu`` of two [m, m]
        matrices took 0.6 ms a layer at m = 256 (cProfile, CiteSeer), about a sixth of an engine call
        that updates few rows."""
        if torch.is_grad_enabled():
            return self.omega_as(), self.w_sym()
        key = tuple((p.data_ptr(), p._version) for p in (self.omega, self.ws_offdiag, self.ws_diag))
        if getattr(self, "_sas_key", None) != key:
            self._sas_mats, self._sas_key = (self.omega_as(), self.w_sym()), key
        return self._sas_mats

    @property
    def self_loops(self) -> bool:
        return self.config.backbone != "sas"

    def input_features(self, x: Optional[torch.Tensor]) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding.weight
        if x is None:
            raise ValueError("this model needs node features but the graph has none")
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"the model expects {self.config.in_channels} input features, the graph "
                             f"has {x.shape[1]}")
        return x

    def encode_input(self, x: Optional[torch.Tensor]) -> torch.Tensor:
        """H^0 = f_enc(X): the raw input for ``gcn``, the input projection otherwise (for ``resgcn``
        followed by GELU and dropout, see :meth:`input_activation`)."""
        h = self.input_features(x)
        if self.input_proj is None:
            return h
        h = self.input_activation(self.input_linear(h, self.input_proj.weight, self.input_proj.bias))
        return dropout(h, self.config.dropout, self.training) if self.config.backbone == "resgcn" else h

    def input_activation(self, h: torch.Tensor) -> torch.Tensor:
        """The nonlinearity after the input projection: GELU for ``resgcn`` (as the paper's residual
        GCN, which applies its activation and dropout there), none for ``sas`` and ``gcn``."""
        return F.gelu(h) if self.config.backbone == "resgcn" else h

    def input_weights(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(W, b)`` of the input layer as the engine applies it, ``H^0 = X W^T + b``: gcn's first
        convolution without its bias (added after the aggregation, see :meth:`update`), else
        the input projection."""
        if self.config.backbone == "gcn":
            return self.convs[0].weight, None
        return self.input_proj.weight, self.input_proj.bias

    def input_linear(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """``x W^T + b`` for the input layer. In training, bag-of-words features go through a sparse
        product (CiteSeer: 0.9 % non-zeros, about 10x faster); evaluation stays the dense reference."""
        if self.training and self.embedding is None and x.numel():
            key = (x.data_ptr(), tuple(x.shape))
            if getattr(self, "_x_sparse_key", None) != key:  # the training features never change
                sparse = int(torch.count_nonzero(x)) < SPARSE_FEATURE_DENSITY * x.numel()
                with quiet_sparse():
                    self._x_sparse = (x.to_sparse_csr(), x.T.contiguous().to_sparse_csr()) if sparse else None
                self._x_sparse_key = key
            if self._x_sparse is not None:
                out = sparse_mm(*self._x_sparse, weight.T)
                return out if bias is None else out + bias
        return F.linear(x, weight, bias)

    def transform(self, l: int, agg: torch.Tensor, h: torch.Tensor, step: Optional[torch.Tensor],
                  out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The layer update from the aggregate ``agg = Â h`` (for gcn layer 0: ``Â (X W_0)``, see
        :meth:`update`). Shared by the reference forward and the engine. ``out``: a float32
        ``[k, m]`` tensor to write the result into and return (the engine's reused buffers, no
        autograd; it may be ``agg`` itself only for gcn's layer 0), for the same values."""
        c = self.config
        last = l == c.layers - 1
        if c.backbone == "gcn":
            res = agg if l == 0 else linear_into(agg, self.convs[l].weight, self.convs[l].bias, out)
            if not last:
                return gelu_into(res, out)
            return res if out is None or res is out else out.copy_(res)
        if c.backbone == "resgcn":
            res = linear_into(agg, self.convs[l].weight, self.convs[l].bias, out)
            res = res if last else gelu_into(res, out)
            return h + res if out is None else res.add_(h)  # the same sum: float addition commutes
        omega_as, w_sym = self.sas_matrices()
        msg = torch.relu(torch.tanh(-torch.relu(h @ omega_as) + agg @ w_sym))
        tau = c.sas_step if step is None else step[:, None]
        return h + tau * msg if out is None else torch.add(h, tau * msg, out=out)

    def update(self, l: int, adj: NormAdj, h: torch.Tensor, step: Optional[torch.Tensor]) -> torch.Tensor:
        c = self.config
        hin = dropout(h, c.dropout, self.training) if l > 0 else h
        if c.backbone == "gcn" and l == 0:
            # in -> m: transform first, the input is wide (F = 3,703 on CiteSeer).
            xw = self.input_linear(hin, self.convs[0].weight, None)
            return self.transform(0, adj @ xw + self.convs[0].bias, h, step)
        return self.transform(l, adj @ hin, h, step)

    # ------------------------------------------------------------------ exit decisions
    @staticmethod
    def _sample(logits, nu, mode, threshold, generator, noise_key=None):
        """Returns (exit indicator [n], CONTINUE probability [n] used as SAS step, EXIT prob [n]).

        ``noise_key`` = (seed, layer, head, node ids) makes ``sample`` mode draw counter-based
        Gumbel noise per node, so the engine reproduces it on any subset of nodes.
        """
        margin = logits[:, EXIT] - logits[:, CONTINUE]
        p_exit = torch.sigmoid(margin)
        if mode in ("threshold", "full-depth"):
            step = torch.sigmoid((logits[:, CONTINUE] - logits[:, EXIT]) / nu)
            if mode == "full-depth":
                return torch.zeros_like(step), step, p_exit
            # On the margin, not p_exit: the float32 sigmoid saturates (see exit_margin_bound).
            return (margin >= exit_margin_bound(threshold)).to(logits.dtype), step, p_exit
        if noise_key is not None:
            gumbel = gumbel_noise(*noise_key)
        else:
            u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device).clamp(1e-10, 1 - 1e-7)
            gumbel = -torch.log(-torch.log(u))
        soft = torch.softmax((logits + gumbel) / nu[:, None], dim=-1)
        if mode == "gumbel-soft":
            return soft[:, EXIT], soft[:, CONTINUE], p_exit
        hard = F.one_hot(soft.argmax(-1), 2).to(soft.dtype)
        if mode == "random-depth":
            return hard[:, EXIT], soft[:, CONTINUE], p_exit
        st = hard - soft.detach() + soft  # straight-through: hard forward, soft gradient
        return st[:, EXIT], soft[:, CONTINUE], p_exit

    def forward(self, graph: Graph, adj: Optional[NormAdj] = None, mode: Optional[str] = None,
                threshold: float = 0.5, generator: Optional[torch.Generator] = None) -> ForwardResult:
        """Reference forward over every node.

        ``mode``: ``"gumbel"`` (straight-through Gumbel-Softmax samples; the default in training;
        the other training modes are in :data:`TRAIN_MODES`), ``"threshold"`` (deterministic: exit when the logit margin ``l_EXIT - l_CONTINUE >=
        logit(threshold)``, i.e. softmax(logits)[EXIT] >= threshold in exact arithmetic, so
        ``threshold=1.0`` never exits; the default in eval) or ``"sample"`` (Gumbel samples
        without training, seeded by ``generator``). ``threshold`` must be in (0, 1] (``ValueError``).
        """
        c = self.config
        mode = mode or ("gumbel" if self.training else self.eval_mode)
        adj = adj or NormAdj(graph, self.self_loops)
        n, L = graph.num_nodes, c.layers
        h = self.encode_input(graph.x)
        deg1 = graph.deg.to(torch.float32) + (1.0 if self.self_loops else 0.0)
        dev = h.device
        alive = torch.ones(n, device=dev)
        ready = torch.zeros(n, device=dev)
        exit_layer = torch.full((n,), L, dtype=torch.int64, device=dev)
        z = torch.zeros(n, c.hidden, device=dev) if c.semantics == "readout" and c.exit != "none" else None
        res = ForwardResult(z=h, exit_layer=exit_layer)
        exit_prob = torch.full((L, n), float("nan"), device=dev)
        for l in range(L):
            hard_alive = alive.detach() > 0.5
            res.active_nodes.append(int(hard_alive.sum()))
            res.active_edges.append(int(deg1[hard_alive].sum()))
            step = None
            if c.exit != "none" and l >= self.first_exit:
                head = self.head(l)
                nu = head.temperature(h)
                ids = torch.arange(n, device=dev)
                key = (self.sample_seed, l, 0, ids) if mode == "sample" else None
                e, step, p = self._sample(head.logits(h), nu, mode, threshold, generator, key)
                if c.exit == "subgraph":
                    ready = ready + (1 - ready) * e
                    r = adj.neighbor_mean(ready)
                    hh = self.hard_head(l)
                    hin = torch.cat([h, r[:, None]], 1)
                    key = (self.sample_seed, l, 1, ids) if mode == "sample" else None
                    e_hard, step, p_hard = self._sample(hh.logits(hin), hh.temperature(hin), mode,
                                                        threshold, generator, key)
                    e = ready * e_hard
                    p = torch.where(ready.detach() > 0.5, p_hard, torch.zeros_like(p_hard))
                exit_prob[l] = p.detach()
                exiting = alive * e
                newly = (exiting.detach() > 0.5)
                exit_layer[newly] = l
                if z is not None:
                    z = z + exiting[:, None] * h
                alive = alive - exiting
            new = self.update(l, adj, h, step)
            if c.exit == "none" or c.semantics == "readout" or l < self.first_exit:
                h = new
            else:
                h = h + alive[:, None] * (new - h)
        if z is not None:
            h = z + alive[:, None] * h
        res.z, res.exit_prob = h, exit_prob
        return res

    def score(self, z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """Link logits for ``pairs [P, 2]`` from output embeddings ``z``."""
        return self.predictor(z[pairs[:, 0]], z[pairs[:, 1]])
