// safetensors reader/writer and the tensor helpers: golden files, round trips, and malformed inputs that
// must throw elm::error naming the field (never crash, never read out of bounds).

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "io/io_detail.hpp"

namespace {

namespace fs = std::filesystem;
using elm::dtype;

std::vector<std::byte> bytes_of(std::string_view s) {
    std::vector<std::byte> b(s.size());
    if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
    return b;
}

// A safetensors file with this header text and these data bytes.
std::vector<std::byte> make_file(const std::string& header, std::size_t data_bytes) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[std::size_t(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    s += header;
    s.append(data_bytes, '\x01');
    return bytes_of(s);
}

// Expects parse to throw elm::error whose field contains `field`.
void expect_error(const std::vector<std::byte>& b, const std::string& field) {
    try {
        elm::parse_safetensors(b, "test.safetensors");
        FAIL() << "no error, expected one naming " << field;
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), "test.safetensors");
        EXPECT_NE(e.field().find(field), std::string::npos)
            << "field '" << e.field() << "', what: " << e.what();
    }
}

elm::tensor_file sample_file() {
    elm::tensor_file f;
    f.source = "sample";
    const float a[] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
    const double b[] = {1.0 / 3.0, -1e300};
    const std::int64_t c[] = {-1, std::numeric_limits<std::int64_t>::max(), 7};
    const std::int32_t d[] = {-5};
    const std::uint8_t e[] = {0, 255, 7, 9};
    const bool m[] = {true, false, true};
    f.tensors.push_back(elm::make_tensor<float>("a.weight", {2, 3}, a));
    f.tensors.push_back(elm::make_tensor<double>("b", {2}, b));
    f.tensors.push_back(elm::make_tensor<std::int64_t>("c", {3}, c));
    f.tensors.push_back(elm::make_tensor<std::int32_t>("d", {}, d));
    f.tensors.push_back(elm::make_tensor<std::uint8_t>("e", {2, 2}, e));
    f.tensors.push_back(elm::make_tensor<bool>("mask", {3}, m));
    f.tensors.push_back(elm::make_tensor<float>("empty", {0, 4}, std::span<const float>{}));
    f.metadata["format"] = "elmneuron";
    f.metadata["config"] = "{\"num_input\": 3}";
    return f;
}

TEST(safetensors, golden_model_case_has_published_parameters) {
    const auto f = elm::read_safetensors(std::string(ELM_GOLDEN_DIR) + "/v1_vanilla_small.safetensors");
    EXPECT_EQ(f.metadata.at("model_version"), "v1");
    EXPECT_NE(f.metadata.at("config").find("\"num_input\": 7"), std::string::npos);
    EXPECT_EQ(f.at("param._proto_w_s", {7}).type, dtype::f32);
    EXPECT_EQ(f.at("param.mlp.network.0.weight", {10, 12}).to<double>().size(), 120u);
    EXPECT_EQ(f.at("param.w_y.weight").shape, (std::vector<std::int64_t>{3, 5}));
    for (const auto& t : f.tensors)
        EXPECT_EQ(t.data.size(), std::size_t(t.numel()) * elm::dtype_size(t.type)) << t.name;
}

TEST(safetensors, golden_routing_and_pretrained_cases) {
    const auto v1 = elm::read_safetensors(std::string(ELM_GOLDEN_DIR) + "/v1_neuronio_routing.safetensors");
    EXPECT_EQ(v1.at("param.input_to_synapse_indices", {4500}).type, dtype::i64);
    const auto mask = v1.at("param.valid_indices_mask", {4500});
    EXPECT_EQ(mask.type, dtype::boolean);
    const auto m = mask.to<std::uint8_t>();
    EXPECT_EQ(std::count(m.begin(), m.end(), 1), 4282);
    const auto idx = v1.at("param.input_to_synapse_indices").to<std::int64_t>();
    EXPECT_GE(*std::min_element(idx.begin(), idx.end()), 0);
    EXPECT_LT(*std::max_element(idx.begin(), idx.end()), 1278);
    const auto v2 =
        elm::read_safetensors(std::string(ELM_GOLDEN_DIR) + "/v2_random_routing_silu_learn_tau.safetensors");
    EXPECT_EQ(v2.at("param.valid_indices_mask", {1500}).type, dtype::i64);
    EXPECT_EQ(v2.at("param.tau_b", {100}).type, dtype::f32);

    const auto p =
        elm::read_safetensors(std::string(ELM_GOLDEN_DIR) + "/pretrained_best_elm_neuron.safetensors");
    EXPECT_EQ(p.tensors.size(), 3u);
    const auto input = p.at("input", {2, 500, 1278}).to<float>();
    for (const float v : input) ASSERT_TRUE(v == -1.0f || v == 0.0f || v == 1.0f);
    EXPECT_EQ(p.at("output", {2, 500, 2}).type, dtype::f64);
    EXPECT_EQ(p.metadata.at("model"), "best_elm_neuron");
}

