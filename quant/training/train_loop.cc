#include "quant/training/train_loop.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/nn/checkpoint.h"
#include "quant/nn/gemm.h"
#include "quant/nn/loss.h"
#include "quant/training/data_parallel.h"

namespace quant {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

std::string Prefix(const TrainContext& c) { return c.name.empty() ? "" : absl::StrCat("[", c.name, "] "); }

// The data-parallel trainer for ctx.threads > 1, or null (with the reason on
// the log) where the batch is not split: then the GEMM library gets the threads.
absl::StatusOr<std::unique_ptr<DataParallel>> MakeDataParallel(TrainContext& ctx, const TrainHooks* hooks,
                                                               const std::string& prefix, bool quiet) {
  if (ctx.threads <= 1) return nullptr;
  std::string obstacle;
  if (!ctx.make_replica) {
    obstacle = "no replica of the model can be built here";
  } else if (hooks != nullptr) {
    obstacle = "this scheme's hooks keep state of one model";
  } else {
    obstacle = DataParallel::Obstacle(*ctx.model);
  }
  if (!obstacle.empty()) {
    if (!quiet)
      std::fprintf(ctx.log, "%s%d threads: the batch is not split (%s); the GEMMs use the threads\n", prefix.c_str(),
                   ctx.threads, obstacle.c_str());
    return nullptr;
  }
  std::vector<std::unique_ptr<nn::Model>> replicas;
  for (int t = 1; t < ctx.threads; ++t) {
    absl::StatusOr<std::unique_ptr<nn::Model>> r = ctx.make_replica();
    if (!r.ok())
      return absl::Status(r.status().code(),
                          absl::StrCat("building a replica for data-parallel training: ", r.status().message()));
    replicas.push_back(std::move(r).value());
  }
  if (!quiet)
    std::fprintf(ctx.log, "%sdata-parallel: each batch split across %d threads\n", prefix.c_str(), ctx.threads);
  return DataParallel::Create(ctx.model, std::move(replicas));
}

}  // namespace

absl::StatusOr<TrainSettings> TrainSettings::Read(ParamReader& p) {
  TrainSettings s;
  s.epochs = static_cast<int>(p.IntInRange("epochs", 5, 0, 100000, "passes over the training set"));
  s.batch_size = p.IntInRange("batch_size", 128, 1, 1 << 20, "samples per optimizer step");
  ParamReader& opt = p.Map("optimizer", "{name: sgd|adam|adamw, lr, ...}");
  auto optimizer = Registry<nn::Optimizer>::Get().CreateFrom(opt, "name", "sgd", "optimizer");
  ParamReader& sched = p.Map("schedule", "{name: constant|step|cosine, ...}, stepped per iteration");
  auto schedule = Registry<nn::Schedule>::Get().CreateFrom(sched, "name", "constant", "lr schedule");
  s.init_from = p.String("init_from", "", "checkpoint (model.pb) to start from instead of the seed");
  s.save_checkpoint = p.Bool("save_checkpoint", true, "write <run dir>/model.pb after training");
  if (!optimizer.ok()) return optimizer.status();
  if (!schedule.ok()) return schedule.status();
  RETURN_IF_ERROR(p.status());
  s.optimizer = std::move(optimizer).value();
  s.schedule = std::move(schedule).value();
  return s;
}

std::string TrainSettings::Describe() const {
  return absl::StrCat("epochs ", epochs, ", batch ", batch_size, ", ",
                      optimizer ? optimizer->Describe() : "?", ", schedule ",
                      schedule ? schedule->Describe() : "?",
                      init_from.empty() ? "" : absl::StrCat(", from ", init_from));
}

double EvaluateAccuracy(nn::Model& model, const DataSplit& split, int64_t batch_size) {
  const bool was_training = model.training();
  model.set_training(false);
  BatchIterator it(split, batch_size, /*shuffle=*/false, 0);
  it.StartEpoch(0);
  Tensor images;  // allocated once per evaluation, reused for every batch
  std::vector<int32_t> labels;
  int64_t correct = 0, seen = 0;
  while (it.Next(&images, &labels)) {
    const Tensor& logits = model.Forward(images);
    const int64_t b = logits.dim(0);
    for (int64_t i = 0; i < b; ++i) correct += nn::ArgMaxRow(logits, i) == labels[i];
    seen += b;
  }
  model.set_training(was_training);
  return seen > 0 ? static_cast<double>(correct) / seen : 0.0;
}

