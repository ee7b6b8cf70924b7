#pragma once
// Optimisers with torch.optim semantics (the same update order and formulas as torch 1.13-2.x
// single-tensor implementations), learning-rate schedules and gradient-norm clipping.
// They work on the flat parameter block of elm::model and update only elements whose mask byte is 1.

#include <elmneuron/tensor_file.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace elm {

enum class optimizer_kind { sgd, adam, adamw, adamax };

struct optimizer_config {
    optimizer_kind kind = optimizer_kind::adam;
    double lr = 1e-3;
    double beta1 = 0.9, beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;  // Adam/Adamax/SGD: L2 added to the gradient; AdamW: decoupled
    double momentum = 0.0;      // SGD only
    double dampening = 0.0;     // SGD only
    bool nesterov = false;      // SGD only
};

optimizer_kind parse_optimizer_kind(std::string_view name, std::string_view source);  // "adam", "adamw", ...
const char* to_string(optimizer_kind k);

template <class T>
class optimizer {
public:
    optimizer(const optimizer_config& config, std::size_t num_params);

    // One step at learning rate `lr` (from a schedule); grads are not modified.
    void step(std::span<T> params, std::span<const T> grads, std::span<const unsigned char> mask, double lr);

    const optimizer_config& config() const { return config_; }
    std::int64_t steps() const { return steps_; }

    // Optimiser state as named tensors ("optim.step", "optim.exp_avg", ...) for checkpoints; load_state
    // checks names, sizes and kind and throws elm::error naming the file on mismatch.
    void save_state(tensor_file& out) const;
    void load_state(const tensor_file& in);

private:
    optimizer_config config_;
    std::int64_t steps_ = 0;
    std::vector<T> first_;   // exp_avg / momentum buffer
    std::vector<T> second_;  // exp_avg_sq / exp_inf
};

extern template class optimizer<float>;
extern template class optimizer<double>;

enum class schedule_kind { constant, cosine };

// lr at step `step` (0-based, before the step is taken). cosine: torch CosineAnnealingLR closed form,
// eta_min + (base - eta_min)(1 + cos(π·step/total_steps))/2, stepped once per batch.
struct lr_schedule {
    schedule_kind kind = schedule_kind::constant;
    double base_lr = 1e-3;
    double eta_min = 0.0;
    std::int64_t total_steps = 1;
    double at(std::int64_t step) const;
};

// The L2 norm of the masked elements of grads (summed in double): what clip_grad_norm clips and returns.
template <class T>
double grad_norm(std::span<const T> grads, std::span<const unsigned char> mask);
// torch.nn.utils.clip_grad_norm_: scales grads (masked elements only) by min(1, max_norm/(norm + 1e-6)).
// Returns the total 2-norm before clipping.
template <class T>
double clip_grad_norm(std::span<T> grads, std::span<const unsigned char> mask, double max_norm);

}  // namespace elm
