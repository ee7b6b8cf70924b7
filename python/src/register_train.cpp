// Training pieces: Optimizer (torch.optim semantics over a Model's parameter block), LRSchedule,
// clip_grad_norm and the losses (each returns the loss and d loss / d input).

#include <elmneuron/error.hpp>
#include <elmneuron/loss.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/optim.hpp>
#include <elmneuron/tensor_file.hpp>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
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

// ---- Optimizer

class py_optimizer {
public:
    template <class T>
    py_optimizer(const elm::optimizer_config& c, std::size_t n, std::type_identity<T>)
        : opt(std::in_place_type<elm::optimizer<T>>, c, n),
          size(n),
          dtype(std::is_same_v<T, float> ? precision::f32 : precision::f64) {}

    std::variant<elm::optimizer<float>, elm::optimizer<double>> opt;
    std::size_t size;
    precision dtype;

    template <class F>
    decltype(auto) visit(F&& f) {
        return std::visit(std::forward<F>(f), opt);
    }
};

std::unique_ptr<py_optimizer> make_optimizer(py_model& model, const std::string& kind, double lr,
                                             std::pair<double, double> betas, double eps, double weight_decay,
                                             double momentum, double dampening, bool nesterov) {
    elm::optimizer_config c;
    c.kind = elm::parse_optimizer_kind(kind, "Optimizer");
    c.lr = lr;
    c.beta1 = betas.first;
    c.beta2 = betas.second;
    c.eps = eps;
    c.weight_decay = weight_decay;
    c.momentum = momentum;
    c.dampening = dampening;
    c.nesterov = nesterov;
    return model.visit([&](auto& st) {
        using T = typename std::decay_t<decltype(st)>::scalar;
        return std::make_unique<py_optimizer>(c, st.model.parameters().size(), std::type_identity<T>{});
    });
}

// Gradients {name: array} into the flat layout of `m`, and the mask of elements to update: trainable
// parameters that have a gradient (a missing name is skipped, as torch skips parameters whose .grad is None).
template <class T>
void flatten_grads(const elm::model<T>& m, const pyb::handle& grads, std::vector<T>& flat,
                   std::vector<unsigned char>& mask) {
    const char* src = "Optimizer.step";
    if (!pyb::isinstance<pyb::dict>(grads))
        throw elm::error(src, "grads", "a dict {name: gradient}", repr_of(pyb::type::of(grads)));
    flat.assign(m.parameters().size(), T(0));
    mask.assign(flat.size(), 0);
    const auto trainable = m.trainable_mask();
    for (const auto& [key, value] : pyb::reinterpret_borrow<pyb::dict>(grads)) {
        if (!pyb::isinstance<pyb::str>(key))
            throw elm::error(src, "grads", "str keys (parameter names)", repr_of(key));
        const auto name = pyb::cast<std::string>(key);
        const auto& p = m.info(name);  // unknown names: elm::error listing the known ones
        if (!p.trainable)
            throw elm::error(src, "grads[" + name + "]", "a trainable parameter", "a frozen one");
        const auto a = as_array<T>(value, src, "grads[" + name + "]");  // a copy if not T / not C order
        if (shape_of(a) != p.shape)
            throw elm::error(src, "grads[" + name + "]", "shape " + shape_string(p.shape),
                             "shape " + shape_string(shape_of(a)));
        std::copy(a.data(), a.data() + a.size(), flat.begin() + static_cast<std::ptrdiff_t>(p.offset));
        for (std::size_t i = p.offset; i < p.offset + p.size; ++i) mask[i] = trainable[i];
    }
}

void optimizer_step(py_optimizer& o, py_model& pm, const pyb::handle& grads, std::optional<double> lr) {
    const char* src = "Optimizer.step";
    if (pm.dtype() != o.dtype)
        throw elm::error(src, "model", std::string("a ") + to_string(o.dtype) + " model (the optimizer's)",
                         std::string("a ") + to_string(pm.dtype()) + " model");
    pm.visit([&](auto& st) {
        using T = typename std::decay_t<decltype(st)>::scalar;
        auto& opt = std::get<elm::optimizer<T>>(o.opt);
        if (st.model.parameters().size() != o.size)
            throw elm::error(src, "model",
                             std::to_string(o.size) + " parameters (the model the optimizer was made for)",
                             std::to_string(st.model.parameters().size()));
        std::vector<T> flat;
        std::vector<unsigned char> mask;
        flatten_grads(st.model, grads, flat, mask);
        const double rate = lr.value_or(opt.config().lr);
        pyb::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(pm.mutex());
        opt.step(st.model.parameters(), flat, mask, rate);
        st.input.reset();  // the stored activations belong to the old parameters
    });
}

// ---- clip_grad_norm

