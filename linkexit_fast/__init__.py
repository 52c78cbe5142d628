"""linkexit_fast: early-exit GNNs for link prediction, with an engine that computes only what
unresolved candidate pairs still need.

>>> import linkexit_fast
>>> pred = linkexit_fast.load("runs/citeseer")            # a checkpoint saved with its graph
>>> scores = linkexit_fast.predict(pred, [[0, 1], [2, 3]], threshold=0.9)
"""
from .graph import Graph
from .datasets import LinkSplit
from .models import EarlyExitLinkPredictor, ModelConfig
from .checkpoint import load, save
from .engine import embeddings, predict
from .ranking import exact_heart_metrics
from .version import __version__

__all__ = ["Graph", "LinkSplit", "EarlyExitLinkPredictor", "ModelConfig", "load", "save", "predict",
           "embeddings", "exact_heart_metrics", "__version__"]
