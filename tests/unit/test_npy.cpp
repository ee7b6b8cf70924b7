// .npy reader/writer: byte-exact agreement with what numpy writes, every supported dtype, versions 1-3,
// and malformed headers (Fortran order, big-endian, bad literals, truncation) that must throw elm::error.

#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include "io/io_detail.hpp"

namespace {

namespace fs = std::filesystem;
using elm::dtype;
using namespace std::literals;

std::vector<std::byte> bytes_of(std::string_view s) {
    std::vector<std::byte> b(s.size());
    if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
    return b;
}

// A version-1 .npy with this header dict (padded as numpy pads) and data.
std::string npy_v1(std::string dict, std::string_view data) {
    dict.append(63 - (10 + dict.size()) % 64, ' ');
    dict += '\n';
    std::string s = "\x93NUMPY\x01\x00"s;
    s += static_cast<char>(dict.size() & 0xff);
    s += static_cast<char>(dict.size() >> 8);
    return s + dict + std::string(data);
}

void expect_error(std::string_view file, const std::string& field) {
    try {
        elm::detail::parse_npy(bytes_of(file), "x.npy");
        FAIL() << "no error; expected one naming " << field;
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), "x.npy");
        EXPECT_EQ(e.field(), field) << e.what();
    }
}

TEST(npy, writes_exactly_what_numpy_writes) {
    // numpy 1.x: np.save(f, np.arange(6, dtype='<f4').reshape(2, 3)) -> 128-byte header.
    const float v[] = {0, 1, 2, 3, 4, 5};
    const auto t = elm::make_tensor<float>("x", {2, 3}, v);
    const auto b = elm::detail::serialize_npy(t, "x.npy");
    const std::string expected_header =
        "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"s;
    ASSERT_EQ(b.size(), 128u + sizeof(v));
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.data()), expected_header.size()), expected_header);
    EXPECT_EQ(std::to_integer<char>(b[127]), '\n');
    EXPECT_EQ(std::to_integer<char>(b[126]), ' ');
    const auto one = elm::detail::serialize_npy(
        elm::make_tensor<std::int64_t>("y", {3}, std::vector<std::int64_t>{1, 2, 3}), "y");
    EXPECT_NE(std::string(reinterpret_cast<const char*>(one.data()), 100).find("'shape': (3,), }"),
              std::string::npos);
    const auto scalar =
        elm::detail::serialize_npy(elm::make_tensor<double>("z", {}, std::vector<double>{2.5}), "z");
    EXPECT_NE(std::string(reinterpret_cast<const char*>(scalar.data()), 100).find("'shape': (), }"),
              std::string::npos);
}

TEST(npy, round_trip_every_dtype_through_files) {
    const auto dir = fs::temp_directory_path() / ("elm_npy_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::vector<elm::tensor> ts;
    ts.push_back(elm::make_tensor<float>("f4", {2, 2}, std::vector<float>{1.5f, -2, 0, 1e30f}));
    ts.push_back(elm::make_tensor<double>("f8", {1, 3}, std::vector<double>{1.0 / 3, -0.0, 7}));
    ts.push_back(elm::make_tensor<std::int64_t>(
        "i8", {2}, std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min(), 9}));
    ts.push_back(elm::make_tensor<std::int32_t>("i4", {1}, std::vector<std::int32_t>{-3}));
    ts.push_back(elm::make_tensor<std::uint8_t>("u1", {2, 1, 2}, std::vector<std::uint8_t>{0, 1, 2, 255}));
    const bool mask[] = {true, false, true};
    ts.push_back(elm::make_tensor<bool>("b1", {3}, mask));
    ts.push_back(elm::make_tensor<float>("empty", {0, 3}, std::span<const float>()));
    elm::tensor h;
    h.type = dtype::f16;
    h.shape = {2};
    h.data = bytes_of("\x00\x3c\x00\xc0"sv);
    ts.push_back(h);
    for (const auto& t : ts) {
        const auto path = (dir / "t.npy").string();
        elm::write_npy(path, t);
        const auto back = elm::read_npy(path);
        EXPECT_EQ(back.type, t.type) << t.name;
        EXPECT_EQ(back.shape, t.shape) << t.name;
        EXPECT_TRUE(back.data == t.data) << t.name;
    }
    EXPECT_EQ(elm::read_npy((dir / "t.npy").string()).to<float>(), (std::vector<float>{1.0f, -2.0f}));
    EXPECT_THROW(elm::read_npy((dir / "none.npy").string()), elm::file_not_found_error);
    fs::remove_all(dir);
}

