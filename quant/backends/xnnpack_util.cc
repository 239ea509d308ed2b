#include "quant/backends/xnnpack_util.h"

#include "absl/strings/str_cat.h"

namespace quant::backends::xnn {

absl::Status Initialize() {
  static const xnn_status status = xnn_initialize(/*allocator=*/nullptr);
  if (status != xnn_status_success) {
    return absl::UnavailableError(absl::StrCat("xnn_initialize failed: ", StatusName(status)));
  }
  return absl::OkStatus();
}

const char* StatusName(xnn_status s) {
  switch (s) {
    case xnn_status_success: return "xnn_status_success";
    case xnn_status_uninitialized: return "xnn_status_uninitialized";
    case xnn_status_invalid_parameter: return "xnn_status_invalid_parameter";
    case xnn_status_invalid_state: return "xnn_status_invalid_state";
    case xnn_status_unsupported_parameter: return "xnn_status_unsupported_parameter";
    case xnn_status_unsupported_hardware: return "xnn_status_unsupported_hardware (this CPU/build lacks the kernels)";
    case xnn_status_out_of_memory: return "xnn_status_out_of_memory";
  }
  return "unknown xnn_status";
}

absl::Status Check(xnn_status s, const std::string& backend, const std::string& where, const char* call) {
  if (s == xnn_status_success) return absl::OkStatus();
  const std::string msg = absl::StrCat("backend '", backend, "': ", where, ": ", call, " failed: ", StatusName(s));
  if (s == xnn_status_unsupported_parameter || s == xnn_status_unsupported_hardware) {
    return absl::UnimplementedError(msg);
  }
  return absl::InternalError(msg);
}

}  // namespace quant::backends::xnn
