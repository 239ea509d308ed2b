// Data-parallel training on T threads (the run's `--threads`): each optimizer
// step's batch is cut into T contiguous parts of rows; part 0 runs through
// the master model on the calling thread and part r through replica r (a
// second model of the same architecture) on worker thread r, forward and
// backward at the same time. The loss is taken over the whole batch's logits,
// exactly as on one thread, so each part's backward starts from its rows of
// the same d(loss)/d(logits).
//
// Semantics (what changes against one thread):
//  - Parameter gradients are the sum of the parts' gradients, added in part
//    order after the backward pass (g0 + g1 + ...): the same gradient as one
//    thread's up to float rounding, and the same bits from run to run for a
//    given thread count.
//  - BatchNorm normalises each part with the part's own statistics (as
//    PyTorch's DistributedDataParallel without SyncBatchNorm); its running
//    statistics become the row-weighted mean of the parts' updates, which is
//    the update with the mean of the parts' batch statistics.
//  - Models with hook transforms (QAT's quantizers, format rounding) are not
//    split: their observers and step sizes are state of one model.
//
// After the optimizer updated the master, Sync() copies its parameters and
// buffers to the replicas. Nothing is allocated in steady state.
#ifndef QUANT_TRAINING_DATA_PARALLEL_H_
#define QUANT_TRAINING_DATA_PARALLEL_H_

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/tensor.h"
#include "quant/nn/model.h"

namespace quant {

class DataParallel {
 public:
  // Why `model` cannot be trained data-parallel ("" when it can): a hook
  // transform on the input, a weight or an output.
  static std::string Obstacle(const nn::Model& model);

  // `replicas` (at least one) are built models of the master's architecture;
  // their parameters are overwritten with the master's. Errors name the first
  // state tensor whose name or size differs.
  static absl::StatusOr<std::unique_ptr<DataParallel>> Create(nn::Model* master,
                                                              std::vector<std::unique_ptr<nn::Model>> replicas);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int threads() const { return static_cast<int>(models_.size()); }

  // Logits [B, classes] of `images` [B, ...], rows in batch order.
  const Tensor& Forward(const Tensor& images);
  // Backward of the last Forward from d(loss)/d(logits) [B, classes]; leaves
  // the summed gradients in the master's parameters.
  void Backward(const Tensor& dlogits);
  // After the optimizer step: merges the parts' buffers into the master's
  // (row-weighted mean) and copies the master's state to every replica.
  void Sync();

 private:
  DataParallel(nn::Model* master, std::vector<std::unique_ptr<nn::Model>> replicas);
  // Runs job(part) for every part with rows, part 0 on this thread; returns when all are done.
  void RunParts(const std::function<void(int)>& job);
  void WorkerLoop(int part);

  std::vector<nn::Model*> models_;  // [0] = master
  std::vector<std::unique_ptr<nn::Model>> owned_;
  std::vector<std::vector<std::pair<std::string, Tensor*>>> state_;  // per model: StateTensors()
  std::vector<std::vector<nn::Parameter*>> params_;                  // per model
  std::vector<int> buffer_begin_;                                    // index in state_ where the buffers start
  std::vector<int64_t> rows_begin_, rows_;                           // the last batch's parts
  std::vector<Tensor> part_images_, part_dlogits_;
  Tensor logits_;
  int64_t batch_ = 0;

  // Workers 1..T-1: a job generation counter and the number still running.
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int running_ = 0;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace quant

#endif  // QUANT_TRAINING_DATA_PARALLEL_H_
