// The sources of the dense layers (modules, the efficient concatenation, the fused block, its
// convolutions and kernels), included whole into a C++ test: the test is one translation unit
// that can reach their internal functions.
#pragma once

#include "../../native/core/convolutions.cpp"
#include "../../native/core/densenet.cpp"
#include "../../native/core/efficient_concat.cpp"
#include "../../native/core/fused_block.cpp"
#include "kernel_sources.h"
