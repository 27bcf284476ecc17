// Reads a PyTorch .pth state dict (torch.save zip format) with a restricted unpickler: only the
// opcodes and globals that a state dict uses are accepted (OrderedDict, tensor rebuilds, typed
// storages), as PyTorch's weights_only loader does. Anything else is refused with a message.
#include "weights_io.h"

#include "errors.h"

#include <caffe2/serialize/inline_container.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <variant>

namespace densetorch {

namespace {

struct PyValue;
using PyList = std::vector<PyValue>;
using PyDict = std::vector<std::pair<PyValue, PyValue>>;

struct Global {
  std::string module, name;
};
struct StorageRef {
  at::ScalarType dtype;
  std::string key;
  int64_t numel;
};
struct Mark {};

struct PyValue {
  std::variant<std::monostate, bool, int64_t, double, std::string, std::shared_ptr<PyList> /*tuple*/,
               std::shared_ptr<PyList> /*list*/, std::shared_ptr<PyDict>, Global, StorageRef, at::Tensor, Mark>
      v;
};
// Variant indexes, for readability.
enum Kind { kNone, kBool, kInt, kFloat, kStr, kTuple, kList, kDict, kGlobal, kStorage, kTensor, kMark };

PyValue tuple_of(PyList items) {
  PyValue p;
  p.v.emplace<kTuple>(std::make_shared<PyList>(std::move(items)));
  return p;
}

PyValue empty_list() {
  PyValue p;
  p.v.emplace<kList>(std::make_shared<PyList>());
  return p;
}

at::ScalarType storage_dtype(const std::string& name) {
  static const std::map<std::string, at::ScalarType> kStorages = {
      {"FloatStorage", at::kFloat}, {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong}, {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort}, {"CharStorage", at::kChar}, {"ByteStorage", at::kByte}, {"BoolStorage", at::kBool},
  };
  auto it = kStorages.find(name);
  if (it == kStorages.end()) throw WeightsError("unsupported storage type torch." + name);
  return it->second;
}

class Unpickler {
 public:
  Unpickler(caffe2::serialize::PyTorchStreamReader& archive, const std::string& path)
      : archive_(archive), where_("cannot read " + path + " as a state dict: ") {}

