#include "quant/data/fashion_mnist.h"

#include <sys/stat.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "quant/core/atomic_file.h"
#include "quant/core/fnv_hash.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant {
namespace {

constexpr char kPackageHint[] = " (install Debian's dataset-fashion-mnist: scripts/setup.sh)";

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Reads a whole file through zlib, which passes plain files through unchanged.
// Reads the (possibly gzip'd) file, decompressing as it goes and stopping once more than
// `limit(bytes so far)` bytes are in: a gzip bomb (a small file that inflates to gigabytes)
// is never decompressed past what its IDX header promises. *over says it stopped early.
absl::StatusOr<std::vector<uint8_t>> ReadMaybeGzip(const std::string& path,
                                                   const std::function<int64_t(const std::vector<uint8_t>&)>& limit,
                                                   bool* over) {
  *over = false;
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open", kPackageHint));
  }
  std::vector<uint8_t> out;
  uint8_t buffer[1 << 16];
  while (true) {
    const int n = gzread(f, buffer, sizeof buffer);
    if (n < 0) {
      int errnum = 0;
      const std::string msg = gzerror(f, &errnum);
      gzclose(f);
      return absl::DataLossError(absl::StrCat(path, ": corrupt gzip data (", msg, ")"));
    }
    if (n == 0) break;
    out.insert(out.end(), buffer, buffer + n);
    if (static_cast<int64_t>(out.size()) > limit(out)) {
      *over = true;
      gzclose(f);
      return out;
    }
  }
  // A gzip stream cut short reads as a clean end of data in some zlib versions;
  // gzclose_r reports the missing trailer.
  const int rc = gzclose(f);
  if (rc != Z_OK && rc != Z_BUF_ERROR) {
    return absl::DataLossError(absl::StrCat(path, ": truncated or corrupt gzip file"));
  }
  if (rc == Z_BUF_ERROR) {
    return absl::DataLossError(absl::StrCat(path, ": truncated gzip file (ends mid-stream)"));
  }
  return out;
}

}  // namespace

absl::StatusOr<IdxData> ReadIdxFile(const std::string& path, uint32_t expected_magic,
                                    int64_t limit) {
  // The most bytes the file may have: a header of up to 255 dimensions until it is in,
  // then the header plus what it promises (+1, so trailing garbage is still seen).
  auto most_bytes = [](const std::vector<uint8_t>& in) -> int64_t {
    if (in.size() < 4) return 4 + 4 * 255;
    const int rank = in[3];
    const size_t header = 4 + 4 * static_cast<size_t>(rank);
    if (in.size() < header) return static_cast<int64_t>(header);
    int64_t items = 1;
    for (int i = 0; i < rank; ++i) {
      const uint32_t d = BigEndian32(in.data() + 4 + 4 * i);
      if (d == 0 || items > (std::numeric_limits<int64_t>::max() / 2) / std::max<uint32_t>(d, 1)) {
        return static_cast<int64_t>(header);  // an implausible header: the checks below say so
      }
      items *= d;
    }
    return static_cast<int64_t>(header) + items + 1;
  };
  bool over = false;
  ASSIGN_OR_RETURN(std::vector<uint8_t> raw, ReadMaybeGzip(path, most_bytes, &over));
  if (raw.size() < 4) {
    return absl::DataLossError(absl::StrCat(path, ": too short for an IDX header (", raw.size(),
                                            " bytes)"));
  }
  const uint32_t magic = BigEndian32(raw.data());
  if (magic != expected_magic) {
    return absl::DataLossError(absl::StrCat(path, ": not an IDX ",
                                            expected_magic == 0x803 ? "image" : "label",
                                            " file: magic number 0x", absl::Hex(magic),
                                            ", expected 0x", absl::Hex(expected_magic)));
  }
  const int rank = static_cast<int>(magic & 0xff);
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (raw.size() < header) {
    return absl::DataLossError(absl::StrCat(path, ": truncated IDX header"));
  }
  IdxData data;
  const int64_t payload = static_cast<int64_t>(raw.size() - header);
  int64_t items = 1;
  for (int i = 0; i < rank; ++i) {
    const uint32_t d = BigEndian32(raw.data() + 4 + 4 * i);
    if (d == 0 || d > (1u << 24)) {
      return absl::DataLossError(absl::StrCat(path, ": implausible dimension ", i, " = ", d));
    }
    data.dims.push_back(static_cast<int32_t>(d));
    // Three dimensions of up to 2^24 overflow int64 (UB), so the product is checked
    // before it is formed; no file that large can exist.
    if (items > std::numeric_limits<int64_t>::max() / d) {
      return absl::DataLossError(
          absl::StrCat(path, ": header promises more than 2^63 bytes of data, file has ", payload, " (truncated)"));
    }
    items *= d;
  }
  if (over) {
    return absl::DataLossError(absl::StrCat(path, ": header promises ", items,
                                            " bytes of data, the file has more (trailing garbage; decompression "
                                            "stopped there, so a gzip bomb is never inflated)"));
  }
  if (payload != items) {
    return absl::DataLossError(absl::StrCat(path, ": header promises ", items, " bytes of data, file has ",
                                            raw.size() - header,
                                            raw.size() - header < static_cast<size_t>(items)
                                                ? " (truncated)"
                                                : " (trailing garbage)"));
  }
  int64_t count = data.dims[0];
  if (limit > 0 && limit < count) count = limit;
  const int64_t per_item = items / data.dims[0];
  data.dims[0] = static_cast<int32_t>(count);
  data.bytes.assign(raw.begin() + header, raw.begin() + header + count * per_item);
  return data;
}

