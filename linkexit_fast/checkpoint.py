"""Safe checkpoints: weights (and optionally the training graph) in one safetensors file, with a
JSON config in its metadata. Nothing is unpickled, so loading a crafted file cannot run code."""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Optional

import torch

from .graph import Graph
from .models import EarlyExitLinkPredictor, ModelConfig

__all__ = ["save", "load", "Predictor", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "model.safetensors"
FORMAT = "linkexit_fast/1"


def _resolve(path) -> Path:
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() or p.suffix == "" else p


def save(model: EarlyExitLinkPredictor, path, graph: Optional[Graph] = None,
         metrics: Optional[dict] = None, extra: Optional[dict] = None) -> Path:
    """Write ``model`` (and ``graph``, making the file a self-contained predictor) to ``path``.

    ``path`` is a ``.safetensors`` file or a directory (then ``DIR/model.safetensors``).
    """
    from safetensors.torch import save_file
    from . import __version__
    target = _resolve(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    if graph is not None:
        tensors["graph.rowptr"] = graph.rowptr.contiguous()
        tensors["graph.col"] = graph.col.contiguous()
        if graph.x is not None:
            tensors["graph.x"] = graph.x.contiguous()
    meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict()),
            "metrics": json.dumps(metrics or {}), "extra": json.dumps(extra or {}),
            "versions": json.dumps({"linkexit_fast": __version__, "torch": torch.__version__,
                                    "python": platform.python_version()})}
    save_file(tensors, str(target), metadata=meta)
    return target


class Predictor:
    """A loaded checkpoint: the model in eval mode, its training graph (if saved) and metadata.

    ``linkexit_fast.predict(predictor, pairs, threshold=0.9)`` uses both.
    """

    def __init__(self, model: EarlyExitLinkPredictor, graph: Optional[Graph], metrics: dict,
                 extra: dict, versions: dict, path: Path):
        self.model, self.graph, self.metrics = model, graph, metrics
        self.extra, self.versions, self.path = extra, versions, path

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def predict(self, pairs, threshold: float = 0.9, **kwargs):
        from .engine import predict
        return predict(self, pairs, threshold=threshold, **kwargs)

    def __repr__(self) -> str:
        c = self.config
        return (f"Predictor({c.backbone}, exit={c.exit}, semantics={c.semantics}, L={c.layers}, "
                f"m={c.hidden}, graph={self.graph!r})")


def load(path) -> Predictor:
    """Open a checkpoint written by :func:`save` (a file, or a directory holding ``model.safetensors``)."""
    from safetensors import SafetensorError, safe_open
    target = _resolve(path)
    if not target.exists():
        raise FileNotFoundError(f"checkpoint not found: {target}")
    try:
        with safe_open(str(target), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"cannot read checkpoint {target} (truncated or not a safetensors file): {e}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{target} is not a linkexit_fast checkpoint (format {meta.get('format')!r})")
    try:
        config = ModelConfig(**json.loads(meta["config"]))
        metrics, extra = json.loads(meta.get("metrics", "{}")), json.loads(meta.get("extra", "{}"))
        versions = json.loads(meta.get("versions", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{target}: invalid checkpoint metadata: {e}") from None
    model = EarlyExitLinkPredictor(config)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"{target}: checkpoint lacks tensor(s) {missing[:5]}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise ValueError(f"{target}: checkpoint has unexpected tensor(s) {unexpected[:5]}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ValueError(f"{target}: tensor {k} has shape {list(v.shape)}, the config implies "
                             f"{list(expected[k].shape)}")
    model.load_state_dict(state)
    model.eval()
    graph = None
    if "graph.rowptr" in tensors:
        rowptr, col = tensors["graph.rowptr"], tensors["graph.col"]
        n = rowptr.numel() - 1
        if n != config.num_nodes and config.in_channels == 0:
            raise ValueError(f"{target}: graph has {n} nodes, the model's embedding {config.num_nodes}")
        try:
            graph = Graph(rowptr, col, n, tensors.get("graph.x"))
        except ValueError as e:
            raise ValueError(f"{target}: {e}") from None
        model.input_features(graph.x)  # raises on a feature-size mismatch
    return Predictor(model, graph, metrics, extra, versions, target)
