#include "tools/suggest.h"

#include <algorithm>

namespace scratchnet::tools {

int edit_distance(const std::string& a, const std::string& b) {
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1, 0));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (std::size_t i = 1; i <= n; ++i)
    for (std::size_t j = 1; j <= m; ++j) {
      const int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

std::string closest(const std::string& typed, const std::vector<std::string>& candidates) {
  std::string prefix_of;
  int prefix_count = 0;
  std::string best;
  int best_d = 1 << 30;
  for (const auto& c : candidates) {
    if (c.size() > typed.size() && c.compare(0, typed.size(), typed) == 0 && typed.size() > 2) {
      ++prefix_count;
      if (prefix_of.empty()) prefix_of = c;
    }
    const int d = edit_distance(typed, c);
    if (d < best_d) best_d = d, best = c;
  }
  const int allowed = std::max<int>(1, static_cast<int>(typed.size()) / 3);
  if (best_d <= allowed) return best;
  return prefix_count == 1 ? prefix_of : "";
}

}  // namespace scratchnet::tools
