// Optimisers, learning-rate schedules and gradient clipping with torch.optim semantics
// (reference/paper.md §3: Adam for NeuronIO and LRA, Adamax for SHD, cosine decay stepped per batch).
//
// Each update follows torch's single-tensor code path (torch 1.13-2.x `_single_tensor_<name>`), operation by
// operation: element-wise arithmetic is done in T, as torch does for a float32 or float64 parameter, with the
// Python-float scalars (lr, betas, bias corrections) computed in double and rounded to T where torch hands
// them to a tensor op. Remaining differences to torch are rounding-level (torch's vector kernels may fuse a
// multiply-add; torch 1.13 writes the first moment as m·β1 + (1-β1)·g, torch 2.x and this file as
// lerp(m, g, 1-β1)). tests/unit/test_optim.cpp checks trajectories recorded from real torch.
//
// Masks: an element with mask byte 0 is a parameter without a gradient (frozen, requires_grad=False): it and
// its state keep their values (its state stays zero). The step count is shared by all elements, as when every
// trainable torch parameter steps together; the mask is meant to be fixed for a run.

#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/optim.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <numbers>
#include <string>

namespace elm {
namespace {

const char* const config_source = "optimizer config";

std::string num(double v) {  // shortest round-trip form
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

// torch's lerp (ATen/native/Lerp.h): the formula switches at |weight| = 0.5 for accuracy.
template <class T>
T torch_lerp(T self, T end, T weight) {
    return std::abs(weight) < T(0.5) ? self + weight * (end - self) : end - (end - self) * (T(1) - weight);
}

// torch.maximum / torch.amax propagate NaN; std::max would not.
template <class T>
T nan_max(T a, T b) {
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<T>::quiet_NaN();
    return b > a ? b : a;
}

// The updates below are element-wise: each reads and writes its own element only, so the result is the same
// on any number of threads and in SIMD lanes. They run on the library's threads (set_num_threads) once the
// tensor is long enough to repay starting them, and select by the mask instead of skipping, so that they
// vectorise (CMakeLists.txt compiles this file with -fno-math-errno, as a sqrt that may set errno is a call
// per element, and -ffp-contract=off, so that the vector loop and its scalar remainder round alike). Why: on
// the SHD shape (183k parameters) the one-thread Adam step was ~2 % of a one-thread train step and ~4 % of a
// two-thread one (bound by memory traffic: two threads take it from 0.6 to 0.36 ms), and with more cores a
// serial part weighs more. tests/unit/test_optim.cpp checks 1, 2 and 3 threads against torch.
constexpr std::size_t parallel_update_min = 32768;
int update_threads(std::size_t n) { return n >= parallel_update_min ? num_threads() : 1; }

void check_range(const char* field, double v, double lo, bool lo_open, double hi, bool hi_open,
                 const std::string& expected) {
    const bool ok = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    if (!ok) throw error(config_source, field, expected, num(v));
}

void validate(const optimizer_config& c) {
    constexpr double inf = std::numeric_limits<double>::infinity();
    check_range("lr", c.lr, 0, false, inf, true, "a finite number >= 0");
    check_range("weight_decay", c.weight_decay, 0, false, inf, true, "a finite number >= 0");
    if (c.kind == optimizer_kind::sgd) {
        check_range("momentum", c.momentum, 0, false, inf, true, "a finite number >= 0");
        check_range("dampening", c.dampening, -inf, true, inf, true, "a finite number");
        if (c.nesterov && (c.momentum <= 0 || c.dampening != 0))
            throw error(config_source, "nesterov", "momentum > 0 and dampening = 0 with nesterov",
                        "momentum " + num(c.momentum) + ", dampening " + num(c.dampening));
    } else {
        check_range("beta1", c.beta1, 0, false, 1, true, "a number in [0, 1)");
        check_range("beta2", c.beta2, 0, false, 1, true, "a number in [0, 1)");
        check_range("eps", c.eps, 0, false, inf, true, "a finite number >= 0");
    }
}

bool uses_first(const optimizer_config& c) { return c.kind != optimizer_kind::sgd || c.momentum != 0; }
bool uses_second(const optimizer_config& c) { return c.kind != optimizer_kind::sgd; }

// State tensor names follow torch's state_dict keys.
const char* first_name(optimizer_kind k) {
    return k == optimizer_kind::sgd ? "optim.momentum_buffer" : "optim.exp_avg";
}
const char* second_name(optimizer_kind k) {
    return k == optimizer_kind::adamax ? "optim.exp_inf" : "optim.exp_avg_sq";
}
const char* const step_name = "optim.step";
const char* const kind_key = "optim.kind";

void check_sizes(const char* what, std::size_t expected, std::size_t got) {
    if (expected != got)
        throw error("optimizer::step", what, std::to_string(expected) + " elements (the optimizer's size)",
                    std::to_string(got) + " elements");
}

}  // namespace

optimizer_kind parse_optimizer_kind(std::string_view name, std::string_view source) {
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    for (optimizer_kind k :
         {optimizer_kind::sgd, optimizer_kind::adam, optimizer_kind::adamw, optimizer_kind::adamax})
        if (lower == to_string(k)) return k;
    throw error(std::string(source), "optimizer", "one of \"sgd\", \"adam\", \"adamw\", \"adamax\"",
                "\"" + std::string(name) + "\"");
}

const char* to_string(optimizer_kind k) {
    switch (k) {
        case optimizer_kind::sgd:
            return "sgd";
        case optimizer_kind::adam:
            return "adam";
        case optimizer_kind::adamw:
            return "adamw";
        case optimizer_kind::adamax:
            return "adamax";
    }
    return "?";
}

template <class T>
optimizer<T>::optimizer(const optimizer_config& config, std::size_t num_params) : config_(config) {
    validate(config_);
    // first_ always has the full size: it also records num_params for SGD without momentum (then unused).
    first_.assign(num_params, T(0));
    if (uses_second(config_)) second_.assign(num_params, T(0));
}

template <class T>
void optimizer<T>::step(std::span<T> params, std::span<const T> grads, std::span<const unsigned char> mask,
                        double lr) {
    check_sizes("params", first_.size(), params.size());
    check_sizes("grads", first_.size(), grads.size());
    check_sizes("mask", first_.size(), mask.size());
    if (!(lr >= 0) || !std::isfinite(lr))
        throw error("optimizer::step", "lr", "a finite number >= 0", num(lr));

    ++steps_;
    const optimizer_config& c = config_;
    const std::size_t n = params.size();
    const bool decay = c.weight_decay != 0;
    const T wd = static_cast<T>(c.weight_decay);

    const int threads = update_threads(n);
    T* const P = params.data();
    const T* const G = grads.data();
    const unsigned char* const K = mask.data();

    if (c.kind == optimizer_kind::sgd) {
        // buf = d_p on the first step (torch clones it), then buf·μ + (1-dampening)·d_p.
        const bool momentum = c.momentum != 0, first_step = steps_ == 1;
        const T mu = static_cast<T>(c.momentum), keep = static_cast<T>(1 - c.dampening),
                neg_lr = static_cast<T>(-lr);
        T* const buffer = first_.data();
        const bool nesterov = c.nesterov;
#pragma omp parallel for simd schedule(static) num_threads(threads) if (threads > 1)
        for (std::size_t i = 0; i < n; ++i) {
            const bool on = K[i] != 0;
            const T p = P[i], old = buffer[i];
            T d = G[i];
            if (decay) d = d + wd * p;
            if (momentum) {
                const T buf = first_step ? d : old * mu + keep * d;
                d = nesterov ? d + mu * buf : buf;
                buffer[i] = on ? buf : old;
            }
            P[i] = on ? p + neg_lr * d : p;
        }
        return;
    }

    // Bias corrections are Python floats in torch: computed in double.
    const double t = static_cast<double>(steps_);
    const double bias_correction1 = 1 - std::pow(c.beta1, t);
    const T w1 = static_cast<T>(1 - c.beta1), b2 = static_cast<T>(c.beta2), eps = static_cast<T>(c.eps);

    if (c.kind == optimizer_kind::adamax) {
        const T neg_clr = static_cast<T>(-(lr / bias_correction1));
        T* const first = first_.data();
        T* const second = second_.data();
#pragma omp parallel for simd schedule(static) num_threads(threads) if (threads > 1)
        for (std::size_t i = 0; i < n; ++i) {
            const bool on = K[i] != 0;
            const T p = P[i], m_old = first[i], u_old = second[i];
            T g = G[i];
            if (decay) g = g + wd * p;
            const T m = torch_lerp(m_old, g, w1);
            const T u = nan_max(u_old * b2, std::abs(g) + eps);
            first[i] = on ? m : m_old;
            second[i] = on ? u : u_old;
            P[i] = on ? p + neg_clr * m / u : p;
        }
        return;
    }

    // Adam / AdamW.
    const bool adamw = c.kind == optimizer_kind::adamw;
    const double bias_correction2 = 1 - std::pow(c.beta2, t);
    const T neg_step_size = static_cast<T>(-(lr / bias_correction1));
    const T bc2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
    const T w2 = static_cast<T>(1 - c.beta2);
    const T shrink = static_cast<T>(1 - lr * c.weight_decay);  // AdamW's decoupled decay, applied first
    T* const first = first_.data();
    T* const second = second_.data();
#pragma omp parallel for simd schedule(static) num_threads(threads) if (threads > 1)
    for (std::size_t i = 0; i < n; ++i) {
        const bool on = K[i] != 0;
        const T p_old = P[i], m_old = first[i], v_old = second[i];
        T g = G[i];
        T p = p_old;
        if (adamw)
            p = p * shrink;
        else if (decay)
            g = g + wd * p;
        const T m = torch_lerp(m_old, g, w1);
        const T v = v_old * b2 + w2 * g * g;
        const T denom = std::sqrt(v) / bc2_sqrt + eps;
        first[i] = on ? m : m_old;
        second[i] = on ? v : v_old;
        P[i] = on ? p + neg_step_size * m / denom : p_old;
    }
}

template <class T>
void optimizer<T>::save_state(tensor_file& out) const {
    const char* names[] = {step_name, first_name(config_.kind), second_name(config_.kind)};
    std::erase_if(out.tensors, [&](const tensor& x) {
        return x.name == names[0] || x.name == names[1] || x.name == names[2];
    });
    out.metadata[kind_key] = to_string(config_.kind);
    const std::int64_t step = steps_;
    out.tensors.push_back(make_tensor<std::int64_t>(step_name, {1}, std::span<const std::int64_t>(&step, 1)));
    const auto n = static_cast<std::int64_t>(first_.size());
    if (uses_first(config_))
        out.tensors.push_back(make_tensor<T>(first_name(config_.kind), {n}, std::span<const T>(first_)));
    if (uses_second(config_))
        out.tensors.push_back(make_tensor<T>(second_name(config_.kind), {n}, std::span<const T>(second_)));
}

template <class T>
void optimizer<T>::load_state(const tensor_file& in) {
    const auto kind = in.metadata.find(kind_key);
    if (kind == in.metadata.end())
        throw error(in.source, kind_key, std::string("\"") + to_string(config_.kind) + "\" (metadata)",
                    "missing", "the file holds no optimiser state");
    if (kind->second != to_string(config_.kind))
        throw error(in.source, kind_key, std::string("\"") + to_string(config_.kind) + "\"",
                    "\"" + kind->second + "\"", "the state was saved by a different optimiser");

    const std::vector<std::int64_t> step = in.at(step_name, {1}).template to<std::int64_t>();
    if (step[0] < 0) throw error(in.source, step_name, "a step count >= 0", std::to_string(step[0]));

    // Read everything before changing anything, so that a failed load leaves the optimiser as it was.
    const auto n = static_cast<std::int64_t>(first_.size());
    std::vector<T> first(first_.size(), T(0)), second;
    if (uses_first(config_)) first = in.at(first_name(config_.kind), {n}).template to<T>();
    if (uses_second(config_)) {
        second = in.at(second_name(config_.kind), {n}).template to<T>();
        for (std::size_t i = 0; i < second.size(); ++i)
            if (!(second[i] >= 0))
                throw error(in.source, second_name(config_.kind), "non-negative values",
                            num(static_cast<double>(second[i])) + " at index " + std::to_string(i));
    }
    steps_ = step[0];
    first_ = std::move(first);
    second_ = std::move(second);
}

template class optimizer<float>;
template class optimizer<double>;

double lr_schedule::at(std::int64_t step) const {
    if (step < 0) throw error("lr_schedule", "step", "a step >= 0", std::to_string(step));
    if (kind == schedule_kind::constant) return base_lr;
    if (total_steps < 1)
        throw error("lr_schedule", "total_steps", "a step count >= 1", std::to_string(total_steps));
    // Same operation order as torch's CosineAnnealingLR._get_closed_form_lr.
    return eta_min + (base_lr - eta_min) *
                         (1 + std::cos(std::numbers::pi * static_cast<double>(step) /
                                       static_cast<double>(total_steps))) /
                         2;
}

template <class T>
double grad_norm(std::span<const T> grads, std::span<const unsigned char> mask) {
    if (grads.size() != mask.size())
        throw error("grad_norm", "mask", std::to_string(grads.size()) + " elements (as grads)",
                    std::to_string(mask.size()) + " elements");
    double sum = 0;
    for (std::size_t i = 0; i < grads.size(); ++i)
        if (mask[i]) sum += static_cast<double>(grads[i]) * static_cast<double>(grads[i]);
    return std::sqrt(sum);
}

template <class T>
double clip_grad_norm(std::span<T> grads, std::span<const unsigned char> mask, double max_norm) {
    if (!(max_norm > 0) || !std::isfinite(max_norm))
        throw error("clip_grad_norm", "max_norm", "a finite number > 0", num(max_norm));
    const double total_norm = grad_norm<T>(grads, mask);
    // torch multiplies by min(coef, 1) unconditionally; a factor of exactly 1 changes nothing, and a NaN
    // coefficient (non-finite norm) propagates into the gradients as in torch.
    const double coef = max_norm / (total_norm + 1e-6);
    if (coef < 1 || std::isnan(coef)) {
        const T scale = static_cast<T>(coef);
        for (std::size_t i = 0; i < grads.size(); ++i)
            if (mask[i]) grads[i] = grads[i] * scale;
    }
    return total_norm;
}

template double grad_norm<float>(std::span<const float>, std::span<const unsigned char>);
template double grad_norm<double>(std::span<const double>, std::span<const unsigned char>);
template double clip_grad_norm<float>(std::span<float>, std::span<const unsigned char>, double);
template double clip_grad_norm<double>(std::span<double>, std::span<const unsigned char>, double);

}  // namespace elm
