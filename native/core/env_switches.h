// densetorch's run-time switches from the environment (docs/environment.md). Callers read each
// once and keep the answer. As ATen does with a bad ATEN_CPU_CAPABILITY, a value that is not
// understood is reported on stderr and the default applies: a typo never silently changes, or
// silently fails to change, which kernels run.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>

namespace densetorch {

namespace detail {
inline std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}
}  // namespace detail

// A boolean switch: 1/true/on/yes or 0/false/off/no (any case); unset or empty: `fallback`.
inline bool env_flag(const char* name, bool fallback) {
  const char* raw = std::getenv(name);
  if (raw == nullptr || *raw == '\0') return fallback;
  const std::string v = detail::lower(raw);
  if (v == "1" || v == "true" || v == "on" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "off" || v == "no") return false;
  std::fprintf(stderr, "densetorch: ignoring %s='%s' (expected 1 or 0); using %d\n", name, raw, fallback ? 1 : 0);
  return fallback;
}

// One of `allowed` (any case); unset or empty: `fallback`.
inline std::string env_choice(const char* name, std::initializer_list<const char*> allowed, const std::string& fallback) {
  const char* raw = std::getenv(name);
  if (raw == nullptr || *raw == '\0') return fallback;
  const std::string v = detail::lower(raw);
  std::string expected;
  for (const char* a : allowed) {
    if (v == a) return v;
    expected += expected.empty() ? a : std::string(", ") + a;
  }
  std::fprintf(stderr, "densetorch: ignoring %s='%s' (expected one of %s)\n", name, raw, expected.c_str());
  return fallback;
}

}  // namespace densetorch
