#include "quant/analysis/latency_table.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "quant/backends/backend.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::analysis {
namespace {

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

}  // namespace

absl::StatusOr<std::vector<LatencyProfile>> MeasureLatencies(const std::vector<const backends::QuantizedModel*>& models,
                                                             const std::string& backend, const float* images, int64_t n,
                                                             int repeats) {
  std::vector<std::unique_ptr<backends::Backend>> b;
  for (const backends::QuantizedModel* m : models) {
    ParamReader none(YAML::Node(), "", "");
    ASSIGN_OR_RETURN(std::unique_ptr<backends::Backend> one, Registry<backends::Backend>::Get().Create(backend, none));
    RETURN_IF_ERROR(one->Prepare(*m));
    b.push_back(std::move(one));
  }
  int64_t per = 1;
  for (int64_t d : b[0]->input_shape()) per *= d;
  backends::RunOutput out;
  for (auto& one : b) RETURN_IF_ERROR(one->Run(images, 1, &out));  // operators set up for batch 1, untimed
  std::vector<std::vector<std::vector<double>>> op_times(models.size());
  std::vector<std::vector<double>> totals(models.size());
  for (size_t k = 0; k < models.size(); ++k) op_times[k].resize(models[k]->ops_size());
  for (int r = 0; r < repeats; ++r) {
    for (size_t k = 0; k < models.size(); ++k) {
      b[k]->set_profiling(true);  // resets the per-stage sums
      const auto t0 = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(b[k]->Run(images + (r % n) * per, 1, &out));
      totals[k].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      for (size_t i = 0; i < op_times[k].size(); ++i) op_times[k][i].push_back(b[k]->stage_seconds()[i + 1]);
    }
  }
  std::vector<LatencyProfile> profiles(models.size());
  for (size_t k = 0; k < models.size(); ++k) {
    b[k]->set_profiling(false);
    profiles[k].total_seconds = Median(totals[k]);
    for (auto& t : op_times[k]) profiles[k].op_seconds.push_back(Median(t));
  }
  return profiles;
}

absl::StatusOr<LatencyProfile> MeasureLatency(const backends::QuantizedModel& model, const std::string& backend,
                                              const float* images, int64_t n, int repeats) {
  ASSIGN_OR_RETURN(std::vector<LatencyProfile> p, MeasureLatencies({&model}, backend, images, n, repeats));
  return p[0];
}

}  // namespace quant::analysis
