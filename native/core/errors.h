// Error types of the core that the bindings map to specific JS errors.
#pragma once

#include <stdexcept>

namespace densetorch {

// A weight file or state dict that cannot be loaded (bad format, wrong keys or shapes).
struct WeightsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An operation on a model that is already running a long job (fit, predict, save).
struct BusyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace densetorch

namespace densetorch {

// Training cannot go on (loss became NaN or infinite, a checkpoint cannot be read).
struct TrainingError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The data source failed: a batch could not be made (an unreadable image file, bad labels).
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace densetorch
