#pragma once

// The queue BFS that hop_distance and scope_csr share, and the per-thread row map it marks.

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace linkexit_fast {
namespace ops {

// One int32 per row, -1 between calls, kept by each calling thread: a walk marks the rows it
// reaches and unmarks exactly those when its op returns (or throws), so a query whose scope is a
// few thousand rows of a 1M-row graph never allocates or fills anything of the graph's size (the
// torch compaction spent 8.5 of an 18.9 ms call, 1M nodes and 100 pairs, on two [R] int64 tensors
// and their page faults). Grown to the largest R seen.
inline std::vector<int32_t>& thread_row_map(int64_t n) {
  thread_local std::vector<int32_t> map;
  if (static_cast<int64_t>(map.size()) < n) map.resize(static_cast<size_t>(n), -1);
  return map;
}

struct Unmark {  // restores the map's invariant however the op ends
  std::vector<int32_t>& map;
  const std::vector<int64_t>& rows;
  ~Unmark() {
    for (const int64_t r : rows) map[r] = -1;
  }
};

// Software prefetch distance, in list entries, and the neighbour ids gathered before they are
// marked (a bound on the walk's scratch, whatever the frontier's degrees).
constexpr size_t kAhead = 16;
constexpr size_t kChunk = size_t{1} << 16;

// Multi-source BFS of at most max_hops hops over the CSR rowptr [n+1], col [nnz] from the n_src
// rows src (named `src_name` in errors, which start with `op`; repeats allowed). Sets map[v] to
// v's hop distance for every reached row and appends the reached rows to `queue` in hop order.
// With `passable`, a row is reached like any other but expanded only where passable[row]. The
// n_fixed rows `fixed` (may be null) are marked at max_hops before the walk, whatever their
// distance from src, so that it never walks through them (a row in both lists is a fixed one):
// scope_csr's boundary rows. Index values are checked as they are read.
//
// Every access is a cache miss on a large graph (a 100-pair query on the 1M-node graph reads ~50k
// scattered entries of rowptr, col and the map). A narrow hop therefore runs in two passes of
// independent loads with software prefetch ahead of use, so that many misses are in flight at
// once rather than one per test-and-branch: first a chunk of the frontier's neighbour lists, then
// the map entries of those neighbours. A wide hop scans the rows in order, so col is read front
// to back (1M nodes, 10k pairs: 232 ms in queue order, torch's masked pass 122 ms).
inline void walk_rows(const char* op, const char* src_name, const int64_t* src, int64_t n_src,
                      const int64_t* rowptr, const int64_t* col, int64_t n, int64_t nnz,
                      const bool* passable, int64_t max_hops, std::vector<int32_t>& map,
                      std::vector<int64_t>& queue, const int64_t* fixed = nullptr, int64_t n_fixed = 0) {
  queue.reserve(static_cast<size_t>(std::min<int64_t>(n, n_src + n_fixed)));
  for (int64_t i = 0; i < n_fixed; ++i) {  // in the queue (so unmarked on return), never expanded
    const int64_t s = fixed[i];
    TORCH_CHECK(s >= 0 && s < n, op, ": boundary[", i, "] = ", s, " is outside [0, ", n, ")");
    if (map[s] < 0) {
      map[s] = static_cast<int32_t>(max_hops);
      queue.push_back(s);
    }
  }
  const size_t first = queue.size();  // the walk starts after the fixed rows
  for (int64_t i = 0; i < n_src; ++i) {
    const int64_t s = src[i];
    TORCH_CHECK(s >= 0 && s < n, op, ": ", src_name, "[", i, "] = ", s, " is outside [0, ", n, ")");
    if (map[s] < 0) {
      map[s] = 0;
      queue.push_back(s);
    }
  }
  auto check_range = [&](int64_t u) {
    const int64_t lo = rowptr[u], hi = rowptr[u + 1];
    TORCH_CHECK(0 <= lo && lo <= hi && hi <= nnz, op, ": rowptr[", u, "..", u + 1, "] = [", lo, ", ", hi,
                ") is not a range within [0, ", nnz, "]");
  };
  auto check_col = [&](int64_t e) {
    TORCH_CHECK(col[e] >= 0 && col[e] < n, op, ": col[", e, "] = ", col[e], " is outside [0, ", n, ")");
  };
  std::vector<int64_t> nbrs;
  auto visit = [&](int32_t hop) {  // marks the new rows among nbrs
    const size_t count = nbrs.size();
    for (size_t j = 0; j < count; ++j) {
      if (j + kAhead < count) __builtin_prefetch(&map[nbrs[j + kAhead]], 1);
      const int64_t v = nbrs[j];
      if (map[v] < 0) {
        map[v] = hop;
        queue.push_back(v);
      }
    }
    nbrs.clear();
  };
  size_t begin = first;
  for (int32_t hop = 1; hop <= max_hops && begin < queue.size(); ++hop) {
    const size_t end = queue.size();  // rows pushed while this hop runs are the next hop's
    if (static_cast<int64_t>(end - begin) * 16 < n) {
      for (size_t q = begin; q < end; ++q) {
        if (q + 2 * kAhead < end) __builtin_prefetch(&rowptr[queue[q + 2 * kAhead]]);
        if (q + kAhead < end) {
          const int64_t lo = rowptr[queue[q + kAhead]];
          if (lo >= 0 && lo < nnz) __builtin_prefetch(&col[lo]);
        }
        const int64_t u = queue[q];
        if (passable != nullptr && !passable[u]) continue;
        check_range(u);
        for (int64_t e = rowptr[u]; e < rowptr[u + 1]; ++e) {
          check_col(e);
          nbrs.push_back(col[e]);
        }
        if (nbrs.size() >= kChunk) visit(hop);
      }
      visit(hop);
    } else {
      for (int64_t u = 0; u < n; ++u) {
        if (map[u] != hop - 1 || (passable != nullptr && !passable[u])) continue;
        check_range(u);
        for (int64_t e = rowptr[u]; e < rowptr[u + 1]; ++e) {
          check_col(e);
          const int64_t v = col[e];
          if (map[v] < 0) {
            map[v] = hop;
            queue.push_back(v);
          }
        }
      }
    }
    begin = end;
  }
}

// The rows of `queue` (distinct, in [0, n)) in increasing order into out, through a bitmap of
// the rows: O(k + n / 64). Sorting the queue took 1.8 of scope_csr's 2.9 ms for a 100-pair query
// on the 1M-node graph (26,548 rows, warm caches).
inline void sorted_rows(const std::vector<int64_t>& queue, int64_t n, int64_t* out) {
  std::vector<uint64_t> bits(static_cast<size_t>((n + 63) / 64), 0);
  for (const int64_t v : queue) bits[v >> 6] |= uint64_t{1} << (v & 63);
  for (int64_t w = 0, j = 0; w < static_cast<int64_t>(bits.size()); ++w)
    for (uint64_t b = bits[w]; b != 0; b &= b - 1) out[j++] = (w << 6) + __builtin_ctzll(b);
}

}  // namespace ops
}  // namespace linkexit_fast
