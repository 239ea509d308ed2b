// Small local stand-ins for the status macros that Debian's Abseil (20220623)
// does not ship. RETURN_IF_ERROR(expr) returns a non-OK absl::Status from the
// enclosing function; ASSIGN_OR_RETURN(lhs, expr) unpacks an absl::StatusOr or
// returns its error.
#ifndef QUANT_CORE_STATUS_MACROS_H_
#define QUANT_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define QUANTLAB_CONCAT_INNER_(a, b) a##b
#define QUANTLAB_CONCAT(a, b) QUANTLAB_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    const ::absl::Status _quantlab_status = (expr);      \
    if (!_quantlab_status.ok()) return _quantlab_status; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(QUANTLAB_CONCAT(_quantlab_statusor_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                           \
  if (!statusor.ok()) return statusor.status();     \
  lhs = std::move(statusor).value()

#endif  // QUANT_CORE_STATUS_MACROS_H_
