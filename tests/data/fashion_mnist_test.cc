#include "quant/data/fashion_mnist.h"

#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

std::string Real(const std::string& name) { return std::string(kFashionMnistDir) + "/" + name; }

std::string TmpPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

std::vector<char> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), bytes.size());
}

TEST(IdxReaderTest, ReadsRealTestSet) {
  auto images = ReadIdxFile(Real("t10k-images-idx3-ubyte.gz"), 0x803, 0);
  ASSERT_TRUE(images.ok()) << images.status();
  EXPECT_EQ(images->dims, (std::vector<int32_t>{10000, 28, 28}));
  EXPECT_EQ(images->bytes.size(), 10000u * 784u);
  auto labels = ReadIdxFile(Real("t10k-labels-idx1-ubyte.gz"), 0x801, 0);
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(labels->dims, (std::vector<int32_t>{10000}));
  // The Fashion-MNIST test set is balanced: 1000 images per class.
  std::vector<int> counts(10, 0);
  for (uint8_t l : labels->bytes) counts[l]++;
  EXPECT_EQ(counts, std::vector<int>(10, 1000));
  // Known first labels of t10k (ankle boot, pullover, trouser, trouser).
  EXPECT_EQ(labels->bytes[0], 9);
  EXPECT_EQ(labels->bytes[1], 2);
  EXPECT_EQ(labels->bytes[2], 1);
  EXPECT_EQ(labels->bytes[3], 1);
}

TEST(IdxReaderTest, LimitKeepsFirstItems) {
  auto labels = ReadIdxFile(Real("t10k-labels-idx1-ubyte.gz"), 0x801, 5);
  ASSERT_TRUE(labels.ok());
  EXPECT_EQ(labels->dims[0], 5);
  EXPECT_EQ(labels->bytes.size(), 5u);
}

TEST(IdxReaderTest, MissingFileNamesFileAndPackage) {
  auto r = ReadIdxFile("/nonexistent/train-images-idx3-ubyte.gz", 0x803, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/train-images-idx3-ubyte.gz"));
  EXPECT_THAT(r.status().message(), HasSubstr("dataset-fashion-mnist"));
}

TEST(IdxReaderTest, TruncatedGzipIsRejected) {
  std::vector<char> bytes = ReadBytes(Real("t10k-labels-idx1-ubyte.gz"));
  ASSERT_GT(bytes.size(), 100u);
  bytes.resize(bytes.size() / 2);
  const std::string path = TmpPath("truncated-labels.gz");
  WriteBytes(path, bytes);
  auto r = ReadIdxFile(path, 0x801, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(path));
  EXPECT_THAT(r.status().message(), HasSubstr("truncated"));
}

TEST(IdxReaderTest, CorruptGzipIsRejected) {
  std::vector<char> bytes = ReadBytes(Real("t10k-labels-idx1-ubyte.gz"));
  for (size_t i = 40; i < 200; ++i) bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
  const std::string path = TmpPath("corrupt-labels.gz");
  WriteBytes(path, bytes);
  auto r = ReadIdxFile(path, 0x801, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(path));
}

TEST(IdxReaderTest, WrongMagicIsRejected) {
  auto r = ReadIdxFile(Real("t10k-labels-idx1-ubyte.gz"), 0x803, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("magic number 0x801, expected 0x803"));
}

TEST(IdxReaderTest, PlainIdxWithShortPayloadIsRejected) {
  // Header for 4 labels, but only 3 label bytes.
  WriteBytes(TmpPath("short.idx"), {0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3});
  auto r = ReadIdxFile(TmpPath("short.idx"), 0x801, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("promises 4 bytes of data, file has 3 (truncated)"));
  WriteBytes(TmpPath("ok.idx"), {0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3});
  auto ok = ReadIdxFile(TmpPath("ok.idx"), 0x801, 0);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->bytes, (std::vector<uint8_t>{1, 2, 3}));
}

// Found by fuzz/idx_fuzzer: three dimensions of 2^24 multiplied to 2^72 in int64
// (signed overflow) before the size check.
TEST(IdxReaderTest, HugeDimensionsAreTruncatedNotOverflowed) {
  WriteBytes(TmpPath("huge.idx"), {0, 0, 8, 3, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 2});
  auto r = ReadIdxFile(TmpPath("huge.idx"), 0x803, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("more than 2^63 bytes of data, file has 2 (truncated)"));
}

