// Registration only: every export is defined in its own file.
#include <napi.h>

#include "augment.h"
#include "../core/allocator.h"
#include "../core/compute_thread.h"
#include "../core/convolutions.h"
#include "../core/kernels/conv3x3_weight_grad.h"
#include "../core/kernels/cpu_capability.h"
#include "../core/kernels/norm_gemm.h"
#include "../core/kernels/winograd.h"
#include "../core/tensor_ops.h"
#include "addon_data.h"
#include "augment.h"
#include "data_source.h"
#include "distributed.h"
#include "errors.h"
#include "model.h"
#include "tensor.h"

#include <string>

namespace densetorch::bindings {
namespace {

// Which kernel variants this process runs (densetorch doctor, the portable-path test).
Napi::Value Kernels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    out.Set("capability", kernels::name(kernels::capability()));
    out.Set("cpu", kernels::name(kernels::cpu_supports()));
    out.Set("normGemm", norm_gemm::accelerated() ? norm_gemm::kernel_name() : "libtorch");
    const bool own3x3 = convolutions::own_conv3x3();
    out.Set("winograd", own3x3 && winograd::accelerated() ? winograd::kernel_name() : "libtorch");
    out.Set("conv3x3WeightGrad", own3x3 && conv3x3::accelerated() ? conv3x3::kernel_name() : "libtorch");
    return out;
  });
}

Napi::Value Versions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto rt = runtime_info();
    Napi::Object out = Napi::Object::New(env);
    out.Set("libtorch", rt.libtorch_version);
    out.Set("cudaAvailable", rt.cuda_available);
    out.Set("cudaDeviceCount", rt.cuda_device_count);
    return out;
  });
}

// A binding that calls Fn with its first argument as an int and returns undefined.
template <void (*Fn)(int)>
Napi::Value WithInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] { Fn(info[0].As<Napi::Number>().Int32Value()); });
  return env.Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), compute_threads());
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] { manual_seed(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value())); });
  return env.Undefined();
}

// setErrorClasses({ WeightsError, BusyError, TrainingError, DataError, DistributedError, NativeError })
Napi::Value SetErrorClasses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto classes = info[0].As<Napi::Object>();
  AddonData& data = addon_data(env);
  auto take = [&](Napi::FunctionReference& slot, const char* name) {
    Napi::Value cls = classes.Get(name);
    if (!cls.IsFunction()) throw Napi::TypeError::New(env, std::string("setErrorClasses: ") + name + " must be a class");
    slot = Napi::Persistent(cls.As<Napi::Function>());
  };
  take(data.weights_error, "WeightsError");
  take(data.busy_error, "BusyError");
  take(data.training_error, "TrainingError");
  take(data.data_error, "DataError");
  take(data.distributed_error, "DistributedError");
  take(data.native_error, "NativeError");
  return env.Undefined();
}

// cuda.memoryStats(index) -> { allocated, peakAllocated, reserved, peakReserved, allocRetries, ooms }
Napi::Value CudaMemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto s = cuda_memory_stats(info[0].As<Napi::Number>().Int32Value());
    Napi::Object out = Napi::Object::New(env);
    out.Set("allocated", static_cast<double>(s.allocated));
    out.Set("peakAllocated", static_cast<double>(s.peak_allocated));
    out.Set("reserved", static_cast<double>(s.reserved));
    out.Set("peakReserved", static_cast<double>(s.peak_reserved));
    out.Set("allocRetries", static_cast<double>(s.alloc_retries));
    out.Set("ooms", static_cast<double>(s.ooms));
    return out;
  });
}

Napi::Value CudaEmptyCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] { cuda_empty_cache(); });
  return env.Undefined();
}

// cuda.allowTF32(allow?) -> whether TF32 is allowed (after setting it when `allow` is given)
Napi::Value CudaAllowTF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() > 0 && info[0].IsBoolean()) set_allow_tf32(info[0].As<Napi::Boolean>().Value());
    return Napi::Boolean::New(env, allow_tf32());
  });
}

Napi::Object CudaExports(Napi::Env env) {
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("memoryStats", Napi::Function::New<CudaMemoryStats>(env, "memoryStats"));
  cuda.Set("resetPeakMemoryStats", Napi::Function::New<WithInt<cuda_reset_peak_memory_stats>>(env, "resetPeakMemoryStats"));
  cuda.Set("emptyCache", Napi::Function::New<CudaEmptyCache>(env, "emptyCache"));
  cuda.Set("synchronize", Napi::Function::New<WithInt<cuda_synchronize>>(env, "synchronize"));
  cuda.Set("allowTF32", Napi::Function::New<CudaAllowTF32>(env, "allowTF32"));
  return cuda;
}

Napi::Value ExternalMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Napi::MemoryManagement::AdjustExternalMemory(info.Env(), 0)));
}

}  // namespace

// How long the compute thread idles before the heaps' free memory is given back: back-to-back
// predictions (a server under load) keep reusing it; a quiet process shrinks within a second.
constexpr int kIdleReleaseMs = 500;

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  install_cpu_allocator();
  // Memory a burst of work kept for reuse goes back to the system once the compute thread idles.
  set_compute_idle_hook(release_free_memory, kIdleReleaseMs);
  disable_unusable_backends();
  keep_this_thread_serial();  // the JS thread's LibTorch work runs on it alone: one OpenMP pool per process
  // The kernel tables picked their variants as the addon loaded; the 3x3 rule (and the warning
  // for a DENSETORCH_WINOGRAD value not understood) is settled now too.
  convolutions::own_conv3x3();
  env.SetInstanceData(new AddonData());  // owned and deleted by the environment
  exports.Set("NativeTensor", NativeTensor::Init(env));
  exports.Set("NativeModel", NativeModel::Init(env));
  exports.Set("NativeFeeder", NativeFeeder::Init(env));
  exports.Set("distributed", DistributedExports(env));
  exports.Set("augment", AugmentExports(env));
  exports.Set("cuda", CudaExports(env));
  exports.Set("readWeights", Napi::Function::New<ReadWeights>(env, "readWeights"));
  exports.Set("writeFileAtomically", Napi::Function::New<WriteFileAtomically>(env, "writeFileAtomically"));
  exports.Set("versions", Napi::Function::New<Versions>(env, "versions"));
  exports.Set("kernels", Napi::Function::New<Kernels>(env, "kernels"));
  exports.Set("setNumThreads", Napi::Function::New<WithInt<set_compute_threads>>(env, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New<GetNumThreads>(env, "getNumThreads"));
  exports.Set("manualSeed", Napi::Function::New<ManualSeed>(env, "manualSeed"));
  exports.Set("externalMemory", Napi::Function::New<ExternalMemory>(env, "externalMemory"));
  exports.Set("setErrorClasses", Napi::Function::New<SetErrorClasses>(env, "setErrorClasses"));
  return exports;
}

}  // namespace densetorch::bindings

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  return densetorch::bindings::Init(env, exports);
}

NODE_API_MODULE(densetorch, InitAddon)