absl::StatusOr<std::unique_ptr<Dataset>> FashionMnist::Create(ParamReader& p) {
  const std::string dir = p.String("dir", kFashionMnistDir, "folder of the four IDX .gz files");
  const int64_t train_limit =
      p.IntInRange("train_limit", 0, 0, 60000, "use only the first N training images (0 = all)");
  const int64_t test_limit =
      p.IntInRange("test_limit", 0, 0, 10000, "use only the first N test images (0 = all)");
  // Declared where a model expects other inputs than torchvision's usual constants (an
  // imported ONNX model trained on p / 255, say: mean 0, std 1).
  ParamReader& norm = p.Map("normalization", "inputs are (p / 255 - mean) / std for each pixel byte p");
  const double mean = norm.DoubleInRange("mean", kFashionMnistMean, -1e6, 1e6, "subtracted from p / 255");
  const double stddev = norm.Double("std", kFashionMnistStd, "divides p / 255 - mean; positive");
  if (!(stddev > 0)) norm.Fail("std", absl::StrCat(stddev, ": expected a positive number"));
  return std::unique_ptr<Dataset>(
      new FashionMnist(dir, train_limit, test_limit, static_cast<float>(mean), static_cast<float>(stddev)));
}

absl::StatusOr<DataSplit> FashionMnist::LoadSplit(const std::string& prefix, int64_t limit) const {
  const std::string images_path = absl::StrCat(dir_, "/", prefix, "-images-idx3-ubyte.gz");
  const std::string labels_path = absl::StrCat(dir_, "/", prefix, "-labels-idx1-ubyte.gz");
  ASSIGN_OR_RETURN(IdxData images, ReadIdxFile(images_path, 0x803, limit));
  ASSIGN_OR_RETURN(IdxData labels, ReadIdxFile(labels_path, 0x801, limit));
  if (images.dims.size() != 3 || images.dims[1] != 28 || images.dims[2] != 28) {
    return absl::DataLossError(absl::StrCat(images_path, ": expected N x 28 x 28 images"));
  }
  if (images.dims[0] != labels.dims[0]) {
    return absl::DataLossError(absl::StrCat(images_path, " has ", images.dims[0], " images but ",
                                            labels_path, " has ", labels.dims[0], " labels"));
  }
  DataSplit split;
  const int64_t n = images.dims[0];
  // Kept as bytes, normalised when read (DataSplit::Read): a quarter of the memory.
  split.pixels = std::move(images.bytes);
  split.pixel_shape = {1, 28, 28};
  split.SetPixelNormalisation(mean_, std_);
  split.labels.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    if (labels.bytes[i] > 9) {
      return absl::DataLossError(absl::StrCat(labels_path, ": label ", int{labels.bytes[i]},
                                              " at index ", i, " is not a class in 0..9"));
    }
    split.labels[i] = labels.bytes[i];
  }
  return split;
}

namespace {

constexpr char kCacheMagic[] = "quantlab fashion_mnist cache v1\n";
constexpr int64_t kPixelsPerImage = 28 * 28;
const char* const kIdxFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

void AppendInt64(std::string* out, int64_t v) { out->append(reinterpret_cast<const char*>(&v), sizeof v); }

}  // namespace