template <class T>
double clip_arrays(const std::vector<pyb::array>& arrays, double max_norm) {
    std::vector<T> flat;
    for (const auto& a : arrays) {
        const auto* p = static_cast<const T*>(a.data());
        flat.insert(flat.end(), p, p + a.size());
    }
    const std::vector<unsigned char> mask(flat.size(), 1);
    const double norm = elm::clip_grad_norm<T>(flat, mask, max_norm);
    std::size_t at = 0;
    for (const auto& a : arrays) {
        std::memcpy(const_cast<void*>(a.data()), flat.data() + at, static_cast<std::size_t>(a.nbytes()));
        at += static_cast<std::size_t>(a.size());
    }
    return norm;
}

double clip_grad_norm(const pyb::dict& grads, double max_norm) {
    const char* src = "clip_grad_norm";
    std::vector<pyb::array> arrays;
    std::optional<char> size;
    for (const auto& [key, value] : grads) {
        const std::string field = "grads[" + pyb::str(key).cast<std::string>() + "]";
        if (!pyb::isinstance<pyb::array>(value))
            throw elm::error(src, field, "a numpy array (scaled in place)", repr_of(pyb::type::of(value)));
        auto a = pyb::reinterpret_borrow<pyb::array>(value);
        const auto dt = a.dtype();
        if (dt.kind() != 'f' || (dt.itemsize() != 4 && dt.itemsize() != 8))
            throw elm::error(src, field, "float32 or float64", "dtype " + repr_of(dt));
        if (size && *size != static_cast<char>(dt.itemsize()))
            throw elm::error(src, field, "the dtype of the other gradients", "dtype " + repr_of(dt));
        size = static_cast<char>(dt.itemsize());
        if (!(a.flags() & pyb::array::c_style) || !a.writeable() || dt.byteorder() == '>')
            throw elm::error(src, field, "a writable C-contiguous array in native byte order",
                             "another array");
        arrays.push_back(a);
    }
    if (arrays.empty()) throw elm::error(src, "grads", "at least one gradient", "an empty dict");
    return *size == 4 ? clip_arrays<float>(arrays, max_norm) : clip_arrays<double>(arrays, max_norm);
}

// ---- losses

// The dtype a loss computes in: float32 if the first argument is float32, else float64.
bool is_f32(const pyb::handle& obj, const char* src, const char* field) {
    const auto a = as_numeric_array(obj, src, field);
    return a.dtype().kind() == 'f' && a.dtype().itemsize() == 4;
}

template <class T>
std::vector<std::int64_t> checked_shape(const carray<T>& a, std::size_t ndim, const char* src,
                                        const char* field, const char* expected) {
    if (static_cast<std::size_t>(a.ndim()) != ndim)
        throw elm::error(src, field, expected, "shape " + shape_string(shape_of(a)));
    for (std::int64_t n : shape_of(a))
        if (n < 1 || n > std::numeric_limits<int>::max())
            throw elm::error(src, field, std::string(expected) + " with every dimension >= 1",
                             "shape " + shape_string(shape_of(a)));
    return shape_of(a);
}

std::vector<std::int32_t> labels_of(const pyb::handle& obj, std::int64_t batch, const char* src) {
    const auto raw = as_numeric_array(obj, src, "labels");
    if (raw.dtype().kind() != 'i' && raw.dtype().kind() != 'u')
        throw elm::error(src, "labels", "an integer array", "dtype " + repr_of(raw.dtype()));
    const auto a = as_array<std::int64_t>(raw, src, "labels");
    if (a.ndim() != 1 || a.size() != batch)
        throw elm::error(src, "labels", "shape [" + std::to_string(batch) + "] (one class per sample)",
                         "shape " + shape_string(shape_of(a)));
    std::vector<std::int32_t> out(static_cast<std::size_t>(a.size()));
    for (std::size_t i = 0; i < out.size(); ++i) {
        const auto v = a.data()[i];
        // Checked before narrowing; the loss checks the upper bound num_output.
        if (v < 0 || v > std::numeric_limits<std::int32_t>::max())
            throw elm::error(src, "labels[" + std::to_string(i) + "]", "a class index >= 0",
                             std::to_string(v));
        out[i] = static_cast<std::int32_t>(v);
    }
    return out;
}

template <class T>
std::span<const T> cspan(const carray<T>& a) {
    return {a.data(), static_cast<std::size_t>(a.size())};
}
template <class T>
std::span<T> mspan(pyb::array_t<T>& a) {
    return {a.mutable_data(), static_cast<std::size_t>(a.size())};
}

