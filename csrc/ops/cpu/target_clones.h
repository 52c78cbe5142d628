#pragma once

// setup.py and the JIT build compile for baseline x86-64 (SSE2) so the binary runs anywhere.
// The hot loops are therefore compiled once per ISA level and picked at load time by an
// ifunc resolver: AVX-512 makes the register-held accumulators 4x wider than SSE2 and adds FMA.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define LINKEXIT_TARGET_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LINKEXIT_TARGET_CLONES
#endif
