// The _elmneuron extension module: one register_<area>(m) per source file, and the single translation of
// library errors (style.md §5.3): elm::file_not_found_error -> FileNotFoundError, every other elm::error
// -> elmneuron.Error (a ValueError) with the structured fields as attributes.

#include <elmneuron/error.hpp>

#include <pybind11/pybind11.h>

#include <cerrno>
#include <exception>
#include <string>

#include "common.hpp"

namespace pyb = pybind11;

namespace {

// The class elmneuron.Error; this reference is never released (the type lives as long as the process).
PyObject* error_type = nullptr;

// Raises `type(message)` with the elm::error fields set as attributes.
void raise_with_fields(PyObject* type, pyb::object instance, const elm::error& e) {
    instance.attr("file") = pyb::str(e.file());
    instance.attr("field") = pyb::str(e.field());
    instance.attr("expected") = pyb::str(e.expected());
    instance.attr("got") = pyb::str(e.got());
    instance.attr("hint") = pyb::str(e.hint());
    PyErr_SetObject(type, instance.ptr());
}

void translate(std::exception_ptr p) {
    try {
        if (p) std::rethrow_exception(p);
    } catch (const elm::file_not_found_error& e) {
        // OSError(errno, strerror, filename): .errno, .strerror and .filename as Python sets them for open().
        // str(): "[Errno 2] no such file or it cannot be opened: 'path'".
        pyb::object instance = pyb::reinterpret_borrow<pyb::object>(PyExc_FileNotFoundError)(
            ENOENT, e.got().empty() ? std::string(e.what()) : e.got(), e.file());
        raise_with_fields(PyExc_FileNotFoundError, instance, e);
    } catch (const elm::error& e) {
        pyb::object instance = pyb::reinterpret_borrow<pyb::object>(error_type)(e.what());
        raise_with_fields(error_type, instance, e);
    }
}

}  // namespace

PYBIND11_MODULE(_elmneuron, m) {
    m.doc() =
        "C++ core of elmneuron (the Expressive Leaky Memory neuron); import the elmneuron package instead.";

    error_type = PyErr_NewExceptionWithDoc(
        "elmneuron.Error",
        "Invalid input: a bad file, config, argument or array shape. A ValueError carrying where the problem "
        "is and what was expected:\n\n"
        "  file      the file or the API entry point (e.g. 'input', 'ModelConfig')\n"
        "  field     the key, tensor or argument (e.g. 'num_input', 'offsets[3]')\n"
        "  expected  what would have been valid\n"
        "  got       what was found\n"
        "  hint      a suggestion, or ''",
        PyExc_ValueError, nullptr);
    if (!error_type) throw pyb::error_already_set();
    m.add_object("Error", pyb::reinterpret_borrow<pyb::object>(error_type));
    pyb::register_exception_translator(&translate);

    elm::py::register_config(m);
    elm::py::register_model(m);
    elm::py::register_io(m);
    elm::py::register_train(m);

#ifdef ELM_VERSION
    m.attr("__version__") = ELM_VERSION;
#endif
}
