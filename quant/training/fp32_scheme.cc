#include "quant/training/fp32_scheme.h"

#include "quant/core/registry.h"

namespace quant {

absl::StatusOr<std::unique_ptr<TrainingScheme>> Fp32Scheme::Create(ParamReader& p) {
  absl::StatusOr<TrainSettings> settings = TrainSettings::Read(p);
  if (!settings.ok()) return settings.status();
  return std::unique_ptr<TrainingScheme>(new Fp32Scheme(std::move(settings).value()));
}

absl::StatusOr<TrainResult> Fp32Scheme::Train(TrainContext& context) {
  return RunTrainingLoop(context, settings_, "fp32");
}

QUANTLAB_REGISTER(TrainingScheme, "fp32", Fp32Scheme::Create,
                  "float training: SGD/Adam(W), lr schedule, eval each epoch, checkpoint");

}  // namespace quant
