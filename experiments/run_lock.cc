#include "experiments/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace quant {

absl::StatusOr<RunLock> RunLock::TryAcquire(const std::string& run_dir) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(run_dir, ": cannot create the run directory: ", ec.message()));
  }
  std::string path = run_dir + "/run.lock";
  // O_CLOEXEC: a worker the holder starts must not inherit (and so keep) the lock.
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open the run's lock file: ", std::strerror(errno)));
  }
  RunLock lock(std::move(path), fd);
  int r;
  do {
    r = flock(fd, LOCK_EX | LOCK_NB);
  } while (r != 0 && errno == EINTR);
  if (r == 0) {
    lock.held_ = true;
    lock.ReadLastRunStart();
  } else if (errno != EWOULDBLOCK) {
    return absl::PermissionDeniedError(absl::StrCat(lock.path_, ": cannot lock: ", std::strerror(errno)));
  }
  return lock;
}

bool RunLock::HeldElsewhere(const std::string& run_dir) {
  const int fd = open((run_dir + "/run.lock").c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;  // no lock file: nobody ever ran here
  // A separate open file: its flock conflicts with this process's own locks too.
  const bool held = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  close(fd);  // releases the probe's lock, if it got one
  return held;
}

RunLock::RunLock(RunLock&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), held_(other.held_), last_run_start_(other.last_run_start_) {
  other.fd_ = -1;
  other.held_ = false;
}

RunLock& RunLock::operator=(RunLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    held_ = other.held_;
    last_run_start_ = other.last_run_start_;
    other.fd_ = -1;
    other.held_ = false;
  }
  return *this;
}

RunLock::~RunLock() {
  if (fd_ >= 0) close(fd_);  // closing the last descriptor releases the flock
}

absl::Status RunLock::Wait() {
  if (held_) return absl::OkStatus();
  int r;
  do {
    r = flock(fd_, LOCK_EX);
  } while (r != 0 && errno == EINTR);
  if (r != 0) return absl::PermissionDeniedError(absl::StrCat(path_, ": cannot lock: ", std::strerror(errno)));
  held_ = true;
  ReadLastRunStart();
  return absl::OkStatus();
}

std::string RunLock::Holder() const {
  char buf[32] = {0};
  const ssize_t n = pread(fd_, buf, sizeof buf - 1, 0);
  return n > 0 ? std::string(absl::StripAsciiWhitespace(std::string(buf, n))) : "";
}

void RunLock::MarkRunning() {
  // Best effort: the pid is for messages ("running elsewhere (pid N)"), the
  // modification time for LastRunStart; the lock itself is what counts.
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd_, 0) == 0) (void)!pwrite(fd_, pid.data(), pid.size(), 0);
}

void RunLock::ReadLastRunStart() {
  // An empty file was only created (no run wrote its pid): no run began here yet.
  struct stat st;
  if (fstat(fd_, &st) != 0 || st.st_size == 0) return;
  last_run_start_ = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
}

}  // namespace quant
