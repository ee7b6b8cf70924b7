// SparseInput, Model, load_model/save_model and the thread count.
//
// Model parameters are exposed as numpy views of the model's parameter block (base: the Model object),
// so writing to them changes the model. Forward and backward write their results straight into new
// numpy arrays and run without the GIL.

#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/model_file.hpp>
#include <elmneuron/tensor_file.hpp>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "common.hpp"
#include "py_model.hpp"

namespace elm::py {
namespace {

using namespace pybind11::literals;

// ---- input

// Input events of one precision, validated at construction.
class py_sparse {
public:
    std::variant<elm::sparse_input<float>, elm::sparse_input<double>> x;

    template <class F>
    decltype(auto) visit(F&& f) const {
        return std::visit(std::forward<F>(f), x);
    }
};

std::vector<std::int64_t> integer_vector(const pyb::handle& obj, const char* field) {
    const char* src = "SparseInput";
    const pyb::array a = as_numeric_array(obj, src, field);
    const char kind = a.dtype().kind();
    if (kind != 'i' && kind != 'u')
        throw elm::error(src, field, "an integer array", "dtype " + repr_of(a.dtype()));
    if (a.ndim() != 1) throw elm::error(src, field, "a 1-D array", "shape " + shape_string(shape_of(a)));
    const auto c = as_array<std::int64_t>(a, src, field);
    return std::vector<std::int64_t>(c.data(), c.data() + c.size());
}

template <class T>
elm::sparse_input<T> make_sparse(const pyb::handle& offsets, const pyb::handle& channels,
                                 const pyb::array& values, const std::vector<std::int64_t>& shape) {
    const char* src = "SparseInput";
    elm::sparse_input<T> x;
    x.batch = static_cast<int>(shape[0]);
    x.time = static_cast<int>(shape[1]);
    x.num_input = static_cast<int>(shape[2]);
    x.offsets = integer_vector(offsets, "offsets");
    const auto ch = integer_vector(channels, "channels");
    x.channels.resize(ch.size());
    for (std::size_t e = 0; e < ch.size(); ++e) {
        // Range-check before narrowing to int32 (validate() checks [0, num_input) afterwards).
        if (ch[e] < 0 || ch[e] >= x.num_input)
            throw elm::error(src, "channels[" + std::to_string(e) + "]",
                             "in [0, " + std::to_string(x.num_input) + ")", std::to_string(ch[e]));
        x.channels[e] = static_cast<std::int32_t>(ch[e]);
    }
    if (values.ndim() != 1)
        throw elm::error(src, "values", "a 1-D array", "shape " + shape_string(shape_of(values)));
    const auto v = as_array<T>(values, src, "values");
    x.values.assign(v.data(), v.data() + v.size());
    x.validate(src);
    return x;
}

std::vector<std::int64_t> input_shape(const pyb::handle& shape) {
    const char* src = "SparseInput";
    std::vector<std::int64_t> s;
    try {
        s = shape.cast<std::vector<std::int64_t>>();
    } catch (const pyb::cast_error&) {
        throw elm::error(src, "shape", "(batch, time, num_input) integers", repr_of(shape));
    }
    if (s.size() != 3 || std::any_of(s.begin(), s.end(), [](std::int64_t n) {
            return n < 1 || n > std::numeric_limits<int>::max();
        }))
        throw elm::error(src, "shape", "(batch, time, num_input), each >= 1", repr_of(shape));
    return s;
}

std::unique_ptr<py_sparse> sparse_from_arrays(const pyb::handle& offsets, const pyb::handle& channels,
                                              const pyb::handle& values, const pyb::handle& shape) {
    const auto s = input_shape(shape);
    const pyb::array v = as_numeric_array(values, "SparseInput", "values");
    auto out = std::make_unique<py_sparse>();
    // float32 values stay float32; anything else becomes float64.
    if (v.dtype().kind() == 'f' && v.dtype().itemsize() == 4)
        out->x = make_sparse<float>(offsets, channels, v, s);
    else
        out->x = make_sparse<double>(offsets, channels, v, s);
    return out;
}

// Dense [B, T, n] array -> events (a copy: zeros are dropped).
template <class T>
elm::sparse_input<T> dense_to_sparse(const pyb::handle& obj, const char* source) {
    const auto a = as_array<T>(obj, source, "x");
    if (a.ndim() != 3)
        throw elm::error(source, "x", "a [batch, time, num_input] array (3 dimensions)",
                         "shape " + shape_string(shape_of(a)));
    const auto s = shape_of(a);
    for (const auto n : s)
        if (n < 1 || n > std::numeric_limits<int>::max())
            throw elm::error(source, "x", "a [batch, time, num_input] array with every dimension >= 1",
                             "shape " + shape_string(s));
    const std::span<const T> values(a.data(), static_cast<std::size_t>(a.size()));
    pyb::gil_scoped_release nogil;  // `a` keeps the data alive
    return elm::sparse_from_dense<T>(values, static_cast<int>(s[0]), static_cast<int>(s[1]),
                                     static_cast<int>(s[2]), source);
}

template <class U, class T>
elm::sparse_input<U> convert(const elm::sparse_input<T>& x) {
    elm::sparse_input<U> y;
    y.batch = x.batch;
    y.time = x.time;
    y.num_input = x.num_input;
    y.offsets = x.offsets;
    y.channels = x.channels;
    y.values.assign(x.values.begin(), x.values.end());
    return y;
}

// Model input: a SparseInput (copied, converted to T if needed) or a dense array-like.
template <class T>
elm::sparse_input<T> model_input(const pyb::handle& x, const char* source) {
    if (pyb::isinstance<py_sparse>(x))
        return x.cast<const py_sparse&>().visit([](const auto& s) { return convert<T>(s); });
    return dense_to_sparse<T>(x, source);
}

template <class T>
pyb::array_t<T> sparse_to_dense(const elm::sparse_input<T>& x) {
    pyb::array_t<T> out({x.batch, x.time, x.num_input});
    T* d = out.mutable_data();
    std::fill(d, d + out.size(), T(0));
    const std::size_t rows = static_cast<std::size_t>(x.batch) * static_cast<std::size_t>(x.time);
    for (std::size_t r = 0; r < rows; ++r)
        for (auto e = x.offsets[r]; e < x.offsets[r + 1]; ++e)
            d[r * static_cast<std::size_t>(x.num_input) + static_cast<std::size_t>(x.channels[e])] +=
                x.values[e];
    return out;
}

// ---- Model

py_model& model_of(const pyb::handle& self) { return self.cast<py_model&>(); }

std::unique_ptr<py_model> make_model(const elm::model_config& config, std::uint64_t seed,
                                     const pyb::handle& dtype) {
    if (parse_precision(dtype) == precision::f32)
        return std::make_unique<py_model>(elm::model<float>(config, seed));
    return std::make_unique<py_model>(elm::model<double>(config, seed));
}

pyb::dtype numpy_dtype(precision p) {
    return p == precision::f32 ? pyb::dtype::of<float>() : pyb::dtype::of<double>();
}

const elm::model_config& config_of(py_model& pm) {
    return pm.visit([](auto& st) -> const elm::model_config& { return st.model.config(); });
}

template <class T>
void add_routing(pyb::dict& d, const elm::model<T>& m) {
    if (m.config().input_to_synapse_routing == elm::routing::none) {
        // The published placeholders (nn.Parameter(None): empty float32), as elm::state_dict writes them.
        d["input_to_synapse_indices"] = pyb::array_t<float>(0);
        d["valid_indices_mask"] = pyb::array_t<float>(0);
        return;
    }
    const auto index = m.synapse_input_index();
    const auto mask = m.synapse_mask();
    const auto n = static_cast<pyb::ssize_t>(index.size());
    pyb::array_t<std::int64_t> i(n);
    std::copy(index.begin(), index.end(), i.mutable_data());
    pyb::array_t<bool> v(n);
    std::transform(mask.begin(), mask.end(), v.mutable_data(), [](T x) { return x != T(0); });
    d["input_to_synapse_indices"] = i;
    d["valid_indices_mask"] = v;
}

pyb::dict state_dict(const pyb::object& self) {
    return model_of(self).visit([&](auto& st) {
        pyb::dict d;
        const auto params = st.model.parameters();
        for (const auto& p : st.model.layout())
            d[pyb::str(p.name)] = view(params.data() + p.offset, p.shape, self);
        add_routing(d, st.model);
        return d;
    });
}

void load_state_dict(const pyb::object& self, const pyb::handle& tensors) {
    auto& pm = model_of(self);
    const auto sd = dict_to_tensor_file(tensors, pyb::none(), "state_dict");
    pm.visit([&](auto& st) {
        using T = typename std::decay_t<decltype(st)>::scalar;
        // Checked in full (names, shapes, finiteness, routing) on a fresh model before anything changes;
        // then copied into this model's buffers, so existing parameter views stay valid.
        pyb::gil_scoped_release nogil;
        const auto fresh = elm::model_from_state_dict<T>(st.model.config(), sd);
        std::lock_guard<std::mutex> lock(pm.mutex());
        const auto src = fresh.parameters();
        std::copy(src.begin(), src.end(), st.model.parameters().begin());
        st.model.set_routing(fresh.synapse_input_index(), fresh.synapse_mask(), "state_dict");
        st.input.reset();  // the stored activations belong to the old parameters
    });
}

pyb::object forward(const pyb::object& self, const pyb::handle& x, bool traces) {
    auto& pm = model_of(self);
    return pm.visit([&](auto& st) -> pyb::object {
        using T = typename std::decay_t<decltype(st)>::scalar;
        const auto& c = st.model.config();
        auto in = model_input<T>(x, "input");
        const pyb::ssize_t B = in.batch, Tn = in.time;
        pyb::array_t<T> y({B, Tn, static_cast<pyb::ssize_t>(c.num_output)});
        pyb::array_t<T> memory, branch;
        if (traces) {
            memory = pyb::array_t<T>({B, Tn, static_cast<pyb::ssize_t>(c.num_memory)});
            branch = pyb::array_t<T>({B, Tn, static_cast<pyb::ssize_t>(c.branches())});
        }
        const std::span<T> out(y.mutable_data(), static_cast<std::size_t>(y.size()));
        T* mem = traces ? memory.mutable_data() : nullptr;
        T* brn = traces ? branch.mutable_data() : nullptr;
        {
            pyb::gil_scoped_release nogil;
            std::lock_guard<std::mutex> lock(pm.mutex());
            st.input.reset();
            st.model.forward(in, out, st.ws);
            st.input = std::move(in);
            // Copies: the workspace is overwritten by the next forward call.
            if (mem) {
                const auto trace = st.model.memory_trace(st.ws);
                std::copy(trace.begin(), trace.end(), mem);
            }
            if (brn)
                st.model.branch_trace(*st.input,
                                      std::span<T>(brn, static_cast<std::size_t>(B * Tn * c.branches())));
        }
        if (!traces) return y;
        pyb::dict t;
        t["memory"] = memory;
        t["branch"] = branch;
        return pyb::make_tuple(y, t);
    });
}

pyb::array infer(const pyb::object& self, const pyb::handle& x) {
    auto& pm = model_of(self);
    return pm.visit([&](auto& st) -> pyb::array {
        using T = typename std::decay_t<decltype(st)>::scalar;
        auto in = model_input<T>(x, "input");
        pyb::array_t<T> y({static_cast<pyb::ssize_t>(in.batch), static_cast<pyb::ssize_t>(in.time),
                           static_cast<pyb::ssize_t>(st.model.config().num_output)});
        const std::span<T> out(y.mutable_data(), static_cast<std::size_t>(y.size()));
        pyb::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(pm.mutex());
        st.model.infer(in, out, st.infer_ws);
        return y;
    });
}

pyb::object make_stream(const pyb::object& self, int batch) {
    auto& pm = model_of(self);
    return pm.visit([&](auto& st) -> pyb::object {
        using T = typename std::decay_t<decltype(st)>::scalar;
        std::unique_ptr<py_stream> s;
        {
            pyb::gil_scoped_release nogil;
            std::lock_guard<std::mutex> lock(pm.mutex());
            s = std::make_unique<py_stream>(elm::stream<T>(st.model, batch));
        }
        return pyb::cast(std::move(s));
    });
}

// One step: x_t dense [batch, num_input] (or [num_input] for batch 1) -> y_t [batch, num_output].
pyb::array stream_step(py_stream& ps, const pyb::handle& x) {
    return ps.visit([&](auto& st) -> pyb::array {
        using T = typename std::decay_t<decltype(st)>::value_type;
        const char* src = "Stream.step";
        const auto a = as_array<T>(x, src, "x");
        const auto shape = shape_of(a);
        const int B = st.batch(), n = st.config().num_input;
        const bool ok = (shape.size() == 2 && shape[0] == B && shape[1] == n) ||
                        (shape.size() == 1 && B == 1 && shape[0] == n);
        if (!ok)
            throw elm::error(src, "x",
                             "shape [" + std::to_string(B) + ", " + std::to_string(n) + "]" +
                                 (B == 1 ? " or [" + std::to_string(n) + "]" : std::string()),
                             "shape " + shape_string(shape));
        // One step of `B` samples: events of the [B, 1, num_input] input (rejects NaN/inf naming the entry).
        const auto events = elm::sparse_from_dense<T>(
            std::span<const T>(a.data(), static_cast<std::size_t>(a.size())), B, 1, n, src);
        pyb::array_t<T> y(shape.size() == 2 ? std::vector<pyb::ssize_t>{B, st.config().num_output}
                                            : std::vector<pyb::ssize_t>{st.config().num_output});
        st.step(events, 0, std::span<T>(y.mutable_data(), static_cast<std::size_t>(y.size())));
        return y;
    });
}

pyb::object backward(const pyb::object& self, const pyb::handle& dy_obj, bool input_grad) {
    auto& pm = model_of(self);
    return pm.visit([&](auto& st) -> pyb::object {
        using T = typename std::decay_t<decltype(st)>::scalar;
        const char* src = "Model.backward";
        const auto& c = st.model.config();
        const auto dy = as_array<T>(dy_obj, src, "dy");
        const pyb::ssize_t P = static_cast<pyb::ssize_t>(st.model.parameters().size());
        pyb::array_t<T> grads(P);
        std::fill(grads.mutable_data(), grads.mutable_data() + P, T(0));
        pyb::array_t<T> dx;
        {
            pyb::gil_scoped_release nogil;
            std::lock_guard<std::mutex> lock(pm.mutex());
            if (!st.input)
                throw elm::error(
                    src, "forward",
                    "a forward call since the last backward (backward consumes its activations)",
                    "none since the model was created, its parameters were loaded or the last backward");
            const auto& in = *st.input;
            const std::vector<std::int64_t> expected{in.batch, in.time, c.num_output};
            if (shape_of(dy) != expected)
                throw elm::error(src, "dy",
                                 "shape " + shape_string(expected) + " (the output of the last forward)",
                                 "shape " + shape_string(shape_of(dy)));
            std::span<T> dx_span;
            if (input_grad) {
                pyb::gil_scoped_acquire gil;
                dx = pyb::array_t<T>({in.batch, in.time, in.num_input});
                dx_span = std::span<T>(dx.mutable_data(), static_cast<std::size_t>(dx.size()));
            }
            // elm::model::backward consumes the workspace (it overwrites the first layer's pre-activations),
            // so, as torch without retain_graph, a second backward needs a new forward.
            const auto input = std::move(*st.input);
            st.input.reset();
            st.model.backward(input, std::span<const T>(dy.data(), static_cast<std::size_t>(dy.size())),
                              st.ws, std::span<T>(grads.mutable_data(), static_cast<std::size_t>(P)),
                              dx_span);
        }
        pyb::dict g;
        for (const auto& p : st.model.layout())
            if (p.trainable) g[pyb::str(p.name)] = view(grads.data() + p.offset, p.shape, grads);
        if (!input_grad) return g;
        return pyb::make_tuple(g, dx);
    });
}

pyb::array synapse_trace(const pyb::object& self, const pyb::handle& x) {
    auto& pm = model_of(self);
    return pm.visit([&](auto& st) -> pyb::array {
        using T = typename std::decay_t<decltype(st)>::scalar;
        const auto in = model_input<T>(x, "input");
        pyb::array_t<T> s({in.batch, in.time, st.model.config().num_synapse()});
        const std::span<T> out(s.mutable_data(), static_cast<std::size_t>(s.size()));
        {
            pyb::gil_scoped_release nogil;
            std::lock_guard<std::mutex> lock(pm.mutex());
            st.model.synapse_trace(in, out);
        }
        return s;
    });
}

pyb::dict info(const pyb::object& self) {
    auto& pm = model_of(self);
    return pm.visit([&](auto& st) {
        const auto& c = st.model.config();
        pyb::dict d;
        d["dtype"] = to_string(pm.dtype());
        d["model_version"] = elm::to_string(c.version);
        d["config"] = json_loads(elm::to_json(c));
        d["trainable_parameters"] = st.model.num_trainable();
        d["num_parameters"] = st.model.parameters().size();
        pyb::list params;
        for (const auto& p : st.model.layout())
            params.append(pyb::dict("name"_a = p.name, "shape"_a = pyb::tuple(pyb::cast(p.shape)),
                                    "trainable"_a = p.trainable));
        d["parameters"] = params;
        return d;
    });
}

}  // namespace

void register_model(pyb::module_& m) {
    // ---- SparseInput
    pyb::class_<py_sparse>(m, "SparseInput", R"(Input events of a batch: the model's native input form.

SparseInput(offsets, channels, values, shape) with shape = (batch, time, num_input): the events of
sample b at step t are offsets[b*time + t] .. offsets[b*time + t + 1] - 1 (offsets has batch*time + 1
non-decreasing entries starting at 0); channels[e] in [0, num_input), values[e] finite. Values of the
same channel at the same step add up. Values are kept as float32 if given as float32, else float64,
and converted to the model's dtype by forward (a copy when they differ). Checked at construction.)")
        .def(pyb::init(&sparse_from_arrays), "offsets"_a, "channels"_a, "values"_a, "shape"_a)
        .def_static(
            "from_dense",
            [](const pyb::handle& x, const pyb::object& dtype) {
                auto out = std::make_unique<py_sparse>();
                precision p = precision::f64;
                if (!dtype.is_none()) {
                    p = parse_precision(dtype);
                } else {
                    const auto a = as_numeric_array(x, "SparseInput.from_dense", "x");
                    if (a.dtype().kind() == 'f' && a.dtype().itemsize() == 4) p = precision::f32;
                }
                if (p == precision::f32)
                    out->x = dense_to_sparse<float>(x, "SparseInput.from_dense");
                else
                    out->x = dense_to_sparse<double>(x, "SparseInput.from_dense");
                return out;
            },
            "x"_a, "dtype"_a = pyb::none(),
            "Events of a dense [batch, time, num_input] array (zeros dropped). dtype: float32 or float64; "
            "default: "
            "float32 for float32 input, else float64.")
        .def(
            "to_dense",
            [](const py_sparse& s) {
                return s.visit([](const auto& x) -> pyb::array { return sparse_to_dense(x); });
            },
            "The dense [batch, time, num_input] array (a new array).")
        .def_property_readonly(
            "shape",
            [](const py_sparse& s) {
                return s.visit([](const auto& x) { return pyb::make_tuple(x.batch, x.time, x.num_input); });
            })
        .def_property_readonly(
            "num_events",
            [](const py_sparse& s) { return s.visit([](const auto& x) { return x.num_events(); }); })
        .def_property_readonly("dtype",
                               [](const py_sparse& s) {
                                   return std::holds_alternative<elm::sparse_input<float>>(s.x)
                                              ? pyb::dtype::of<float>()
                                              : pyb::dtype::of<double>();
                               })
        // Read-only views of the stored events (base: the SparseInput).
        .def_property_readonly(
            "offsets",
            [](const pyb::object& self) {
                return self.cast<const py_sparse&>().visit([&](const auto& x) {
                    return view(x.offsets.data(), {static_cast<std::int64_t>(x.offsets.size())}, self, false);
                });
            })
        .def_property_readonly("channels",
                               [](const pyb::object& self) {
                                   return self.cast<const py_sparse&>().visit([&](const auto& x) {
                                       return view(x.channels.data(),
                                                   {static_cast<std::int64_t>(x.channels.size())}, self,
                                                   false);
                                   });
                               })
        .def_property_readonly(
            "values",
            [](const pyb::object& self) {
                return self.cast<const py_sparse&>().visit([&](const auto& x) -> pyb::array {
                    return view(x.values.data(), {static_cast<std::int64_t>(x.values.size())}, self, false);
                });
            })
        .def("__repr__", [](const py_sparse& s) {
            return s.visit([](const auto& x) {
                std::string r = "SparseInput(shape=(";
                r.append(std::to_string(x.batch)).append(", ").append(std::to_string(x.time)).append(", ");
                r.append(std::to_string(x.num_input))
                    .append("), num_events=")
                    .append(std::to_string(x.num_events()));
                return r + ")";
            });
        });

    // ---- Model
    pyb::class_<py_model>(m, "Model", R"(The ELM neuron in float32 or float64.

Model(config, seed=0, dtype="float32") initialises the parameters as the published model does, from
`seed`. Parameters are views: state_dict(), parameters() and parameter(name) return numpy arrays that
share memory with the model (writing to them changes the model; they keep the model alive).

forward/backward follow torch's pattern: forward(x) keeps its input and activations, backward(dy) uses
them. Both release the GIL; calls on one model are serialised.)")
        .def(pyb::init(&make_model), "config"_a, "seed"_a = 0, "dtype"_a = "float32")
        .def_property_readonly("dtype", [](py_model& pm) { return numpy_dtype(pm.dtype()); })
        .def_property_readonly(
            "config", [](py_model& pm) { return config_of(pm); }, "The model's ModelConfig (a copy).")
        .def_property_readonly("model_version",
                               [](py_model& pm) { return elm::to_string(config_of(pm).version); })
        .def_property_readonly(
            "num_trainable",
            [](py_model& pm) { return pm.visit([](auto& st) { return st.model.num_trainable(); }); },
            "Number of trainable scalars (the published parameter count).")
        .def_property_readonly(
            "num_parameters",
            [](py_model& pm) { return pm.visit([](auto& st) { return st.model.parameters().size(); }); },
            "Number of scalars in the parameter block (trainable or not).")
        .def_property_readonly("parameter_names",
                               [](py_model& pm) {
                                   return pm.visit([](auto& st) {
                                       std::vector<std::string> names;
                                       for (const auto& p : st.model.layout()) names.push_back(p.name);
                                       return names;
                                   });
                               })
        .def_property_readonly("trainable_names",
                               [](py_model& pm) {
                                   return pm.visit([](auto& st) {
                                       std::vector<std::string> names;
                                       for (const auto& p : st.model.layout())
                                           if (p.trainable) names.push_back(p.name);
                                       return names;
                                   });
                               })
        .def(
            "layout",
            [](py_model& pm) {
                return pm.visit([](auto& st) {
                    pyb::list l;
                    for (const auto& p : st.model.layout())
                        l.append(pyb::dict("name"_a = p.name, "shape"_a = pyb::tuple(pyb::cast(p.shape)),
                                           "offset"_a = p.offset, "size"_a = p.size,
                                           "trainable"_a = p.trainable));
                    return l;
                });
            },
            "Each parameter tensor's name, shape, offset and size in the flat block, and whether it is "
            "trained.")
        .def("state_dict", &state_dict,
             "Parameters under the published state-dict names as writable views {name: array} (weights [out, "
             "in]); "
             "routed models add copies of input_to_synapse_indices (int64) and valid_indices_mask (bool).")
        .def("load_state_dict", &load_state_dict, "state_dict"_a,
             "Copies a published or saved state dict into the model (existing views see the new values). "
             "Strict: "
             "every parameter (and routing tensor) must be present with its shape, no unknown names, finite "
             "values.")
        .def(
            "parameters",
            [](const pyb::object& self) {
                return model_of(self).visit([&](auto& st) -> pyb::array {
                    const auto p = st.model.parameters();
                    return view(p.data(), {static_cast<std::int64_t>(p.size())}, self);
                });
            },
            "The whole parameter block as one writable 1-D view (layout() gives the offsets).")
        .def(
            "parameter",
            [](const pyb::object& self, const std::string& name) {
                return model_of(self).visit([&](auto& st) -> pyb::array {
                    const auto& p = st.model.info(name);
                    return view(st.model.parameters().data() + p.offset, p.shape, self);
                });
            },
            "name"_a, "One parameter tensor as a writable view.")
        .def_property_readonly(
            "trainable_mask",
            [](const pyb::object& self) {
                return model_of(self).visit([&](auto& st) {
                    const auto mask = st.model.trainable_mask();
                    return view(reinterpret_cast<const bool*>(mask.data()),
                                {static_cast<std::int64_t>(mask.size())}, self, false);
                });
            },
            "Read-only bool view over the parameter block: True where the optimisers update.")
        .def("forward", &forward, "x"_a, "traces"_a = false,
             R"(Output of the model for input x: a [batch, time, num_output] array of the model's dtype.

x: a dense [batch, time, num_input] array (converted to the model's dtype and to input events: a copy)
or a SparseInput. traces=True returns (y, {"memory": m_t [B, T, num_memory], "branch": b_t
[B, T, num_branch]}) (copies). The input and activations are kept for backward.)")
        .def("__call__", &forward, "x"_a, "traces"_a = false, "Same as forward.")
        .def(
            "infer", &infer, "x"_a,
            R"(Inference: the same output as forward, bit for bit, keeping nothing for backward (working memory
does not grow with the sequence length). Does not disturb the activations kept for backward.)")
        .def(
            "stream", &make_stream, "batch"_a = 1,
            R"(A Stream over a snapshot of the current parameters: one time step per call, the state kept between
calls; feeding a sequence step by step gives the same outputs as forward, bit for bit.)")
        .def("backward", &backward, "dy"_a, "input_grad"_a = false,
             R"(Gradients of a loss given dy = d loss / d y for the output of the latest forward call.

Returns {name: gradient} for the trainable parameters (views of one new flat buffer, same shapes as the
parameters); with input_grad=True, (grads, dx) where dx = d loss / d x is a dense [B, T, num_input] array.
The parameters must not have changed since that forward call. Like torch without retain_graph,
backward consumes the activations: a second backward needs a new forward.)")
        .def("synapse_trace", &synapse_trace, "x"_a,
             "v1 only: synapse currents s_t of input x as a [batch, time, num_synapse] array (a diagnostic; "
             "large).")
        .def(
            "routing",
            [](py_model& pm) {
                return pm.visit([](auto& st) {
                    using T = typename std::decay_t<decltype(st)>::scalar;
                    const auto index = st.model.synapse_input_index();
                    const auto mask = st.model.synapse_mask();
                    pyb::array_t<std::int64_t> i(static_cast<pyb::ssize_t>(index.size()));
                    std::copy(index.begin(), index.end(), i.mutable_data());
                    pyb::array_t<bool> v(static_cast<pyb::ssize_t>(mask.size()));
                    std::transform(mask.begin(), mask.end(), v.mutable_data(), [](T x) { return x != T(0); });
                    return pyb::make_tuple(i, v);
                });
            },
            "(input channel of each synapse, validity mask) as new arrays (identity and all True without "
            "routing).")
        .def(
            "validate",
            [](py_model& pm) { pm.visit([](auto& st) { st.model.validate_parameters("Model"); }); },
            "Raises elmneuron.Error if a parameter is NaN/inf (or breaks another kernel invariant), e.g. "
            "after editing the views.")
        .def(
            "astype",
            [](py_model& pm, const pyb::handle& dtype) {
                const auto p = parse_precision(dtype);
                return pm.visit([&](auto& st) {
                    if (p == precision::f32)
                        return std::make_unique<py_model>(st.model.template cast<float>());
                    return std::make_unique<py_model>(st.model.template cast<double>());
                });
            },
            "dtype"_a, "A new Model with the parameters converted to dtype (always a copy).")
        .def(
            "save",
            [](py_model& pm, const std::filesystem::path& path) {
                pm.visit([&](auto& st) { elm::save_model(path.string(), st.model); });
            },
            "path"_a, "Saves as *.safetensors (published names, config in the metadata; atomic).")
        .def("info", &info,
             "dtype, version, config, trainable parameter count and the parameter list as a dict.")
        .def(
            "config_json", [](py_model& pm) { return elm::to_json(config_of(pm)); },
            "The config as JSON under the published names.")
        .def("__repr__", [](py_model& pm) {
            const auto& c = config_of(pm);
            return "Model(" + std::string(elm::to_string(c.version)) +
                   ", num_input=" + std::to_string(c.num_input) +
                   ", num_output=" + std::to_string(c.num_output) +
                   ", num_memory=" + std::to_string(c.num_memory) + ", dtype=" + to_string(pm.dtype()) + ")";
        });

    m.def(
        "load_model",
        [](const std::filesystem::path& path, const pyb::handle& dtype) {
            const auto p = parse_precision(dtype);
            pyb::gil_scoped_release nogil;
            if (p == precision::f32) return std::make_unique<py_model>(elm::load_model<float>(path.string()));
            return std::make_unique<py_model>(elm::load_model<double>(path.string()));
        },
        "path"_a, "dtype"_a = "float32",
        "Loads a model: our *.safetensors, an official model folder (model_config.json + one .pt), or a .pt "
        "with model_config.json beside it. A missing path raises FileNotFoundError.");
    m.def(
        "save_model",
        [](const std::filesystem::path& path, py_model& pm) {
            pm.visit([&](auto& st) { elm::save_model(path.string(), st.model); });
        },
        "path"_a, "model"_a, "Saves a model as *.safetensors (atomic).");
    pyb::class_<py_stream>(m, "Stream",
                           R"(Step-by-step inference (Model.stream(batch)): state kept between calls.)")
        .def("step", &stream_step, "x"_a,
             "Advance one step: x [batch, num_input] (or [num_input] for batch 1) -> y [batch, num_output].")
        .def(
            "reset", [](py_stream& s) { s.visit([](auto& st) { st.reset(); }); }, "Back to the zero state.")
        .def_property_readonly("batch",
                               [](py_stream& s) { return s.visit([](auto& st) { return st.batch(); }); })
        .def_property_readonly(
            "memory",
            [](py_stream& s) {
                return s.visit([](auto& st) -> pyb::array {
                    using T = typename std::decay_t<decltype(st)>::value_type;
                    const auto memory = st.memory();
                    pyb::array_t<T> out({st.batch(), st.config().num_memory});
                    std::copy(memory.begin(), memory.end(), out.mutable_data());
                    return out;
                });
            },
            "m_t after the latest step, [batch, num_memory] (a copy).");
    m.def("set_num_threads", &elm::set_num_threads, "n"_a,
          "Threads used by forward/backward (default: all cores). Results do not depend on it.");
    m.def("num_threads", &elm::num_threads);
}

}  // namespace elm::py
