// Shared helpers of the end-to-end driver tests: run //experiments:run as a user
// would (in the foreground or the background) and work with files in TEST_TMPDIR.
#ifndef TESTS_EXPERIMENTS_DRIVER_TEST_UTIL_H_
#define TESTS_EXPERIMENTS_DRIVER_TEST_UTIL_H_

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace quant::driver_test {

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr
};

// A driver started in the background; Finish() waits for it.
inline FILE* StartDriver(const std::string& args) {
  const std::string cmd = "experiments/run " + args + " 2>&1";
  return popen(cmd.c_str(), "r");
}

inline Result Finish(FILE* pipe) {
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  return Result{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

inline Result RunDriver(const std::string& args) { return Finish(StartDriver(args)); }

// Any command line, its stdout and stderr together.
inline Result RunCommand(const std::string& command) { return Finish(popen((command + " 2>&1").c_str(), "r")); }

// A fresh, empty directory `name` under TEST_TMPDIR (or /tmp).
inline std::string TmpDir(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/" + name;
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
  return path;
}

// The run directories under an output dir, sorted: not the <name> links to the latest
// runs, nor .cache (the decoded datasets).
inline std::vector<std::filesystem::path> RunDirs(const std::string& dir) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.is_directory() && !e.is_symlink() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline std::string Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

inline std::string Read(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace quant::driver_test

#endif  // TESTS_EXPERIMENTS_DRIVER_TEST_UTIL_H_
