#include "weights_io.h"

#include "atomic_file.h"
#include "errors.h"

#include "json.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

namespace densetorch {

namespace fs = std::filesystem;

NamedTensors state_dict(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value().detach());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value().detach());
  return out;
}

void load_state_dict(torch::nn::Module& module, const NamedTensors& tensors, bool strict) {
  std::map<std::string, at::Tensor> targets;
  for (auto& item : module.named_parameters(true)) targets.emplace(item.key(), item.value());
  for (auto& item : module.named_buffers(true)) targets.emplace(item.key(), item.value());

  std::vector<std::string> missing, unexpected, mismatched;
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    seen.insert(name);
    auto it = targets.find(name);
    if (it == targets.end()) {
      unexpected.push_back(name);
    } else if (it->second.sizes() != t.sizes()) {
      mismatched.push_back(name + " (expected " + c10::str(it->second.sizes()) + ", got " + c10::str(t.sizes()) + ")");
    }
  }
  for (const auto& [name, _] : targets)
    if (!seen.count(name)) missing.push_back(name);

  auto list = [](const std::vector<std::string>& names) {
    std::string s;
    const std::size_t shown = std::min<std::size_t>(names.size(), 10);
    for (std::size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + names[i];
    if (names.size() > shown) s += ", ... (" + std::to_string(names.size() - shown) + " more)";
    return s;
  };
  std::string problems;
  if (!mismatched.empty()) problems += "shape mismatch for " + list(mismatched) + "; ";
  if (strict && !missing.empty()) problems += std::to_string(missing.size()) + " missing key(s): " + list(missing) + "; ";
  if (strict && !unexpected.empty()) problems += std::to_string(unexpected.size()) + " unexpected key(s): " + list(unexpected) + "; ";
  if (!problems.empty()) {
    problems.resize(problems.size() - 2);
    throw WeightsError("cannot load state dict: " + problems);
  }

  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : tensors) {
    auto it = targets.find(name);
    if (it != targets.end()) it->second.copy_(t);
  }
}

// ---- safetensors ----------------------------------------------------------------------------

namespace {

struct SafeDtype {
  const char* name;
  at::ScalarType type;
};
constexpr SafeDtype kSafeDtypes[] = {
    {"F32", at::kFloat}, {"F64", at::kDouble}, {"F16", at::kHalf}, {"BF16", at::kBFloat16}, {"I64", at::kLong},
    {"I32", at::kInt},   {"I16", at::kShort},  {"I8", at::kChar},  {"U8", at::kByte},       {"BOOL", at::kBool},
};

const char* safe_dtype_name(at::ScalarType t) {
  for (const auto& d : kSafeDtypes)
    if (d.type == t) return d.name;
  throw WeightsError(std::string("dtype ") + c10::toString(t) + " cannot be stored in safetensors");
}

at::ScalarType safe_dtype(const std::string& name, const std::string& tensor) {
  for (const auto& d : kSafeDtypes)
    if (name == d.name) return d.type;
  throw WeightsError("tensor '" + tensor + "' has unsupported dtype '" + name + "'");
}

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // as the reference implementation

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  std::vector<at::Tensor> host;
  host.reserve(tensors.size());
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (std::size_t i = 0; i < metadata.size(); ++i)
      header += (i ? "," : "") + json::quote(metadata[i].first) + ":" + json::quote(metadata[i].second);
    header += "}";
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    at::Tensor h = t.detach().to(at::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(h.numel()) * h.element_size();
    std::string shape;
    for (int64_t d = 0; d < h.dim(); ++d) shape += (d ? "," : "") + std::to_string(h.size(d));
    header += (header.size() > 1 ? "," : "") + json::quote(name) + ":{\"dtype\":\"" + safe_dtype_name(h.scalar_type()) +
              "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + nbytes) + "]}";
    offset += nbytes;
    host.push_back(std::move(h));
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // align the data to 8 bytes

  write_atomically(path, [&](const WriteBytes& write) {
    uint8_t len[8];
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    write(len, 8);
    write(header.data(), header.size());
    for (const auto& h : host) write(h.data_ptr(), static_cast<std::size_t>(h.numel()) * h.element_size());
  });
}

namespace {

// Opens a regular file for reading; clear messages for missing files, folders and permissions.
std::ifstream open_for_reading(const std::string& path, uint64_t& size) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw WeightsError("no such file: " + path);
  if (fs::is_directory(status)) throw WeightsError(path + " is a directory, not a weight file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw WeightsError("cannot open " + path + ": " + std::strerror(errno));
  size = fs::file_size(path, ec);
  if (ec) throw WeightsError("cannot read the size of " + path + ": " + ec.message());
  return in;
}

}  // namespace

