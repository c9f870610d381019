// safetensors checkpoints: the byte format (checked against a file written
// by hand here, not only against our own reader), round trips, strict
// loading into a Module, and malformed files. Values are copied bit for bit,
// so every comparison is exact (tolerance 0).
// The PyTorch interop check lives in tests/torch_interop.py; it runs the
// hidden test "[torch-interop]" below.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/cuda.h"
#include "test_files.h"
#include "test_helpers.h"
#include "train/safetensors.h"

using namespace scratchnet;
namespace fs = std::filesystem;
using scratchnet::testing::require_io_error;
using scratchnet::testing::slurp;
using scratchnet::testing::TempDir;

namespace {

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

// A file from a JSON header text and a data section, as the format says.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(uint64_t{header.size()} >> (8 * i));
  return out + header + data;
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// A module with PyTorch-like keys: leaves with parameters and buffers under
// named children, e.g. "fc.weight", "bn.running_mean", "bn.num_batches_tracked".
class Leaf : public Module {
 public:
  Leaf(const std::vector<std::pair<std::string, Shape>>& params,
       const std::vector<std::pair<std::string, Tensor>>& buffers, uint64_t seed) {
    for (const auto& [name, shape] : params)
      register_parameter(name, testing::random_tensor(shape, seed++));
    for (const auto& [name, t] : buffers) register_buffer(name, t);
  }
  Tensor forward(const Tensor& x) override { return x; }
  std::string describe() const override { return "Leaf()"; }
};

class Tiny : public Module {
 public:
  // fc: Linear(2, 3); bn: BatchNorm1d(3), as torch names them.
  explicit Tiny(uint64_t seed, int out = 3) {
    register_module(
        "fc", std::make_shared<Leaf>(
                  std::vector<std::pair<std::string, Shape>>{{"weight", {out, 2}}, {"bias", {out}}},
                  std::vector<std::pair<std::string, Tensor>>{}, seed));
    register_module(
        "bn", std::make_shared<Leaf>(
                  std::vector<std::pair<std::string, Shape>>{{"weight", {out}}, {"bias", {out}}},
                  std::vector<std::pair<std::string, Tensor>>{
                      {"running_mean", testing::random_tensor({out}, seed + 10)},
                      {"running_var", testing::random_tensor({out}, seed + 11, 0.5f, 2.0f)},
                      {"num_batches_tracked",
                       Tensor::from_vector<int64_t>({static_cast<int64_t>(seed)}, {})}},
                  seed + 20));
  }
  Tensor forward(const Tensor& x) override { return x; }
  std::string describe() const override { return "Tiny()"; }
};

// Raw bytes of a host tensor, whatever its dtype.
std::string tensor_bytes(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  switch (h.dtype()) {
    case DType::F32:
      return bytes_of(h.to_vector<float>());
    case DType::I32:
      return bytes_of(h.to_vector<int32_t>());
    case DType::U8:
      return bytes_of(h.to_vector<uint8_t>());
    case DType::I64:
      return bytes_of(h.to_vector<int64_t>());
  }
  return {};
}

void require_same_state(const Module& a, const Module& b) {
  const auto sa = a.state_dict(), sb = b.state_dict();
  REQUIRE(sa.size() == sb.size());
  for (std::size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].name);
    CHECK(sa[i].name == sb[i].name);
    CHECK(sa[i].tensor.shape() == sb[i].tensor.shape());
    CHECK(tensor_bytes(sa[i].tensor) == tensor_bytes(sb[i].tensor));
  }
}

}  // namespace

