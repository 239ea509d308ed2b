#include "quant/training/data_parallel.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "quant/nn/layer.h"

namespace quant {
namespace {

// Rows [begin, begin + n) of a [B, ...] tensor into *part ([n, ...]).
void CopyRows(const Tensor& t, int64_t begin, int64_t n, Tensor* part) {
  std::vector<int64_t> shape = t.shape();
  const int64_t row = t.numel() / std::max<int64_t>(1, shape[0]);
  shape[0] = n;
  nn::EnsureShape(part, shape);
  std::memcpy(part->data(), t.data() + begin * row, static_cast<size_t>(n * row) * sizeof(float));
}

}  // namespace

std::string DataParallel::Obstacle(const nn::Model& model) {
  if (model.input_transform() != nullptr) return "the model input has a transform";
  for (int i = 0; i < model.num_layers(); ++i) {
    const nn::Layer& l = model.layer(i);
    if (l.weight_transform() != nullptr) return absl::StrCat("layer ", l.name(), " has a weight transform");
    if (l.output_transform() != nullptr) return absl::StrCat("layer ", l.name(), " has an output transform");
  }
  return "";
}

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::Create(nn::Model* master,
                                                                   std::vector<std::unique_ptr<nn::Model>> replicas) {
  if (replicas.empty()) return absl::InvalidArgumentError("data-parallel training needs at least one replica");
  const auto master_state = master->StateTensors();
  for (const auto& r : replicas) {
    if (r == nullptr || !r->built()) return absl::InvalidArgumentError("a replica is not a built model");
    const auto state = r->StateTensors();
    if (state.size() != master_state.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("a replica has ", state.size(), " state tensors, the model ", master_state.size()));
    }
    for (size_t i = 0; i < state.size(); ++i) {
      if (state[i].first != master_state[i].first || state[i].second->shape() != master_state[i].second->shape()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "replica state tensor ", state[i].first, " ", state[i].second->ShapeString(), " differs from the model's ",
            master_state[i].first, " ", master_state[i].second->ShapeString()));
      }
    }
  }
  std::unique_ptr<DataParallel> dp(new DataParallel(master, std::move(replicas)));
  dp->Sync();
  return dp;
}

DataParallel::DataParallel(nn::Model* master, std::vector<std::unique_ptr<nn::Model>> replicas)
    : owned_(std::move(replicas)) {
  models_.push_back(master);
  for (auto& r : owned_) models_.push_back(r.get());
  const int t = threads();
  for (nn::Model* m : models_) {
    m->set_training(true);
    state_.push_back(m->StateTensors());
    params_.push_back(m->Parameters());
    buffer_begin_.push_back(static_cast<int>(params_.back().size()));
  }
  rows_begin_.assign(t, 0);
  rows_.assign(t, 0);
  part_images_.resize(t);
  part_dlogits_.resize(t);
  for (int part = 1; part < t; ++part) workers_.emplace_back([this, part] { WorkerLoop(part); });
}

DataParallel::~DataParallel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& w : workers_) w.join();
}

void DataParallel::WorkerLoop(int part) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    if (rows_[part] > 0) (*job)(part);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--running_ == 0) done_.notify_one();
    }
  }
}

void DataParallel::RunParts(const std::function<void(int)>& job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &job;
    running_ = threads() - 1;
    ++generation_;
  }
  wake_.notify_all();
  if (rows_[0] > 0) job(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return running_ == 0; });
}

const Tensor& DataParallel::Forward(const Tensor& images) {
  const int t = threads();
  batch_ = images.dim(0);
  for (int part = 0; part < t; ++part) {
    rows_begin_[part] = batch_ * part / t;
    rows_[part] = batch_ * (part + 1) / t - rows_begin_[part];
    if (rows_[part] > 0) CopyRows(images, rows_begin_[part], rows_[part], &part_images_[part]);
  }
  const std::function<void(int)> job = [&](int part) { models_[part]->Forward(part_images_[part]); };
  RunParts(job);
  // The parts' logits, in batch order (each valid until its model's next Forward).
  int64_t classes = 0;
  for (int part = 0; part < t && classes == 0; ++part) {
    if (rows_[part] > 0) classes = models_[part]->value(models_[part]->output_value()).dim(1);
  }
  nn::EnsureShape(&logits_, {batch_, classes});
  for (int part = 0; part < t; ++part) {
    if (rows_[part] == 0) continue;
    const Tensor& l = models_[part]->value(models_[part]->output_value());
    std::memcpy(logits_.data() + rows_begin_[part] * classes, l.data(),
                static_cast<size_t>(rows_[part] * classes) * sizeof(float));
  }
  return logits_;
}

void DataParallel::Backward(const Tensor& dlogits) {
  const int t = threads();
  for (int part = 0; part < t; ++part) {
    if (rows_[part] > 0) CopyRows(dlogits, rows_begin_[part], rows_[part], &part_dlogits_[part]);
  }
  const std::function<void(int)> job = [&](int part) {
    models_[part]->Backward(part_images_[part], part_dlogits_[part]);
  };
  RunParts(job);
  // g = g0 + g1 + ... in part order. A part without rows has no gradient of this step.
  for (size_t i = 0; i < params_[0].size(); ++i) {
    Tensor& g = params_[0][i]->grad;
    if (rows_[0] == 0) g.Fill(0.0f);
    for (int part = 1; part < t; ++part) {
      if (rows_[part] == 0) continue;
      const float* src = params_[part][i]->grad.data();
      float* dst = g.data();
      for (int64_t j = 0; j < g.numel(); ++j) dst[j] += src[j];
    }
  }
}

void DataParallel::Sync() {
  const int t = threads();
  // Buffers (BatchNorm's running statistics): the row-weighted mean of the
  // parts' values. Before the first step every part holds the master's.
  if (batch_ > 0) {
    for (size_t i = buffer_begin_[0]; i < state_[0].size(); ++i) {
      Tensor& b = *state_[0][i].second;
      for (int64_t j = 0; j < b.numel(); ++j) {
        double v = 0.0;
        for (int part = 0; part < t; ++part) {
          v += static_cast<double>(rows_[part]) / batch_ * (*state_[part][i].second)[j];
        }
        b[j] = static_cast<float>(v);
      }
    }
  }
  for (int part = 1; part < t; ++part) {
    for (size_t i = 0; i < state_[0].size(); ++i) {
      const Tensor& src = *state_[0][i].second;
      std::memcpy(state_[part][i].second->data(), src.data(), static_cast<size_t>(src.numel()) * sizeof(float));
    }
  }
}

}  // namespace quant
