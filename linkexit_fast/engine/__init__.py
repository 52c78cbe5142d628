"""The inference engine: compute only what the still-unresolved candidate pairs need.

The contract: for every pair, the score and the exit layers of its endpoints equal those of the
dense reference forward (:meth:`EarlyExitLinkPredictor.forward` in deterministic mode, then the
predictor), within float32 summation-order noise. What the engine skips, and where:

1. **Scope** (``scope.py``). At layer ``l`` a node is updated only if it lies within ``L - l - 1``
   hops of an endpoint that still needs its embedding (an endpoint of an unresolved pair that has
   not exited). Under ``freeze`` the walk passes through non-exited nodes only and exited nodes
   are never updated; under ``readout`` exited nodes still relay.
2. **Compaction** (``scope.py``). A query whose L-hop field is a small part of the graph runs on a
   compacted subgraph (local ids, full-graph degrees), and each layer touches only its active rows.
   Where gcn's first layer reads the raw input from the whole graph, the probe before it
   (``run.py``) runs before compaction, and the endpoints it sees exit bring none of their
   neighbourhoods into the scope.
3. **Frozen-neighbour cache** (``cache.py``, ``freeze``). Once enough nodes have frozen, their
   contribution to each active neighbour's aggregate is added once into a cache and their edges
   leave the CSR.
4. **Sparse input features** (``inputs.py``). Bag-of-words features are multiplied as a sparse
   matrix, and only over the rows in scope.
5. **Pair scoring in chunks** (``score.py``). The layer loop (``run.py``) runs once, for the set of
   all endpoints (it stops when every endpoint has exited: then every pair is resolved), and the
   pairs are then scored ``PAIR_CHUNK`` at a time into the preallocated output: memory beyond the
   output is bounded by the graph's size, never by the number of pairs.

Where the scope covers the graph and few nodes exit, this bookkeeping costs more than it spares,
and the plain dense path (every node at every layer, exits as masks, on the same ops and scorer)
is faster. The planner (``plan.py``) picks the path per call from a cost model measured on the
machine (``predict(..., plan="auto")``, the default; ``"dense"`` and ``"engine"`` force one).

The entry points are in ``api.py``, the planner in ``plan.py``, the layer loop in ``run.py``, what
a call computed in ``stats.py``, the index ops and host syncs they all share in ``indexing.py``,
and the CPU buffers one ``predict`` call hands to the next (no page faults on reuse) in ``buffers.py``. Tuning constants live in the module that reads them
(``scope.SATURATED``, ``cache.CACHE_EDGE_COST``, ``indexing.SYNC_FREE``, ...): set them there.
"""
from .api import PAIR_CHUNK, REFERENCE_CHUNK, embeddings, predict, predict_chunks
from .indexing import csr_gather
from .scope import UNREACHED, hop_distance
from .stats import EngineStats, dense_flops, paper_flops

__all__ = ["predict", "predict_chunks", "embeddings", "EngineStats", "csr_gather", "hop_distance", "PAIR_CHUNK",
           "REFERENCE_CHUNK", "UNREACHED", "dense_flops", "paper_flops"]