TEST(safetensors, every_golden_file_round_trips_byte_for_byte_in_content) {
    for (const auto& e : fs::directory_iterator(ELM_GOLDEN_DIR)) {
        if (e.path().extension() != ".safetensors") continue;
        const auto f = elm::read_safetensors(e.path().string());
        const auto again = elm::parse_safetensors(elm::serialize_safetensors(f), "again");
        ASSERT_EQ(again.tensors.size(), f.tensors.size()) << e.path();
        EXPECT_EQ(again.metadata, f.metadata);
        for (const auto& t : f.tensors) {
            const auto& u = again.at(t.name);
            EXPECT_EQ(u.type, t.type);
            EXPECT_EQ(u.shape, t.shape);
            EXPECT_TRUE(u.data == t.data) << t.name;
        }
    }
}

TEST(safetensors, round_trip_all_dtypes_sorted_aligned_header) {
    const auto f = sample_file();
    const auto bytes = elm::serialize_safetensors(f);
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    EXPECT_EQ((8 + n) % 8, 0u);
    const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, n);
    EXPECT_EQ(header.front(), '{');
    EXPECT_LT(header.find("\"__metadata__\""), header.find("\"a.weight\""));
    EXPECT_LT(header.find("\"a.weight\""), header.find("\"b\""));  // keys sorted
    const auto g = elm::parse_safetensors(bytes, "mem");
    EXPECT_EQ(g.metadata, f.metadata);
    ASSERT_EQ(g.tensors.size(), f.tensors.size());
    for (const auto& t : f.tensors) {
        const auto& u = g.at(t.name, t.shape);
        EXPECT_EQ(u.type, t.type) << t.name;
        EXPECT_TRUE(u.data == t.data) << t.name;
    }
    // Every tensor's data is aligned to its element size (larger dtypes first).
    const auto j = nlohmann::json::parse(header);
    for (const auto& t : g.tensors) {
        const auto begin = j.at(t.name).at("data_offsets").at(0).get<std::uint64_t>();
        EXPECT_EQ((8 + n + begin) % elm::dtype_size(t.type), 0u) << t.name;
    }
    EXPECT_EQ(g.at("c").to<std::int64_t>()[1], std::numeric_limits<std::int64_t>::max());
    EXPECT_EQ(g.at("mask").to<std::uint8_t>(), (std::vector<std::uint8_t>{1, 0, 1}));
    EXPECT_EQ(g.at("d").numel(), 1);
    EXPECT_EQ(g.at("empty").numel(), 0);
    EXPECT_EQ(g.at("b").to<double>()[0], 1.0 / 3.0);
}