template <class T>
pyb::tuple elementwise_loss(const pyb::handle& x_obj, const pyb::handle& y_obj, const char* src,
                            const char* xname,
                            double (*loss)(std::span<const T>, std::span<const T>, std::span<T>)) {
    const auto x = as_array<T>(x_obj, src, xname);
    const auto y = as_array<T>(y_obj, src, "targets");
    if (shape_of(x) != shape_of(y))
        throw elm::error(src, "targets", "shape " + shape_string(shape_of(x)) + " (as " + xname + ")",
                         "shape " + shape_string(shape_of(y)));
    std::vector<pyb::ssize_t> dims(x.shape(), x.shape() + x.ndim());
    pyb::array_t<T> dx(dims);
    const double value = loss(cspan(x), cspan(y), mspan(dx));
    return pyb::make_tuple(value, dx);
}

template <class T>
pyb::tuple cross_entropy(const pyb::handle& y_obj, const pyb::handle& labels_obj) {
    const char* src = "cross_entropy_last_step";
    const auto y = as_array<T>(y_obj, src, "y");
    const auto s = checked_shape(y, 3, src, "y", "a [batch, time, num_output] array");
    const auto labels = labels_of(labels_obj, s[0], src);
    pyb::array_t<T> dy({s[0], s[1], s[2]});
    const double value = elm::cross_entropy_last_step<T>(
        cspan(y), static_cast<int>(s[0]), static_cast<int>(s[1]), static_cast<int>(s[2]), labels, mspan(dy));
    return pyb::make_tuple(value, dy);
}

template <class T>
pyb::tuple neuronio(const pyb::handle& y_obj, const pyb::handle& spike_obj, const pyb::handle& soma_obj,
                    int burn_in) {
    const char* src = "neuronio_loss";
    const auto y = as_array<T>(y_obj, src, "y");
    const auto s = checked_shape(y, 3, src, "y", "a [batch, time, num_output] array");
    const auto spike = as_array<T>(spike_obj, src, "spike");
    const auto soma = as_array<T>(soma_obj, src, "soma");
    const std::vector<std::int64_t> bt{s[0], s[1]};
    if (shape_of(spike) != bt)
        throw elm::error(src, "spike", "shape " + shape_string(bt), "shape " + shape_string(shape_of(spike)));
    if (shape_of(soma) != bt)
        throw elm::error(src, "soma", "shape " + shape_string(bt), "shape " + shape_string(shape_of(soma)));
    pyb::array_t<T> dy({s[0], s[1], s[2]});
    const double value =
        elm::neuronio_loss<T>(cspan(y), static_cast<int>(s[0]), static_cast<int>(s[1]),
                              static_cast<int>(s[2]), cspan(spike), cspan(soma), burn_in, mspan(dy));
    return pyb::make_tuple(value, dy);
}

template <class T>
double accuracy(const pyb::handle& y_obj, const pyb::handle& labels_obj) {
    const char* src = "last_step_accuracy";
    const auto y = as_array<T>(y_obj, src, "y");
    const auto s = checked_shape(y, 3, src, "y", "a [batch, time, num_output] array");
    const auto labels = labels_of(labels_obj, s[0], src);
    return elm::last_step_accuracy<T>(cspan(y), static_cast<int>(s[0]), static_cast<int>(s[1]),
                                      static_cast<int>(s[2]), labels);
}

}  // namespace