std::string FashionMnist::CachePath() const {
  std::string key = absl::StrCat(kCacheMagic, dir_, "|", train_limit_, "|", test_limit_);
  for (const char* f : kIdxFiles) {
    const std::string path = absl::StrCat(dir_, "/", f);
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return "";  // decoding will say what is missing
    absl::StrAppend(&key, "|", f, ":", st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
  }
  return absl::StrFormat("%s/fashion_mnist-%016x.u8", cache_dir_, Fnv1a64(key));
}

absl::Status FashionMnist::WriteCache(const std::string& path) const {
  std::string header(kCacheMagic);
  AppendInt64(&header, train_.size());
  AppendInt64(&header, test_.size());
  std::string labels[2];
  std::vector<std::string_view> parts = {header};
  const DataSplit* splits[] = {&train_, &test_};
  for (int k = 0; k < 2; ++k) {
    for (int32_t label : splits[k]->labels) labels[k].push_back(static_cast<char>(label));
    parts.emplace_back(reinterpret_cast<const char*>(splits[k]->pixels.data()), splits[k]->pixels.size());
    parts.emplace_back(labels[k]);
  }
  return WriteFileAtomically(path, parts);
}

absl::Status FashionMnist::ReadCache(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(path);
  const size_t file_size = static_cast<size_t>(in.tellg());
  in.seekg(0);
  const size_t header = sizeof(kCacheMagic) - 1;
  std::string head(header + 16, '\0');
  if (file_size < head.size() || !in.read(head.data(), static_cast<std::streamsize>(head.size())) ||
      head.compare(0, header, kCacheMagic) != 0) {
    return absl::DataLossError(path);
  }
  int64_t counts[2];
  std::memcpy(counts, head.data() + header, sizeof counts);
  if (counts[0] < 0 || counts[1] < 0 || counts[0] > 60000 || counts[1] > 10000 ||
      file_size != head.size() + static_cast<size_t>((counts[0] + counts[1]) * (kPixelsPerImage + 1))) {
    return absl::DataLossError(path);
  }
  DataSplit* splits[] = {&train_, &test_};
  for (int k = 0; k < 2; ++k) {
    DataSplit& s = *splits[k];
    const int64_t n = counts[k];
    s = DataSplit();
    s.pixels.resize(static_cast<size_t>(n * kPixelsPerImage));
    std::string labels(static_cast<size_t>(n), '\0');
    if (!in.read(reinterpret_cast<char*>(s.pixels.data()), static_cast<std::streamsize>(s.pixels.size())) ||
        !in.read(labels.data(), static_cast<std::streamsize>(n))) {
      return absl::DataLossError(path);
    }
    s.labels.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t label = static_cast<uint8_t>(labels[i]);
      if (label > 9) return absl::DataLossError(path);
      s.labels[i] = label;
    }
    s.pixel_shape = {1, 28, 28};
    s.SetPixelNormalisation(mean_, std_);
  }
  return absl::OkStatus();
}

absl::Status FashionMnist::Load() {
  const std::string cache = cache_dir_.empty() ? "" : CachePath();
  if (!cache.empty() && ReadCache(cache).ok()) {
    loaded_from_ = cache;
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(train_, LoadSplit("train", train_limit_));
  ASSIGN_OR_RETURN(test_, LoadSplit("t10k", test_limit_));
  if (!cache.empty()) {
    // Best effort: a cache that cannot be written only costs the next run the decoding.
    std::error_code ec;
    std::filesystem::create_directories(cache_dir_, ec);
    (void)WriteCache(cache);
  }
  return absl::OkStatus();
}

std::string FashionMnist::Describe() const {
  return absl::StrCat("fashion_mnist (", train_.size(), " train, ", test_.size(), " test, from ", dir_,
                      loaded_from_.empty() ? "" : absl::StrCat("; decoded copy ", loaded_from_),
                      mean_ == kFashionMnistMean && std_ == kFashionMnistStd
                          ? ""
                          : absl::StrCat("; normalised as (p / 255 - ", mean_, ") / ", std_),
                      ")");
}

QUANTLAB_REGISTER(Dataset, "fashion_mnist", FashionMnist::Create,
                  "Fashion-MNIST 28x28 grey images, 10 classes (Debian dataset-fashion-mnist)");

}  // namespace quant
