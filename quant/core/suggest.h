// "Did you mean" for names typed into configs and on the command line.
#ifndef QUANT_CORE_SUGGEST_H_
#define QUANT_CORE_SUGGEST_H_

#include <string>
#include <string_view>
#include <vector>

namespace quant {

// Edit distance (insertions, deletions, substitutions, adjacent swaps).
int EditDistance(std::string_view a, std::string_view b);

// The candidate closest to `typed` if it is a plausible typo (distance at most
// max(1, len/3)), else "".
std::string NearestName(std::string_view typed, const std::vector<std::string>& candidates);

// " (did you mean 'x'?)" or "" when nothing is near.
std::string DidYouMean(std::string_view typed, const std::vector<std::string>& candidates);

}  // namespace quant

#endif  // QUANT_CORE_SUGGEST_H_
