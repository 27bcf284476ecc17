#include "conv3x3_weight_grad.h"

#include "variants.h"

namespace densetorch::conv3x3 {

namespace {

const kernels::KernelTable<kernels::WeightGradRowsFn> kWeightGrad{kernels::portable::conv3x3_weight_grad_rows,
                                                                   DT_X86(kernels::avx2::conv3x3_weight_grad_rows),
                                                                   nullptr};

int row_block() {
#ifdef DT_KERNELS_X86
  if (kWeightGrad.selected().isa == kernels::Capability::kAvx2) return kernels::avx2::conv3x3_weight_rows();
#endif
  return kernels::portable::conv3x3_weight_rows();
}

}  // namespace

bool weight_grad_available(int64_t n, int64_t c) { return n > 0 && n % row_block() == 0 && c > 0 && c % 16 == 0; }

bool accelerated() { return kWeightGrad.selected().isa != kernels::Capability::kDefault; }

const char* kernel_name() { return kernels::name(kWeightGrad.selected().isa); }

void weight_grad_rows(const float* grad, int64_t n, const float* x, int64_t c, int64_t row, int64_t begin,
                      int64_t end, float* grad_weight) {
  kWeightGrad.selected().fn(grad, n, x, c, row, begin, end, grad_weight);
}

}  // namespace densetorch::conv3x3
