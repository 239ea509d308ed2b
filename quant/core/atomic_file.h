// Writing a file so that it is either complete under its final name or not
// there at all: the bytes go to a temporary file next to it (a name unique to
// this process and call, so two writers never share one), are flushed to disk
// (fsync), and the temporary is renamed over the final name (atomic on POSIX),
// then the directory is synced. On any failure the temporary is removed and
// the error names the final path and what failed (errno text), once.
#ifndef QUANT_CORE_ATOMIC_FILE_H_
#define QUANT_CORE_ATOMIC_FILE_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace quant {

absl::Status WriteFileAtomically(const std::string& path, std::string_view bytes);
// The same for a file made of `parts` written one after another (no copy into one
// buffer: the dataset cache writes 55 MB of pixels this way).
absl::Status WriteFileAtomically(const std::string& path, const std::vector<std::string_view>& parts);

}  // namespace quant

#endif  // QUANT_CORE_ATOMIC_FILE_H_