  PyValue run(const uint8_t* data, std::size_t size) {
    data_ = data;
    size_ = size;
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;                        // PROTO
        case 0x95: bytes(8); break;                      // FRAME
        case '.': return pop();                          // STOP
        case '}': push(PyValue{std::make_shared<PyDict>()}); break;
        case ']': push(empty_list()); break;
        case ')': push(tuple_of({})); break;
        case '(': push(PyValue{Mark{}}); break;
        case 't': push(tuple_of(pop_to_mark())); break;
        case 0x85: { auto a = pop(); push(tuple_of({a})); break; }
        case 0x86: { auto b = pop(), a = pop(); push(tuple_of({a, b})); break; }
        case 0x87: { auto c = pop(), b = pop(), a = pop(); push(tuple_of({a, b, c})); break; }
        case 'N': push(PyValue{}); break;
        case 0x88: push(PyValue{true}); break;
        case 0x89: push(PyValue{false}); break;
        case 'K': push(PyValue{int64_t{byte()}}); break;
        case 'M': { const auto* p = bytes(2); push(PyValue{int64_t{p[0] | (p[1] << 8)}}); break; }
        case 'J': { const auto* p = bytes(4); int32_t v; std::memcpy(&v, p, 4); push(PyValue{int64_t{v}}); break; }
        case 0x8a: push(PyValue{long1()}); break;        // LONG1
        case 'G': {                                      // BINFLOAT, big-endian
          const auto* p = bytes(8);
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
          double d;
          std::memcpy(&d, &bits, 8);
          push(PyValue{d});
          break;
        }
        case 'X': push(PyValue{text(u32())}); break;     // BINUNICODE
        case 0x8c: push(PyValue{text(byte())}); break;   // SHORT_BINUNICODE
        case 0x8d: push(PyValue{text(u64())}); break;    // BINUNICODE8
        case 'c': {                                      // GLOBAL
          std::string module = line(), name = line();
          push(PyValue{global(module, name)});
          break;
        }
        case 0x93: {                                     // STACK_GLOBAL
          auto name = pop(), module = pop();
          push(PyValue{global(str(module, "global module"), str(name, "global name"))});
          break;
        }
        case 'q': memo(byte()); break;                   // BINPUT
        case 'r': memo(u32()); break;                    // LONG_BINPUT
        case 0x94: memo(memo_.size()); break;            // MEMOIZE
        case 'h': push(recall(byte())); break;           // BINGET
        case 'j': push(recall(u32())); break;            // LONG_BINGET
        case 'Q': push(persistent(pop())); break;        // BINPERSID
        case 'R': { auto args = pop(); auto fn = pop(); push(reduce(fn, args)); break; }
        case 'b': {                                      // BUILD: state of an OrderedDict (_metadata); ignored
          pop();
          if (stack_.empty() || stack_.back().v.index() != kDict) fail("BUILD is allowed only on a dict");
          break;
        }
        case 's': { auto value = pop(), key = pop(); dict_top().emplace_back(key, value); break; }
        case 'u': {
          auto items = pop_to_mark();
          if (items.size() % 2) fail("odd number of items in SETITEMS");
          auto& dict = dict_top();
          for (std::size_t i = 0; i < items.size(); i += 2) dict.emplace_back(items[i], items[i + 1]);
          break;
        }
        case 'a': { auto value = pop(); list_top().push_back(value); break; }
        case 'e': { auto items = pop_to_mark(); auto& list = list_top(); list.insert(list.end(), items.begin(), items.end()); break; }
        default: {
          char buf[64];
          std::snprintf(buf, sizeof buf, "unsupported pickle opcode 0x%02x at byte %zu", op, pos_ - 1);
          fail(buf);
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw WeightsError(where_ + what); }

  uint8_t byte() {
    if (pos_ >= size_) fail("the pickle ends early");
    return data_[pos_++];
  }
  const uint8_t* bytes(std::size_t n) {
    if (n > size_ - pos_) fail("the pickle ends early");
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  uint32_t u32() { const auto* p = bytes(4); return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t{p[3]} << 24); }
  uint64_t u64() { const auto* p = bytes(8); uint64_t v = 0; for (int i = 7; i >= 0; --i) v = (v << 8) | p[i]; return v; }
  int64_t long1() {
    const uint8_t n = byte();
    if (n > 8) fail("integer too large");
    const auto* p = bytes(n);
    int64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    if (n > 0 && n < 8 && (p[n - 1] & 0x80)) v -= int64_t{1} << (8 * n);  // sign
    return v;
  }
  std::string text(uint64_t n) {
    if (n > size_) fail("string longer than the pickle");
    const auto* p = bytes(static_cast<std::size_t>(n));
    return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
  }
  std::string line() {
    std::string s;
    while (true) {
      const char c = static_cast<char>(byte());
      if (c == '\n') return s;
      s += c;
      if (s.size() > 256) fail("global name too long");
    }
  }

  void push(PyValue v) {
    if (stack_.size() > 1'000'000) fail("pickle stack too deep");
    stack_.push_back(std::move(v));
  }
  PyValue pop() {
    if (stack_.empty() || stack_.back().v.index() == kMark) fail("stack underflow");
    PyValue v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PyList pop_to_mark() {
    PyList items;
    while (true) {
      if (stack_.empty()) fail("missing MARK");
      if (stack_.back().v.index() == kMark) {
        stack_.pop_back();
        return PyList(items.rbegin(), items.rend());
      }
      items.push_back(std::move(stack_.back()));
      stack_.pop_back();
    }
  }
  PyDict& dict_top() {
    if (stack_.empty() || stack_.back().v.index() != kDict) fail("SETITEM(S) on something that is not a dict");
    return *std::get<kDict>(stack_.back().v);
  }
  PyList& list_top() {
    if (stack_.empty() || stack_.back().v.index() != kList) fail("APPEND(S) on something that is not a list");
    return *std::get<kList>(stack_.back().v);
  }
  void memo(std::size_t index) {
    if (stack_.empty()) fail("memo of an empty stack");
    if (index > 10'000'000) fail("memo index too large");
    if (memo_.size() <= index) memo_.resize(index + 1);
    memo_[index] = stack_.back();
  }
  PyValue recall(std::size_t index) {
    if (index >= memo_.size()) fail("memo index " + std::to_string(index) + " was never stored");
    return memo_[index];
  }

  std::string str(const PyValue& v, const char* what) {
    if (v.v.index() != kStr) fail(std::string(what) + " is not a string");
    return std::get<kStr>(v.v);
  }
  int64_t integer(const PyValue& v, const char* what) {
    if (v.v.index() != kInt) fail(std::string(what) + " is not an integer");
    return std::get<kInt>(v.v);
  }
  const PyList& tuple(const PyValue& v, const char* what) {
    if (v.v.index() != kTuple) fail(std::string(what) + " is not a tuple");
    return *std::get<kTuple>(v.v);
  }

  Global global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    if (full == "collections.OrderedDict" || full == "torch._utils._rebuild_tensor_v2" ||
        full == "torch._utils._rebuild_parameter")
      return Global{module, name};
    if (module == "torch" && name.size() > 7 && name.compare(name.size() - 7, 7, "Storage") == 0) {
      storage_dtype(name);  // validates
      return Global{module, name};
    }
    fail("refusing to load global '" + full + "': a state dict holds only tensors (save model.state_dict(), not the model)");
  }

  PyValue persistent(const PyValue& pid) {
    const auto& t = tuple(pid, "persistent id");
    if (t.size() != 5 || str(t[0], "persistent id tag") != "storage") fail("unsupported persistent id");
    if (t[1].v.index() != kGlobal) fail("storage type is not a global");
    const auto& g = std::get<kGlobal>(t[1].v);
    return PyValue{StorageRef{storage_dtype(g.name), str(t[2], "storage key"), integer(t[4], "storage size")}};
  }

  at::Tensor storage_tensor(const StorageRef& ref) {
    auto it = storages_.find(ref.key);
    if (it != storages_.end()) return it->second;
    const std::string record = "data/" + ref.key;
    if (!archive_.hasRecord(record)) fail("the archive has no record " + record);
    auto [ptr, size] = archive_.getRecord(record);
    const auto elem = c10::elementSize(ref.dtype);
    if (ref.numel < 0 || size != static_cast<std::size_t>(ref.numel) * elem)
      fail("record " + record + " has " + std::to_string(size) + " bytes, expected " + std::to_string(ref.numel * elem));
    at::Tensor t = at::empty({ref.numel}, at::TensorOptions().dtype(ref.dtype));
    if (size > 0) std::memcpy(t.data_ptr(), ptr.get(), size);
    storages_.emplace(ref.key, t);
    return t;
  }

  std::vector<int64_t> int_tuple(const PyValue& v, const char* what) {
    std::vector<int64_t> out;
    for (const auto& x : tuple(v, what)) out.push_back(integer(x, what));
    return out;
  }

  PyValue reduce(const PyValue& fn, const PyValue& args_value) {
    if (fn.v.index() != kGlobal) fail("REDUCE of something that is not an allowed global");
    const auto& g = std::get<kGlobal>(fn.v);
    const auto& args = tuple(args_value, "REDUCE arguments");
    if (g.name == "OrderedDict") return PyValue{std::make_shared<PyDict>()};
    if (g.name == "_rebuild_parameter") {
      if (args.empty() || args[0].v.index() != kTensor) fail("_rebuild_parameter without a tensor");
      return args[0];
    }
    if (g.name == "_rebuild_tensor_v2") {
      if (args.size() < 4 || args[0].v.index() != kStorage) fail("_rebuild_tensor_v2 with unexpected arguments");
      at::Tensor storage = storage_tensor(std::get<kStorage>(args[0].v));
      const int64_t offset = integer(args[1], "storage offset");
      const auto sizes = int_tuple(args[2], "tensor size");
      const auto strides = int_tuple(args[3], "tensor stride");
      if (sizes.size() != strides.size()) fail("tensor size and stride differ in length");
      int64_t last = offset;
      bool empty = false;
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        if (sizes[i] < 0 || strides[i] < 0) fail("negative tensor size or stride");
        if (sizes[i] == 0) empty = true;
        else last += (sizes[i] - 1) * strides[i];
      }
      if (offset < 0 || (!empty && last >= storage.numel())) fail("tensor extends past the end of its storage");
      if (empty) return PyValue{at::empty(sizes, storage.options())};
      return PyValue{storage.as_strided(sizes, strides, offset).clone(at::MemoryFormat::Contiguous)};
    }
    fail("REDUCE of unsupported global " + g.module + "." + g.name);
  }

