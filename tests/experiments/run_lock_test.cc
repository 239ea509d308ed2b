// RunLock: one holder per run directory, across processes and within one;
// released when its holder dies, SIGKILL included; the file says when the last
// run began.
#include "experiments/run_lock.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace quant {
namespace {

namespace fs = std::filesystem;

std::string Dir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const fs::path d = fs::path(tmp ? tmp : "/tmp") / name;
  fs::remove_all(d);
  return d.string();
}

TEST(RunLockTest, OneHolderAtATime) {
  const std::string dir = Dir("one") + "/run-0123";
  auto first = RunLock::TryAcquire(dir);  // creates the run directory
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->held());
  EXPECT_TRUE(fs::exists(dir + "/run.lock"));
  // No run began here yet.
  EXPECT_EQ(first->LastRunStart(), std::chrono::system_clock::time_point());
  first->MarkRunning();
  EXPECT_EQ(first->Holder(), absl::StrCat(getpid()));
  auto second = RunLock::TryAcquire(dir);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->held());
  EXPECT_TRUE(RunLock::HeldElsewhere(dir));
  EXPECT_EQ(second->Holder(), absl::StrCat(getpid()));
  const auto before = std::chrono::system_clock::now() - std::chrono::seconds(1);
  *first = std::move(*second);  // closes the first holder's file: released
  EXPECT_FALSE(RunLock::HeldElsewhere(dir));
  ASSERT_TRUE(first->Wait().ok());
  EXPECT_TRUE(first->held());
  EXPECT_GE(first->LastRunStart(), before);
  EXPECT_FALSE(RunLock::HeldElsewhere(Dir("absent")));
}

TEST(RunLockTest, ReleasedWhenTheHolderIsKilled) {
  const std::string dir = Dir("killed") + "/run-0123";
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto lock = RunLock::TryAcquire(dir);
    const char ok = lock.ok() && lock->held() ? '1' : '0';
    (void)!write(ready[1], &ok, 1);
    pause();
    _exit(0);
  }
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, '1');
  auto waiter = RunLock::TryAcquire(dir);
  ASSERT_TRUE(waiter.ok()) << waiter.status();
  EXPECT_FALSE(waiter->held());
  ASSERT_EQ(kill(child, SIGKILL), 0);
  // Wait() returns once the kernel dropped the dead holder's lock.
  ASSERT_TRUE(waiter->Wait().ok());
  EXPECT_TRUE(waiter->held());
  waitpid(child, nullptr, 0);
}

TEST(RunLockTest, ErrorNamesTheDirectory) {
  const std::string dir = Dir("file");
  fs::create_directories(fs::path(dir).parent_path());
  { std::FILE* f = std::fopen(dir.c_str(), "w"); std::fclose(f); }
  auto lock = RunLock::TryAcquire(dir + "/run-0123");
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(std::string(lock.status().message()).rfind(dir + "/run-0123: cannot create the run directory: ", 0), 0u)
      << lock.status();
}

}  // namespace
}  // namespace quant
