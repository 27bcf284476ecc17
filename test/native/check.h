// The C++ tests' check: prints what failed and counts it; main returns 1 when failures != 0.
#pragma once

#include <cstdio>

namespace densetorch_test {

inline int failures = 0;

inline void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

}  // namespace densetorch_test
