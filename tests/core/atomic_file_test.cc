// WriteFileAtomically: complete under the final name or absent, no temporary
// left behind, one clear error naming the path, safe with concurrent writers.
#include "quant/core/atomic_file.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace quant {
namespace {

namespace fs = std::filesystem;

std::string Dir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const fs::path d = fs::path(tmp ? tmp : "/tmp") / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int Entries(const std::string& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) (void)e, ++n;
  return n;
}

TEST(AtomicFile, WritesAndReplacesWithNothingLeftBehind) {
  const std::string d = Dir("write");
  ASSERT_TRUE(WriteFileAtomically(d + "/a.txt", "first").ok());
  EXPECT_EQ(Read(d + "/a.txt"), "first");
  const std::string big(3 << 20, 'x');
  ASSERT_TRUE(WriteFileAtomically(d + "/a.txt", big).ok());
  EXPECT_EQ(Read(d + "/a.txt"), big);
  EXPECT_EQ(Entries(d), 1);  // no temporary next to it
}

TEST(AtomicFile, AFailureNamesThePathAndLeavesNoFile) {
  const std::string d = Dir("fail");
  ASSERT_TRUE(WriteFileAtomically(d + "/plain", "x").ok());
  // A directory that cannot exist: a regular file is in the way.
  absl::Status s = WriteFileAtomically(d + "/plain/sub.txt", "y");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(d + "/plain/sub.txt"), std::string::npos) << s;
  EXPECT_NE(s.message().find("Not a directory"), std::string::npos) << s;
  EXPECT_EQ(Entries(d), 1);
}

TEST(AtomicFile, ConcurrentWritersNeverLeaveAMixedOrPartialFile) {
  const std::string d = Dir("race");
  const std::string a(1 << 16, 'a'), b(1 << 17, 'b');
  std::vector<std::thread> writers;
  std::vector<int> failures(4, 0);
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 50; ++i) failures[w] += !WriteFileAtomically(d + "/shared", w % 2 ? a : b).ok();
    });
  }
  for (auto& t : writers) t.join();
  for (int f : failures) EXPECT_EQ(f, 0);
  const std::string got = Read(d + "/shared");
  EXPECT_TRUE(got == a || got == b) << got.size();
  EXPECT_EQ(Entries(d), 1);
}

}  // namespace
}  // namespace quant
