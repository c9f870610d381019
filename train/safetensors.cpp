#include "train/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "core/text.h"

namespace scratchnet {

namespace safetensors {

namespace {

using json = nlohmann::ordered_json;
constexpr uint64_t kMaxHeader = 100u << 20;
constexpr const char* kMetadataKey = "__metadata__";

const char* dtype_code(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::I32:
      return "I32";
    case DType::U8:
      return "U8";
    case DType::I64:
      return "I64";
  }
  return "?";
}

bool parse_dtype(const std::string& s, DType& out) {
  for (DType t : {DType::F32, DType::I32, DType::U8, DType::I64})
    if (s == dtype_code(t)) {
      out = t;
      return true;
    }
  return false;
}

[[noreturn]] void bad(const std::string& path, const std::string& problem) {
  throw IoError("safetensors file " + path + ": " + problem);
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& path, const std::string& name, const json& v,
                  uint64_t data_size) {
  const std::string where = "tensor '" + escape_bytes(name) + "'";
  if (!v.is_object()) bad(path, where + " is not a JSON object");
  Entry e{name, DType::F32, {}, 0, 0};
  const auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) bad(path, where + " has no \"dtype\" string");
  if (!parse_dtype(dt->get<std::string>(), e.dtype))
    bad(path, where + " has dtype " + escape_bytes(dt->get<std::string>()) +
                  ", which scratchnet does not read (F32, I32, U8, I64 only)");
  const auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) bad(path, where + " has no \"shape\" array");
  // Overflow-safe element count: every partial product stays below 2^62.
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned())
      bad(path, where + " has a shape entry that is not an integer >= 0");
    const uint64_t n = d.get<uint64_t>();
    if (n > (uint64_t{1} << 62) || (n != 0 && numel > (uint64_t{1} << 62) / n))
      bad(path, where + " has a shape too large to be real: " + escape_bytes(sh->dump()));
    numel *= n;
    e.shape.push_back(static_cast<int64_t>(n));
  }
  const auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    bad(path, where + " has no \"data_offsets\" [begin, end] of integers >= 0");
  e.begin = (*off)[0].get<uint64_t>();
  e.end = (*off)[1].get<uint64_t>();
  if (e.begin > e.end || e.end > data_size)
    bad(path, where + " has data_offsets " + escape_bytes(off->dump()) +
                  " outside the data section of " + std::to_string(data_size) +
                  " bytes (truncated file?)");
  if (numel > (uint64_t{1} << 59))
    bad(path, where + " has a shape too large to be real: " + escape_bytes(sh->dump()));
  const uint64_t bytes = numel * dtype_size(e.dtype);
  if (e.end - e.begin != bytes)
    bad(path, where + " has " + std::to_string(e.end - e.begin) + " bytes of data but " +
                  escape_bytes(dt->get<std::string>()) + " " + shape_str(e.shape) + " needs " +
                  std::to_string(bytes));
  return e;
}

}  // namespace

void save(const std::string& path, const std::vector<NamedTensor>& tensors,
          const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header[kMetadataKey] = std::move(m);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& nt : tensors) {
    if (!nt.tensor.defined())
      throw ValueError("safetensors::save " + path + ": tensor '" + nt.name + "' is undefined");
    if (nt.name == kMetadataKey || !seen.insert(nt.name).second)
      throw ValueError("safetensors::save " + path + ": tensor name '" + nt.name +
                       "' is reserved or used twice");
    const uint64_t bytes = nt.tensor.nbytes();
    header[nt.name] = {{"dtype", dtype_code(nt.tensor.dtype())},
                       {"shape", nt.tensor.shape()},
                       {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Padding to 8 bytes keeps the data aligned for readers that map the file.
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t{text.size()} >> (8 * i));

  AtomicFileWriter out(path);
  out.write(len, sizeof len);
  out.write(text.data(), text.size());
  for (const auto& nt : tensors) {
    const Tensor host = nt.tensor.to(Device::cpu());
    if (host.nbytes() == 0) continue;
    switch (host.dtype()) {
      case DType::F32:
        out.write(host.host<float>(), host.nbytes());
        break;
      case DType::I32:
        out.write(host.host<int32_t>(), host.nbytes());
        break;
      case DType::U8:
        out.write(host.host<uint8_t>(), host.nbytes());
        break;
      case DType::I64:
        out.write(host.host<int64_t>(), host.nbytes());
        break;
    }
  }
  out.commit();
}

namespace {

// Opens `path`, checks its length prefix and parses its JSON header; `in` is
// left just after the header. size: the file's size; n: the header length.
json read_header(const std::string& path, std::ifstream& in, uint64_t& size, uint64_t& n) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    bad(path, std::filesystem::exists(path, ec) ? "is not a regular file" : "no such file");
  size = std::filesystem::file_size(path, ec);
  if (ec) bad(path, "cannot read its size: " + ec.message());
  in.open(path, std::ios::binary);
  if (!in) bad(path, std::string("cannot open: ") + std::strerror(errno));
  if (size < 8)
    bad(path, "the file is " + std::to_string(size) +
                  " bytes, shorter than the 8-byte header length (empty or truncated?)");
  unsigned char len[8];
  if (!in.read(reinterpret_cast<char*>(len), 8)) bad(path, "cannot read the header length");
  n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n > size - 8)
    bad(path, "the header length " + std::to_string(n) + " runs past the end of the file (" +
                  std::to_string(size) + " bytes): truncated, or not a safetensors file");
  if (n > kMaxHeader)
    bad(path,
        "the header length " + std::to_string(n) + " is over 100 MB: not a safetensors file?");
  std::string text(static_cast<std::size_t>(n), '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(n))) bad(path, "cannot read the header");
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    // The parser quotes what it read: file content, so escaped.
    bad(path, "the header is not valid JSON (" + escape_bytes(e.what(), 200) + ")");
  }
  if (!header.is_object()) bad(path, "the header is not a JSON object");
  return header;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& value) {
  if (!value.is_object()) bad(path, "\"__metadata__\" is not an object of strings");
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : value.items()) {
    if (!v.is_string()) bad(path, "metadata value of '" + escape_bytes(k) + "' is not a string");
    out[k] = v.get<std::string>();
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> read_metadata(const std::string& path) {
  std::ifstream in;
  uint64_t size = 0, n = 0;
  const json header = read_header(path, in, size, n);
  const auto it = header.find(kMetadataKey);
  return it == header.end() ? std::map<std::string, std::string>{} : parse_metadata(path, *it);
}

File load(const std::string& path) {
  std::ifstream in;
  uint64_t size = 0, n = 0;
  const json header = read_header(path, in, size, n);
  const uint64_t data_start = 8 + n, data_size = size - data_start;
  File file;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      file.metadata = parse_metadata(path, value);
      continue;
    }
    entries.push_back(parse_entry(path, key, value, data_size));
  }
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      bad(path, "the data of tensors '" + escape_bytes(by_offset[i - 1]->name) + "' and '" +
                    escape_bytes(by_offset[i]->name) + "' overlap");

  for (const auto& e : entries) {
    Tensor t = Tensor::empty(e.shape, Device::cpu(), e.dtype);
    char* dst = nullptr;
    switch (e.dtype) {
      case DType::F32:
        dst = reinterpret_cast<char*>(t.host<float>());
        break;
      case DType::I32:
        dst = reinterpret_cast<char*>(t.host<int32_t>());
        break;
      case DType::U8:
        dst = reinterpret_cast<char*>(t.host<uint8_t>());
        break;
      case DType::I64:
        dst = reinterpret_cast<char*>(t.host<int64_t>());
        break;
    }
    const uint64_t bytes = e.end - e.begin;
    if (bytes > 0) {
      in.seekg(static_cast<std::streamoff>(data_start + e.begin));
      if (!in.read(dst, static_cast<std::streamsize>(bytes)))
        bad(path, "cannot read the data of tensor '" + escape_bytes(e.name) +
                      "' (file changed or truncated?)");
    }
    file.tensors.push_back({e.name, std::move(t)});
  }
  return file;
}

