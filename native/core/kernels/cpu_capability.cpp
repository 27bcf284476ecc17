#include "cpu_capability.h"

#include "../env_switches.h"

#include <string>

namespace densetorch::kernels {

Capability cpu_supports() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Capability::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Capability::kAvx2;
#endif
  return Capability::kDefault;
}

namespace {
Capability detect_capability() {
  const Capability cpu = cpu_supports();
  const std::string asked = env_choice("DENSETORCH_CPU_CAPABILITY", {"default", "avx2", "avx512"}, "");
  const Capability cap = asked == "default" ? Capability::kDefault
                         : asked == "avx2"  ? Capability::kAvx2
                                            : Capability::kAvx512;
  return cap < cpu ? cap : cpu;
}
}  // namespace

Capability capability() {
  static const Capability c = detect_capability();
  return c;
}

const char* name(Capability c) {
  switch (c) {
    case Capability::kAvx512: return "avx512";
    case Capability::kAvx2: return "avx2";
    default: return "default";
  }
}

}  // namespace densetorch::kernels
