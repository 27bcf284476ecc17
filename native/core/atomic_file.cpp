#include "atomic_file.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <unistd.h>

namespace densetorch {

namespace fs = std::filesystem;

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// Temporary files of `target` are named ".<name>.tmp-<pid>-<n>" in its folder.
std::string temp_stem(const fs::path& target) { return "." + target.filename().string() + ".tmp-"; }

// Removes temporary files of `target` whose writer process no longer exists (killed mid-save).
void remove_orphans(const fs::path& target) {
  const std::string start = temp_stem(target);
  std::error_code ec;
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(start, 0) != 0) continue;
    const std::string rest = name.substr(start.size());
    const auto dash = rest.find('-');
    if (dash == std::string::npos || dash == 0) continue;
    char* parsed_end = nullptr;
    const long pid = std::strtol(rest.c_str(), &parsed_end, 10);
    if (parsed_end != rest.c_str() + dash || pid <= 0) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // still running (or not ours to judge)
    std::error_code ignored;
    fs::remove(it->path(), ignored);
  }
}

void sync_folder(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: the rename itself is already atomic
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_atomically(const std::string& path, const std::function<void(const WriteBytes&)>& fill) {
  static std::atomic<unsigned long> counter{0};
  const fs::path target(path);
  remove_orphans(target);
  const fs::path tmp = target.parent_path() / (temp_stem(target) + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  auto fail = [&](const std::string& what) -> std::runtime_error {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    return std::runtime_error("cannot save " + path + ": " + what);
  };
  {
    File f(std::fopen(tmp.c_str(), "wb"));
    if (!f) throw fail("cannot create " + tmp.string() + ": " + std::strerror(errno));
    try {
      fill([&](const void* data, std::size_t n) {
        if (n > 0 && std::fwrite(data, 1, n, f.get()) != n) throw std::runtime_error(std::strerror(errno));
      });
      if (std::fflush(f.get()) != 0 || ::fsync(::fileno(f.get())) != 0) throw std::runtime_error(std::strerror(errno));
    } catch (const std::exception& e) {
      f.reset();
      throw fail(std::string("write failed: ") + e.what());
    }
    if (std::fclose(f.release()) != 0) throw fail(std::string("close failed: ") + std::strerror(errno));
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) throw fail("could not move the new file into place: " + ec.message());
  sync_folder(target.parent_path());
}

}  // namespace densetorch
