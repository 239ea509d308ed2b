// Exhaustive checks of every registered format of at most 16 bits (default
// parameters): every pattern decodes and re-encodes to itself (NaN patterns to
// the format's canonical NaN), decoded values are strictly increasing in the
// format's pattern order, and the tie point between every pair of neighbours
// rounds to the neighbour with the even pattern (posits: the bit-string tie
// U.1 of the standard, and 0 is never a neighbour: posits never round to 0).
// Block formats are checked on their elements with a unit scale (their
// inf/NaN element patterns are not produced by the block encoder, which
// marks a non-finite block with the NaN scale instead). Symmetric integer
// grids (int, block_fp/mxint8 elements, Flexpoint) decode the pattern 100..0
// (-2^(b-1)) but never produce it: it is skipped.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "quant/formats/posit.h"
#include "tests/formats/format_test_util.h"

namespace quant {
namespace {

using testing_util::Hex;
using testing_util::MakeFormat;

// Position of a pattern in value order.
int64_t OrderKey(const FormatProperties& p, uint32_t b) {
  const uint32_t sign = 1u << (p.bits - 1);
  switch (p.order) {
    case PatternOrder::kSignMagnitude:
      return (b & sign) ? -static_cast<int64_t>(b & (sign - 1)) - 1 : static_cast<int64_t>(b);
    case PatternOrder::kTwosComplement:
      return (b & sign) ? static_cast<int64_t>(b) - (int64_t{1} << p.bits) : static_cast<int64_t>(b);
    case PatternOrder::kUnsigned:
      return b;
  }
  return 0;
}

class ExhaustiveTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ExhaustiveTest, RoundTripOrderAndTies) {
  auto f = MakeFormat(GetParam());
  ASSERT_TRUE(f);
  const FormatProperties& props = f->properties();
  ASSERT_LE(props.bits, 16);
  const bool block = props.block_size != 1;
  const bool posit = GetParam().rfind("posit", 0) == 0;
  const uint32_t count = 1u << props.bits;
  int round_trips = 0, nans = 0;
  struct Point {
    int64_t key;
    uint32_t bits;
    double value;
  };
  std::vector<Point> finite;
  int unused = 0;
  for (uint32_t b = 0; b < count; ++b) {
    if (!posit && props.order == PatternOrder::kTwosComplement && b == count / 2) {
      ++unused;
      EXPECT_NE(f->Encode(f->Decode(b)), b);
      continue;
    }
    const double v = f->DecodeExact(b);
    const float vf = f->Decode(b);
    ASSERT_TRUE(std::isnan(v) ? std::isnan(vf) : static_cast<double>(vf) == v) << Hex(b);
    if (std::isnan(v)) {
      if (block) continue;
      ++nans;
      const uint32_t e = f->Encode(vf);
      EXPECT_TRUE(std::isnan(f->Decode(e))) << GetParam() << " " << Hex(b);
      // The canonical NaN of that sign.
      EXPECT_EQ(e, f->Encode(std::copysign(NAN, vf))) << GetParam() << " " << Hex(b);
      continue;
    }
    if (std::isinf(v)) {
      if (block) continue;
      EXPECT_EQ(f->Encode(vf), b) << GetParam() << " " << Hex(b);
      continue;
    }
    EXPECT_EQ(f->Encode(vf), b) << GetParam() << " " << Hex(b) << " = " << v;
    ++round_trips;
    finite.push_back({OrderKey(props, b), b, v});
  }
  std::sort(finite.begin(), finite.end(), [](const Point& a, const Point& b) { return a.key < b.key; });
  // Strictly increasing in pattern order (-0 and +0 are the one allowed tie).
  int ordered = 0;
  for (size_t i = 1; i < finite.size(); ++i) {
    const bool zeros = finite[i - 1].value == 0 && finite[i].value == 0;
    EXPECT_TRUE(finite[i - 1].value < finite[i].value || zeros)
        << GetParam() << " " << Hex(finite[i - 1].bits) << " " << Hex(finite[i].bits);
    ordered += !zeros;
  }
  // Ties between neighbours go to the even pattern.
  std::unique_ptr<Posit> wider;
  if (posit) {
    auto* p = dynamic_cast<Posit*>(f.get());
    ASSERT_NE(p, nullptr);
    wider = std::move(*Posit::Make(p->n() + 1, p->es(), FormatOptions{}));
  }
  int ties = 0;
  for (size_t i = 1; i < finite.size(); ++i) {
    const Point& lo = finite[i - 1];
    const Point& hi = finite[i];
    if (lo.value == hi.value) continue;  // -0, +0
    double mid;
    if (posit) {
      if (lo.value == 0 || hi.value == 0) continue;
      // Tie point U.1 of the smaller-magnitude neighbour U (two's complement
      // makes the negative side the mirror image).
      const Point& u = std::fabs(lo.value) < std::fabs(hi.value) ? lo : hi;
      const uint32_t mag = (u.value < 0) ? ((~u.bits + 1) & (count - 1)) : u.bits;
      mid = wider->DecodeExact(2 * mag + 1);
      if (u.value < 0) mid = -mid;
    } else {
      mid = (lo.value + hi.value) / 2;
    }
    const float midf = static_cast<float>(mid);
    if (static_cast<double>(midf) != mid) continue;  // not a float32: cannot be an input
    const uint32_t even = (lo.bits & 1) == 0 ? lo.bits : hi.bits;
    ASSERT_NE(lo.bits & 1, hi.bits & 1) << GetParam() << " neighbours of equal parity";
    EXPECT_EQ(f->Encode(midf), even) << GetParam() << " tie " << mid << " between " << Hex(lo.bits)
                                     << " and " << Hex(hi.bits);
    ++ties;
  }
  std::printf("exhaustive: %s: %d of %u patterns round-trip, %d NaN patterns, %d ordered pairs, "
              "%d ties to even, %d unused\n",
              GetParam().c_str(), round_trips, count, nans, ordered, ties, unused);
  EXPECT_GT(ties, 0);
}

std::vector<std::string> SmallFormats() {
  std::vector<std::string> names;
  for (const std::string& name : Registry<NumberFormat>::Get().Names()) {
    auto f = testing_util::TryMakeFormat(name);
    if (f.ok() && (*f)->properties().bits <= 16) names.push_back(name);
  }
  return names;
}

INSTANTIATE_TEST_SUITE_P(All, ExhaustiveTest, ::testing::ValuesIn(SmallFormats()),
                         [](const auto& info) { return info.param; });

TEST(ExhaustiveCoverage, TheIssuesFormatsAreIncluded) {
  const std::vector<std::string> names = SmallFormats();
  for (const char* want : {"fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "posit8", "posit16", "posit8_0",
                           "posit16_1", "int8", "uint8", "int16", "mxfp8_e4m3", "mxint8",
                           "flexpoint16", "minifloat"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
}

}  // namespace
}  // namespace quant
