// "Did you mean": the closest of a list of names to a mistyped one, for
// unknown subcommands (`scratchnet trian`) and flags (`--epoch`).
#pragma once
#include <string>
#include <vector>

namespace scratchnet::tools {

// Optimal string alignment distance: insertions, deletions, substitutions
// and swaps of two neighbours each cost 1 ("trian" -> "train" is 1).
int edit_distance(const std::string& a, const std::string& b);

// The candidate closest to `typed`, or "" when none is close enough to be a
// typo of it: distance <= max(1, (length of typed) / 3), or typed being a
// prefix of exactly one candidate. Ties go to the earlier candidate.
std::string closest(const std::string& typed, const std::vector<std::string>& candidates);

}  // namespace scratchnet::tools
