// Crash-safe file replacement: write a temporary file next to the target, flush it to disk,
// rename it over the target, flush the folder. A process killed at any moment leaves either the
// old file or the new one in place, never a partial one.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace densetorch {

// Receives the bytes of the new file, in order.
using WriteBytes = std::function<void(const void* data, std::size_t size)>;

// Replaces `path` with what `fill` writes. On any error (std::runtime_error naming `path` and the
// reason) the temporary file is removed and `path` is untouched. Temporary files left by processes
// that died while writing this path are removed first.
void write_atomically(const std::string& path, const std::function<void(const WriteBytes&)>& fill);

}  // namespace densetorch
