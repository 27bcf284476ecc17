// densetorch's run-time switches from the environment (docs/environment.md). Callers read each
// once and keep the answer. As ATen does with a bad ATEN_CPU_CAPABILITY, a value that is not
// understood is reported on stderr and the default applies: a typo never silently changes, or
// silently fails to change, which kernels run.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <string>

namespace densetorch {

namespace detail {
inline std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}
// A switch's value (lower case): 1/true/on/yes or 0/false/off/no; anything else: none.
inline std::optional<bool> switch_value(const std::string& v) {
  if (v == "1" || v == "true" || v == "on" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "off" || v == "no") return false;
  return std::nullopt;
}
}  // namespace detail

// A boolean switch: 1/true/on/yes or 0/false/off/no (any case); unset or empty: `fallback`.
inline bool env_flag(const char* name, bool fallback) {
  const char* raw = std::getenv(name);
  if (raw == nullptr || *raw == '\0') return fallback;
  if (const auto v = detail::switch_value(detail::lower(raw))) return *v;
  std::fprintf(stderr, "densetorch: ignoring %s='%s' (expected 1 or 0); using %d\n", name, raw, fallback ? 1 : 0);
  return fallback;
}

// A switch that may also be left to densetorch: the values of env_flag, or auto; unset, empty,
// auto or not understood (reported on stderr): none.
inline std::optional<bool> env_flag_or_auto(const char* name) {
  const char* raw = std::getenv(name);
  if (raw == nullptr || *raw == '\0') return std::nullopt;
  const std::string v = detail::lower(raw);
  if (v == "auto") return std::nullopt;
  if (const auto on = detail::switch_value(v)) return on;
  std::fprintf(stderr, "densetorch: ignoring %s='%s' (expected one of auto, 1, 0, true, false, on, off, yes, no)\n",
               name, raw);
  return std::nullopt;
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
