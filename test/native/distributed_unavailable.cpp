// The distributed part of a build without gloo's headers: available() says what to install, every
// collective throws DistributedError, and the DistributedSampler rule still works (data sets use it).
#include "../../native/core/distributed.cpp"

#include <iostream>

namespace dist = densetorch::distributed;

int main() {
  std::string reason;
  if (dist::available(&reason)) return std::cout << "available() is true without gloo\n", 1;
  if (reason.find("libgloo-dev") == std::string::npos) return std::cout << "reason: " << reason << "\n", 1;
  try {
    dist::init({});
    return std::cout << "init did not throw\n", 1;
  } catch (const densetorch::DistributedError& e) {
    std::cout << "init: " << e.what() << "\n";
  }
  if (dist::initialized()) return 1;
  const at::Tensor idx = dist::shard_indices(10, 1, 3, false, 0, 0, false);
  if (!idx.equal(at::tensor({1, 4, 7, 0}, at::kLong))) return std::cout << "shard " << idx << "\n", 1;
  std::cout << "ok\n";
  return 0;
}
