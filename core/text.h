// Text that comes from outside (file contents, command-line values) on its
// way into an error message or a number:
//  - escape_bytes: the one way file content enters a message. Printable ASCII
//    stays, everything else becomes \xNN, so a garbled file can never put
//    control bytes (or half a UTF-8 sequence) on the user's terminal.
//  - parse_integer: a decimal integer checked in its own type, no silent
//    wrap-around or clamping ("-1", "2^64", "1e23" and "12abc" are refused).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace scratchnet {

// Printable ASCII (0x20..0x7e) as is, except backslash as "\\"; any other
// byte as \xNN. Longer than max_len bytes: cut, with "..." appended.
std::string escape_bytes(std::string_view bytes, std::size_t max_len = 64);

// The value of `text` when it is a plain decimal integer ("-" allowed only
// for a negative lo) in [lo, hi]; std::nullopt otherwise.
std::optional<int64_t> parse_integer(std::string_view text, int64_t lo, int64_t hi);
std::optional<uint64_t> parse_unsigned(std::string_view text, uint64_t hi = UINT64_MAX);

}  // namespace scratchnet