TEST(safetensors, write_is_atomic_and_readable) {
    const auto dir = fs::temp_directory_path() /
                     ("elm_st_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
    fs::create_directories(dir);
    const auto path = (dir / "x.safetensors").string();
    elm::write_safetensors(path, sample_file());
    elm::write_safetensors(path, sample_file());  // overwrite in place
    const auto g = elm::read_safetensors(path);
    EXPECT_EQ(g.tensors.size(), 7u);
    EXPECT_EQ(g.source, path);
    std::size_t files = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
    EXPECT_EQ(files, 1u);  // no temporary left behind
    EXPECT_THROW(elm::write_safetensors((dir / "no" / "such" / "x.safetensors").string(), sample_file()),
                 elm::error);
    EXPECT_THROW(elm::read_safetensors((dir / "missing.safetensors").string()), elm::file_not_found_error);
    EXPECT_THROW(elm::read_safetensors(dir.string()), elm::error);
    fs::remove_all(dir);
}

TEST(safetensors, truncation_at_every_position_throws) {
    const auto bytes = elm::serialize_safetensors(sample_file());
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        const std::vector<std::byte> cut(bytes.begin(), bytes.begin() + std::ptrdiff_t(n));
        EXPECT_THROW(elm::parse_safetensors(cut, "cut"), elm::error) << "length " << n;
    }
    const auto small =
        elm::detail::read_file(std::string(ELM_GOLDEN_DIR) + "/v2_vanilla_one_memory.safetensors");
    for (std::size_t n = 0; n < small.size(); n += 7) {
        const std::vector<std::byte> cut(small.begin(), small.begin() + std::ptrdiff_t(n));
        EXPECT_THROW(elm::parse_safetensors(cut, "cut"), elm::error) << "length " << n;
    }
}

TEST(safetensors, malformed_headers_name_the_field) {
    expect_error(bytes_of("\x05\x00\x00"), "header");
    expect_error(bytes_of(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}"), "header");
    expect_error(bytes_of(std::string("\x00\x00\x00\x08\x00\x00\x00\x00", 8) + "{}"),
                 "header");  // 128 MB > cap
    expect_error(make_file("[1, 2]", 0), "header");
    expect_error(make_file("{\"a\": ", 0), "header");
    expect_error(make_file(" {}", 0), "header");
    expect_error(make_file("{\"a\": {\"dtype\": \"F8_E4M3\", \"shape\": [1], \"data_offsets\": [0, 2]}}", 2),
                 "a dtype");
    expect_error(make_file("{\"a\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4),
                 "a dtype");
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4),
                 "a shape");
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4),
                 "a shape");
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}}", 4),
                 "a shape");
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", 4),
                 "a data_offsets");
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 4),
                 "a data_offsets");
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4),
                 "a data_offsets");
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 4),
                 "a data_offsets");
    expect_error(
        make_file(
            "{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 4]}}",
            4),
        "a data_offsets");
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8),
                 "a data_offsets");  // hole
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                           " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [2, 6]}}",
                           8),
                 "data_offsets");  // overlap
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 5),
                 "data_offsets");  // trailing
    expect_error(make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                           " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                           8),
                 "a");  // duplicate
    expect_error(
        make_file(
            "{\"a\": {\"dtype\": \"F32\", \"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4),
        "dtype");
    expect_error(
        make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4], \"x\": 1}}", 4),
        "a");
    expect_error(make_file("{\"a\": [1, 2]}", 0), "a");
    expect_error(make_file("{\"__metadata__\": {\"k\": 1}}", 0), "__metadata__.k");
    expect_error(make_file("{\"__metadata__\": [\"k\"]}", 0), "__metadata__");
    expect_error(
        make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [[[[[1]]]]], \"data_offsets\": [0, 4]}}", 4),
        "header");
    expect_error(make_file("{\"a\": \"\xff\xfe\"}", 0), "header");  // not UTF-8
    // Valid edge cases: empty file body, scalar, zero-size tensor, whitespace padding.
    EXPECT_EQ(elm::parse_safetensors(make_file("{}      ", 0), "ok").tensors.size(), 0u);
    const auto ok = elm::parse_safetensors(
        make_file("{\"z\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [0, 0]},"
                  " \"s\": {\"dtype\": \"F64\", \"shape\": [], \"data_offsets\": [0, 8]}}",
                  8),
        "ok");
    EXPECT_EQ(ok.at("z").numel(), 0);
    EXPECT_EQ(ok.at("s").numel(), 1);
}

// A tensor of 16-bit elements (F16 or BF16) from their bit patterns.
template <std::size_t N>
elm::tensor sixteen_bit(dtype type, const std::uint16_t (&bits)[N]) {
    elm::tensor t;
    t.name = "t";
    t.type = type;
    t.shape = {static_cast<std::int64_t>(N)};
    t.data.resize(sizeof(bits));
    std::memcpy(t.data.data(), bits, sizeof(bits));
    return t;
}

