"""Safe checkpoints: weights (and optionally the training graph) in one safetensors file, with a
JSON config in its metadata. Nothing is unpickled, so loading a crafted file cannot run code."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch.overrides import TorchFunctionMode

from .graph import Graph
from .models import EarlyExitLinkPredictor, ModelConfig
from .version import __version__

__all__ = ["save", "load", "Predictor", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "model.safetensors"
FORMAT = "linkexit_fast/2"
# Format 1 predates the residual GCN's activation after its input projection (format 2): its
# ``resgcn`` weights would now compute another function, so those are refused; its ``gcn`` and
# ``sas`` models compute the same in both formats and still load.
OLD_FORMATS = {"linkexit_fast/1": ("resgcn",)}
# The header lists each tensor in ~85 bytes (a 64-layer subgraph-exit model: 889 tensors, 75 KB),
# so 1 MiB holds models of ~800 such layers. The cap bounds what a crafted header can make load
# parse and build before it reads a tensor (safetensors itself accepts 100 MB).
MAX_HEADER_BYTES = 1 << 20
_GRAPH_DTYPES = {"graph.rowptr": "I64", "graph.col": "I64", "graph.x": "F32"}


def _resolve(path) -> Path:
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() or p.suffix == "" else p


def save(model: EarlyExitLinkPredictor, path, graph: Optional[Graph] = None,
         metrics: Optional[dict] = None, extra: Optional[dict] = None) -> Path:
    """Write ``model`` (and ``graph``, making the file a self-contained predictor) to ``path``.

    ``path`` is a ``.safetensors`` file or a directory (then ``DIR/model.safetensors``).
    """
    from safetensors.torch import save_file
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

    def __repr__(self) -> str:
        c = self.config
        return (f"Predictor({c.backbone}, exit={c.exit}, semantics={c.semantics}, L={c.layers}, "
                f"m={c.hidden}, graph={self.graph!r})")


def _read_header(target: Path) -> Tuple[dict, Dict[str, Tuple[str, List[int]]]]:
    """The metadata and ``{name: (dtype, shape)}`` of a safetensors file; reads no tensor data."""
    from safetensors import SafetensorError, safe_open
    unreadable = f"cannot read checkpoint {target} (truncated or not a safetensors file)"
    try:
        # The first 8 bytes give the header's length: check it before anything reads that far.
        with open(target, "rb") as f:
            size, prefix = os.fstat(f.fileno()).st_size, f.read(8)
        length = int.from_bytes(prefix, "little")
        if len(prefix) < 8 or length > size - 8:
            raise ValueError(f"{unreadable}: its header length field says {length} bytes, the file "
                             f"has {size}")
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"{target}: the checkpoint header takes {length} bytes, more than the "
                             f"{MAX_HEADER_BYTES} this loader reads")
        # safe_open checks the header: valid JSON, each tensor's bytes within the data, which
        # the tensors cover exactly, so their sizes add up to the file's.
        with safe_open(str(target), framework="pt") as f:
            infos = {k: (f.get_slice(k).get_dtype(), list(f.get_slice(k).get_shape())) for k in f.keys()}
            return f.metadata() or {}, infos
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{unreadable}: {e}") from None


def _json_object(meta: dict, key: str, default: Optional[str] = None) -> dict:
    text = meta.get(key, default)
    if text is None:
        raise ValueError(f"the metadata lacks {key!r}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"metadata {key!r} nests too deeply") from None
    except ValueError as e:  # invalid JSON, or an int too long to convert
        raise ValueError(f"metadata {key!r} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"metadata {key!r} must be a JSON object, got {type(value).__name__}")
    return value


def _dtype_name(code: str) -> str:
    """A safetensors dtype code as torch names it: F64 -> float64, I64 -> int64, BF16 -> bfloat16."""
    for prefix, word in (("BF", "bfloat"), ("F", "float"), ("I", "int"), ("U", "uint")):
        if code.startswith(prefix) and code[len(prefix):].isdigit():
            return word + code[len(prefix):]
    return code.lower()


class _SkipInit(TorchFunctionMode):
    """Makes ``torch.nn.init``'s in-place fills (``normal_``, ``kaiming_uniform_``, ...) no-ops. A
    meta tensor holds no values anyway, and torch's meta ``normal_`` (an embedding's init) imports
    torch._dynamo on first use: 2-5 s of every process that loads an embedding model."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", None) == "torch.nn.init" and func.__name__.endswith("_"):
            return args[0] if args else kwargs["tensor"]  # the tensor to fill, returned as is
        return func(*args, **(kwargs or {}))


def _skeleton(config: ModelConfig) -> EarlyExitLinkPredictor:
    """``config``'s model on the meta device: every parameter's shape, no storage."""
    try:
        with torch.device("meta"), _SkipInit():
            return EarlyExitLinkPredictor(config)
    except (RuntimeError, TypeError) as e:  # a shape whose byte count overflows int64
        sizes = ", ".join(f"{k}={getattr(config, k)}" for k in ("in_channels", "num_nodes", "hidden", "exit_hidden"))
        raise ValueError(f"the config's sizes ({sizes}) give tensors torch cannot describe: "
                         f"{str(e).splitlines()[0]}") from None