WeightFile load_safetensors(const std::string& path) {
  uint64_t file_size = 0;
  std::ifstream in = open_for_reading(path, file_size);
  const std::string where = "invalid safetensors file " + path + ": ";
  if (file_size < 8) throw WeightsError(where + "shorter than the 8-byte header length");
  uint8_t len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len[i];
  if (header_len > kMaxHeaderBytes) throw WeightsError(where + "header length " + std::to_string(header_len) + " exceeds 100 MB");
  if (8 + header_len > file_size)
    throw WeightsError(where + "header length " + std::to_string(header_len) + " is larger than the file (" +
                                std::to_string(file_size) + " bytes)");
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  if (!in) throw WeightsError(where + "could not read the header");
  json::Value root;
  try {
    root = json::parse(header);
  } catch (const std::invalid_argument& e) {
    throw WeightsError(where + "header is not valid JSON (" + e.what() + ")");
  }
  if (!root.is_object()) throw WeightsError(where + "header is not a JSON object");

  const uint64_t data_size = file_size - 8 - header_len;
  struct Entry {
    std::string name;
    at::ScalarType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  WeightFile out;
  for (const auto& [name, info] : root.object()) {
    if (name == "__metadata__") {
      if (!info.is_object()) throw WeightsError(where + "__metadata__ is not an object");
      for (const auto& [k, v] : info.object()) {
        if (!v.is_string()) throw WeightsError(where + "metadata value '" + k + "' is not a string");
        out.metadata.emplace_back(k, v.string());
      }
      continue;
    }
    const std::string what = where + "tensor '" + name + "' ";
    const json::Value* dtype = info.find("dtype");
    const json::Value* shape = info.find("shape");
    const json::Value* offsets = info.find("data_offsets");
    if (!dtype || !dtype->is_string() || !shape || !shape->is_array() || !offsets || !offsets->is_array())
      throw WeightsError(what + "needs dtype (string), shape (array) and data_offsets (array)");
    Entry e{name, safe_dtype(dtype->string(), name), {}, 0, 0};
    uint64_t numel = 1;
    for (const auto& d : shape->array()) {
      if (!d.is_int() || d.integer() < 0) throw WeightsError(what + "has a shape entry that is not a non-negative integer");
      e.shape.push_back(d.integer());
      if (d.integer() != 0 && numel > (uint64_t{1} << 62) / static_cast<uint64_t>(d.integer()))
        throw WeightsError(what + "has a shape too large");
      numel *= static_cast<uint64_t>(d.integer());
    }
    const auto& off = offsets->array();
    if (off.size() != 2 || !off[0].is_int() || !off[1].is_int() || off[0].integer() < 0 || off[1].integer() < off[0].integer())
      throw WeightsError(what + "has data_offsets that are not [begin, end] with 0 <= begin <= end");
    e.begin = static_cast<uint64_t>(off[0].integer());
    e.end = static_cast<uint64_t>(off[1].integer());
    if (e.end > data_size)
      throw WeightsError(what + "ends at byte " + std::to_string(e.end) + " but the data section has " +
                                  std::to_string(data_size) + " bytes (truncated file?)");
    const uint64_t expected = numel * c10::elementSize(e.dtype);
    if (e.end - e.begin != expected)
      throw WeightsError(what + "has " + std::to_string(e.end - e.begin) + " bytes but its dtype and shape need " +
                                  std::to_string(expected));
    entries.push_back(std::move(e));
  }
  // The data section must be covered exactly once: no overlaps, no holes.
  std::vector<const Entry*> sorted;
  for (const auto& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) { return a->begin < b->begin || (a->begin == b->begin && a->end < b->end); });
  uint64_t cursor = 0;
  for (const Entry* e : sorted) {
    if (e->begin < cursor) throw WeightsError(where + "tensor '" + e->name + "' overlaps another tensor's data");
    if (e->begin > cursor) throw WeightsError(where + "bytes " + std::to_string(cursor) + " to " + std::to_string(e->begin) + " belong to no tensor");
    cursor = e->end;
  }
  if (cursor != data_size)
    throw WeightsError(where + "the data section has " + std::to_string(data_size) + " bytes but the tensors cover " +
                                std::to_string(cursor));

  for (const auto& e : entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
    in.seekg(static_cast<std::streamoff>(8 + header_len + e.begin));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) throw WeightsError(where + "could not read the data of tensor '" + e.name + "'");
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

WeightFile load_weights(const std::string& path) {
  uint64_t size = 0;
  std::ifstream in = open_for_reading(path, size);
  char magic[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  in.read(magic, 9);
  const auto got = in.gcount();
  if (got >= 4 && std::memcmp(magic, "PK\x03\x04", 4) == 0) return load_pth(path);
  // A legacy pickle starts with PROTO (0x80) and a protocol number; a safetensors file starts
  // with its header length (whose low byte may be 0x80 too) and then '{'.
  const bool safetensors_like = got == 9 && magic[8] == '{';
  const auto proto = static_cast<unsigned char>(magic[1]);
  if (!safetensors_like && got >= 2 && static_cast<unsigned char>(magic[0]) == 0x80 && proto >= 2 && proto <= 5)
    throw WeightsError(path + " is a PyTorch file in the legacy (non-zip) format; re-save it with "
                                "torch.save(torch.load(path), path) in PyTorch >= 1.6 to get the zip format");
  return load_safetensors(path);
}

}  // namespace densetorch
