// safetensors (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes of
// JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data.
// Checks follow the reference implementation's validation: known dtype, offsets inside the data and
// covering it without holes or overlaps, byte length = numel · dtype size, no duplicate keys.
// Also home of the tensor helpers (numel, to<T>, make_tensor) and the file helpers of io_detail.hpp.

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <type_traits>

#include "io/io_detail.hpp"

namespace elm {

namespace {

constexpr std::uint64_t max_header_bytes = 100u << 20;  // the reference implementation's limit
constexpr std::size_t max_json_depth = 4;               // {"t": {"shape": [..]}} is depth 3

struct dtype_name {
    dtype type;
    const char* name;
    std::size_t size;
};
constexpr dtype_name dtype_names[] = {
    {dtype::f16, "F16", 2},      {dtype::f32, "F32", 4},   {dtype::f64, "F64", 8}, {dtype::i8, "I8", 1},
    {dtype::i16, "I16", 2},      {dtype::i32, "I32", 4},   {dtype::i64, "I64", 8}, {dtype::u8, "U8", 1},
    {dtype::boolean, "BOOL", 1}, {dtype::bf16, "BF16", 2},
};

std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

template <class T>
constexpr dtype dtype_of() {
    if constexpr (std::is_same_v<T, float>)
        return dtype::f32;
    else if constexpr (std::is_same_v<T, double>)
        return dtype::f64;
    else if constexpr (std::is_same_v<T, std::int64_t>)
        return dtype::i64;
    else if constexpr (std::is_same_v<T, std::int32_t>)
        return dtype::i32;
    else if constexpr (std::is_same_v<T, std::int16_t>)
        return dtype::i16;
    else if constexpr (std::is_same_v<T, std::int8_t>)
        return dtype::i8;
    else if constexpr (std::is_same_v<T, std::uint8_t>)
        return dtype::u8;
    else if constexpr (std::is_same_v<T, bool>)
        return dtype::boolean;
}

template <class S>
S load(const std::byte* p) {
    S v;
    std::memcpy(&v, p, sizeof(S));
    return v;
}

// One element as double or int64 (exact for every dtype: int64 goes through the integer path).
template <class T>
T convert(const tensor& t, std::size_t i) {
    const std::byte* p = t.data.data() + i * dtype_size(t.type);
    double f = 0;
    switch (t.type) {
        case dtype::f16:
            f = detail::half_to_float(load<std::uint16_t>(p));
            break;
        case dtype::bf16:  // the upper half of a float32
            f = std::bit_cast<float>(static_cast<std::uint32_t>(load<std::uint16_t>(p)) << 16);
            break;
        case dtype::f32:
            f = load<float>(p);
            break;
        case dtype::f64:
            f = load<double>(p);
            break;
        case dtype::boolean: {
            const auto b = load<std::uint8_t>(p);
            if (b > 1)
                throw elm::error("", t.name, "BOOL bytes 0 or 1",
                                 std::to_string(b) + " at element " + std::to_string(i));
            return static_cast<T>(b);
        }
        default: {
            std::int64_t v = 0;
            if (t.type == dtype::i8)
                v = load<std::int8_t>(p);
            else if (t.type == dtype::i16)
                v = load<std::int16_t>(p);
            else if (t.type == dtype::i32)
                v = load<std::int32_t>(p);
            else if (t.type == dtype::i64)
                v = load<std::int64_t>(p);
            else
                v = load<std::uint8_t>(p);
            if constexpr (std::is_integral_v<T>) {
                if (v < std::int64_t(std::numeric_limits<T>::min()) ||
                    v > std::int64_t(std::numeric_limits<T>::max()))
                    throw elm::error("", t.name, "values that fit the requested integer type",
                                     std::to_string(v) + " at element " + std::to_string(i));
            }
            return static_cast<T>(v);
        }
    }
    if constexpr (std::is_integral_v<T>) {
        // Float -> int only for exact integers in range (a cast of anything else is undefined behaviour).
        if (!(f == std::trunc(f) && f >= double(std::numeric_limits<T>::min()) &&
              f < double(std::numeric_limits<T>::max()) + 1.0))
            throw elm::error("", t.name, "integral values in range",
                             std::to_string(f) + " at element " + std::to_string(i));
    }
    return static_cast<T>(f);
}

}  // namespace

const char* to_string(dtype t) {
    for (const auto& d : dtype_names)
        if (d.type == t) return d.name;
    return "?";
}

std::size_t dtype_size(dtype t) {
    for (const auto& d : dtype_names)
        if (d.type == t) return d.size;
    return 0;
}

std::int64_t tensor::numel() const {
    // A zero anywhere first: [2^40, 2^40, 0] is a valid empty shape whose running product would overflow.
    for (const auto d : shape)
        if (d == 0) return 0;
    std::int64_t n = 1;
    for (const auto d : shape) n *= d;
    return n;
}

template <class T>
std::vector<T> tensor::to() const {
    std::int64_t count = 0;
    const auto esz = dtype_size(type);
    if (!detail::checked_numel(shape, count) || esz == 0 || data.size() % esz != 0 ||
        data.size() / esz != static_cast<std::uint64_t>(count))
        throw elm::error(
            "", name, "numel x " + std::string(to_string(type)) + " bytes for shape " + shape_string(shape),
            std::to_string(data.size()) + " bytes");
    const auto n = static_cast<std::size_t>(count);
    std::vector<T> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = convert<T>(*this, i);
    return out;
}

template <class T>
tensor make_tensor(std::string name, std::vector<std::int64_t> shape, std::span<const T> values) {
    tensor t;
    t.name = std::move(name);
    t.type = dtype_of<T>();
    t.shape = std::move(shape);
    std::int64_t n = 0;
    if (!detail::checked_numel(t.shape, n))
        throw elm::error("", t.name, "non-negative dimensions", shape_string(t.shape));
    if (static_cast<std::size_t>(n) != values.size())
        throw elm::error("", t.name, std::to_string(n) + " values for shape " + shape_string(t.shape),
                         std::to_string(values.size()) + " values");
    t.data.resize(values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(t.data.data(), values.data(), t.data.size());
    return t;
}

#define ELM_TENSOR_INSTANTIATE(T)                  \
    template std::vector<T> tensor::to<T>() const; \
    template tensor make_tensor<T>(std::string, std::vector<std::int64_t>, std::span<const T>);
ELM_TENSOR_INSTANTIATE(float)
ELM_TENSOR_INSTANTIATE(double)
ELM_TENSOR_INSTANTIATE(std::int64_t)
ELM_TENSOR_INSTANTIATE(std::int32_t)
ELM_TENSOR_INSTANTIATE(std::uint8_t)
#undef ELM_TENSOR_INSTANTIATE
// BOOL tensors: make_tensor<bool> from a bool array (std::vector<bool> has no span; use std::uint8_t
// with make_tensor<std::uint8_t> and set type = dtype::boolean, or read masks with to<std::uint8_t>()).
template tensor make_tensor<bool>(std::string, std::vector<std::int64_t>, std::span<const bool>);

const tensor* tensor_file::find(std::string_view name) const {
    for (const auto& t : tensors)
        if (t.name == name) return &t;
    return nullptr;
}

const tensor& tensor_file::at(std::string_view name) const {
    if (const auto* t = find(name)) return *t;
    // torch.nn.DataParallel saves every name with "module." in front.
    if (find("module." + std::string(name)) != nullptr)
        throw elm::error(source, std::string(name), "a tensor named " + std::string(name),
                         "module." + std::string(name),
                         "saved from torch.nn.DataParallel: save model.module.state_dict() instead");
    throw elm::error(source, std::string(name), "a tensor named " + std::string(name), "missing");
}

const tensor& tensor_file::at(std::string_view name, const std::vector<std::int64_t>& expected_shape) const {
    const auto& t = at(name);
    if (t.shape != expected_shape)
        throw elm::error(source, std::string(name), "shape " + shape_string(expected_shape),
                         "shape " + shape_string(t.shape));
    return t;
}

tensor_file parse_safetensors(std::span<const std::byte> bytes, std::string_view source) {
    const std::string src(source);
    if (bytes.size() < 8)
        throw elm::error(src, "header", "at least 8 bytes", std::to_string(bytes.size()) + " bytes");
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i)
        n |= std::uint64_t(std::to_integer<std::uint8_t>(bytes[std::size_t(i)])) << (8 * i);
    if (n > max_header_bytes || n > bytes.size() - 8)
        throw elm::error(src, "header",
                         "a header length <= min(100 MB, " + std::to_string(bytes.size() - 8) + ")",
                         std::to_string(n), "not a safetensors file, or truncated");
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, static_cast<std::size_t>(n));
    if (text.empty() || text[0] != '{')
        throw elm::error(src, "header", "a JSON object starting with '{'", "something else");

