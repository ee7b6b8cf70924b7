#pragma once
// The ELM neuron (reference/paper.md §1, docs/model.md): parameters under the published state-dict names,
// forward pass, hand-written BPTT backward. Templated on the scalar type (float or double).
//
// Computation (docs/model.md): the input stage (routing, w_s, synapse/branch traces, branch sums) is linear,
// so it is folded into the first MLP layer: each input event adds one precomputed row to a κ-filtered
// first-layer accumulator. The recurrence then runs step by step on small dense layers over the samples
// of a chunk (fixed from the batch size, chunks spread over threads); weight gradients are summed after
// the reverse sweep as deep matrix products. Nothing allocates inside the time loop.

#include <elmneuron/config.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace elm {

// 64-byte aligned storage for parameters and activations. Eigen's vectorised sums start at the first
// aligned element, so with a fixed alignment of every buffer the rounding, and thus every result, is the
// same from run to run (bit-identical resume), not only from thread count to thread count.
template <class T>
struct aligned_allocator {
    using value_type = T;
    static constexpr std::align_val_t alignment{64};
    aligned_allocator() = default;
    template <class U>
    aligned_allocator(const aligned_allocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), alignment)); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, alignment); }
    template <class U>
    bool operator==(const aligned_allocator<U>&) const noexcept {
        return true;
    }
};
template <class T>
using aligned_vector = std::vector<T, aligned_allocator<T>>;

// Input events of a batch: the canonical input form (every real data set here is mostly zeros).
// Events of sample b at step t are [offsets[b·time + t], offsets[b·time + t + 1]).
template <class T>
struct sparse_input {
    int batch = 0;
    int time = 0;
    int num_input = 0;
    std::vector<std::int64_t> offsets;   // batch·time + 1 entries, non-decreasing, offsets[0] == 0
    std::vector<std::int32_t> channels;  // input channel of each event, in [0, num_input)
    std::vector<T> values;               // value of each event (finite)

    std::size_t num_events() const { return values.size(); }
    // Throws elm::error naming `source` if offsets, channels or values are inconsistent or not finite.
    void validate(std::string_view source) const;
};

// Dense [batch][time][num_input] (row-major) to events; zeros are dropped. Throws on NaN or inf,
// naming `source` and the first bad (sample, step, channel).
template <class T>
sparse_input<T> sparse_from_dense(std::span<const T> x, int batch, int time, int num_input,
                                  std::string_view source = "input");

// One named parameter tensor inside the flat parameter block.
struct parameter_info {
    std::string name;                 // published state-dict name, e.g. "mlp.network.0.weight"
    std::vector<std::int64_t> shape;  // [out, in] for weights, as torch.nn.Linear
    std::size_t offset = 0;
    std::size_t size = 0;
    bool trainable = false;
};

namespace detail {
template <class T>
struct prepared;  // the parameters in kernel layout (src/model/kernels.hpp)
}

// Activations kept for the backward pass, sized once per (B, T) and reused. Feature rows are padded to the
// SIMD width (docs/model.md "Memory"); read the memory trace with model::memory_trace. Per sample-step:
// l_mlp·pad(d_mlp) + 2·pad(d_m) scalars (hidden pre-activations, Δm, m); backward adds buffers for a block of
// steps only.
template <class T>
struct workspace {
    int batch = 0, time = 0;
    std::shared_ptr<detail::prepared<T>> prepared;  // parameters in kernel layout, made by forward
    aligned_vector<T> hidden;                       // [l_mlp][B][T][pad(d_mlp)] hidden pre-activations
    aligned_vector<T> delta_m;                      // [B][T][pad(d_m)]  Δm_t
    aligned_vector<T> memory;                       // [B][T][pad(d_m)]  m_t
    aligned_vector<T> scratch;                      // per-chunk scratch, backward gradients
    int backward_threads = 0;  // threads the latest backward ran on (docs/model.md "Threads and determinism")
    // Set by forward, cleared by backward: each backward needs its own forward (as torch without
    // retain_graph).
    bool ready_for_backward = false;

    std::size_t bytes() const;
};

template <class T>
class model {
public:
    using scalar = T;

    // Published initialisation (reference/paper.md §1.4): w_s = w_s_value, τ_s = tau_s_value, τ_m
    // log-spaced over the init range through the inverse scaled sigmoid, nn.Linear's Kaiming-uniform
    // weights and U(±1/√fan_in) biases, and the routing of config.input_to_synapse_routing; all random
    // draws from `seed`. Throws elm::error if the config is invalid.
    model(const model_config& config, std::uint64_t seed);

    const model_config& config() const { return config_; }
    const std::vector<parameter_info>& layout() const { return layout_; }
    std::span<T> parameters() { return params_; }
    std::span<const T> parameters() const { return params_; }
    // The tensor with this published name; throws elm::error listing the known names.
    std::span<T> parameter(std::string_view name);
    std::span<const T> parameter(std::string_view name) const;
    const parameter_info& info(std::string_view name) const;
    // 1 for every element of a trainable parameter, 0 elsewhere (what the optimisers update).
    std::span<const unsigned char> trainable_mask() const { return trainable_mask_; }

