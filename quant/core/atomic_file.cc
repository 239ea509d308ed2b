#include "quant/core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace quant {
namespace {

std::string Errno() { return std::strerror(errno); }

// The directory part of `path` ("." when it has none).
std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, std::string_view bytes) {
  return WriteFileAtomically(path, std::vector<std::string_view>{bytes});
}

absl::Status WriteFileAtomically(const std::string& path, const std::vector<std::string_view>& parts) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid(), ".", counter++);
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot create a file there: ", Errno()));
  auto fail = [&](const std::string& what) {
    const std::string reason = Errno();
    close(fd);
    unlink(tmp.c_str());
    return absl::DataLossError(absl::StrCat(path, ": ", what, ": ", reason));
  };
  size_t total = 0, written = 0;
  for (std::string_view bytes : parts) total += bytes.size();
  for (std::string_view bytes : parts) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail(absl::StrCat("write failed after ", written + done, " of ", total, " bytes"));
      done += static_cast<size_t>(n);
    }
    written += done;
  }
  if (fsync(fd) != 0) return fail("fsync failed");
  if (close(fd) != 0) {
    const std::string reason = Errno();
    unlink(tmp.c_str());
    return absl::DataLossError(absl::StrCat(path, ": close failed: ", reason));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = Errno();
    unlink(tmp.c_str());
    return absl::DataLossError(absl::StrCat(path, ": cannot move the finished file into place: ", reason));
  }
  // The rename itself is durable once the directory is synced (best effort).
  const int dir = open(DirectoryOf(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)fsync(dir);
    close(dir);
  }
  return absl::OkStatus();
}

}  // namespace quant
