#include "core/text.h"

namespace scratchnet {

std::string escape_bytes(std::string_view bytes, std::size_t max_len) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  const std::size_t n = bytes.size() > max_len ? max_len : bytes.size();
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (bytes.size() > max_len) out += "...";
  return out;
}

std::optional<uint64_t> parse_unsigned(std::string_view text, uint64_t hi) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return std::nullopt;
    const auto d = static_cast<uint64_t>(ch - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  if (v > hi) return std::nullopt;
  return v;
}

std::optional<int64_t> parse_integer(std::string_view text, int64_t lo, int64_t hi) {
  const bool negative = !text.empty() && text[0] == '-';
  if (negative && lo >= 0) return std::nullopt;
  const auto magnitude = parse_unsigned(negative ? text.substr(1) : text);
  if (!magnitude) return std::nullopt;
  int64_t v = 0;
  if (negative) {
    if (*magnitude > uint64_t{INT64_MAX} + 1) return std::nullopt;
    v = *magnitude == uint64_t{INT64_MAX} + 1 ? INT64_MIN : -static_cast<int64_t>(*magnitude);
  } else {
    if (*magnitude > uint64_t{INT64_MAX}) return std::nullopt;
    v = static_cast<int64_t>(*magnitude);
  }
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

}  // namespace scratchnet