TEST_CASE("safetensors round trip keeps names, order, dtypes, bytes and metadata",
          "[safetensors]") {
  TempDir dir("st");
  const std::string path = dir.file("ckpt.safetensors");
  const std::vector<NamedTensor> tensors = {
      {"w", testing::random_tensor({2, 3}, 1)},
      {"idx", Tensor::from_vector<int32_t>({-5, 0, 7, 2147483647}, {4})},
      {"bytes", Tensor::from_vector<uint8_t>({0, 1, 254, 255, 9}, {5})},
      {"count", Tensor::from_vector<int64_t>({int64_t{1} << 40}, {})},
      {"empty", Tensor::empty({0, 3})},
  };
  const std::map<std::string, std::string> meta = {{"epoch", "3"}, {"model", "lenet"}};
  safetensors::save(path, tensors, meta);
  CHECK_FALSE(fs::exists(path + ".tmp"));

  const auto file = safetensors::load(path);
  CHECK(file.metadata == meta);
  REQUIRE(file.tensors.size() == tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    INFO(tensors[i].name);
    CHECK(file.tensors[i].name == tensors[i].name);
    CHECK(file.tensors[i].tensor.dtype() == tensors[i].tensor.dtype());
    CHECK(file.tensors[i].tensor.shape() == tensors[i].tensor.shape());
    CHECK(tensor_bytes(file.tensors[i].tensor) == tensor_bytes(tensors[i].tensor));
  }

  // The layout itself: an 8-aligned header, tensors packed in order from 0.
  const std::string raw = slurp(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(raw[i]);
  CHECK(n % 8 == 0);
  const auto header = nlohmann::json::parse(raw.substr(8, n));
  CHECK(header["__metadata__"]["model"] == "lenet");
  CHECK(header["w"]["dtype"] == "F32");
  CHECK(header["w"]["shape"] == nlohmann::json::array({2, 3}));
  CHECK(header["w"]["data_offsets"] == nlohmann::json::array({0, 24}));
  CHECK(header["idx"]["data_offsets"] == nlohmann::json::array({24, 40}));
  CHECK(header["count"]["dtype"] == "I64");
  CHECK(header["count"]["shape"] == nlohmann::json::array());
  CHECK(raw.size() == 8 + n + 24 + 16 + 5 + 8);

  // Overwriting an existing checkpoint replaces it whole.
  safetensors::save(path, {{"only", Tensor::full({2}, 1.5f)}});
  const auto again = safetensors::load(path);
  REQUIRE(again.tensors.size() == 1);
  CHECK(again.metadata.empty());
  CHECK(again.tensors[0].tensor.to_vector() == std::vector<float>{1.5f, 1.5f});
}

TEST_CASE("safetensors reads a file written by hand to the format", "[safetensors]") {
  TempDir dir("st");
  const std::string path = dir.file("hand.safetensors");
  const std::vector<float> a = {1.0f, -2.5f, 3.25f, 0.0f};
  const std::vector<int64_t> b = {42};
  // Tensors listed out of data order, no metadata, no padding: all allowed.
  const std::string header = R"({"b":{"dtype":"I64","shape":[],"data_offsets":[16,24]},)"
                             R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  write_all(path, make_file(header, bytes_of(a) + bytes_of(b)));
  const auto file = safetensors::load(path);
  REQUIRE(file.tensors.size() == 2);
  CHECK(file.tensors[0].name == "b");
  CHECK(file.tensors[0].tensor.to_vector<int64_t>() == b);
  CHECK(file.tensors[1].tensor.shape() == Shape{2, 2});
  CHECK(file.tensors[1].tensor.to_vector() == a);
}

TEST_CASE("safetensors save rejects what it cannot write", "[safetensors]") {
  TempDir dir("st");
  require_io_error([&] { safetensors::save(dir.file("no/such/dir/x.safetensors"), {}); },
                   {dir.file("no/such/dir/x.safetensors")});
  CHECK_THROWS_AS(safetensors::save(dir.file("a"), {{"x", Tensor()}}), ValueError);
  CHECK_THROWS_AS(
      safetensors::save(dir.file("a"), {{"x", Tensor::zeros({1})}, {"x", Tensor::zeros({1})}}),
      ValueError);
  CHECK_THROWS_AS(safetensors::save(dir.file("a"), {{"__metadata__", Tensor::zeros({1})}}),
                  ValueError);
  CHECK_FALSE(fs::exists(dir.file("a")));
  CHECK_FALSE(fs::exists(dir.file("a.tmp")));
}

TEST_CASE("malformed safetensors files give an IoError naming the file and the problem",
          "[safetensors]") {
  TempDir dir("st");
  const std::string p = dir.file("bad.safetensors");
  const std::string data(24, '\0');
  const auto entry = [](const std::string& dtype, const std::string& shape,
                        const std::string& offs) {
    return R"({"x":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offs +
           "}}";
  };
  SECTION("missing") {
    require_io_error([&] { safetensors::load(p); }, {p, "no such file"});
  }
  SECTION("empty") {
    write_all(p, "");
    require_io_error([&] { safetensors::load(p); }, {p, "shorter than the 8-byte"});
  }
  SECTION("5 bytes") {
    write_all(p, "abcde");
    require_io_error([&] { safetensors::load(p); }, {p, "shorter than the 8-byte"});
  }
  SECTION("header length past the end") {
    std::string f = make_file(entry("F32", "[2]", "[0,8]"), std::string(8, '\0'));
    f[0] = static_cast<char>(f[0] + 100);
    write_all(p, f);
    require_io_error([&] { safetensors::load(p); }, {p, "runs past the end"});
  }
  SECTION("a huge header length") {
    write_all(p, make_file("", "") + std::string(16, ' '));
    std::string f = slurp(p);
    f[5] = 1;  // 2^40
    write_all(p, f);
    require_io_error([&] { safetensors::load(p); }, {p, "runs past the end"});
  }
  SECTION("bad JSON") {
    write_all(p, make_file(R"({"x": {"dtype": "F32",)", data));
    require_io_error([&] { safetensors::load(p); }, {p, "not valid JSON"});
  }
  SECTION("JSON that is not an object") {
    write_all(p, make_file("[1, 2]", data));
    require_io_error([&] { safetensors::load(p); }, {p, "not a JSON object"});
  }
  SECTION("offsets out of range") {
    write_all(p, make_file(entry("F32", "[8]", "[0,32]"), data));
    require_io_error([&] { safetensors::load(p); }, {p, "'x'", "outside the data section"});
  }
  SECTION("offsets backwards") {
    write_all(p, make_file(entry("F32", "[1]", "[8,4]"), data));
    require_io_error([&] { safetensors::load(p); }, {p, "outside the data section"});
  }
  SECTION("offsets inconsistent with the shape") {
    write_all(p, make_file(entry("F32", "[2,3]", "[0,20]"), data));
    require_io_error([&] { safetensors::load(p); }, {p, "'x'", "needs 24"});
  }
  SECTION("an unsupported dtype") {
    write_all(p, make_file(entry("F16", "[2]", "[0,4]"), data));
    require_io_error([&] { safetensors::load(p); }, {p, "dtype F16"});
  }
  SECTION("a negative or fractional dimension") {
    write_all(p, make_file(entry("F32", "[-2]", "[0,8]"), data));
    require_io_error([&] { safetensors::load(p); }, {p, "shape"});
    write_all(p, make_file(entry("F32", "[1.5]", "[0,8]"), data));
    require_io_error([&] { safetensors::load(p); }, {p, "shape"});
  }
  SECTION("an absurd shape does not overflow") {
    write_all(p, make_file(entry("F32", "[4294967296,4294967296,4294967296]", "[0,8]"), data));
    require_io_error([&] { safetensors::load(p); }, {p, "too large"});
  }
  SECTION("a missing field") {
    write_all(p, make_file(R"({"x":{"dtype":"F32","shape":[2]}})", data));
    require_io_error([&] { safetensors::load(p); }, {p, "data_offsets"});
    write_all(p, make_file(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", data));
    require_io_error([&] { safetensors::load(p); }, {p, "dtype"});
  }
  SECTION("overlapping tensors") {
    write_all(p, make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                           R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                           data));
    require_io_error([&] { safetensors::load(p); }, {p, "overlap"});
  }
  SECTION("metadata that is not strings") {
    write_all(p, make_file(R"({"__metadata__":{"epoch":3}})", ""));
    require_io_error([&] { safetensors::load(p); }, {p, "epoch"});
  }
}

TEST_CASE("load_into restores a module's state_dict strictly", "[safetensors][module]") {
  TempDir dir("st");
  const std::string path = dir.file("tiny.safetensors");
  Tiny saved(1);
  safetensors::save(path, saved.state_dict(), {{"model", "tiny"}});
  const auto file = safetensors::load(path);

  SECTION("matching module: values copied into the existing tensors") {
    Tiny fresh(99);
    const Tensor w = fresh.state_dict().front().tensor;  // a handle held elsewhere
    safetensors::load_into(fresh, file, path);
    require_same_state(saved, fresh);
    CHECK(w.to_vector() == saved.state_dict().front().tensor.to_vector());
    CHECK(fresh.state_dict().back().tensor.to_vector<int64_t>() == std::vector<int64_t>{1});
  }
  SECTION("wrong shapes: another model's checkpoint") {
    Tiny other(99, 4);
    require_io_error([&] { safetensors::load_into(other, file, path); },
                     {path, "another model", "fc.weight", "(3, 2)", "(4, 2)"});
    // Nothing was copied.
    CHECK(other.state_dict().front().tensor.to_vector() ==
          testing::random_tensor({4, 2}, 99).to_vector());
  }
  SECTION("a missing key") {
    auto tensors = file.tensors;
    tensors.erase(tensors.begin() + 1);  // fc.bias
    Tiny fresh(99);
    require_io_error(
        [&] {
          safetensors::load_into(fresh, {tensors, {}}, path);
        },
        {path, "missing key 'fc.bias'"});
  }
  SECTION("an extra key") {
    auto tensors = file.tensors;
    tensors.push_back({"head.weight", Tensor::zeros({1})});
    Tiny fresh(99);
    require_io_error(
        [&] {
          safetensors::load_into(fresh, {tensors, {}}, path);
        },
        {path, "unexpected key 'head.weight'"});
  }
  SECTION("a wrong dtype") {
    auto tensors = file.tensors;
    tensors.back().tensor = Tensor::from_vector<int32_t>({1}, {});  // num_batches_tracked as I32
    Tiny fresh(99);
    require_io_error(
        [&] {
          safetensors::load_into(fresh, {tensors, {}}, path);
        },
        {path, "bn.num_batches_tracked", "int32", "int64"});
  }
}

TEST_CASE("checkpoints save from and load into a module on the GPU",
          "[safetensors][module][cuda]") {
  TempDir dir("st");
  const std::string path = dir.file("gpu.safetensors");
  Tiny a(5);
  a.to(Device::cuda());
  REQUIRE(a.state_dict().front().tensor.is_cuda());
  safetensors::save(path, a.state_dict());
  Tiny b(6);
  b.to(Device::cuda());
  safetensors::load_into(b, safetensors::load(path), path);
  CHECK(b.state_dict().front().tensor.is_cuda());
  require_same_state(a, b);
}

// The C++ half of the PyTorch interop check. tests/torch_interop.py sets
// SCRATCHNET_INTEROP_DIR and puts there the state_dict PyTorch saved for the
// same module (Linear(2, 3) then BatchNorm1d(3)); without it, this test
// writes a stand-in by hand with PyTorch's keys, order and dtypes
// (num_batches_tracked an I64 scalar). Either way: load strictly, double every
// float, add one to the counter, save for the other side to check.
TEST_CASE("a PyTorch-layout state_dict loads, changes and saves back",
          "[safetensors][torch-interop]") {
  const char* env = std::getenv("SCRATCHNET_INTEROP_DIR");
  TempDir tmp("st");
  const std::string dir = env && *env ? std::string(env) : tmp.path.string();
  const std::string in = dir + "/torch.safetensors", out = dir + "/scratchnet.safetensors";
  const std::vector<std::pair<std::string, Shape>> keys = {
      {"fc.weight", {3, 2}}, {"fc.bias", {3}},         {"bn.weight", {3}},
      {"bn.bias", {3}},      {"bn.running_mean", {3}}, {"bn.running_var", {3}}};
  std::vector<float> values;  // the stand-in's floats, all tensors back to back
  if (!env || !*env) {
    std::string header = "{", data;
    for (const auto& [name, shape] : keys) {
      const int64_t n = shape_numel(shape);
      std::vector<float> v;
      for (int64_t i = 0; i < n; ++i)
        v.push_back(0.25f * static_cast<float>(values.size() + i) - 1.0f);
      header += "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + nlohmann::json(shape).dump() +
                ",\"data_offsets\":[" + std::to_string(data.size()) + "," +
                std::to_string(data.size() + v.size() * 4) + "]},";
      data += bytes_of(v);
      values.insert(values.end(), v.begin(), v.end());
    }
    header += "\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[" +
              std::to_string(data.size()) + "," + std::to_string(data.size() + 8) + "]}}";
    data += bytes_of(std::vector<int64_t>{7});
    write_all(in, make_file(header, data));
  }

  Tiny m(0);
  safetensors::load_into(m, safetensors::load(in), in);
  std::vector<NamedTensor> changed;
  for (const auto& nt : m.state_dict()) {
    Tensor t = nt.tensor.clone();
    if (t.dtype() == DType::F32) {
      float* p = t.host<float>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] *= 2.0f;
    } else {
      t.host<int64_t>()[0] += 1;
    }
    changed.push_back({nt.name, t});
  }
  safetensors::save(out, changed, {{"written_by", "scratchnet"}});

  if (!env || !*env) {
    const auto back = safetensors::load(out);
    REQUIRE(back.tensors.size() == keys.size() + 1);
    std::vector<float> got;
    for (std::size_t k = 0; k < keys.size(); ++k) {
      CHECK(back.tensors[k].name == keys[k].first);
      const auto v = back.tensors[k].tensor.to_vector();
      got.insert(got.end(), v.begin(), v.end());
    }
    std::vector<float> want;
    for (float v : values) want.push_back(2.0f * v);
    CHECK(got == want);
    CHECK(back.tensors.back().name == "bn.num_batches_tracked");
    CHECK(back.tensors.back().tensor.to_vector<int64_t>() == std::vector<int64_t>{8});
  }
}