    const nlohmann::json j = detail::parse_json_strict(text, src, "header", max_json_depth);
    if (!j.is_object()) throw elm::error(src, "header", "a JSON object", j.type_name());

    const std::uint64_t data_size = bytes.size() - 8 - n;
    const std::byte* data = bytes.data() + 8 + n;
    tensor_file out;
    out.source = src;
    struct span_ref {
        std::uint64_t begin, end;
        std::size_t index;
    };
    std::vector<span_ref> spans;
    for (const auto& [name, info] : j.items()) {
        if (name == "__metadata__") {
            if (!info.is_object())
                throw elm::error(src, "__metadata__", "a map of strings", info.type_name());
            for (const auto& [k, v] : info.items()) {
                if (!v.is_string()) throw elm::error(src, "__metadata__." + k, "a string", v.type_name());
                out.metadata[k] = v.get<std::string>();
            }
            continue;
        }
        if (!info.is_object() || info.size() != 3 || !info.contains("dtype") || !info.contains("shape") ||
            !info.contains("data_offsets"))
            throw elm::error(src, name, "{dtype, shape, data_offsets}",
                             info.dump(-1, ' ', true).substr(0, 200));
        tensor t;
        t.name = name;
        const auto& dt = info["dtype"];
        const dtype_name* found = nullptr;
        for (const auto& d : dtype_names)
            if (dt.is_string() && dt.get<std::string>() == d.name) found = &d;
        if (found == nullptr) {
            std::string known;
            for (const auto& d : dtype_names) known += (known.empty() ? "" : ", ") + std::string(d.name);
            throw elm::error(src, name + " dtype", "one of " + known, dt.dump(-1, ' ', true).substr(0, 100));
        }
        t.type = found->type;
        const auto& shape = info["shape"];
        if (!shape.is_array()) throw elm::error(src, name + " shape", "a list of sizes", shape.type_name());
        std::uint64_t numel = 1;
        for (const auto& d : shape) {
            if (!d.is_number_unsigned())
                throw elm::error(src, name + " shape", "non-negative integers", shape.dump());
            const auto v = d.get<std::uint64_t>();
            if (v > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
                throw elm::error(src, name + " shape", "sizes below 2^63", shape.dump());
            // Saturate: anything larger than the data cannot match the byte length anyway.
            numel = (v != 0 && numel > data_size / v) ? data_size + 1 : numel * v;
            t.shape.push_back(static_cast<std::int64_t>(v));
        }
        const auto& off = info["data_offsets"];
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
            !off[1].is_number_unsigned())
            throw elm::error(src, name + " data_offsets", "[begin, end]",
                             off.dump(-1, ' ', true).substr(0, 100));
        const auto begin = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
        if (begin > end || end > data_size)
            throw elm::error(src, name + " data_offsets", "0 <= begin <= end <= " + std::to_string(data_size),
                             off.dump(), "truncated file?");
        if (numel > data_size || numel * found->size != end - begin)
            throw elm::error(src, name + " data_offsets",
                             std::to_string(end - begin) + " bytes = numel x " + std::to_string(found->size),
                             "shape " + shape.dump());
        t.data.assign(data + begin, data + end);
        spans.push_back({begin, end, out.tensors.size()});
        out.tensors.push_back(std::move(t));
    }
    // The tensors must tile the data exactly (no holes, no overlaps, nothing after the last one).
    std::sort(spans.begin(), spans.end(), [](const span_ref& a, const span_ref& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t expected = 0;
    for (const auto& s : spans) {
        if (s.begin != expected)
            throw elm::error(src, out.tensors[s.index].name + " data_offsets",
                             "begin = " + std::to_string(expected), std::to_string(s.begin),
                             "tensors must cover the data without holes or overlaps");
        expected = s.end;
    }
    if (expected != data_size)
        throw elm::error(src, "data_offsets", std::to_string(expected) + " data bytes",
                         std::to_string(data_size) + " bytes", "trailing bytes after the last tensor");
    return out;
}

std::vector<std::byte> serialize_safetensors(const tensor_file& file) {
    // Data order: larger dtypes first, then by name, so that every tensor is aligned to its dtype size
    // (the header is padded to a multiple of 8), as the reference implementation does.
    std::vector<const tensor*> order;
    std::set<std::string_view> names;
    for (const auto& t : file.tensors) {
        if (t.name.empty() || t.name == "__metadata__" || !names.insert(t.name).second)
            throw elm::error(file.source, t.name, "a unique, non-empty tensor name", "'" + t.name + "'");
        std::int64_t n = 0;
        if (!detail::checked_numel(t.shape, n))
            throw elm::error(file.source, t.name, "non-negative dimensions", shape_string(t.shape));
        if (dtype_size(t.type) == 0 || t.data.size() / dtype_size(t.type) != static_cast<std::uint64_t>(n) ||
            t.data.size() % dtype_size(t.type) != 0)
            throw elm::error(file.source, t.name, std::to_string(t.numel()) + " x " + to_string(t.type),
                             std::to_string(t.data.size()) + " bytes");
        order.push_back(&t);
    }
    std::sort(order.begin(), order.end(), [](const tensor* a, const tensor* b) {
        const auto sa = dtype_size(a->type), sb = dtype_size(b->type);
        return sa != sb ? sa > sb : a->name < b->name;
    });
    nlohmann::json header = nlohmann::json::object();  // std::map: keys come out sorted
    if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
    std::uint64_t offset = 0;
    for (const auto* t : order) {
        header[t->name] = {{"dtype", to_string(t->type)},
                           {"shape", t->shape},
                           {"data_offsets", {offset, offset + t->data.size()}}};
        offset += t->data.size();
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception& e) {
        throw elm::error(file.source, "header", "UTF-8 names and metadata", e.what());
    }
    text.append((8 - (text.size() % 8)) % 8, ' ');
    std::vector<std::byte> out(8 + text.size());
    for (int i = 0; i < 8; ++i) out[std::size_t(i)] = std::byte((text.size() >> (8 * i)) & 0xff);
    std::memcpy(out.data() + 8, text.data(), text.size());
    out.reserve(out.size() + offset);
    for (const auto* t : order) out.insert(out.end(), t->data.begin(), t->data.end());
    return out;
}

tensor_file read_safetensors(const std::string& path) {
    const auto bytes = detail::read_file(path);
    return parse_safetensors(bytes, path);
}

void write_safetensors(const std::string& path, const tensor_file& file) {
    tensor_file named = file;
    if (named.source.empty()) named.source = path;
    detail::write_file_atomic(path, serialize_safetensors(named));
}

namespace detail {

bool checked_numel(const std::vector<std::int64_t>& shape, std::int64_t& numel) {
    std::int64_t n = 1;
    bool zero = false, overflow = false;
    for (const auto d : shape) {
        if (d < 0) return false;
        zero = zero || d == 0;
        overflow = overflow || __builtin_mul_overflow(n, d == 0 ? 1 : d, &n);
    }
    if (zero) n = 0;
    numel = n;
    return zero || !overflow;
}

float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h >> 15) << 31;
    const std::uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {  // zero or subnormal: mant · 2^-24, exact in float
        const float v = std::ldexp(static_cast<float>(mant), -24);
        return sign ? -v : v;
    }
    if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / nan
    return std::bit_cast<float>(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

std::vector<std::byte> read_file(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const auto st = fs::status(path, ec);
    if (ec || !fs::exists(st)) throw file_not_found_error(path);
    if (fs::is_directory(st)) throw elm::error(path, "path", "a file", "a directory");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw elm::error(path, "path", "a readable file", std::strerror(errno));
    f.seekg(0, std::ios::end);
    const auto size = f.tellg();
    if (size < 0) throw elm::error(path, "path", "a regular file", "a file without size");
    f.seekg(0, std::ios::beg);
    std::vector<std::byte> out(static_cast<std::size_t>(size));
    if (!out.empty() &&
        !f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size())))
        throw elm::error(path, "path", std::to_string(out.size()) + " readable bytes", "a read error");
    return out;
}

void write_file_atomic(const std::string& path, std::span<const std::byte> bytes) {
    namespace fs = std::filesystem;
    static std::atomic<unsigned> counter{0};
    const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) throw elm::error(path, "path", "a writable folder", std::strerror(errno));
    const auto fail = [&](const char* what) {
        const std::string msg = std::strerror(errno);
        ::close(fd);
        ::unlink(tmp.c_str());
        throw elm::error(path, "path", what, msg);
    };
    std::size_t done = 0;
    while (done < bytes.size()) {
        const auto r = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) fail("all bytes written");
        done += static_cast<std::size_t>(r);
    }
    if (::fsync(fd) != 0) fail("data flushed to disk");
    if (::close(fd) != 0) {
        const std::string msg = std::strerror(errno);
        ::unlink(tmp.c_str());
        throw elm::error(path, "path", "the file closed", msg);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string msg = std::strerror(errno);
        ::unlink(tmp.c_str());
        throw elm::error(path, "path", "the file renamed into place", msg);
    }
    // Make the rename itself durable; failure here does not lose the (already complete) file.
    auto dir = fs::path(path).parent_path();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    remove_stale_temporaries(dir.string(), fs::path(path).filename().string());
}

}  // namespace detail

}  // namespace elm
