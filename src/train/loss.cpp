// Training losses per task (reference/paper.md §1.6) with torch's 'mean' reduction. Each element's loss and
// gradient are computed in double and loss sums are accumulated in double, whatever T is; gradients are
// rounded to T once. Formulas are the numerically stable ones (no exp overflow for any finite logit):
//   BCEWithLogits(x, y) = max(x, 0) - x·y + log1p(exp(-|x|)),       d/dx = σ(x) - y
//   CrossEntropy(z, c)  = logsumexp(z) - z_c,                       d/dz_k = softmax(z)_k - [k = c]
//   MSE(p, y)           = (p - y)²,                                 d/dp = 2(p - y)

#include <elmneuron/error.hpp>
#include <elmneuron/loss.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace elm {
namespace {

std::string elements(std::size_t n) { return std::to_string(n) + " elements"; }

void check_size(const char* where, const char* what, std::size_t expected, std::size_t got,
                const char* shape) {
    if (expected != got) throw error(where, what, elements(expected) + " (" + shape + ")", elements(got));
}

void check_dims(const char* where, int batch, int time, int num_output, int min_output) {
    if (batch < 1) throw error(where, "batch", "batch >= 1", std::to_string(batch));
    if (time < 1) throw error(where, "time", "time >= 1", std::to_string(time));
    if (num_output < min_output)
        throw error(where, "num_output", "num_output >= " + std::to_string(min_output),
                    std::to_string(num_output));
}

std::size_t volume(int batch, int time, int num_output) {
    return static_cast<std::size_t>(batch) * static_cast<std::size_t>(time) *
           static_cast<std::size_t>(num_output);
}

double sigmoid(double x) {
    if (x >= 0) return 1 / (1 + std::exp(-x));
    const double e = std::exp(x);
    return e / (1 + e);
}

double bce_term(double x, double y) { return std::max(x, 0.0) - x * y + std::log1p(std::exp(-std::abs(x))); }

void check_label(const char* where, std::size_t b, std::int32_t label, int num_output) {
    if (label < 0 || label >= num_output)
        throw error(where, "labels[" + std::to_string(b) + "]",
                    "a class in [0, " + std::to_string(num_output) + ")", std::to_string(label));
}

}  // namespace

template <class T>
double bce_with_logits(std::span<const T> logits, std::span<const T> targets, std::span<T> dlogits) {
    const char* where = "bce_with_logits";
    if (logits.empty()) throw error(where, "logits", "at least one element", "0 elements");
    check_size(where, "targets", logits.size(), targets.size(), "as logits");
    check_size(where, "dlogits", logits.size(), dlogits.size(), "as logits");
    const double inv_n = 1.0 / static_cast<double>(logits.size());
    double sum = 0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        const double x = static_cast<double>(logits[i]), y = static_cast<double>(targets[i]);
        sum += bce_term(x, y);
        dlogits[i] = static_cast<T>((sigmoid(x) - y) * inv_n);
    }
    return sum * inv_n;
}

template <class T>
double mse(std::span<const T> pred, std::span<const T> targets, std::span<T> dpred) {
    const char* where = "mse";
    if (pred.empty()) throw error(where, "pred", "at least one element", "0 elements");
    check_size(where, "targets", pred.size(), targets.size(), "as pred");
    check_size(where, "dpred", pred.size(), dpred.size(), "as pred");
    const double inv_n = 1.0 / static_cast<double>(pred.size());
    double sum = 0;
    for (std::size_t i = 0; i < pred.size(); ++i) {
        const double d = static_cast<double>(pred[i]) - static_cast<double>(targets[i]);
        sum += d * d;
        dpred[i] = static_cast<T>(2 * d * inv_n);
    }
    return sum * inv_n;
}

template <class T>
double cross_entropy_last_step(std::span<const T> y, int batch, int time, int num_output,
                               std::span<const std::int32_t> labels, std::span<T> dy) {
    const char* where = "cross_entropy_last_step";
    check_dims(where, batch, time, num_output, 1);
    const std::size_t n = volume(batch, time, num_output);
    check_size(where, "y", n, y.size(), "batch·time·num_output");
    check_size(where, "dy", n, dy.size(), "batch·time·num_output");
    check_size(where, "labels", static_cast<std::size_t>(batch), labels.size(), "batch");
    for (std::size_t b = 0; b < labels.size(); ++b) check_label(where, b, labels[b], num_output);

    std::fill(dy.begin(), dy.end(), T(0));
    const auto d_o = static_cast<std::size_t>(num_output);
    const std::size_t sample = static_cast<std::size_t>(time) * d_o;
    const double inv_b = 1.0 / batch;
    double sum = 0;
    for (std::size_t b = 0; b < static_cast<std::size_t>(batch); ++b) {
        const std::size_t last = b * sample + sample - d_o;
        const T* z = y.data() + last;
        double z_max = -std::numeric_limits<double>::infinity();
        for (std::size_t k = 0; k < d_o; ++k) z_max = std::max(z_max, static_cast<double>(z[k]));
        double s = 0;
        for (std::size_t k = 0; k < d_o; ++k) s += std::exp(static_cast<double>(z[k]) - z_max);
        const double lse = z_max + std::log(s);
        const auto c = static_cast<std::size_t>(labels[b]);
        sum += lse - static_cast<double>(z[c]);
        for (std::size_t k = 0; k < d_o; ++k) {
            const double p = std::exp(static_cast<double>(z[k]) - lse);
            dy[last + k] = static_cast<T>((p - (k == c ? 1.0 : 0.0)) * inv_b);
        }
    }
    return sum * inv_b;
}