absl::StatusOr<TrainResult> RunTrainingLoop(TrainContext& ctx, TrainSettings& s,
                                            const std::string& scheme_name,
                                            const TrainHooks* hooks) {
  if (ctx.dataset == nullptr || ctx.model == nullptr || !ctx.model->built()) {
    return absl::FailedPreconditionError("training needs a loaded dataset and a built model");
  }
  nn::Model& model = *ctx.model;
  const std::string prefix = Prefix(ctx);
  if (!s.init_from.empty()) {
    RETURN_IF_ERROR(nn::LoadCheckpoint(s.init_from, &model));
    std::fprintf(ctx.log, "%sstarting from %s\n", prefix.c_str(), s.init_from.c_str());
  }
  const bool live = ctx.progress == TrainContext::Progress::kLive ||
                    (ctx.progress == TrainContext::Progress::kAuto && isatty(fileno(ctx.log)));
  const bool quiet = ctx.progress == TrainContext::Progress::kQuiet;
  ASSIGN_OR_RETURN(std::unique_ptr<DataParallel> parallel, MakeDataParallel(ctx, hooks, prefix, quiet));
  // Data-parallel parts call the GEMM library from every thread, one thread each.
  nn::SetGemmThreads(parallel != nullptr ? 1 : ctx.threads);

  const DataSplit& train = ctx.dataset->train();
  const DataSplit& test = ctx.dataset->test();
  BatchIterator batches(train, s.batch_size, /*shuffle=*/true, ctx.seed);
  const int64_t per_epoch = batches.num_batches();
  const int64_t total_steps = per_epoch * s.epochs;
  s.optimizer->Attach(model.Parameters());
  model.set_training(true);

  Tensor images, dlogits;
  std::vector<int32_t> labels;
  nn::SoftmaxCrossEntropy loss;
  TrainResult result;
  int64_t step = 0;
  for (int epoch = 0; epoch < s.epochs; ++epoch) {
    batches.StartEpoch(epoch);
    if (hooks != nullptr && hooks->epoch_begin) RETURN_IF_ERROR(hooks->epoch_begin(epoch));
    const Clock::time_point start = Clock::now();
    const double cpu_start = CpuSeconds();
    Clock::time_point last_print = start;
    double loss_sum = 0.0;
    int64_t correct_sum = 0, seen = 0;
    for (int64_t b = 0; batches.Next(&images, &labels); ++b, ++step) {
      if (hooks != nullptr && hooks->step_begin) RETURN_IF_ERROR(hooks->step_begin(step));
      const Tensor& logits = parallel != nullptr ? parallel->Forward(images) : model.Forward(images);
      int64_t correct = 0;
      const double l = loss.Forward(logits, labels, &correct);
      const int64_t n = logits.dim(0);
      const double lr = s.schedule->LearningRate(s.optimizer->lr(), step, total_steps, per_epoch);
      if (!std::isfinite(l)) {
        if (live) std::fputc('\n', ctx.log);
        return absl::InvalidArgumentError(absl::StrFormat(
            "training diverged: the loss is %f at epoch %d, batch %d of %d (lr %g); stopped, "
            "no checkpoint written",
            l, epoch + 1, b + 1, per_epoch, lr));
      }
      loss.Backward(&dlogits);
      if (hooks != nullptr && hooks->before_backward) RETURN_IF_ERROR(hooks->before_backward(&dlogits));
      if (parallel != nullptr) {
        parallel->Backward(dlogits);
      } else {
        model.Backward(images, dlogits);
      }
      bool apply = true;
      if (hooks != nullptr && hooks->after_backward) RETURN_IF_ERROR(hooks->after_backward(step, &apply));
      if (apply) {
        s.optimizer->Step(lr);
        if (parallel != nullptr) parallel->Sync();
        if (hooks != nullptr && hooks->after_step) RETURN_IF_ERROR(hooks->after_step(step));
      }
      loss_sum += l * n;
      correct_sum += correct;
      seen += n;
      if (live) {
        const Clock::time_point now = Clock::now();
        if (Seconds(last_print, now) >= 0.2 || b + 1 == per_epoch) {
          last_print = now;
          const double elapsed = Seconds(start, now);
          const double rate = seen / std::max(elapsed, 1e-9);
          const double remaining = (total_steps - step - 1) * static_cast<double>(s.batch_size) / rate;
          std::fprintf(ctx.log,
                       "\r%sepoch %d/%d  batch %lld/%lld  loss %.4f  acc %.2f%%  %.0f samples/s  ETA %.1fs   ",
                       prefix.c_str(), epoch + 1, s.epochs, static_cast<long long>(b + 1),
                       static_cast<long long>(per_epoch), loss_sum / seen, 100.0 * correct_sum / seen,
                       rate, remaining);
          std::fflush(ctx.log);
        }
      }
    }
    const Clock::time_point trained = Clock::now();
    EpochRecord rec;
    rec.cpu_seconds = CpuSeconds() - cpu_start;
    rec.epoch = epoch + 1;
    rec.seconds = Seconds(start, trained);
    rec.train_loss = seen ? loss_sum / seen : 0.0;
    rec.train_accuracy = seen ? static_cast<double>(correct_sum) / seen : 0.0;
    rec.samples_per_s = seen / std::max(rec.seconds, 1e-9);
    // Evaluation is not split: the GEMM library gets the threads meanwhile.
    if (parallel != nullptr) nn::SetGemmThreads(ctx.threads);
    rec.test_accuracy = EvaluateAccuracy(model, test, s.batch_size);
    if (parallel != nullptr) nn::SetGemmThreads(1);
    rec.eval_seconds = Seconds(trained, Clock::now());
    result.epochs.push_back(rec);
    if (!quiet) {
      std::fprintf(ctx.log,
                   "%s%sepoch %d/%d  %s  loss %.4f  train acc %.2f%%  test acc %.2f%%  %.2fs  %.0f "
                   "samples/s  (cpu %.2fs, eval %.2fs)\n",
                   live ? "\r" : "", prefix.c_str(), rec.epoch, s.epochs, scheme_name.c_str(),
                   rec.train_loss, 100 * rec.train_accuracy, 100 * rec.test_accuracy, rec.seconds,
                   rec.samples_per_s, rec.cpu_seconds, rec.eval_seconds);
      std::fflush(ctx.log);
    }
  }
  result.final_test_accuracy = result.epochs.empty() ? EvaluateAccuracy(model, test, s.batch_size)
                                                     : result.epochs.back().test_accuracy;
  if (s.save_checkpoint && !ctx.run_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(ctx.run_dir, ec);
    const std::string path = ctx.run_dir + "/model.pb";
    RETURN_IF_ERROR(nn::SaveCheckpoint(model, path,
                                       {.seed = ctx.seed, .epochs = s.epochs,
                                        .test_accuracy = result.final_test_accuracy,
                                        .scheme = scheme_name}));
    result.checkpoint_path = path;
  }
  return result;
}

}  // namespace quant
