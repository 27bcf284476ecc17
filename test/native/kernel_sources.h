// The sources of native/core/kernels (every variant and its dispatch), included whole into a C++
// test (one translation unit).
#pragma once

#include "../../native/core/kernels/conv3x3_weight_grad.cpp"
#include "../../native/core/kernels/cpu_capability.cpp"
#include "../../native/core/kernels/norm_gemm.cpp"
#include "../../native/core/kernels/norm_passes.cpp"
#include "../../native/core/kernels/variant_avx2.cpp"
#include "../../native/core/kernels/variant_avx512.cpp"
#include "../../native/core/kernels/variant_portable.cpp"
#include "../../native/core/kernels/winograd.cpp"