void require_finite(const File& file, const std::string& path_for_messages) {
  std::string first;
  int64_t nan = 0, inf = 0;
  int tensors = 0;
  for (const auto& nt : file.tensors) {
    if (nt.tensor.dtype() != DType::F32) continue;
    int64_t n = 0, i = 0;
    const float* p = nt.tensor.host<float>();
    for (int64_t k = 0, e = nt.tensor.numel(); k < e; ++k) {
      n += std::isnan(p[k]) ? 1 : 0;
      i += std::isinf(p[k]) ? 1 : 0;
    }
    if (n + i == 0) continue;
    if (tensors++ == 0) {
      first = escape_bytes(nt.name);
      nan = n;
      inf = i;
    }
  }
  if (tensors == 0) return;
  std::string counts;
  if (nan) counts = std::to_string(nan) + " NaN";
  if (inf) counts += (counts.empty() ? "" : " and ") + std::to_string(inf) + " infinite";
  throw IoError(path_for_messages + ": the weights hold " + counts + " values in " + first +
                (tensors > 1 ? " (and " + std::to_string(tensors - 1) + " more tensors)" : "") +
                "; the run that wrote them diverged. Use an earlier checkpoint "
                "(model_best.safetensors?) or train again with a smaller --lr");
}

void load_into(Module& module, const File& file, const std::string& path_for_messages) {
  std::unordered_map<std::string, const Tensor*> in_file;
  for (const auto& nt : file.tensors) in_file[nt.name] = &nt.tensor;
  const std::vector<NamedTensor> state = module.state_dict();
  std::vector<std::string> problems;
  std::set<std::string> used;
  for (const auto& nt : state) {
    const auto it = in_file.find(nt.name);
    if (it == in_file.end()) {
      problems.push_back("missing key '" + nt.name + "' (model: " + nt.tensor.str() + ")");
      continue;
    }
    used.insert(nt.name);
    const Tensor& src = *it->second;
    if (src.shape() != nt.tensor.shape() || src.dtype() != nt.tensor.dtype())
      problems.push_back("key '" + nt.name + "': checkpoint has " + dtype_name(src.dtype()) + " " +
                         shape_str(src.shape()) + ", model has " + dtype_name(nt.tensor.dtype()) +
                         " " + shape_str(nt.tensor.shape()));
  }
  for (const auto& nt : file.tensors)
    if (!used.count(nt.name)) problems.push_back("unexpected key '" + escape_bytes(nt.name) + "'");
  if (!problems.empty()) {
    std::string msg =
        "checkpoint " + path_for_messages + " does not fit this model (saved for another model?): ";
    const std::size_t shown = std::min<std::size_t>(problems.size(), 8);
    for (std::size_t i = 0; i < shown; ++i) msg += (i ? "; " : "") + problems[i];
    if (problems.size() > shown)
      msg += "; and " + std::to_string(problems.size() - shown) + " more";
    throw IoError(msg);
  }
  // Everything checked first: a mismatch never leaves the model half-loaded.
  for (const auto& nt : state) {
    Tensor dst = nt.tensor;
    dst.copy_(*in_file.at(nt.name));
  }
}

}  // namespace safetensors
}  // namespace scratchnet
