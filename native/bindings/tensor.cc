#include "tensor.h"

#include "../core/tensor_ops.h"
#include "addon_data.h"
#include "errors.h"

#include <string>
#include <vector>

namespace densetorch::bindings {

namespace {

// The TypedArray kind that holds a dtype's elements in JS; dtypes with no JS counterpart are
// widened (float16/bfloat16 -> float32, bool -> uint8).
struct JsArrayKind {
  napi_typedarray_type type;
  at::ScalarType dtype;
};

JsArrayKind js_array_kind(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return {napi_float32_array, at::kFloat};
    case at::kDouble: return {napi_float64_array, at::kDouble};
    case at::kInt: return {napi_int32_array, at::kInt};
    case at::kLong: return {napi_bigint64_array, at::kLong};
    case at::kByte: return {napi_uint8_array, at::kByte};
    case at::kBool: return {napi_uint8_array, at::kByte};
    default: return {napi_float32_array, at::kFloat};
  }
}

std::vector<int64_t> shape_from(const Napi::Value& value) {
  if (!value.IsArray()) throw Napi::TypeError::New(value.Env(), "shape must be an array");
  auto array = value.As<Napi::Array>();
  std::vector<int64_t> shape(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value dim = array.Get(i);
    if (!dim.IsNumber()) throw Napi::TypeError::New(value.Env(), "shape[" + std::to_string(i) + "] must be a number");
    shape[i] = dim.As<Napi::Number>().Int64Value();
    if (shape[i] < 0) throw Napi::RangeError::New(value.Env(), "shape[" + std::to_string(i) + "] must be >= 0");
  }
  return shape;
}

}  // namespace

Napi::Function NativeTensor::Init(Napi::Env env) {
  Napi::Function ctor = DefineClass(env, "NativeTensor",
                                    {
                                        StaticMethod<&NativeTensor::FromData>("fromData"),
                                        InstanceMethod<&NativeTensor::Shape>("shape"),
                                        InstanceMethod<&NativeTensor::Dtype>("dtype"),
                                        InstanceMethod<&NativeTensor::Device>("device"),
                                        InstanceMethod<&NativeTensor::ToArray>("toArray"),
                                        InstanceMethod<&NativeTensor::To>("to"),
                                        InstanceMethod<&NativeTensor::Dispose>("dispose"),
                                        InstanceMethod<&NativeTensor::IsDisposed>("isDisposed"),
                                    });
  addon_data(env).tensor_constructor = Napi::Persistent(ctor);
  return ctor;
}

NativeTensor::NativeTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTensor>(info) {}

NativeTensor::~NativeTensor() { release(); }

Napi::Object NativeTensor::Wrap(Napi::Env env, at::Tensor t) {
  Napi::Object obj = addon_data(env).tensor_constructor.New({});
  ObjectWrap<NativeTensor>::Unwrap(obj)->adopt(env, std::move(t));
  return obj;
}

const at::Tensor& NativeTensor::FromValue(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_data(env).tensor_constructor.Value()))
    throw Napi::TypeError::New(env, std::string("Expected a Tensor for ") + what);
  return ObjectWrap<NativeTensor>::Unwrap(value.As<Napi::Object>())->live(env);
}

void NativeTensor::adopt(Napi::Env env, at::Tensor t) {
  release();
  tensor_ = std::move(t);
  env_ = env;
  reported_bytes_ = host_bytes(tensor_);
  if (reported_bytes_ > 0) Napi::MemoryManagement::AdjustExternalMemory(env, reported_bytes_);
}

void NativeTensor::release() {
  tensor_.reset();
  if (reported_bytes_ > 0 && env_ != nullptr) Napi::MemoryManagement::AdjustExternalMemory(Napi::Env(env_), -reported_bytes_);
  reported_bytes_ = 0;
}

const at::Tensor& NativeTensor::live(Napi::Env env) const {
  if (!tensor_.defined()) throw Napi::TypeError::New(env, "Tensor has been disposed");
  return tensor_;
}

// fromData(typedArray, shape, sourceDtype, targetDtype, device)
Napi::Value NativeTensor::FromData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "data must be a TypedArray");
    auto data = info[0].As<Napi::TypedArray>();
    const auto shape = shape_from(info[1]);
    const auto source = dtype_from_name(info[2].As<Napi::String>().Utf8Value());
    const auto target = dtype_from_name(info[3].As<Napi::String>().Utf8Value());
    const auto device = parse_device(info[4].As<Napi::String>().Utf8Value());
    const auto* bytes = static_cast<const uint8_t*>(data.ArrayBuffer().Data()) + data.ByteOffset();
    return Wrap(env, tensor_from_bytes(bytes, data.ByteLength(), shape, source, target, device));
  });
}

Napi::Value NativeTensor::Shape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& t = live(env);
  Napi::Array shape = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.size(i))));
  return shape;
}

Napi::Value NativeTensor::Dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtype_name(live(info.Env()).scalar_type()));
}

Napi::Value NativeTensor::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), device_name(live(info.Env()).device()));
}

Napi::Value NativeTensor::ToArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto& t = live(env);
    const auto kind = js_array_kind(t.scalar_type());
    at::Tensor src = t.scalar_type() == kind.dtype ? t : t.to(kind.dtype);
    const std::size_t count = static_cast<std::size_t>(src.numel());
    const std::size_t nbytes = count * src.element_size();
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, nbytes);
    copy_to_bytes(src, buffer.Data(), nbytes);
    switch (kind.type) {
      case napi_float64_array: return Napi::Float64Array::New(env, count, buffer, 0);
      case napi_int32_array: return Napi::Int32Array::New(env, count, buffer, 0);
      case napi_bigint64_array: return Napi::BigInt64Array::New(env, count, buffer, 0);
      case napi_uint8_array: return Napi::Uint8Array::New(env, count, buffer, 0);
      default: return Napi::Float32Array::New(env, count, buffer, 0);
    }
  });
}

Napi::Value NativeTensor::To(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto device = parse_device(info[0].As<Napi::String>().Utf8Value());
    return Wrap(env, live(env).to(device));
  });
}

Napi::Value NativeTensor::Dispose(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value NativeTensor::IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !tensor_.defined());
}

}  // namespace densetorch::bindings