def _model_for(config: ModelConfig, infos: Dict[str, Tuple[str, List[int]]]) -> EarlyExitLinkPredictor:
    """The skeleton of ``config``'s model once the header holds exactly its tensors, in float32."""
    stored = {k[len("model."):]: v for k, v in infos.items() if k.startswith("model.")}
    model = _skeleton(config)  # bounded: ModelConfig caps layers and predictor_layers
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise ValueError(f"the file lacks tensor(s) {missing[:5]} (of {len(missing)}) that its config implies")
    unexpected = sorted(set(stored) - set(expected))
    if unexpected:
        raise ValueError(f"the file has unexpected tensor(s) {unexpected[:5]} (of {len(unexpected)})")
    for k, (dtype, shape) in stored.items():
        if shape != expected[k]:
            raise ValueError(f"tensor model.{k} has shape {shape}, the config implies {expected[k]}")
        if dtype != "F32":
            raise ValueError(f"model.{k} is {_dtype_name(dtype)}; model weights are float32")
    return model


def _check_graph(config: ModelConfig, infos: Dict[str, Tuple[str, List[int]]]) -> None:
    """The stored graph's tensors (if any) have the dtypes and sizes a :class:`Graph` for this
    model needs: ``graph.rowptr [n+1]``, ``graph.col [nnz]`` int64, ``graph.x [n, F]`` float32."""
    names = {k for k in infos if not k.startswith("model.")}
    unexpected = sorted(names - set(_GRAPH_DTYPES))
    if unexpected:
        raise ValueError(f"the file has unexpected tensor(s) {unexpected[:5]}")
    if not names:
        return
    if not {"graph.rowptr", "graph.col"} <= names:
        raise ValueError(f"a stored graph needs graph.rowptr and graph.col; got {sorted(names)}")
    for k in sorted(names):
        if infos[k][0] != _GRAPH_DTYPES[k]:
            raise ValueError(f"{k} is {_dtype_name(infos[k][0])}, expected {_dtype_name(_GRAPH_DTYPES[k])}")
    rowptr, col = infos["graph.rowptr"][1], infos["graph.col"][1]
    if len(rowptr) != 1 or rowptr[0] < 2 or len(col) != 1:
        raise ValueError(f"graph.rowptr must be [num_nodes + 1] with num_nodes >= 1 and graph.col "
                         f"[num_entries]; got {rowptr} and {col}")
    n = rowptr[0] - 1
    if config.in_channels == 0 and n != config.num_nodes:
        raise ValueError(f"graph has {n} nodes, the model's embedding {config.num_nodes}")
    x = infos.get("graph.x", (None, None))[1]
    if x is not None and (len(x) != 2 or x[0] != n):
        raise ValueError(f"graph.x must be [num_nodes={n}, F]; got {x}")
    if config.in_channels and (x is None or x[1] != config.in_channels):
        raise ValueError(f"the model expects {config.in_channels} input features, the graph has "
                         f"{0 if x is None else x[1]}")


def load(path) -> Predictor:
    """Open a checkpoint written by :func:`save` (a file, or a directory holding ``model.safetensors``).

    Everything is checked against the file's header before a tensor is read or a model built, so
    a crafted file cannot claim more memory than its own size, and nothing is unpickled.

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: anything else, naming the file: not a safetensors file, a header over
            :data:`MAX_HEADER_BYTES`, another format, a malformed config (see
            :class:`ModelConfig`), tensors that do not match it (names, shapes, dtypes) or an
            invalid graph.
    """
    from safetensors import safe_open
    target = _resolve(path)
    if not target.exists():
        raise FileNotFoundError(f"checkpoint not found: {target}")
    meta, infos = _read_header(target)
    fmt = meta.get("format")
    if fmt != FORMAT and fmt not in OLD_FORMATS:
        raise ValueError(f"{target} is not a linkexit_fast checkpoint (format {fmt!r})")
    try:
        config = ModelConfig.from_dict(_json_object(meta, "config"))
        if config.backbone in OLD_FORMATS.get(fmt, ()):
            raise ValueError(f"it is a {config.backbone} model in checkpoint format {fmt!r}, whose "
                             f"forward differs from this version's ({FORMAT!r}: GELU and dropout "
                             f"after the input projection); retrain it with this version")
        metrics, extra, versions = (_json_object(meta, k, "{}") for k in ("metrics", "extra", "versions"))
        model = _model_for(config, infos)
        _check_graph(config, infos)
    except ValueError as e:
        raise ValueError(f"{target}: invalid checkpoint: {e}") from None
    # Every size is now one the header shows, and the header's tensors add up to the file.
    with safe_open(str(target), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
                          assign=True)  # the loaded tensors replace the skeleton's meta ones
    model.eval()
    graph = None
    if "graph.rowptr" in tensors:
        try:
            graph = Graph(tensors["graph.rowptr"], tensors["graph.col"], tensors["graph.rowptr"].numel() - 1,
                          tensors.get("graph.x"))
        except ValueError as e:
            raise ValueError(f"{target}: {e}") from None
    return Predictor(model, graph, metrics, extra, versions, target)
