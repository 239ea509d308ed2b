// Fuzzes the Fashion-MNIST IDX reader (plain or gzip'd, detected by content), as
// labels (magic 0x801) and as images (0x803), with and without an item limit.
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "quant/data/fashion_mnist.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = quant::fuzz::ScratchPath(".idx");
  quant::fuzz::WriteScratch(path, data, size);
  for (uint32_t magic : {0x801u, 0x803u}) {
    for (int64_t limit : {int64_t{0}, int64_t{2}}) {
      auto idx = quant::ReadIdxFile(path, magic, limit);
      if (idx.ok()) {
        // Touch every byte so a size that disagrees with the buffer shows up under ASan.
        volatile uint8_t sum = 0;
        for (uint8_t b : idx->bytes) sum += b;
        (void)sum;
      }
    }
  }
  return 0;
}
