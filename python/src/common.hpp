#pragma once
// Shared pieces of the _elmneuron module: one register_<area>(m) per source file (module.cpp calls them),
// dtype selection, and the conversions between numpy arrays and the library's buffers.
//
// Copies and views. Arrays that alias library memory are made with the owning Python object as their
// numpy `base`, so they stay valid as long as any view exists:
//   - model parameters (Model.parameters(), state_dict(), parameter()): views of the model's parameter block;
//   - tensors returned by read_safetensors / read_torch_state_dict / read_npy: the reader's buffers, moved
//     into a capsule (no copy after reading);
//   - forward/backward results: numpy arrays that the kernels write into directly.
// Copies happen where the library needs its own layout or lifetime: input arrays of another dtype or
// not C-contiguous (numpy's conversion), dense input to input events, the input kept for backward (a
// SparseInput is copied), tensors handed to the writers (serialisation), state traces (the workspace is
// reused by the next forward), routing tensors, gradients given to Optimizer.step and clip_grad_norm.

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace elm::py {

namespace pyb = pybind11;

void register_config(pyb::module_& m);  // before register_model: Model's signatures name ModelConfig
void register_model(pyb::module_& m);
void register_io(pyb::module_& m);
void register_train(pyb::module_& m);

// json.loads(text)
pyb::object json_loads(const std::string& text);

// The two precisions of elm::model. Anything numpy.dtype() accepts ("float32", numpy.float64, ...).
enum class precision { f32, f64 };
precision parse_precision(const pyb::handle& dtype, const char* field = "dtype");
const char* to_string(precision p);  // "float32", "float64"

// A C-contiguous array of T viewing `obj` when it already is one, else numpy's converted copy. Only
// boolean, integer and floating-point input is accepted (no silent conversion from objects or strings);
// otherwise elm::error(source, field, ...).
template <class T>
using carray = pyb::array_t<T, pyb::array::c_style | pyb::array::forcecast>;
template <class T>
carray<T> as_array(const pyb::handle& obj, const std::string& source, const std::string& field);
// Throws elm::error(source, field, ...) unless obj converts to a numeric (bool, int, float) array.
pyb::array as_numeric_array(const pyb::handle& obj, const std::string& source, const std::string& field);

// The shape of an array as the library's int64 vector.
std::vector<std::int64_t> shape_of(const pyb::array& a);

// An array of `shape` viewing `data`, with `base` keeping the memory alive; read-only if `writeable` is
// false.
template <class T>
pyb::array_t<T> view(const T* data, const std::vector<std::int64_t>& shape, const pyb::handle& base,
                     bool writeable = true);
// "[2, 3, 4]"
std::string shape_string(const std::vector<std::int64_t>& shape);
// repr(obj) as a std::string, for error messages.
std::string repr_of(const pyb::handle& obj);

// A tensor as a numpy array of the same dtype, taking over the tensor's bytes (no copy).
pyb::array tensor_to_numpy(elm::tensor&& t);
// A numpy array as a tensor (copy; the dtype must be one safetensors knows).
elm::tensor numpy_to_tensor(const std::string& name, const pyb::handle& obj, const std::string& source);

// A tensor file's tensors as {name: array} (in file order) and its metadata as {str: str}.
pyb::dict tensors_to_dict(elm::tensor_file&& f);
pyb::dict metadata_to_dict(const elm::tensor_file& f);
// {name: array} and {str: str} as a tensor file (copies).
elm::tensor_file dict_to_tensor_file(const pyb::handle& tensors, const pyb::handle& metadata,
                                     const std::string& source);

// ---- template definitions

template <class T>
carray<T> as_array(const pyb::handle& obj, const std::string& source, const std::string& field) {
    const pyb::array a = as_numeric_array(obj, source, field);
    // Same dtype and C-contiguous: a view; else numpy's converting copy.
    auto c = carray<T>::ensure(a);
    if (!c) {  // numpy's copy failed, and pybind11 has cleared its error: a numeric conversion fails on
               // memory
        std::string shape;
        for (pyb::ssize_t i = 0; i < a.ndim(); ++i) shape += (i ? ", " : "") + std::to_string(a.shape(i));
        throw elm::error(
            source, field,
            "an array whose " + std::string(sizeof(T) == 4 ? "float32" : "float64") + " copy fits in memory",
            "shape (" + shape + "): the conversion ran out of memory");
    }
    return c;
}

template <class T>
pyb::array_t<T> view(const T* data, const std::vector<std::int64_t>& shape, const pyb::handle& base,
                     bool writeable) {
    std::vector<pyb::ssize_t> dims(shape.begin(), shape.end());
    pyb::array_t<T> a(dims, data, base);
    if (!writeable) a.attr("setflags")(pyb::arg("write") = false);
    return a;
}

}  // namespace elm::py