TEST(IdxReaderTest, GzipBombIsNotInflatedPastItsHeader) {
  // A 10x10 image header followed by 256 MiB of zeros: about 250 KiB of gzip.
  const std::string path = TmpPath("bomb.idx.gz");
  gzFile f = gzopen(path.c_str(), "wb9");
  ASSERT_NE(f, nullptr);
  const uint8_t header[] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 10, 0, 0, 0, 10};
  ASSERT_EQ(gzwrite(f, header, sizeof header), static_cast<int>(sizeof header));
  std::vector<uint8_t> zeros(1 << 20, 0);
  for (int i = 0; i < 256; ++i) ASSERT_EQ(gzwrite(f, zeros.data(), zeros.size()), static_cast<int>(zeros.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
  const auto start = std::chrono::steady_clock::now();
  auto r = ReadIdxFile(path, 0x803, 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("header promises 100 bytes of data, the file has more (trailing garbage"));
  // It stopped after the first 64 KiB block: far faster than inflating 256 MiB (about 1 s here).
  EXPECT_LT(seconds, 0.2);
}

TEST(FashionMnistTest, LoadsNormalisedSplitsThroughRegistry) {
  ParamReader p(YAML::Load("{name: fashion_mnist, train_limit: 1000}"), "t.yaml", "dataset");
  auto ds = Registry<Dataset>::Get().CreateFrom(p, "name", "", "dataset");
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_TRUE(p.Finish().ok());
  ASSERT_TRUE((*ds)->Load().ok());
  EXPECT_EQ((*ds)->train().size(), 1000);
  EXPECT_EQ((*ds)->test().size(), 10000);
  EXPECT_EQ((*ds)->train().shape(), (std::vector<int64_t>{1000, 1, 28, 28}));
  // Held as bytes (a quarter of the memory of floats), normalised when read.
  EXPECT_EQ((*ds)->train().pixels.size(), 1000u * 784u);
  EXPECT_EQ((*ds)->train().images.numel(), 0);
  // Pixel 0 maps to -mean/std, pixel 255 to (1-mean)/std.
  const float lo = (0.0f - kFashionMnistMean) / kFashionMnistStd;
  const float hi = (1.0f - kFashionMnistMean) / kFashionMnistStd;
  float mn = 1e9f, mx = -1e9f;
  double sum = 0;
  const Tensor test = (*ds)->test().Slice(0, (*ds)->test().size());
  for (float v : test.values()) {
    mn = std::min(mn, v);
    mx = std::max(mx, v);
    sum += v;
  }
  EXPECT_FLOAT_EQ(mn, lo);
  EXPECT_FLOAT_EQ(mx, hi);
  // Normalised with the dataset's own statistics: the mean is near zero.
  EXPECT_NEAR(sum / test.numel(), 0.0, 0.02);
  // Every value is exactly what normalising each byte at load time gave (bit for bit).
  const std::vector<uint8_t>& bytes = (*ds)->test().pixels;
  for (size_t i = 0; i < bytes.size(); ++i) {
    const float at_load = (bytes[i] / 255.0f - kFashionMnistMean) / kFashionMnistStd;
    ASSERT_EQ(std::memcmp(&test.values()[i], &at_load, sizeof(float)), 0) << i;
  }
  // A slice and a single sample read the same values as the whole split.
  float one[784];
  (*ds)->test().ReadOne(1234, one);
  EXPECT_EQ(std::memcmp(one, test.data() + 1234 * 784, sizeof one), 0);
  const Tensor slice = (*ds)->test().Slice(1230, 10);
  EXPECT_EQ(slice.shape(), (std::vector<int64_t>{10, 1, 28, 28}));
  EXPECT_EQ(std::memcmp(slice.data(), test.data() + 1230 * 784, 10 * 784 * sizeof(float)), 0);
}

// An imported model trained on other inputs declares them: here p / 255 (mean 0, std 1).
TEST(FashionMnistTest, NormalisationIsDeclaredInTheConfig) {
  ParamReader p(YAML::Load("{name: fashion_mnist, train_limit: 10, test_limit: 10, normalization: {mean: 0, std: 1}}"),
                "t.yaml", "dataset");
  auto ds = Registry<Dataset>::Get().CreateFrom(p, "name", "", "dataset");
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_TRUE(p.Finish().ok()) << p.Finish();
  ASSERT_TRUE((*ds)->Load().ok());
  const Tensor t = (*ds)->test().Slice(0, 10);
  const std::vector<uint8_t>& bytes = (*ds)->test().pixels;
  for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(t.values()[i], bytes[i] / 255.0f) << i;
  EXPECT_THAT((*ds)->Describe(), HasSubstr("normalised as (p / 255 - 0) / 1"));
  // A standard deviation that is not positive is an error at its key.
  ParamReader bad(YAML::Load("{normalization: {mean: 0.5, std: 0}}"), "cfg.yaml", "dataset");
  (void)FashionMnist::Create(bad);
  EXPECT_THAT(bad.Finish().message(), HasSubstr("cfg.yaml:1:34: dataset.normalization.std: 0: expected a positive"));
  // A misspelt key is not ignored.
  ParamReader typo(YAML::Load("{normalization: {mean: 0.5, sd: 1}}"), "cfg.yaml", "dataset");
  (void)FashionMnist::Create(typo);
  EXPECT_THAT(typo.Finish().message(),
              HasSubstr("cfg.yaml:1:29: dataset.normalization.sd: unknown key 'sd' (did you mean 'std'?)"));
}

TEST(FashionMnistTest, MissingDirectoryErrorOnLoad) {
  ParamReader p(YAML::Load("{dir: /no/such/dir}"), "t.yaml", "dataset");
  auto ds = FashionMnist::Create(p);
  ASSERT_TRUE(ds.ok());
  absl::Status s = (*ds)->Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("/no/such/dir/train-images-idx3-ubyte.gz"));
}

