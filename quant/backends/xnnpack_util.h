// Small helpers shared by the XNNPACK backends: one-time library
// initialisation, an owning operator handle, status names, padded buffers
// (XNNPACK may read up to XNN_EXTRA_BYTES past an input).
#ifndef QUANT_BACKENDS_XNNPACK_UTIL_H_
#define QUANT_BACKENDS_XNNPACK_UTIL_H_

#include <xnnpack.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace quant::backends::xnn {

// xnn_initialize once per process; the error if it failed.
absl::Status Initialize();

const char* StatusName(xnn_status s);

struct OperatorDeleter {
  void operator()(xnn_operator_t op) const {
    if (op != nullptr) xnn_delete_operator(op);
  }
};
using Operator = std::unique_ptr<xnn_operator, OperatorDeleter>;

// "backend 'xnnpack': <where>: <call> failed: xnn_status_unsupported_parameter".
absl::Status Check(xnn_status s, const std::string& backend, const std::string& where, const char* call);

// A byte buffer with XNN_EXTRA_BYTES of slack.
template <typename T>
void ResizePadded(std::vector<T>* v, size_t n) {
  v->resize(n + (XNN_EXTRA_BYTES + sizeof(T) - 1) / sizeof(T));
}

}  // namespace quant::backends::xnn

#endif  // QUANT_BACKENDS_XNNPACK_UTIL_H_
