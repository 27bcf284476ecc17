// Turning C++ exceptions into JS errors at the binding boundary. No model logic here.
#pragma once

#include <napi.h>

#include "addon_data.h"

#include <c10/util/Exception.h>

#include "../core/distributed.h"
#include "../core/errors.h"

#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

namespace densetorch::bindings {

// The first meaningful line of a message: LibTorch appends context and backtraces on later lines.
inline std::string first_line(const std::string& message) {
  std::size_t start = message.find_first_not_of(" \n\t");
  if (start == std::string::npos) return "unknown error";
  std::size_t end = message.find('\n', start);
  return message.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// The JS error class for a C++ exception: c10's typed errors map to TypeError/RangeError.
enum class ErrorKind { kError, kTypeError, kRangeError, kWeights, kBusy, kTraining, kData, kDistributed };

struct Failure {
  ErrorKind kind = ErrorKind::kError;
  std::string message;
};

// Describes the exception currently being handled. Call only inside a catch block.
inline Failure describe_current_exception() {
  try {
    throw;
  } catch (const WeightsError& e) {
    return {ErrorKind::kWeights, first_line(e.what())};
  } catch (const BusyError& e) {
    return {ErrorKind::kBusy, first_line(e.what())};
  } catch (const TrainingError& e) {
    return {ErrorKind::kTraining, first_line(e.what())};
  } catch (const DataError& e) {
    return {ErrorKind::kData, first_line(e.what())};
  } catch (const DistributedError& e) {
    return {ErrorKind::kDistributed, first_line(e.what())};
  } catch (const c10::TypeError& e) {
    return {ErrorKind::kTypeError, first_line(e.what_without_backtrace())};
  } catch (const c10::IndexError& e) {
    return {ErrorKind::kRangeError, first_line(e.what_without_backtrace())};
  } catch (const c10::Error& e) {
    return {ErrorKind::kError, first_line(e.what_without_backtrace())};
  } catch (const std::invalid_argument& e) {
    return {ErrorKind::kTypeError, first_line(e.what())};
  } catch (const std::out_of_range& e) {
    return {ErrorKind::kRangeError, first_line(e.what())};
  } catch (const std::bad_alloc&) {
    return {ErrorKind::kRangeError, "out of memory"};
  } catch (const std::exception& e) {
    return {ErrorKind::kError, first_line(e.what())};
  } catch (...) {
    return {ErrorKind::kError, "unknown C++ exception"};
  }
}

// The error code of each densetorch error kind (also on errors made before the classes are set).
inline const char* error_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kWeights: return "DENSETORCH_WEIGHTS";
    case ErrorKind::kBusy: return "DENSETORCH_BUSY";
    case ErrorKind::kTraining: return "DENSETORCH_TRAINING";
    case ErrorKind::kData: return "DENSETORCH_DATA";
    case ErrorKind::kDistributed: return "DENSETORCH_DISTRIBUTED";
    default: return "DENSETORCH_NATIVE";
  }
}

inline Napi::Error to_js_error(Napi::Env env, const Failure& failure) {
  if (failure.kind == ErrorKind::kTypeError) return Napi::TypeError::New(env, failure.message);
  if (failure.kind == ErrorKind::kRangeError) return Napi::RangeError::New(env, failure.message);
  AddonData& data = addon_data(env);
  Napi::FunctionReference& cls = failure.kind == ErrorKind::kWeights    ? data.weights_error
                                 : failure.kind == ErrorKind::kBusy     ? data.busy_error
                                 : failure.kind == ErrorKind::kTraining ? data.training_error
                                 : failure.kind == ErrorKind::kData     ? data.data_error
                                 : failure.kind == ErrorKind::kDistributed ? data.distributed_error
                                                                        : data.native_error;
  Napi::Error error = cls.IsEmpty() ? Napi::Error::New(env, failure.message)
                                    : Napi::Error(env, cls.New({Napi::String::New(env, failure.message)}));
  error.Set("code", error_code(failure.kind));
  return error;
}

// Runs `body`; any C++ exception becomes a thrown JS error (Napi::Error passes through).
template <typename Body>
auto guarded(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return std::forward<Body>(body)();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw to_js_error(env, describe_current_exception());
  }
}

}  // namespace densetorch::bindings
