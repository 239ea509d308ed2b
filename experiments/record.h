// Writing and reading result records, and the facts about the host and the
// process that every record carries.
#ifndef EXPERIMENTS_RECORD_H_
#define EXPERIMENTS_RECORD_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "experiments/result.pb.h"
#include "quant/core/atomic_file.h"  // WriteFileAtomically, which the driver uses too

namespace quant {

quantlab::HostInfo ReadHostInfo(int threads_used);
// Peak resident set size of this process so far.
int64_t PeakRssBytes();
// Now, as RFC 3339 UTC.
std::string NowRfc3339();

// Writes result.pb.txt and result.json into `run_dir` (JSON last: its presence
// with status OK is what marks a run as done).
absl::Status WriteRecord(const std::string& run_dir, const quantlab::ResultRecord& record);
absl::StatusOr<quantlab::ResultRecord> ReadRecordJson(const std::string& path);
std::string RecordToJson(const quantlab::ResultRecord& record);

}  // namespace quant

#endif  // EXPERIMENTS_RECORD_H_