template <class T>
double neuronio_loss(std::span<const T> y, int batch, int time, int num_output, std::span<const T> spike,
                     std::span<const T> soma, int burn_in, std::span<T> dy) {
    const char* where = "neuronio_loss";
    check_dims(where, batch, time, num_output, 2);
    if (burn_in < 0 || burn_in >= time)
        throw error(where, "burn_in", "0 <= burn_in < time = " + std::to_string(time),
                    std::to_string(burn_in));
    const std::size_t n = volume(batch, time, num_output);
    const std::size_t bt = volume(batch, time, 1);
    check_size(where, "y", n, y.size(), "batch·time·num_output");
    check_size(where, "dy", n, dy.size(), "batch·time·num_output");
    check_size(where, "spike", bt, spike.size(), "batch·time");
    check_size(where, "soma", bt, soma.size(), "batch·time");

    std::fill(dy.begin(), dy.end(), T(0));
    const auto d_o = static_cast<std::size_t>(num_output);
    const auto steps = static_cast<std::size_t>(time);
    // 0.5·mean BCE + 0.5·mean MSE over the batch·(time - burn_in) counted steps.
    const double half_inv_n = 0.5 / static_cast<double>(volume(batch, time - burn_in, 1));
    double bce_sum = 0, mse_sum = 0;
    for (std::size_t b = 0; b < static_cast<std::size_t>(batch); ++b) {
        for (std::size_t t = static_cast<std::size_t>(burn_in); t < steps; ++t) {
            const std::size_t i = b * steps + t, o = i * d_o;
            const double x = static_cast<double>(y[o]), s = static_cast<double>(spike[i]);
            const double d = static_cast<double>(y[o + 1]) - static_cast<double>(soma[i]);
            bce_sum += bce_term(x, s);
            mse_sum += d * d;
            dy[o] = static_cast<T>((sigmoid(x) - s) * half_inv_n);
            dy[o + 1] = static_cast<T>(2 * d * half_inv_n);
        }
    }
    return (bce_sum + mse_sum) * half_inv_n;
}

template <class T>
double last_step_accuracy(std::span<const T> y, int batch, int time, int num_output,
                          std::span<const std::int32_t> labels) {
    const char* where = "last_step_accuracy";
    check_dims(where, batch, time, num_output, 1);
    check_size(where, "y", volume(batch, time, num_output), y.size(), "batch·time·num_output");
    check_size(where, "labels", static_cast<std::size_t>(batch), labels.size(), "batch");
    const auto d_o = static_cast<std::size_t>(num_output);
    const std::size_t sample = static_cast<std::size_t>(time) * d_o;
    std::size_t correct = 0;
    for (std::size_t b = 0; b < labels.size(); ++b) {
        check_label(where, b, labels[b], num_output);
        const T* z = y.data() + b * sample + sample - d_o;
        // torch.argmax: the first maximal index, NaN counting as maximal.
        std::size_t best = 0;
        for (std::size_t k = 1; k < d_o && !std::isnan(z[best]); ++k)
            if (z[k] > z[best] || std::isnan(z[k])) best = k;
        if (best == static_cast<std::size_t>(labels[b])) ++correct;
    }
    return static_cast<double>(correct) / static_cast<double>(batch);
}

#define ELM_INSTANTIATE_LOSS(T)                                                               \
    template double bce_with_logits<T>(std::span<const T>, std::span<const T>, std::span<T>); \
    template double mse<T>(std::span<const T>, std::span<const T>, std::span<T>);             \
    template double cross_entropy_last_step<T>(std::span<const T>, int, int, int,             \
                                               std::span<const std::int32_t>, std::span<T>);  \
    template double neuronio_loss<T>(std::span<const T>, int, int, int, std::span<const T>,   \
                                     std::span<const T>, int, std::span<T>);                  \
    template double last_step_accuracy<T>(std::span<const T>, int, int, int, std::span<const std::int32_t>);

ELM_INSTANTIATE_LOSS(float)
ELM_INSTANTIATE_LOSS(double)

#undef ELM_INSTANTIATE_LOSS

}  // namespace elm
