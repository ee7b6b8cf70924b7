// Conversions between numpy arrays and the library's buffers (see common.hpp for where copies happen).

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <bit>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common.hpp"

namespace elm::py {

static_assert(std::endian::native == std::endian::little,
              "tensor bytes are little-endian; numpy views assume native order");

namespace {

using namespace pybind11::literals;

const char* numpy_name(elm::dtype t) {
    switch (t) {
        case elm::dtype::f16:
            return "float16";
        case elm::dtype::f32:
            return "float32";
        case elm::dtype::f64:
            return "float64";
        case elm::dtype::i8:
            return "int8";
        case elm::dtype::i16:
            return "int16";
        case elm::dtype::i32:
            return "int32";
        case elm::dtype::i64:
            return "int64";
        case elm::dtype::u8:
            return "uint8";
        case elm::dtype::boolean:
            return "bool";
        case elm::dtype::bf16:  // numpy has none: tensor_to_numpy widens it to float32 first
            return "float32";
    }
    return "uint8";
}

}  // namespace

precision parse_precision(const pyb::handle& dtype, const char* field) {
    const char* expected = "\"float32\" or \"float64\" (or the numpy dtypes)";
    pyb::dtype d;
    try {
        d = pyb::dtype::from_args(pyb::reinterpret_borrow<pyb::object>(dtype));
    } catch (const pyb::error_already_set&) {
        throw elm::error("dtype", field, expected, repr_of(dtype));
    }
    if (d.kind() == 'f' && d.itemsize() == 4) return precision::f32;
    if (d.kind() == 'f' && d.itemsize() == 8) return precision::f64;
    throw elm::error("dtype", field, expected, repr_of(dtype));
}

const char* to_string(precision p) { return p == precision::f32 ? "float32" : "float64"; }

pyb::array as_numeric_array(const pyb::handle& obj, const std::string& source, const std::string& field) {
    pyb::array a;
    if (pyb::isinstance<pyb::array>(obj)) {
        a = pyb::reinterpret_borrow<pyb::array>(obj);
    } else {
        try {
            a = pyb::module_::import("numpy").attr("asarray")(obj);
        } catch (const pyb::error_already_set&) {
            throw elm::error(source, field, "a numeric array", repr_of(pyb::type::of(obj)));
        }
    }
    const char kind = a.dtype().kind();
    if (kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f')
        throw elm::error(source, field, "a numeric array (bool, integer or floating point)",
                         "dtype " + repr_of(a.dtype()));
    return a;
}

std::vector<std::int64_t> shape_of(const pyb::array& a) {
    return std::vector<std::int64_t>(a.shape(), a.shape() + a.ndim());
}

std::string repr_of(const pyb::handle& obj) { return pyb::repr(obj).cast<std::string>(); }

std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

pyb::array tensor_to_numpy(elm::tensor&& t) {
    if (t.type == elm::dtype::bf16) t = elm::make_tensor<float>(t.name, t.shape, t.to<float>());  // exact
    const pyb::dtype dt(numpy_name(t.type));
    std::vector<pyb::ssize_t> dims(t.shape.begin(), t.shape.end());
    if (t.data.empty()) return pyb::array(dt, dims);
    // The capsule owns the reader's buffer; the array is a view of it (no copy).
    auto* bytes = new std::vector<std::byte>(std::move(t.data));
    pyb::capsule owner(bytes, [](void* p) { delete static_cast<std::vector<std::byte>*>(p); });
    return pyb::array(dt, dims, {}, bytes->data(), owner);
}

elm::tensor numpy_to_tensor(const std::string& name, const pyb::handle& obj, const std::string& source) {
    pyb::array a = as_numeric_array(obj, source, name);
    const char kind = a.dtype().kind();
    const auto size = a.dtype().itemsize();
    elm::tensor t;
    t.name = name;
    bool known = true;
    if (kind == 'f') {
        if (size == 2)
            t.type = elm::dtype::f16;
        else if (size == 4)
            t.type = elm::dtype::f32;
        else if (size == 8)
            t.type = elm::dtype::f64;
        else
            known = false;
    } else if (kind == 'i') {
        if (size == 1)
            t.type = elm::dtype::i8;
        else if (size == 2)
            t.type = elm::dtype::i16;
        else if (size == 4)
            t.type = elm::dtype::i32;
        else if (size == 8)
            t.type = elm::dtype::i64;
        else
            known = false;
    } else if (kind == 'u' && size == 1) {
        t.type = elm::dtype::u8;
    } else if (kind == 'b') {
        t.type = elm::dtype::boolean;
    } else {
        known = false;
    }
    if (!known)
        throw elm::error(source, name,
                         "a dtype safetensors stores here (float16/32/64, int8/16/32/64, uint8, bool)",
                         repr_of(a.dtype()));
    // Native (little-endian) byte order, C order: numpy copies only if the array is not already so.
    const pyb::object native = a.dtype().attr("newbyteorder")("=");
    // (numpy.asarray, not ascontiguousarray: the latter turns 0-d arrays into 1-d ones.)
    a = pyb::module_::import("numpy").attr("asarray")(a, native, "order"_a = "C");
    t.shape = shape_of(a);
    t.data.resize(static_cast<std::size_t>(a.nbytes()));
    if (!t.data.empty()) std::memcpy(t.data.data(), a.data(), t.data.size());
    return t;
}

pyb::dict tensors_to_dict(elm::tensor_file&& f) {
    pyb::dict d;
    for (auto& t : f.tensors) {
        pyb::str key(t.name);
        d[key] = tensor_to_numpy(std::move(t));
    }
    f.tensors.clear();
    return d;
}

pyb::dict metadata_to_dict(const elm::tensor_file& f) {
    pyb::dict d;
    for (const auto& [k, v] : f.metadata) d[pyb::str(k)] = pyb::str(v);
    return d;
}

elm::tensor_file dict_to_tensor_file(const pyb::handle& tensors, const pyb::handle& metadata,
                                     const std::string& source) {
    elm::tensor_file f;
    f.source = source;
    if (!pyb::isinstance<pyb::dict>(tensors))
        throw elm::error(source, "tensors", "a dict {name: array}", repr_of(pyb::type::of(tensors)));
    for (const auto& [key, value] : pyb::reinterpret_borrow<pyb::dict>(tensors)) {
        if (!pyb::isinstance<pyb::str>(key))
            throw elm::error(source, "tensors", "str keys (tensor names)", repr_of(key));
        f.tensors.push_back(numpy_to_tensor(key.cast<std::string>(), value, source));
    }
    if (metadata.is_none()) return f;
    if (!pyb::isinstance<pyb::dict>(metadata))
        throw elm::error(source, "metadata", "a dict {str: str}", repr_of(pyb::type::of(metadata)));
    for (const auto& [key, value] : pyb::reinterpret_borrow<pyb::dict>(metadata)) {
        if (!pyb::isinstance<pyb::str>(key) || !pyb::isinstance<pyb::str>(value))
            throw elm::error(source, "metadata", "str keys and str values",
                             repr_of(key) + ": " + repr_of(value));
        f.metadata[key.cast<std::string>()] = value.cast<std::string>();
    }
    return f;
}

}  // namespace elm::py
