// A small JSON reader and writer for file headers (safetensors). Strict RFC 8259: rejects
// trailing data, nesting deeper than 64, numbers outside the grammar (leading zeros, bare dots,
// empty exponents), lone surrogates and duplicate keys, with a message saying where.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace densetorch::json {

struct Value;
using Object = std::vector<std::pair<std::string, Value>>;  // keeps file order
using Array = std::vector<Value>;

struct Value {
  // null, bool, integer, double, string, array, object
  std::variant<std::monostate, bool, int64_t, double, std::string, std::shared_ptr<Array>, std::shared_ptr<Object>> v;

  bool is_object() const { return std::holds_alternative<std::shared_ptr<Object>>(v); }
  bool is_array() const { return std::holds_alternative<std::shared_ptr<Array>>(v); }
  bool is_string() const { return std::holds_alternative<std::string>(v); }
  bool is_int() const { return std::holds_alternative<int64_t>(v); }
  const Object& object() const { return *std::get<std::shared_ptr<Object>>(v); }
  const Array& array() const { return *std::get<std::shared_ptr<Array>>(v); }
  const std::string& string() const { return std::get<std::string>(v); }
  int64_t integer() const { return std::get<int64_t>(v); }
  // The member `key` of an object, or nullptr.
  const Value* find(std::string_view key) const;
};

// Throws std::invalid_argument("invalid JSON at byte N: ...").
Value parse(std::string_view text);

// A JSON string literal for `s` (quoted and escaped).
std::string quote(std::string_view s);

}  // namespace densetorch::json
