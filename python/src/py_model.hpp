#pragma once
// The Python Model: one elm::model in either precision, with the activations of its latest forward call
// (what backward needs), behind one mutex because forward/backward run without the GIL.

#include <elmneuron/model.hpp>

#include <mutex>
#include <optional>
#include <utility>
#include <variant>

#include "common.hpp"

namespace elm::py {

template <class T>
struct model_state {
    using scalar = T;
    elm::model<T> model;
    elm::workspace<T> ws;                       // activations of the latest successful forward
    elm::workspace<T> infer_ws;                 // buffers of infer (nothing kept for backward)
    std::optional<elm::sparse_input<T>> input;  // its input; empty before forward, after a failed one,
                                                // after backward (which consumes ws) and after a parameter
                                                // update through load_state_dict or Optimizer.step
};

// Never moved or copied once the Python object owns it: parameter views point into the model.
class py_model {
public:
    template <class T>
    explicit py_model(elm::model<T>&& m)
        : state_(std::in_place_type<model_state<T>>, model_state<T>{std::move(m), {}, {}, {}}) {}
    py_model(const py_model&) = delete;
    py_model& operator=(const py_model&) = delete;

    precision dtype() const {
        return std::holds_alternative<model_state<float>>(state_) ? precision::f32 : precision::f64;
    }

    // f(model_state<T>&) for the model's T.
    template <class F>
    decltype(auto) visit(F&& f) {
        return std::visit(std::forward<F>(f), state_);
    }

    // Lock only after releasing the GIL (a thread holding the GIL must never wait for this mutex).
    std::mutex& mutex() { return mutex_; }

private:
    std::variant<model_state<float>, model_state<double>> state_;
    std::mutex mutex_;
};

}  // namespace elm::py

namespace elm::py {

// A Python Stream: elm::stream over a snapshot of a Model's parameters, one step per call.
class py_stream {
public:
    template <class T>
    explicit py_stream(elm::stream<T>&& s) : stream_(std::move(s)) {}
    template <class F>
    decltype(auto) visit(F&& f) {
        return std::visit(std::forward<F>(f), stream_);
    }

private:
    std::variant<elm::stream<float>, elm::stream<double>> stream_;
};

}  // namespace elm::py
