#include "quant/training/loss_scaler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace quant {

const char* LossScaler::ModeName(Mode mode) {
  switch (mode) {
    case Mode::kNone: return "none";
    case Mode::kStatic: return "static";
    case Mode::kDynamic: return "dynamic";
  }
  return "?";
}

LossScaler::Options LossScaler::Read(ParamReader& p, Mode default_mode) {
  Options o;
  const std::string mode = p.Choice("mode", ModeName(default_mode), {"dynamic", "static", "none"},
                                    "dynamic (GradScaler), static (fixed init_scale) or none");
  o.init_scale = p.DoubleInRange("init_scale", o.init_scale, 0x1p-24, 0x1p100, "initial loss scale");
  o.growth_factor = p.DoubleInRange("growth_factor", o.growth_factor, 1.0, 1e6,
                                    "scale multiplier after growth_interval clean steps");
  o.backoff_factor = p.DoubleInRange("backoff_factor", o.backoff_factor, 1e-6, 1.0,
                                     "scale multiplier after an overflowing step");
  o.growth_interval = p.IntInRange("growth_interval", o.growth_interval, 1, int64_t{1} << 40,
                                   "clean steps in a row before the scale grows");
  o.max_consecutive_skips = p.IntInRange(
      "max_consecutive_skips", o.max_consecutive_skips, 1, int64_t{1} << 40,
      "overflowing steps in a row after which training stops as diverged");
  o.min_scale = p.DoubleInRange("min_scale", o.min_scale, 0.0, 1e30,
                                "a scale below this stops training as diverged");
  o.mode = mode == "none" ? Mode::kNone : mode == "static" ? Mode::kStatic : Mode::kDynamic;
  return o;
}

LossScaler::LossScaler(Options options) : options_(options) {
  scale_ = options_.mode == Mode::kNone ? 1.0 : options_.init_scale;
  min_seen_ = max_seen_ = scale_;
  events_.push_back({0, scale_, "start"});
}

absl::StatusOr<bool> LossScaler::Update(int64_t step, bool found_inf) {
  if (options_.mode == Mode::kNone) return true;
  if (found_inf) {
    ++skipped_;
    ++consecutive_;
    tracker_ = 0;
    if (options_.mode == Mode::kDynamic) scale_ *= options_.backoff_factor;
    events_.push_back({step, scale_, "overflow: step skipped"});
    min_seen_ = std::min(min_seen_, scale_);
    if (consecutive_ > options_.max_consecutive_skips || scale_ < options_.min_scale) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "training diverged: %s at step %d (loss scale now %g, %d steps skipped in all); "
          "stopped, no checkpoint written; loss-scale history: %s",
          consecutive_ > options_.max_consecutive_skips
              ? absl::StrCat(consecutive_, " consecutive steps had inf/NaN gradients (limit ",
                             options_.max_consecutive_skips, ")")
              : absl::StrCat("the loss scale fell below min_scale ", options_.min_scale),
          step, scale_, skipped_, History()));
    }
    return false;
  }
  consecutive_ = 0;
  if (options_.mode == Mode::kDynamic) {
    const int64_t successful = tracker_ + 1;
    if (successful == options_.growth_interval) {
      const double grown = scale_ * options_.growth_factor;
      if (std::isfinite(static_cast<float>(grown))) scale_ = grown;  // float32, as GradScaler
      tracker_ = 0;
      events_.push_back({step, scale_, "grown"});
      max_seen_ = std::max(max_seen_, scale_);
    } else {
      tracker_ = successful;
    }
  }
  return true;
}

std::string LossScaler::History(size_t max_events) const {
  auto one = [](const Event& e) { return absl::StrFormat("step %d: %g (%s)", e.step, e.scale, e.what); };
  std::string out;
  const size_t n = events_.size();
  const size_t half = std::max<size_t>(max_events / 2, 1);
  for (size_t i = 0; i < n; ++i) {
    if (n > max_events && i == half) {
      absl::StrAppend(&out, "; ... ", n - 2 * half, " more ...");
      i = n - half - 1;
      continue;
    }
    absl::StrAppend(&out, out.empty() ? "" : "; ", one(events_[i]));
  }
  return out;
}

}  // namespace quant