TEST(FashionMnistTest, BadLimitNamesKey) {
  ParamReader p(YAML::Load("{train_limit: 70000}"), "cfg.yaml", "dataset");
  auto ds = FashionMnist::Create(p);
  EXPECT_THAT(p.Finish().message(),
              HasSubstr("cfg.yaml:1:15: dataset.train_limit: expected an integer in [0, 60000]"));
}

}  // namespace
}  // namespace quant

namespace quant {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::unique_ptr<Dataset> Fashion(const std::string& cache_dir) {
  ParamReader p(YAML::Load("{name: fashion_mnist, train_limit: 2000, test_limit: 500}"), "t.yaml", "dataset");
  auto ds = Registry<Dataset>::Get().CreateFrom(p, "name", "", "dataset");
  EXPECT_TRUE(ds.ok()) << ds.status();
  (*ds)->set_cache_dir(cache_dir);
  return std::move(ds).value();
}

// The decoded-dataset cache: the second load reads the decoded bytes back, identical to
// decoding; a damaged cache file is ignored and rewritten; runs decoding at once agree.
TEST(FashionMnistTest, DecodedCacheIsReusedCheckedAndSafeUnderConcurrentWriters) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp ? tmp : "/tmp") + "/fashion_cache";
  std::filesystem::remove_all(dir);
  auto decoded = Fashion(dir);
  ASSERT_TRUE(decoded->Load().ok());
  EXPECT_THAT(decoded->Describe(), Not(HasSubstr("decoded copy")));
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(std::filesystem::file_size(files[0]), 32u + 16u + 2500u * 785u);

  auto cached = Fashion(dir);
  ASSERT_TRUE(cached->Load().ok());
  EXPECT_THAT(cached->Describe(), HasSubstr("decoded copy " + files[0].string()));
  EXPECT_EQ(cached->train().pixels, decoded->train().pixels);
  EXPECT_EQ(cached->test().labels, decoded->test().labels);
  const Tensor a = decoded->test().Slice(0, 500), b = cached->test().Slice(0, 500);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)), 0);

  // Damaged (truncated): ignored, decoded again, rewritten whole.
  std::filesystem::resize_file(files[0], 1000);
  auto again = Fashion(dir);
  ASSERT_TRUE(again->Load().ok());
  EXPECT_THAT(again->Describe(), Not(HasSubstr("decoded copy")));
  EXPECT_EQ(again->train().pixels, decoded->train().pixels);
  EXPECT_EQ(std::filesystem::file_size(files[0]), 32u + 16u + 2500u * 785u);

  // Four processes decoding into an empty cache at once: each loads the same data and the
  // file left behind is whole.
  std::filesystem::remove_all(dir);
  std::vector<pid_t> pids;
  for (int k = 0; k < 4; ++k) {
    const pid_t pid = fork();
    if (pid == 0) {
      auto ds = Fashion(dir);
      _exit(ds->Load().ok() && ds->train().pixels == decoded->train().pixels ? 0 : 1);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto last = Fashion(dir);
  ASSERT_TRUE(last->Load().ok());
  EXPECT_THAT(last->Describe(), HasSubstr("decoded copy"));
  EXPECT_EQ(last->train().pixels, decoded->train().pixels);
  int left = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) left += e.is_regular_file();
  EXPECT_EQ(left, 1) << "temporaries left behind";
}

}  // namespace
}  // namespace quant
