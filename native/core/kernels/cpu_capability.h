// Which instruction sets densetorch's hand-written kernels may use in this process: the CPU's
// best, capped by DENSETORCH_CPU_CAPABILITY (as ATEN_CPU_CAPABILITY caps ATen's). Decided once,
// at the first call; every kernel table (dispatch.h) picks its variant from it.
#pragma once

namespace densetorch::kernels {

// Ordered: a CPU with kAvx512 also runs every kAvx2 variant.
enum class Capability { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

// What this CPU supports (AVX2 needs FMA too; AVX-512 means AVX-512F).
Capability cpu_supports();

// The CPU's best, lowered by DENSETORCH_CPU_CAPABILITY=default|avx2|avx512 (a value above what
// the CPU has is lowered to it; a value not understood is reported on stderr and ignored).
Capability capability();

// "default", "avx2" or "avx512".
const char* name(Capability c);

}  // namespace densetorch::kernels