TEST(tensor, conversions_are_exact_or_refused) {
    // F16: 1, smallest subnormal, largest normal, -inf, -0.
    const std::uint16_t halves[] = {0x3c00, 0x0001, 0x7bff, 0xfc00, 0x8000, 0x3555};
    const auto v = sixteen_bit(dtype::f16, halves).to<double>();
    EXPECT_EQ(v[0], 1.0);
    EXPECT_EQ(v[1], std::ldexp(1.0, -24));
    EXPECT_EQ(v[2], 65504.0);
    EXPECT_TRUE(std::isinf(v[3]) && v[3] < 0);
    EXPECT_TRUE(v[4] == 0.0 && std::signbit(v[4]));
    EXPECT_EQ(v[5], 0.333251953125);
    // BF16 (the upper half of a float32): 1, -2.5, the smallest normal, +inf, -0.
    const std::uint16_t brains[] = {0x3f80, 0xc020, 0x0080, 0x7f80, 0x8000};
    const auto w = sixteen_bit(dtype::bf16, brains).to<double>();
    EXPECT_EQ(w[0], 1.0);
    EXPECT_EQ(w[1], -2.5);
    EXPECT_EQ(w[2], std::ldexp(1.0, -126));
    EXPECT_TRUE(std::isinf(w[3]) && w[3] > 0);
    EXPECT_TRUE(w[4] == 0.0 && std::signbit(w[4]));
    EXPECT_STREQ(elm::to_string(dtype::bf16), "BF16");
    EXPECT_EQ(elm::dtype_size(dtype::bf16), 2u);

    const float frac[] = {1.0f, 1.5f};
    EXPECT_THROW(elm::make_tensor<float>("f", {2}, frac).to<std::int64_t>(), elm::error);
    const float nan[] = {std::nanf("")};
    EXPECT_THROW(elm::make_tensor<float>("f", {1}, nan).to<std::int32_t>(), elm::error);
    const double big[] = {1e19};
    EXPECT_THROW(elm::make_tensor<double>("f", {1}, big).to<std::int64_t>(), elm::error);
    const std::int64_t wide[] = {1ll << 40};
    EXPECT_THROW(elm::make_tensor<std::int64_t>("w", {1}, wide).to<std::int32_t>(), elm::error);
    EXPECT_EQ(elm::make_tensor<std::int64_t>("w", {1}, wide).to<double>()[0], std::ldexp(1.0, 40));
    auto b = elm::make_tensor<std::uint8_t>("b", {2}, std::vector<std::uint8_t>{1, 2});
    b.type = dtype::boolean;
    EXPECT_THROW(b.to<float>(), elm::error);
    EXPECT_THROW(elm::make_tensor<float>("bad", {3}, frac), elm::error);
    EXPECT_THROW(elm::make_tensor<float>("bad", {-1, -2}, frac), elm::error);
    auto broken = elm::make_tensor<float>("broken", {2}, frac);
    broken.data.pop_back();
    EXPECT_THROW(broken.to<float>(), elm::error);
    elm::tensor_file f;
    f.tensors.push_back(broken);
    EXPECT_THROW(elm::serialize_safetensors(f), elm::error);
    EXPECT_STREQ(elm::to_string(dtype::boolean), "BOOL");
    EXPECT_EQ(elm::dtype_size(dtype::i16), 2u);
}

TEST(tensor_file, at_names_file_and_shapes) {
    const auto f = sample_file();
    EXPECT_EQ(f.find("nope"), nullptr);
    try {
        (void)f.at("nope");
        FAIL();
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), "sample");
        EXPECT_EQ(e.field(), "nope");
    }
    try {
        (void)f.at("a.weight", {3, 2});
        FAIL();
    } catch (const elm::error& e) {
        EXPECT_EQ(e.field(), "a.weight");
        EXPECT_NE(std::string(e.what()).find("[3, 2]"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos);
    }
}

}  // namespace
