// fp16 and bf16 against PyTorch 1.13 (tests/golden/torch/bf16_fp16_rounding.json).
//
// NaN: quantlab's bf16 encodes every NaN to 0x7fc0, which is what PyTorch's
// scalar and strided kernels produce; its contiguous AVX2 kernel writes 0xffff
// instead. So the encode is compared exactly with `bf16_bits_strided`, and
// with the contiguous `bf16_bits` counting a NaN result as identical when both
// are NaN patterns (the only difference between the two torch columns).
#include <cmath>
#include <string>

#include "gtest/gtest.h"
#include "tests/formats/format_test_util.h"
#include "tests/golden/golden_util.h"

namespace quant {
namespace {

using golden::Json;
using testing_util::Hex;
using testing_util::MakeFormat;

bool Bf16IsNan(uint32_t b) { return (b & 0x7fff) > 0x7f80; }

TEST(IeeeGoldenTest, Fp16AndBf16MatchTorch) {
  auto bf16 = MakeFormat("bf16");
  auto fp16 = MakeFormat("fp16");
  ASSERT_TRUE(bf16 && fp16);
  for (const std::string& path : golden::FilesFor("torch/bf16_fp16_rounding.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally tally(path);
    const auto& x = j.at("x_bits");
    for (size_t i = 0; i < x.size(); ++i) {
      const uint32_t xb = x[i].get<uint32_t>();
      const float xf = golden::BitsToFloat(xb);
      const uint32_t want_bf = j["bf16_bits"][i], want_bf_strided = j["bf16_bits_strided"][i];
      const uint32_t want_f16 = j["f16_bits"][i], want_f16_strided = j["f16_bits_strided"][i];
      const uint32_t got_bf = bf16->Encode(xf), got_f16 = fp16->Encode(xf);
      const std::string d = "x=" + Hex(xb);
      tally.Add("bf16_encode_vs_strided", got_bf == want_bf_strided,
                d + " got " + Hex(got_bf) + " want " + Hex(want_bf_strided));
      tally.Add("bf16_encode_vs_contiguous(NaN=any NaN)",
                got_bf == want_bf || (Bf16IsNan(got_bf) && Bf16IsNan(want_bf)),
                d + " got " + Hex(got_bf) + " want " + Hex(want_bf));
      tally.Add("f16_encode", got_f16 == want_f16, d + " got " + Hex(got_f16) + " want " + Hex(want_f16));
      tally.Add("f16_encode_vs_strided", got_f16 == want_f16_strided, d);
      // Decode of torch's patterns back to float32.
      const uint32_t bf_back = golden::FloatToBits(bf16->Decode(want_bf));
      const uint32_t f16_back = golden::FloatToBits(fp16->Decode(want_f16));
      tally.Add("bf16_decode", bf_back == j["bf16_to_f32_bits"][i].get<uint32_t>(), d);
      tally.Add("f16_decode", f16_back == j["f16_to_f32_bits"][i].get<uint32_t>(), d);
      // Round (fake-quant) = decode(encode) except that NaN stays NaN.
      const float want_round_bf = golden::BitsToFloat(j["bf16_to_f32_bits"][i].get<uint32_t>());
      const float want_round_f16 = golden::BitsToFloat(j["f16_to_f32_bits"][i].get<uint32_t>());
      const float rb = bf16->Round(xf), rh = fp16->Round(xf);
      tally.Add("bf16_round", std::isnan(want_round_bf) ? std::isnan(rb)
                                  : golden::FloatToBits(rb) == golden::FloatToBits(want_round_bf), d);
      tally.Add("f16_round", std::isnan(want_round_f16) ? std::isnan(rh)
                                  : golden::FloatToBits(rh) == golden::FloatToBits(want_round_f16), d);
    }
    // The span path must agree with the scalar one.
    std::vector<float> in(x.size()), out_span(x.size());
    for (size_t i = 0; i < x.size(); ++i) in[i] = golden::BitsToFloat(x[i].get<uint32_t>());
    for (auto* f : {bf16.get(), fp16.get()}) {
      f->RoundSpan(in, absl::MakeSpan(out_span));
      std::vector<uint32_t> codes(in.size());
      f->EncodeSpan(in, absl::MakeSpan(codes));
      for (size_t i = 0; i < in.size(); ++i) {
        const float r = f->Round(in[i]);
        tally.Add(f->properties().name + "_span_vs_scalar",
                  (std::isnan(r) && std::isnan(out_span[i])) ||
                      golden::FloatToBits(r) == golden::FloatToBits(out_span[i]),
                  Hex(golden::FloatToBits(in[i])));
        tally.Add(f->properties().name + "_encode_span_vs_scalar", codes[i] == f->Encode(in[i]),
                  Hex(golden::FloatToBits(in[i])));
      }
    }
    tally.Report({"bf16_encode_vs_strided", "f16_encode", "bf16_decode", "f16_decode"});
  }
}

}  // namespace
}  // namespace quant
