// Dynamic loss scaling for reduced-precision training (Micikevicius et al.
// 2018), with the state machine of torch.cuda.amp.GradScaler:
//
//   each step: the loss gradient is multiplied by scale() before backward;
//   if any gradient is inf/NaN: the step is skipped, scale *= backoff_factor,
//     the growth tracker restarts at 0;
//   else: the step is applied with the gradients times 1/scale, the tracker
//     counts it, and after growth_interval applied steps in a row
//     scale *= growth_factor (kept only if finite) and the tracker restarts.
//
// quantlab adds a stop rule GradScaler lacks: more than
// max_consecutive_skips overflowing steps in a row, or a scale that has
// fallen below min_scale, means training has diverged; Update() then returns
// an error that quotes the loss-scale history.
//
// YAML (inside `train:` of the mixed_precision scheme):
//   loss_scale: {mode: dynamic, init_scale: 65536, growth_factor: 2,
//                backoff_factor: 0.5, growth_interval: 2000, max_consecutive_skips: 100}
// `mode: static` keeps init_scale fixed (overflowing steps are still
// skipped); `mode: none` is scale 1 and never skips.
#ifndef QUANT_TRAINING_LOSS_SCALER_H_
#define QUANT_TRAINING_LOSS_SCALER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/core/params.h"

namespace quant {

class LossScaler {
 public:
  enum class Mode { kNone, kStatic, kDynamic };
  struct Options {
    Mode mode = Mode::kDynamic;
    double init_scale = 65536.0;  // 2^16, GradScaler's default
    double growth_factor = 2.0;
    double backoff_factor = 0.5;
    int64_t growth_interval = 2000;
    int64_t max_consecutive_skips = 100;
    double min_scale = 0x1p-24;
  };
  // One change of the scale (or a skipped step).
  struct Event {
    int64_t step = 0;
    double scale = 0;    // the scale after the event
    std::string what;    // "start", "overflow: step skipped", "grown"
  };

  // Reads the `loss_scale` map; `default_mode` applies when it is absent.
  static Options Read(ParamReader& p, Mode default_mode);
  static const char* ModeName(Mode mode);

  explicit LossScaler(Options options);

  // The scale the current step's loss gradient is multiplied by (1 for kNone).
  float scale() const { return static_cast<float>(scale_); }
  // 1/scale as GradScaler computes it: the double reciprocal rounded to float.
  float inv_scale() const { return static_cast<float>(1.0 / scale_); }

  // Ends step `step`: `found_inf` says whether any gradient was inf/NaN.
  // Returns whether the optimizer step is applied, or an error (the
  // divergence stop) quoting History().
  absl::StatusOr<bool> Update(int64_t step, bool found_inf);

  int64_t skipped_steps() const { return skipped_; }
  int64_t consecutive_skips() const { return consecutive_; }
  int64_t growth_tracker() const { return tracker_; }
  double min_seen() const { return min_seen_; }
  double max_seen() const { return max_seen_; }
  const std::vector<Event>& events() const { return events_; }
  // "step 0: 65536 (start); step 12: 32768 (overflow: step skipped); ...",
  // the first and the last `max_events / 2` events when there are more.
  std::string History(size_t max_events = 24) const;
  const Options& options() const { return options_; }

 private:
  Options options_;
  double scale_;
  int64_t tracker_ = 0;
  int64_t skipped_ = 0;
  int64_t consecutive_ = 0;
  double min_seen_;
  double max_seen_;
  std::vector<Event> events_;
};

}  // namespace quant

#endif  // QUANT_TRAINING_LOSS_SCALER_H_
