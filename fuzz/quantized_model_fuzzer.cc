// Fuzzes the QuantizedModel loader and ValidateQuantizedModel. The input is used
// twice: as a whole .qlq file (header, payload, CRC), and as the protobuf payload
// wrapped in a correct header and CRC, so that the fuzzer gets past the checksum
// to the proto parser and the validator (where the structure is checked).
#include <zlib.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "quant/backends/quantized_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  quant::backends::ParseQuantizedModel(bytes).status().IgnoreError();

  std::string file = "QLQMODEL";
  auto put = [&file](uint64_t v, int n) {
    for (int i = 0; i < n; ++i) file.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put(quant::backends::kQuantizedModelFormatVersion, 4);
  put(size, 8);
  file.append(bytes);
  put(crc32(0L, data, size), 4);
  // Through the file path, as the driver loads a saved model.
  const std::string& path = quant::fuzz::ScratchPath(".qlq");
  quant::fuzz::WriteScratch(path, reinterpret_cast<const uint8_t*>(file.data()), file.size());
  auto model = quant::backends::LoadQuantizedModel(path);
  if (model.ok()) {
    // A model that validated must survive the accessors the backends use.
    quant::backends::IntegerModelBytes(*model);
    quant::backends::SerializeQuantizedModel(*model);
  }
  return 0;
}
