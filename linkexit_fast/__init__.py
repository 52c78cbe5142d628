"""linkexit_fast: early-exit GNNs for link prediction, with an engine that computes only what
unresolved candidate pairs still need."""
from .graph import Graph
from .datasets import LinkSplit

__version__ = "0.1.0"
__all__ = ["Graph", "LinkSplit", "__version__"]
