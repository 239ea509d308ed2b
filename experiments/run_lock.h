// The lock of one run directory: <run_dir>/run.lock, locked with flock() by
// the process that runs the experiment, for the whole run. Two drivers sharing
// an output dir therefore never run or write the same experiment at once.
// flock locks belong to the open file and die with the process, so the lock of
// a run killed with SIGKILL is free again at once (no stale lock to clean up).
// The file stays: removing it would let a second process lock a new file while
// a waiter still holds the old one. A holder that runs the experiment writes
// its pid into it (MarkRunning), for messages, and so the file's modification
// time says when the last run here began.
#ifndef EXPERIMENTS_RUN_LOCK_H_
#define EXPERIMENTS_RUN_LOCK_H_

#include <chrono>
#include <string>

#include "absl/status/statusor.h"

namespace quant {

class RunLock {
 public:
  // Creates the run directory and the lock file if needed and tries to lock it
  // without waiting: held() says whether it did.
  static absl::StatusOr<RunLock> TryAcquire(const std::string& run_dir);
  // Whether another process holds the lock of `run_dir` now; creates nothing.
  static bool HeldElsewhere(const std::string& run_dir);

  RunLock(RunLock&& other) noexcept;
  RunLock& operator=(RunLock&& other) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock();  // releases the lock

  bool held() const { return held_; }
  // Blocks until the lock is ours.
  absl::Status Wait();
  // The pid the last runner wrote into the lock file ("" if none did yet).
  std::string Holder() const;
  // Once held: says that this process runs the experiment now.
  void MarkRunning();
  // Once held: when the last run here began (by MarkRunning); the epoch if none did.
  std::chrono::system_clock::time_point LastRunStart() const { return last_run_start_; }

 private:
  RunLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  void ReadLastRunStart();

  std::string path_;
  int fd_ = -1;
  bool held_ = false;
  std::chrono::system_clock::time_point last_run_start_;
};

}  // namespace quant

#endif  // EXPERIMENTS_RUN_LOCK_H_
