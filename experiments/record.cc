#include "experiments/record.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "quant/core/atomic_file.h"

namespace quant {

quantlab::HostInfo ReadHostInfo(int threads_used) {
  quantlab::HostInfo host;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) host.set_cpu_model(line.substr(colon + 2));
      break;
    }
  }
  host.set_hardware_threads(static_cast<int>(std::thread::hardware_concurrency()));
  host.set_threads_used(threads_used);
  char name[256] = {0};
  if (gethostname(name, sizeof name - 1) == 0) host.set_hostname(name);
  return host;
}

int64_t PeakRssBytes() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string NowRfc3339() {
  const std::time_t now = std::time(nullptr);
  std::tm tm;
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}


std::string RecordToJson(const quantlab::ResultRecord& record) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;  // snake_case, as in the .proto
  options.always_print_primitive_fields = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(record, &json, options);
  return json;
}

absl::Status WriteRecord(const std::string& run_dir, const quantlab::ResultRecord& record) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(record, &text);
  if (absl::Status s = WriteFileAtomically(run_dir + "/result.pb.txt", text); !s.ok()) return s;
  return WriteFileAtomically(run_dir + "/result.json", RecordToJson(record));
}

absl::StatusOr<quantlab::ResultRecord> ReadRecordJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": no result record"));
  std::stringstream text;
  text << in.rdbuf();
  return RecordFromJson(text.str(), path);
}

absl::StatusOr<quantlab::ResultRecord> RecordFromJson(const std::string& json, const std::string& where) {
  quantlab::ResultRecord record;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(json, &record, options);
  if (!status.ok()) {
    return absl::DataLossError(absl::StrCat(where, ": not a valid result record: ", std::string(status.message())));
  }
  return record;
}

absl::StatusOr<quantlab::ResultRecord> ReadRunRecord(const std::string& run_dir, const std::string& config_id) {
  const std::string path = run_dir + "/result.json";
  absl::StatusOr<quantlab::ResultRecord> record = ReadRecordJson(path);
  if (record.ok() && record->config_id() != config_id) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": the record's config_id '", record->config_id(),
                                                      "' is not this experiment's '", config_id, "'"));
  }
  return record;
}

}  // namespace quant
