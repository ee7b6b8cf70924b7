// .npy (numpy.lib.format, versions 1.0-3.0): "\x93NUMPY", major, minor, header length (u16 for v1, u32
// for v2/v3), a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded
// with spaces and '\n', then the raw data. We read and write little-endian numeric dtypes in C order;
// the header is parsed by a small literal parser (never Python's eval).

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include <cstring>
#include <limits>

#include "io/io_detail.hpp"

namespace elm {
namespace detail {

namespace {

constexpr std::size_t max_header_bytes = 1u << 20;

struct npy_descr {
    const char* descr;
    dtype type;
};
// What numpy writes, plus '<' spellings of 1-byte types (byte order does not apply to them).
constexpr npy_descr npy_descrs[] = {
    {"<f2", dtype::f16},     {"<f4", dtype::f32}, {"<f8", dtype::f64}, {"|i1", dtype::i8},
    {"<i2", dtype::i16},     {"<i4", dtype::i32}, {"<i8", dtype::i64}, {"|u1", dtype::u8},
    {"|b1", dtype::boolean}, {"<i1", dtype::i8},  {"<u1", dtype::u8},  {"<b1", dtype::boolean},
};

// Parser of the header's dict literal: string keys; values are strings, True/False or int tuples.
class header_parser {
public:
    header_parser(std::string_view text, std::string_view source) : s_(text), src_(source) {}

    void parse(std::string& descr, bool& fortran, std::vector<std::int64_t>& shape, std::uint64_t max_numel) {
        bool has_descr = false, has_fortran = false, has_shape = false;
        expect('{');
        while (true) {
            ws();
            if (peek() == '}') break;
            const auto key = string();
            ws();
            expect(':');
            ws();
            if (key == "descr" && !has_descr) {
                descr = string();
                has_descr = true;
            } else if (key == "fortran_order" && !has_fortran) {
                fortran = boolean();
                has_fortran = true;
            } else if (key == "shape" && !has_shape) {
                tuple(shape, max_numel);
                has_shape = true;
            } else {
                fail("the keys descr, fortran_order, shape (once each)", "key '" + key + "'");
            }
            ws();
            if (peek() == ',')
                ++pos_;
            else if (peek() != '}')
                fail("',' or '}'", std::string("'") + s_[pos_] + "'");
        }
        ++pos_;
        ws();
        if (pos_ != s_.size())
            fail("only whitespace after the dict", "'" + std::string(s_.substr(pos_, 20)) + "'");
        if (!has_descr || !has_fortran || !has_shape)
            fail("the keys descr, fortran_order and shape", "some missing");
    }

private:
    [[noreturn]] void fail(std::string expected, std::string got) const {
        throw elm::error(std::string(src_), "header", std::move(expected),
                         std::move(got) + " at header byte " + std::to_string(pos_));
    }
    char peek() const {
        if (pos_ >= s_.size()) fail("a complete header dict", "end of header");
        return s_[pos_];
    }
    void ws() {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r'))
            ++pos_;
    }
    void expect(char c) {
        if (peek() != c) fail(std::string("'") + c + "'", std::string("'") + s_[pos_] + "'");
        ++pos_;
    }
    std::string string() {
        const char q = peek();
        if (q != '\'' && q != '"') fail("a quoted string", std::string("'") + q + "'");
        const auto start = ++pos_;
        while (peek() != q)
            if (s_[pos_++] == '\\') fail("a string without escapes", "a backslash");
        return std::string(s_.substr(start, pos_++ - start));
    }
    bool boolean() {
        if (s_.substr(pos_, 4) == "True") return pos_ += 4, true;
        if (s_.substr(pos_, 5) == "False") return pos_ += 5, false;
        fail("True or False", "'" + std::string(s_.substr(pos_, 8)) + "'");
    }
    void tuple(std::vector<std::int64_t>& shape, std::uint64_t max_numel) {
        expect('(');
        std::uint64_t numel = 1;
        while (true) {
            ws();
            if (peek() == ')') break;
            std::uint64_t v = 0;
            if (peek() < '0' || peek() > '9')
                fail("a non-negative integer", std::string("'") + s_[pos_] + "'");
            while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
                const auto digit = std::uint64_t(s_[pos_++] - '0');
                if (v > ((std::uint64_t(1) << 62) - digit) / 10)
                    fail("a dimension of at most 2^62", "a larger one");
                v = v * 10 + digit;
            }
            if (shape.size() >= 32) fail("at most 32 dimensions", "more");
            shape.push_back(static_cast<std::int64_t>(v));
            numel = (v != 0 && numel > max_numel / v) ? max_numel + 1 : numel * v;  // saturates
            ws();
            if (peek() == ',')
                ++pos_;
            else if (peek() != ')')
                fail("',' or ')'", std::string("'") + s_[pos_] + "'");
        }
        ++pos_;
        if (numel > max_numel) fail("a shape that fits the data", "a larger one");
    }

