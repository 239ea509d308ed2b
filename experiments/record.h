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
// A record from its JSON text; errors name `where` (a file, a database row).
absl::StatusOr<quantlab::ResultRecord> RecordFromJson(const std::string& json, const std::string& where);
// The record in `run_dir` if it is one of this experiment's: it parses and its
// config_id is `config_id` (a record copied from or left by another config does
// not count). NotFound when there is none; the error names the file and why.
absl::StatusOr<quantlab::ResultRecord> ReadRunRecord(const std::string& run_dir, const std::string& config_id);
std::string RecordToJson(const quantlab::ResultRecord& record);

}  // namespace quant

#endif  // EXPERIMENTS_RECORD_H_