  caffe2::serialize::PyTorchStreamReader& archive_;
  std::string where_;
  const uint8_t* data_ = nullptr;
  std::size_t size_ = 0, pos_ = 0;
  std::vector<PyValue> stack_, memo_;
  std::map<std::string, at::Tensor> storages_;
};

}  // namespace

namespace {

// LibTorch's zip reader appends a paragraph of advice to its messages; keep the first sentence.
std::string zip_reason(const c10::Error& e) {
  std::string m = e.msg();
  const auto cut = m.find(" This is an internal miniz error");
  if (cut != std::string::npos) m.resize(cut);
  return m.substr(0, m.find('\n'));
}

WeightFile read_pth(caffe2::serialize::PyTorchStreamReader& archive, const std::string& path) {
  if (archive.hasRecord("byteorder")) {
    auto [ptr, size] = archive.getRecord("byteorder");
    if (std::string(static_cast<const char*>(ptr.get()), size) != "little")
      throw WeightsError(path + " was saved on a big-endian machine, which is not supported");
  }
  if (!archive.hasRecord("data.pkl")) throw WeightsError(path + " has no data.pkl record: not a torch.save file");
  auto [pkl, pkl_size] = archive.getRecord("data.pkl");
  Unpickler unpickler(archive, path);
  PyValue root = unpickler.run(static_cast<const uint8_t*>(pkl.get()), pkl_size);
  if (root.v.index() != kDict)
    throw WeightsError(path + " does not hold a dict of tensors (save model.state_dict())");
  WeightFile out;
  for (const auto& [key, value] : *std::get<kDict>(root.v)) {
    if (key.v.index() != kStr) throw WeightsError(path + " has a state-dict key that is not a string");
    if (value.v.index() != kTensor)
      throw WeightsError(path + ": entry '" + std::get<kStr>(key.v) +
                                  "' is not a tensor (a training checkpoint? save model.state_dict() instead)");
    out.tensors.emplace_back(std::get<kStr>(key.v), std::get<kTensor>(value.v));
  }
  return out;
}

}  // namespace

WeightFile load_pth(const std::string& path) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> archive;
  try {
    archive = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    throw WeightsError(path + " is not a readable PyTorch zip archive: " + zip_reason(e));
  }
  try {
    return read_pth(*archive, path);
  } catch (const c10::Error& e) {  // a damaged record inside an archive that opened
    throw WeightsError(path + " is a damaged PyTorch archive: " + zip_reason(e));
  }
}

}  // namespace densetorch