TEST(npy, versions_and_header_spellings) {
    const std::string data = "\x01\x00\x00\x00\x02\x00\x00\x00"s;
    auto t = elm::detail::parse_npy(
        bytes_of(npy_v1("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", data)), "a");
    EXPECT_EQ(t.to<std::int64_t>(), (std::vector<std::int64_t>{1, 2}));
    // Key order, double quotes, no trailing comma, extra spaces: all valid Python literals numpy may read.
    t = elm::detail::parse_npy(
        bytes_of(npy_v1("{ \"shape\" : ( 2 , ) ,'fortran_order':False,'descr':'<i4'}", data)), "b");
    EXPECT_EQ(t.shape, (std::vector<std::int64_t>{2}));
    // Version 2 and 3: 4-byte header length.
    for (const char version : {'\x02', '\x03'}) {
        std::string dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2), }";
        dict.append(63 - (12 + dict.size()) % 64, ' ');
        dict += '\n';
        std::string s = "\x93NUMPY"s + version + '\0';
        for (int i = 0; i < 4; ++i) s += static_cast<char>((dict.size() >> (8 * i)) & 0xff);
        t = elm::detail::parse_npy(bytes_of(s + dict + data), "v");
        EXPECT_EQ(t.shape, (std::vector<std::int64_t>{1, 2}));
    }
}

TEST(npy, fortran_order_is_read_as_row_major) {
    // np.save of x.T for x = arange(24, dtype=int8).reshape(4, 3, 2) is stored Fortran-ordered: x's bytes,
    // shape (2, 3, 4). Element [i][j][k] of x.T is x[k][j][i] = 6k + 2j + i.
    std::string data;
    for (int v = 0; v < 24; ++v) data += static_cast<char>(v);
    const auto t = elm::detail::parse_npy(
        bytes_of(npy_v1("{'descr': '|i1', 'fortran_order': True, 'shape': (2, 3, 4), }", data)), "f");
    ASSERT_EQ(t.shape, (std::vector<std::int64_t>{2, 3, 4}));
    const auto v = t.to<std::int64_t>();
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 4; ++k)
                EXPECT_EQ(v[static_cast<std::size_t>((i * 3 + j) * 4 + k)], 6 * k + 2 * j + i);
}

TEST(npy, malformed_files_name_the_field) {
    const std::string d4 = "\0\0\0\0"s;
    expect_error("NUMPY", "magic");
    expect_error("\x93NUMPZ\x01\x00\x00\x00"sv, "magic");
    expect_error("\x93NUMPY\x04\x00\x00\x00"sv, "version");
    expect_error("\x93NUMPY\x01\x00\xff\x00{}"sv, "header");
    expect_error(npy_v1("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", d4), "descr");
    expect_error(npy_v1("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", d4), "descr");
    expect_error(npy_v1("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", d4), "header");
    expect_error(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", d4),
                 "data");  // more than the data
    expect_error(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", d4 + "x"), "data");
    expect_error(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", d4), "header");
    expect_error(npy_v1("{'descr': '<f4', 'fortran_order': False}", d4), "header");
    expect_error(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", d4), "header");
    expect_error(npy_v1("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", d4),
                 "header");
    expect_error(npy_v1("{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}", d4), "header");
    expect_error(npy_v1("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", d4), "header");
    expect_error(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (1 2)}", d4), "header");
    expect_error(npy_v1("{'descr': '<f\\4', 'fortran_order': False, 'shape': (1,)}", d4), "header");
    expect_error(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", d4),
                 "header");
    expect_error(
        npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296)}", d4),
        "header");
    expect_error(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", d4), "header");
    expect_error(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (1,", ""), "header");
    // A valid empty array with huge other dimensions: numel 0, no overflow.
    const auto e = elm::detail::parse_npy(bytes_of(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                                          "(4611686018427387904, 0, 4611686018427387904)}",
                                                          "")),
                                          "e");
    EXPECT_EQ(e.numel(), 0);
    // Truncated anywhere: an error.
    const auto full =
        npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }", std::string(16, '\x01'));
    for (std::size_t n = 0; n < full.size(); ++n)
        EXPECT_THROW(elm::detail::parse_npy(bytes_of(full.substr(0, n)), "cut"), elm::error) << n;
}

}  // namespace
