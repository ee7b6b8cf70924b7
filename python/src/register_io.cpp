// Tensor files: safetensors (read, parse from bytes, write), PyTorch state dicts (.pt, restricted unpickler)
// and .npy. Arrays returned by the readers are views of the reader's buffers (no copy after reading);
// arrays given to the writers are copied into the file's byte layout.

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl/filesystem.h>

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include "common.hpp"

namespace elm::py {
namespace {

using namespace pybind11::literals;

pyb::tuple as_tuple(elm::tensor_file&& f) {
    pyb::dict metadata = metadata_to_dict(f);
    pyb::dict tensors = tensors_to_dict(std::move(f));
    return pyb::make_tuple(tensors, metadata);
}

}  // namespace

void register_io(pyb::module_& m) {
    m.def(
        "read_safetensors",
        [](const std::filesystem::path& path) {
            elm::tensor_file f;
            {
                pyb::gil_scoped_release nogil;
                f = elm::read_safetensors(path.string());
            }
            return as_tuple(std::move(f));
        },
        "path"_a,
        R"(Reads a safetensors file: (tensors, metadata) with tensors {name: numpy array} in file order (dtypes
F16/F32/F64/I8/I16/I32/I64/U8/BOOL as numpy's, BF16 as float32) and metadata {str: str}. Every length, offset and dtype is
checked; a malformed file raises elmneuron.Error naming the field, a missing one FileNotFoundError.)");
    m.def(
        "parse_safetensors",
        [](const pyb::bytes& data, const std::string& source) {
            const std::string_view bytes = data;
            elm::tensor_file f;
            {
                pyb::gil_scoped_release nogil;  // `data` is immutable and kept alive by the caller
                f = elm::parse_safetensors(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())),
                                           source);
            }
            return as_tuple(std::move(f));
        },
        "data"_a, "source"_a = "bytes",
        "As read_safetensors, from the bytes of a file; source names it in errors.");
    m.def(
        "write_safetensors",
        [](const std::filesystem::path& path, const pyb::handle& tensors, const pyb::handle& metadata) {
            const auto f = dict_to_tensor_file(tensors, metadata, path.string());
            pyb::gil_scoped_release nogil;
            elm::write_safetensors(path.string(), f);
        },
        "path"_a, "tensors"_a, "metadata"_a = pyb::none(),
        "Writes {name: array} (and {str: str} metadata) as safetensors, atomically (temporary file, then "
        "rename). "
        "Arrays are copied; float16/32/64, int8/16/32/64, uint8 and bool are supported.");
    m.def(
        "serialize_safetensors",
        [](const pyb::handle& tensors, const pyb::handle& metadata) {
            const auto f = dict_to_tensor_file(tensors, metadata, "serialize_safetensors");
            const auto bytes = elm::serialize_safetensors(f);
            return pyb::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        },
        "tensors"_a, "metadata"_a = pyb::none(), "The bytes write_safetensors would write.");
    m.def(
        "read_torch_state_dict",
        [](const std::filesystem::path& path) {
            elm::tensor_file f;
            {
                pyb::gil_scoped_release nogil;
                f = elm::read_torch_state_dict(path.string());
            }
            return tensors_to_dict(std::move(f));
        },
        "path"_a,
        "Reads a PyTorch state dict saved by torch.save (.pt zip archive) without executing anything: only "
        "the opcodes and globals a state dict needs are accepted. Returns {name: numpy array} in file "
        "order.");
    m.def(
        "read_npy",
        [](const std::filesystem::path& path) {
            elm::tensor t;
            {
                pyb::gil_scoped_release nogil;
                t = elm::read_npy(path.string());
            }
            return tensor_to_numpy(std::move(t));
        },
        "path"_a, "Reads a .npy file (version 1-3, little-endian numeric dtypes, C order).");
    m.def(
        "write_npy",
        [](const std::filesystem::path& path, const pyb::handle& array) {
            const auto t = numpy_to_tensor("array", array, path.string());
            pyb::gil_scoped_release nogil;
            elm::write_npy(path.string(), t);
        },
        "path"_a, "array"_a, "Writes an array as .npy, atomically (a copy in C order).");
}

}  // namespace elm::py