    std::string_view s_;
    std::string_view src_;
    std::size_t pos_ = 0;
};

std::string shape_literal(const std::vector<std::int64_t>& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace

tensor parse_npy(std::span<const std::byte> bytes, std::string_view source) {
    const std::string src(source);
    const auto u8 = [&](std::size_t i) { return std::to_integer<std::uint8_t>(bytes[i]); };
    if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
        throw elm::error(src, "magic", "\\x93NUMPY", "something else", "not a .npy file");
    const auto major = u8(6), minor = u8(7);
    if (major < 1 || major > 3 || minor != 0)
        throw elm::error(src, "version", "1.0, 2.0 or 3.0",
                         std::to_string(major) + "." + std::to_string(minor));
    std::size_t start = 10, len = std::size_t(u8(8)) | std::size_t(u8(9)) << 8;
    if (major >= 2) {
        if (bytes.size() < 12) throw elm::error(src, "header", "a 4-byte header length", "truncated file");
        start = 12;
        len |= std::size_t(u8(10)) << 16 | std::size_t(u8(11)) << 24;
    }
    if (len > max_header_bytes || len > bytes.size() - start)
        throw elm::error(
            src, "header",
            "a header length <= " + std::to_string(std::min(max_header_bytes, bytes.size() - start)),
            std::to_string(len), "truncated file?");
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + start, len);
    const std::size_t data_size = bytes.size() - start - len;

    std::string descr;
    bool fortran = false;
    tensor t;
    t.name = src;
    header_parser(text, source).parse(descr, fortran, t.shape, data_size);
    const npy_descr* found = nullptr;
    for (const auto& d : npy_descrs)
        if (descr == d.descr) found = &d;
    if (found == nullptr)
        throw elm::error(src, "descr", "one of <f2 <f4 <f8 |i1 <i2 <i4 <i8 |u1 |b1 (little-endian numeric)",
                         "'" + descr + "'");
    t.type = found->type;
    const auto expected = static_cast<std::uint64_t>(t.numel()) * dtype_size(t.type);  // numel <= data_size
    if (expected != data_size)
        throw elm::error(
            src, "data",
            std::to_string(expected) + " bytes for shape " + shape_literal(t.shape) + " " + descr,
            std::to_string(data_size) + " bytes");
    t.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(start + len), bytes.end());
    if (fortran && t.shape.size() > 1) {
        // numpy writes non-C-contiguous arrays (e.g. transposes) in Fortran order: reorder to row-major.
        const std::size_t elem = dtype_size(t.type), rank = t.shape.size();
        std::vector<std::int64_t> column_stride(rank, 1), index(rank, 0);
        for (std::size_t j = 1; j < rank; ++j) column_stride[j] = column_stride[j - 1] * t.shape[j - 1];
        std::vector<std::byte> row_major(t.data.size());
        for (std::int64_t r = 0; r < t.numel(); ++r) {
            std::int64_t from = 0;
            for (std::size_t j = 0; j < rank; ++j) from += index[j] * column_stride[j];
            std::memcpy(row_major.data() + static_cast<std::size_t>(r) * elem,
                        t.data.data() + static_cast<std::size_t>(from) * elem, elem);
            for (std::size_t j = rank; j-- > 0;) {  // next row-major multi-index
                if (++index[j] < t.shape[j]) break;
                index[j] = 0;
            }
        }
        t.data = std::move(row_major);
    }
    return t;
}

std::vector<std::byte> serialize_npy(const tensor& t, std::string_view source) {
    const char* descr = nullptr;
    for (const auto& d : npy_descrs)
        if (d.type == t.type && descr == nullptr) descr = d.descr;
    std::int64_t n = 0;
    if (!checked_numel(t.shape, n))
        throw elm::error(std::string(source), t.name, "non-negative dimensions", shape_literal(t.shape));
    if (descr == nullptr || t.data.size() / dtype_size(t.type) != static_cast<std::uint64_t>(n) ||
        t.data.size() % dtype_size(t.type) != 0)
        throw elm::error(std::string(source), t.name, std::to_string(n) + " x " + to_string(t.type),
                         std::to_string(t.data.size()) + " bytes");
    std::string header = std::string("{'descr': '") + descr +
                         "', 'fortran_order': False, 'shape': " + shape_literal(t.shape) + ", }";
    // numpy pads so that the data starts at a multiple of 64 bytes, the header ending in '\n'.
    const bool v2 = header.size() + 1 + 10 > 65535;
    const std::size_t prefix = v2 ? 12 : 10;
    header.append(63 - (prefix + header.size()) % 64, ' ');
    header += '\n';
    std::vector<std::byte> out(prefix + header.size());
    std::memcpy(out.data(), "\x93NUMPY", 6);
    out[6] = std::byte(v2 ? 2 : 1);
    out[7] = std::byte(0);
    for (std::size_t i = 0; i < prefix - 8; ++i) out[8 + i] = std::byte((header.size() >> (8 * i)) & 0xff);
    std::memcpy(out.data() + prefix, header.data(), header.size());
    out.insert(out.end(), t.data.begin(), t.data.end());
    return out;
}

}  // namespace detail

tensor read_npy(const std::string& path) {
    const auto bytes = detail::read_file(path);
    return detail::parse_npy(bytes, path);
}

void write_npy(const std::string& path, const tensor& t) {
    detail::write_file_atomic(path, detail::serialize_npy(t, path));
}

}  // namespace elm
