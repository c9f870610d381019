// Bilinear resize (align_corners=False), the fused u8 gather + resize of the
// data pipeline, and label gathering.
// Tolerance rule (as test_helpers.h): |got - want| <= atol + rtol * |want|.
// Gradients: check_gradient's rule, reduction length 4 (four taps). Expected
// values: by hand from the formula, or PyTorch 1.13 F.interpolate (printed
// as float32); the computations agree to a few float roundings, so
// atol = rtol = 1e-6.
#include <numeric>

#include "core/autograd.h"
#include "core/ops.h"
#include "test_helpers.h"

using namespace scratchnet;
using scratchnet::testing::check_gradient;
using scratchnet::testing::random_tensor;
using scratchnet::testing::require_close;

namespace {
// x[i] = 0.1 * i^2 for i in 0..14, as a (1, 1, 3, 5) image.
Tensor squares_3x5() {
  std::vector<float> v;
  for (int i = 0; i < 15; ++i) v.push_back(static_cast<float>(i * i) * 0.1f);
  return Tensor::from_vector(v, {1, 1, 3, 5});
}
}  // namespace

TEST_CASE("resize_bilinear 2x2 -> 4x4 by hand", "[resize]") {
  // src = (dst + 0.5) / 2 - 0.5 clamped at 0: 0, 0.25, 0.75, 1.25 -> the
  // last one clamps its upper neighbour to the edge. Each row of [1 2] maps
  // to [1, 1.25, 1.75, 2]; the rows blend the same way.
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2});
  const std::vector<float> want{1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                                2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
  require_close(resize_bilinear(x, 4, 4).to_vector(), want, 1e-6, 1e-6, "2x2 -> 4x4");
}

TEST_CASE("resize_bilinear matches torch F.interpolate", "[resize]") {
  Tensor x = squares_3x5();
  // torch 1.13: F.interpolate(x, size=(2, 3), mode='bilinear', align_corners=False)
  require_close(resize_bilinear(x, 2, 3).to_vector(),
                {0.7416666746139526f, 1.524999976158142f, 2.9083333015441895f, 8.741666793823242f,
                 12.02500057220459f, 15.908332824707031f},
                1e-6, 1e-6, "3x5 -> 2x3");
  // size=(4, 7): non-integer up-scaling in both directions.
  require_close(resize_bilinear(x, 4, 7).to_vector(),
                {0.0f,
                 0.05714286118745804f,
                 0.18571430444717407f,
                 0.40000003576278687f,
                 0.7571429014205933f,
                 1.2000000476837158f,
                 1.600000023841858f,
                 1.5625f,
                 1.9767857789993286f,
                 2.551785945892334f,
                 3.2125000953674316f,
                 4.016071796417236f,
                 4.905357360839844f,
                 5.662500381469727f,
                 5.3125f,
                 6.155357360839844f,
                 7.266071796417236f,
                 8.46250057220459f,
                 9.801785469055176f,
                 11.226785659790039f,
                 12.412500381469727f,
                 10.0f,
                 11.199999809265137f,
                 12.757143020629883f,
                 14.40000057220459f,
                 16.185714721679688f,
                 18.05714225769043f,
                 19.600000381469727f},
                1e-6, 1e-6, "3x5 -> 4x7");
  // Same size: an exact copy.
  CHECK(resize_bilinear(x, 3, 5).to_vector() == x.to_vector());
}

TEST_CASE("resize_bilinear gradient matches finite differences", "[resize]") {
  Tensor x = random_tensor({2, 2, 3, 5}, 12);
  x.set_requires_grad(true);
  check_gradient([&] { return resize_bilinear(x, 7, 8); }, x, 4, "resize up dx");
  check_gradient([&] { return resize_bilinear(x, 2, 3); }, x, 4, "resize down dx");
  check_gradient([&] { return resize_bilinear(x, 3, 9); }, x, 4, "resize mixed dx");
}

TEST_CASE("resize_bilinear backward conserves gradient mass", "[resize]") {
  // Every output distributes its gradient with weights summing to 1.
  Tensor x = random_tensor({1, 3, 6, 4}, 2);
  x.set_requires_grad(true);
  Tensor y = resize_bilinear(x, 9, 10);
  Tensor gy = random_tensor(y.shape(), 3);
  y.backward(gy);
  const auto gx = x.grad().to_vector(), g = gy.to_vector();
  const double sx = std::accumulate(gx.begin(), gx.end(), 0.0);
  const double sy = std::accumulate(g.begin(), g.end(), 0.0);
  CHECK(std::fabs(sx - sy) <= 1e-5 + 1e-5 * std::fabs(sy));
}

TEST_CASE("resize_gather_u8 gathers, scales by 1/255 and resizes", "[resize]") {
  const std::vector<uint8_t> img{0,   255, 51, 102,  // image 0
                                 10,  20,  30, 40,   // image 1
                                 200, 100, 50, 25};  // image 2
  Tensor images = Tensor::from_vector(img, {3, 2, 2});
  Tensor index = Tensor::from_vector<int32_t>({2, 0}, {2});
  // Same size: gather and x / 255 exactly (as ToTensor).
  const auto y = resize_gather_u8(images, index, 2, 2).to_vector();
  std::vector<float> want;
  for (int b : {2, 0})
    for (int j = 0; j < 4; ++j) want.push_back(static_cast<float>(img[b * 4 + j]) / 255.0f);
  CHECK(y == want);
  // Resized: the same as resizing the float images.
  Tensor as_float = Tensor::from_vector(want, {2, 1, 2, 2});
  require_close(resize_gather_u8(images, index, 4, 3).to_vector(),
                resize_bilinear(as_float, 4, 3).to_vector(), 1e-6, 1e-6, "gather + resize");
  CHECK(resize_gather_u8(images, index, 5, 5).shape() == Shape{2, 1, 5, 5});
  Tensor bad = Tensor::from_vector<int32_t>({0, 3}, {2});
  CHECK_THROWS_AS(resize_gather_u8(images, bad, 2, 2), ValueError);
  CHECK_THROWS_WITH(resize_gather_u8(images, bad, 2, 2),
                    Catch::Contains("resize_gather_u8") && Catch::Contains("index 3"));
}

TEST_CASE("gather_labels widens the indexed labels", "[resize]") {
  Tensor labels = Tensor::from_vector<uint8_t>({9, 0, 3, 7}, {4});
  Tensor index = Tensor::from_vector<int32_t>({3, 3, 0, 2}, {4});
  CHECK(gather_labels(labels, index).to_vector<int32_t>() == std::vector<int32_t>{7, 7, 9, 3});
  Tensor bad = Tensor::from_vector<int32_t>({-1}, {1});
  CHECK_THROWS_WITH(gather_labels(labels, bad),
                    Catch::Contains("gather_labels") && Catch::Contains("-1"));
}

TEST_CASE("resize_bilinear rejects bad sizes", "[resize][errors]") {
  Tensor x = random_tensor({1, 1, 4, 4}, 1);
  CHECK_THROWS_AS(resize_bilinear(x, 0, 4), ShapeError);
  CHECK_THROWS_WITH(resize_bilinear(x, 0, 4),
                    Catch::Contains("resize_bilinear") && Catch::Contains("0x4"));
  CHECK_THROWS_AS(resize_bilinear(x, 4, 20000), ShapeError);
  CHECK_THROWS_WITH(resize_bilinear(random_tensor({4, 4}, 1), 2, 2),
                    Catch::Contains("resize_bilinear") && Catch::Contains("(4, 4)"));
}