    // Routing: input channel of each synapse and its validity mask (all 1 without routing).
    std::span<const std::int64_t> synapse_input_index() const { return synapse_index_; }
    std::span<const T> synapse_mask() const { return synapse_mask_; }
    // Replaces the routing (e.g. from a published state dict); validates ranges and sizes.
    void set_routing(std::span<const std::int64_t> index, std::span<const T> mask, std::string_view source);

    // Checks invariants that the kernels rely on (finite parameters).
    void validate_parameters(std::string_view source) const;

    std::int64_t num_trainable() const;

    // Same model in another precision.
    template <class U>
    model<U> cast() const;

    // y: [B][T][num_output]. Fills `ws` with what backward needs.
    void forward(const sparse_input<T>& x, std::span<T> y, workspace<T>& ws) const;
    // Inference: the same outputs as forward, bit for bit, keeping nothing for backward (working memory
    // independent of the sequence length). The workspace overload reuses its buffers from call to call.
    void infer(const sparse_input<T>& x, std::span<T> y) const;
    void infer(const sparse_input<T>& x, std::span<T> y, workspace<T>& ws) const;
    // Accumulates (+=) d loss/d parameters into `dparams` (same layout as parameters()) given
    // dy = d loss/d y, after forward(x, y, ws) with the same x and parameters. If `dx` is not empty it
    // receives (=) d loss/d x as a dense [B][T][num_input] array. Consumes the workspace: a second backward
    // needs a new forward (elm::error otherwise).
    void backward(const sparse_input<T>& x, std::span<const T> dy, workspace<T>& ws, std::span<T> dparams,
                  std::span<T> dx = {}) const;

    // m_t of the latest forward on `ws`: [B][T][num_memory].
    std::vector<T> memory_trace(const workspace<T>& ws) const;
    // Diagnostic traces, computed explicitly (the forward pass never forms them, docs/model.md):
    // branch activations b_t [B][T][num_branch] (v2's state; v1's BranchSum(s_t)) and v1 synapse
    // currents s_t [B][T][num_synapse] (v1 only; large).
    void branch_trace(const sparse_input<T>& x, std::span<T> b) const;
    void synapse_trace(const sparse_input<T>& x, std::span<T> s) const;

private:
    template <class U>
    friend class model;
    model() = default;
    void build_layout();
    void run_forward(const sparse_input<T>& x, std::span<T> y, workspace<T>& ws, bool keep) const;

    model_config config_;
    std::vector<parameter_info> layout_;
    aligned_vector<T> params_;
    std::vector<unsigned char> trainable_mask_;
    std::vector<std::int64_t> synapse_index_;
    std::vector<T> synapse_mask_;
};

extern template class model<float>;
extern template class model<double>;

// Step-by-step inference: one call per time step, the state (input traces and memory) kept between calls,
// for closed-loop or real-time use. The same step kernel as model::forward, so feeding a sequence step by
// step gives bit-identical outputs to one forward call on it. The parameters are copied at construction;
// single-threaded (the steps of one sample are sequential).
template <class T>
class stream {
public:
    using value_type = T;
    explicit stream(const model<T>& m, int batch = 1);
    int batch() const { return batch_; }
    const model_config& config() const { return config_; }
    // Back to the zero state (Table S1: s0 = 0, m0 = 0).
    void reset();
    // One step: the events of sample b are [offsets[b], offsets[b+1]) of channels/values (offsets: batch + 1
    // entries). y: [batch][num_output]. Throws elm::error on inconsistent or non-finite events.
    void step(std::span<const std::int64_t> offsets, std::span<const std::int32_t> channels,
              std::span<const T> values, std::span<T> y);
    // Step t of a whole input (x.batch == batch()).
    void step(const sparse_input<T>& x, int t, std::span<T> y);
    // m_t after the latest step: [batch][num_memory].
    std::vector<T> memory() const;

private:
    void run(const std::int64_t* offsets, const std::int32_t* channels, const T* values, int time, int t,
             std::span<T> y);
    std::size_t memory_offset() const;  // of m_t in rows_ (after the hidden and Δm rows)
    model_config config_;
    std::shared_ptr<detail::prepared<T>> prepared_;
    int batch_ = 1;
    aligned_vector<T> state_;  // first-layer accumulators, then κ_m ⊙ m_{t-1} and m_{t-1} per sample
    aligned_vector<T> rows_;   // this step's activations
    aligned_vector<T> scratch_;
};

extern template class stream<float>;
extern template class stream<double>;

// Number of threads used by forward/backward (default: all cores). Results do not depend on it.
void set_num_threads(int n);
int num_threads();

}  // namespace elm
