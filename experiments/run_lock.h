// The lock of one run directory: <run_dir>/run.lock, locked with flock() by
// the process that runs the experiment, for the whole run. Two drivers sharing
// an output dir therefore never run or write the same experiment at once.
// flock locks belong to the open file and die with the process, so the lock of
// a run killed with SIGKILL is free again at once (no stale lock to clean up).
// The file stays: removing it would let a second process lock a new file while
// a waiter still holds the old one. The holder writes its pid into it, for
// messages only (the lock, not the pid, is what counts).
#ifndef EXPERIMENTS_RUN_LOCK_H_
#define EXPERIMENTS_RUN_LOCK_H_

#include <string>

#include "absl/status/statusor.h"

namespace quant {

class RunLock {
 public:
  // Creates the run directory and the lock file if needed and tries to lock it
  // without waiting: held() says whether it did.
  static absl::StatusOr<RunLock> TryAcquire(const std::string& run_dir);

  RunLock(RunLock&& other) noexcept;
  RunLock& operator=(RunLock&& other) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock();  // releases the lock

  bool held() const { return held_; }
  // Blocks until the lock is ours.
  absl::Status Wait();
  // The pid the holder wrote into the lock file ("" if it wrote none yet).
  std::string Holder() const;

 private:
  RunLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  void WritePid();

  std::string path_;
  int fd_ = -1;
  bool held_ = false;
};

}  // namespace quant

#endif  // EXPERIMENTS_RUN_LOCK_H_