void register_train(pyb::module_& m) {
    pyb::class_<py_optimizer>(m, "Optimizer", R"(torch.optim semantics over a Model's parameters.

Optimizer(model, kind="adam", lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum=0.0,
dampening=0.0, nesterov=False); kind is "sgd", "adam", "adamw" or "adamax" with the formulas and update
order of torch's single-tensor implementations. step(model, grads, lr=None) updates the model in place
from {name: gradient} (as returned by Model.backward; the gradients are copied into one flat buffer);
only trainable parameters present in grads are updated. lr overrides the configured rate for this step
(e.g. from an LRSchedule).)")
        .def(pyb::init(&make_optimizer), "model"_a, "kind"_a = "adam", "lr"_a = 1e-3,
             "betas"_a = std::pair<double, double>(0.9, 0.999), "eps"_a = 1e-8, "weight_decay"_a = 0.0,
             "momentum"_a = 0.0, "dampening"_a = 0.0, "nesterov"_a = false)
        .def("step", &optimizer_step, "model"_a, "grads"_a, "lr"_a = pyb::none())
        .def_property_readonly("steps",
                               [](py_optimizer& o) { return o.visit([](auto& x) { return x.steps(); }); })
        .def_property_readonly(
            "kind",
            [](py_optimizer& o) { return o.visit([](auto& x) { return elm::to_string(x.config().kind); }); })
        .def_property_readonly("lr",
                               [](py_optimizer& o) { return o.visit([](auto& x) { return x.config().lr; }); })
        .def(
            "state_dict",
            [](py_optimizer& o) {
                elm::tensor_file f;
                o.visit([&](auto& x) { x.save_state(f); });
                pyb::dict metadata = metadata_to_dict(f);
                pyb::dict tensors = tensors_to_dict(std::move(f));
                return pyb::make_tuple(tensors, metadata);
            },
            "Optimiser state as (tensors, metadata), as checkpoints store it (optim.step, optim.exp_avg, "
            "...).")
        .def(
            "load_state_dict",
            [](py_optimizer& o, const pyb::handle& tensors, const pyb::handle& metadata) {
                const auto f = dict_to_tensor_file(tensors, metadata, "Optimizer.load_state_dict");
                o.visit([&](auto& x) { x.load_state(f); });
            },
            "tensors"_a, "metadata"_a, "Restores a state from state_dict(); kind and sizes must match.");

    pyb::class_<elm::lr_schedule>(m, "LRSchedule", R"(Learning rate per step.

LRSchedule(kind="constant" | "cosine", base_lr=1e-3, eta_min=0.0, total_steps=1); at(step) (0-based, before
the step) is base_lr, or torch's CosineAnnealingLR closed form stepped once per batch.)")
        .def(pyb::init([](const std::string& kind, double base_lr, double eta_min, std::int64_t total_steps) {
                 elm::lr_schedule s;
                 if (kind == "constant")
                     s.kind = elm::schedule_kind::constant;
                 else if (kind == "cosine")
                     s.kind = elm::schedule_kind::cosine;
                 else
                     throw elm::error("LRSchedule", "kind", "\"constant\" or \"cosine\"", "\"" + kind + "\"");
                 s.base_lr = base_lr;
                 s.eta_min = eta_min;
                 s.total_steps = total_steps;
                 return s;
             }),
             "kind"_a = "constant", "base_lr"_a = 1e-3, "eta_min"_a = 0.0, "total_steps"_a = 1)
        .def("at", &elm::lr_schedule::at, "step"_a)
        .def("__call__", &elm::lr_schedule::at, "step"_a);

    m.def("clip_grad_norm", &clip_grad_norm, "grads"_a, "max_norm"_a,
          "torch.nn.utils.clip_grad_norm_ over {name: gradient}: scales the arrays in place by "
          "min(1, max_norm / (norm + 1e-6)) and returns the total 2-norm before clipping.");

    m.def(
        "bce_with_logits",
        [](const pyb::handle& logits, const pyb::handle& targets) {
            if (is_f32(logits, "bce_with_logits", "logits"))
                return elementwise_loss<float>(logits, targets, "bce_with_logits", "logits",
                                               &elm::bce_with_logits<float>);
            return elementwise_loss<double>(logits, targets, "bce_with_logits", "logits",
                                            &elm::bce_with_logits<double>);
        },
        "logits"_a, "targets"_a,
        "Mean BCEWithLogits (torch's stable form): (loss, d loss / d logits). float32 if logits are float32, "
        "else float64.");
    m.def(
        "mse",
        [](const pyb::handle& pred, const pyb::handle& targets) {
            if (is_f32(pred, "mse", "pred"))
                return elementwise_loss<float>(pred, targets, "mse", "pred", &elm::mse<float>);
            return elementwise_loss<double>(pred, targets, "mse", "pred", &elm::mse<double>);
        },
        "pred"_a, "targets"_a, "Mean squared error: (loss, d loss / d pred).");
    m.def(
        "cross_entropy_last_step",
        [](const pyb::handle& y, const pyb::handle& labels) {
            return is_f32(y, "cross_entropy_last_step", "y") ? cross_entropy<float>(y, labels)
                                                             : cross_entropy<double>(y, labels);
        },
        "y"_a, "labels"_a,
        "Cross-entropy of the last step's logits y[:, -1, :] against integer labels [batch] (torch "
        "CrossEntropyLoss, mean over the batch): (loss, dy) with dy zero except at the last step.");
    m.def(
        "neuronio_loss",
        [](const pyb::handle& y, const pyb::handle& spike, const pyb::handle& soma, int burn_in) {
            return is_f32(y, "neuronio_loss", "y") ? neuronio<float>(y, spike, soma, burn_in)
                                                   : neuronio<double>(y, spike, soma, burn_in);
        },
        "y"_a, "spike"_a, "soma"_a, "burn_in"_a = 0,
        "NeuronIO loss 0.5*BCEWithLogits(y[...,0], spike) + 0.5*MSE(y[...,1], soma) over steps t >= burn_in; "
        "spike and soma are [batch, time]. Returns (loss, dy).");
    m.def(
        "last_step_accuracy",
        [](const pyb::handle& y, const pyb::handle& labels) {
            return is_f32(y, "last_step_accuracy", "y") ? accuracy<float>(y, labels)
                                                        : accuracy<double>(y, labels);
        },
        "y"_a, "labels"_a, "Fraction of samples whose last-step argmax equals the label.");
}

}  // namespace elm::py
