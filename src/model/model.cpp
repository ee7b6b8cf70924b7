// The ELM model: parameter block under the published names, published initialisation, and the sequencing
// of the stage kernels (kernels.hpp) over fixed chunks of samples. Chunks are a fixed number of samples and
// weight gradients are summed chunk by chunk in chunk order, so results do not depend on the thread count.

#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>

#include "model/kernels.hpp"
#include "model/routing.hpp"
#include "util/assert.hpp"
#include "util/rng.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

namespace elm {
namespace {

// Samples per gradient chunk, from the batch size alone (never from the thread count, so that the summation
// order of weight gradients, and thus every result, is the same on any number of threads): about 4 chunks for
// small batches (published NeuronIO training uses 8 samples), at most 16 samples per chunk.
int chunk_size(int batch) { return std::clamp((batch + 3) / 4, 1, 16); }
// Threads per gradient chunk in the backward (detail::backward_team; 1: none): with at least twice as many
// threads as chunks, as many per chunk as the threads allow, up to what a chunk has to share out: its rows
// (the reverse recurrence) or its sums (dL/dU, the weight gradient of each of the l_mlp + 1 layers, the
// readout's), whichever are more.
int backward_team_size(int threads, int chunks, int per_chunk, int l_mlp) {
    if (threads < 2 * chunks) return 1;
    return std::min(threads / chunks, std::max(per_chunk, l_mlp + 3));
}
int thread_count = 0;  // 0: OpenMP default (all cores)

template <class P, class Block>
detail::parameter_views<P> views(const std::vector<parameter_info>& layout, Block* base, int l_mlp) {
    // Layout order (build_layout): _proto_w_s, tau_s|tau_b, _proto_tau_m, (weight, bias) per Linear, w_y.
    detail::parameter_views<P> v;
    v.proto_w_s = base + layout[0].offset;
    v.tau_branch = base + layout[1].offset;
    v.proto_tau_m = base + layout[2].offset;
    for (int l = 0; l <= l_mlp; ++l) {
        v.weight.push_back(base + layout[3 + 2 * l].offset);
        v.bias.push_back(base + layout[4 + 2 * l].offset);
    }
    v.w_y = base + layout[5 + 2 * l_mlp].offset;
    v.b_y = base + layout[6 + 2 * l_mlp].offset;
    return v;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

int run_threads() { return thread_count > 0 ? thread_count : omp_get_max_threads(); }

// The scratch only grows: resize's value-initialisation would zero the new part, on one thread, on every
// backward that follows a forward (whose scratch is smaller). Each user zeroes what it needs itself.
template <class T>
void grow_scratch(aligned_vector<T>& scratch, std::size_t size) {
    if (scratch.size() < size) scratch.resize(size);
}

}  // namespace

void set_num_threads(int n) { thread_count = std::max(0, n); }
int num_threads() { return run_threads(); }

template <class T>
std::size_t workspace<T>::bytes() const {
    return sizeof(T) * (hidden.size() + delta_m.size() + memory.size() + scratch.size()) +
           (prepared ? prepared->bytes() : 0);
}

template <class T>
void model<T>::build_layout() {
    const model_config& c = config_;
    const auto S = static_cast<std::int64_t>(c.num_synapse());
    layout_.clear();
    auto add = [&](std::string name, std::vector<std::int64_t> shape, bool trainable) {
        std::size_t n = 1;
        for (auto s : shape) n *= static_cast<std::size_t>(s);
        const std::size_t offset = layout_.empty() ? 0 : layout_.back().offset + layout_.back().size;
        layout_.push_back({std::move(name), std::move(shape), offset, n, trainable});
    };
    add("_proto_w_s", {S}, c.learn_w_s);
    if (c.version == model_version::v1)
        add("tau_s", {S}, false);
    else
        add("tau_b", {c.branches()}, false);
    add("_proto_tau_m", {c.num_memory}, c.learn_memory_tau);
    std::int64_t in = c.mlp_input_size();
    for (int l = 0; l <= c.mlp_num_layers; ++l) {
        const std::int64_t out = l < c.mlp_num_layers ? c.hidden_size() : c.num_memory;
        const std::string prefix = "mlp.network." + std::to_string(2 * l);
        add(prefix + ".weight", {out, in}, true);
        add(prefix + ".bias", {out}, true);
        in = out;
    }
    add("w_y.weight", {c.num_output, c.num_memory}, true);
    add("w_y.bias", {c.num_output}, true);
    params_.assign(layout_.back().offset + layout_.back().size, T(0));
    trainable_mask_.assign(params_.size(), 0);
    for (const auto& p : layout_)
        if (p.trainable)
            std::fill_n(trainable_mask_.begin() + static_cast<std::ptrdiff_t>(p.offset), p.size, 1);
}

template <class T>
model<T>::model(const model_config& config, std::uint64_t seed) : config_(config) {
    config_.validate("model config");
    build_layout();
    const model_config& c = config_;
    detail::rng gen(seed);

    // reference/paper.md §1.4 (published __init__): w_s, τ_s/τ_b constant; τ_m log-spaced.
    std::ranges::fill(parameter("_proto_w_s"), T(c.w_s_value));
    std::ranges::fill(parameter(c.version == model_version::v1 ? "tau_s" : "tau_b"), T(c.tau_s_value));
    const double lo = c.memory_tau_min, hi = c.effective_tau_max();
    const double a = std::log10(c.tau_init_min() + 1e-6), b = std::log10(c.tau_init_max() - 1e-6);
    auto proto_tau = parameter("_proto_tau_m");
    for (int k = 0; k < c.num_memory; ++k) {
        // torch.logspace(a, b, n): 10^(a + k·(b-a)/(n-1)); n = 1 gives 10^a.
        const double tau = std::pow(10.0, c.num_memory == 1 ? a : a + k * (b - a) / (c.num_memory - 1));
        // inverse_scaled_sigmoid: logit((τc - lo)/(hi - lo)) with τc clamped to [lo + 1e-6, hi - 1e-6].
        const double tc = std::clamp(tau, lo + 1e-6, hi - 1e-6);
        proto_tau[k] = T(std::log((tc - lo) / (hi - tc)));
    }
    // torch.nn.Linear default init: kaiming_uniform(a=√5) weights and bias, both U(±1/√fan_in).
    for (int l = 0; l <= c.mlp_num_layers + 1; ++l) {
        const bool readout = l == c.mlp_num_layers + 1;
        const std::string prefix = readout ? "w_y" : "mlp.network." + std::to_string(2 * l);
        auto w = parameter(prefix + ".weight");
        const double bound = 1.0 / std::sqrt(static_cast<double>(info(prefix + ".weight").shape[1]));
        for (auto& v : w) v = T(gen.uniform(-bound, bound));
        for (auto& v : parameter(prefix + ".bias")) v = T(gen.uniform(-bound, bound));
    }
    const auto r = detail::make_routing(c, gen);
    std::vector<T> mask(r.valid.begin(), r.valid.end());
    set_routing(r.index, mask, "model config");
}

template <class T>
const parameter_info& model<T>::info(std::string_view name) const {
    for (const auto& p : layout_)
        if (p.name == name) return p;
    std::string known;
    for (const auto& p : layout_) known += (known.empty() ? "" : ", ") + p.name;
    throw error("model", std::string(name), "one of: " + known, "unknown parameter name");
}

template <class T>
std::span<T> model<T>::parameter(std::string_view name) {
    const auto& p = info(name);
    return std::span<T>(params_).subspan(p.offset, p.size);
}

template <class T>
std::span<const T> model<T>::parameter(std::string_view name) const {
    const auto& p = info(name);
    return std::span<const T>(params_).subspan(p.offset, p.size);
}

template <class T>
void model<T>::set_routing(std::span<const std::int64_t> index, std::span<const T> mask,
                           std::string_view source) {
    const auto S = static_cast<std::size_t>(config_.num_synapse());
    const std::string src(source);
    if (index.size() != S)
        throw error(src, "input_to_synapse_indices",
                    std::to_string(S) + " entries (num_branch*num_synapse_per_branch)",
                    std::to_string(index.size()));
    if (mask.size() != S)
        throw error(src, "valid_indices_mask", std::to_string(S) + " entries", std::to_string(mask.size()));
    for (std::size_t i = 0; i < S; ++i) {
        if (index[i] < 0 || index[i] >= config_.num_input)
            throw error(src, "input_to_synapse_indices[" + std::to_string(i) + "]",
                        "an input channel in [0, " + std::to_string(config_.num_input) + ")",
                        std::to_string(index[i]));
        if (mask[i] != T(0) && mask[i] != T(1))
            throw error(src, "valid_indices_mask[" + std::to_string(i) + "]", "0 or 1",
                        std::to_string(mask[i]));
    }
    synapse_index_.assign(index.begin(), index.end());
    synapse_mask_.assign(mask.begin(), mask.end());
}

template <class T>
void model<T>::validate_parameters(std::string_view source) const {
    const std::string src(source);
    for (const auto& p : layout_) {
        // The published init stores _proto_tau_m = +inf where τ_init - 1e-6 rounds to τ_max in float32
        // (e.g. memory_tau_max = 1000): σ(+inf) = 1 is exactly τ_max, so ±inf logits are valid there.
        const bool inf_allowed = p.name == "_proto_tau_m";
        for (std::size_t i = 0; i < p.size; ++i) {
            const double v = static_cast<double>(params_[p.offset + i]);
            if (std::isnan(v) || (!inf_allowed && std::isinf(v)))
                throw error(src, p.name + "[" + std::to_string(i) + "]", "a finite value",
                            std::isnan(v) ? "NaN" : "inf");
        }
    }
}

template <class T>
std::int64_t model<T>::num_trainable() const {
    std::int64_t n = 0;
    for (const auto& p : layout_)
        if (p.trainable) n += static_cast<std::int64_t>(p.size);
    return n;
}

template <class T>
template <class U>
model<U> model<T>::cast() const {
    model<U> m;
    m.config_ = config_;
    m.layout_ = layout_;
    m.params_.assign(params_.begin(), params_.end());
    m.trainable_mask_ = trainable_mask_;
    m.synapse_index_ = synapse_index_;
    m.synapse_mask_.assign(synapse_mask_.begin(), synapse_mask_.end());
    return m;
}

namespace {

// Checks the events [lo, hi) of one sample's step: a range within the n events, channels in [0, num_input),
// finite values. Throws elm::error naming the bad entry.
template <class T>
void check_step_events(const char* src, const std::int32_t* channels, const T* values, std::int64_t n,
                       std::int64_t lo, std::int64_t hi, int num_input) {
    if (lo < 0 || hi < lo || hi > n)
        throw error(src, "offsets", "a non-decreasing event range within [0, " + std::to_string(n) + "]",
                    std::to_string(lo) + " .. " + std::to_string(hi));
    for (auto e = lo; e < hi; ++e) {
        if (channels[e] < 0 || channels[e] >= num_input)
            throw error(src, "channels[" + std::to_string(e) + "]",
                        "in [0, " + std::to_string(num_input) + ")", std::to_string(channels[e]));
        if (!std::isfinite(static_cast<double>(values[e])))
            throw error(src, "values[" + std::to_string(e) + "]", "a finite value", "NaN or inf");
    }
}

template <class T>
void check_input(const model_config& c, const sparse_input<T>& x) {
    if (x.num_input != c.num_input)
        throw error("input", "num_input", std::to_string(c.num_input) + " channels (model's num_input)",
                    std::to_string(x.num_input));
    if (x.batch < 1 || x.time < 1)
        throw error("input", "shape", "batch >= 1 and time >= 1",
                    std::to_string(x.batch) + " x " + std::to_string(x.time));
    x.validate("input");
}

template <class T>
detail::event_view<T> events_of(const sparse_input<T>& x) {
    return {x.offsets.data(), x.channels.data(), x.values.data(), x.time};
}

template <class U>
bool same_bits(std::span<const U> a, const std::vector<U>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(U)) == 0);
}

// The kernel layout depends on the parameters, routing and config alone (the batch and time only set its
// dims). When they are those it was made from (an equal config, the same bits of parameters and routing),
// it is reused: evaluation calls the model batch
// after batch with the same parameters, and prepare is a visible part of a short call. A training step
// changes the parameters, so the next forward prepares again.
template <class T>
void prepare_into(const model<T>& m, int batch, int time, std::shared_ptr<detail::prepared<T>>& out) {
    if (!out) out = std::make_shared<detail::prepared<T>>();
    auto& p = *out;
    const auto& c = m.config();
    const std::span<const T> params(m.parameters().data(), m.parameters().size());
    const std::span<const std::int64_t> index(m.synapse_input_index().data(), m.synapse_input_index().size());
    const std::span<const T> mask(m.synapse_mask().data(), m.synapse_mask().size());
    if (p.made_from.valid && p.made_from.config == c && same_bits(params, p.made_from.parameters) &&
        same_bits(index, p.made_from.synapse_index) && same_bits(mask, p.made_from.synapse_mask)) {
        p.d = detail::make_dims(c, batch, time);
        return;
    }
    p.made_from.valid = false;  // until prepare has finished (it may throw)
    detail::prepare(c, views<const T>(m.layout(), params.data(), c.mlp_num_layers), index.data(), mask.data(),
                    batch, time, p);
    p.made_from.config = c;
    p.made_from.parameters.assign(params.begin(), params.end());
    p.made_from.synapse_index.assign(index.begin(), index.end());
    p.made_from.synapse_mask.assign(mask.begin(), mask.end());
    p.made_from.valid = true;
}

}  // namespace

template <class T>
void model<T>::run_forward(const sparse_input<T>& x, std::span<T> y, workspace<T>& ws, bool keep) const {
    check_input(config_, x);
    const std::size_t out_size = static_cast<std::size_t>(x.batch) * x.time * config_.num_output;
    if (y.size() != out_size)
        throw error("output", "y", std::to_string(out_size) + " elements [B][T][num_output]",
                    std::to_string(y.size()));
    ws.ready_for_backward = false;
    prepare_into(*this, x.batch, x.time, ws.prepared);
    const auto& p = *ws.prepared;
    const auto& d = p.d;
    const std::size_t bt = static_cast<std::size_t>(d.B) * d.T;
    ws.batch = d.B;
    ws.time = d.T;
    ws.hidden.resize(keep ? bt * p.ph * d.l_mlp : 0);
    ws.delta_m.resize(keep ? bt * p.pm : 0);
    ws.memory.resize(keep ? bt * p.pm : 0);
    const int threads = std::min(run_threads(), d.B);
    const std::size_t scratch = detail::forward_scratch_size(p, (d.B + threads - 1) / threads, keep);
    grow_scratch(ws.scratch, scratch * threads);
    const detail::activations<T> act{ws.hidden.data(), ws.delta_m.data(), ws.memory.data()};
    const auto ev = events_of(x);
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num();
        const auto [first, last] = detail::even_share(d.B, tid, omp_get_num_threads());
        if (last > first)
            detail::forward_chunk(p, ev, first, last - first, keep ? &act : nullptr, y.data(),
                                  ws.scratch.data() + static_cast<std::size_t>(tid) * scratch);
    }
    ws.ready_for_backward = keep;
}

template <class T>
void model<T>::forward(const sparse_input<T>& x, std::span<T> y, workspace<T>& ws) const {
    run_forward(x, y, ws, true);
}

template <class T>
void model<T>::infer(const sparse_input<T>& x, std::span<T> y) const {
    workspace<T> ws;
    run_forward(x, y, ws, false);
}

template <class T>
void model<T>::infer(const sparse_input<T>& x, std::span<T> y, workspace<T>& ws) const {
    run_forward(x, y, ws, false);
}

template <class T>
void model<T>::backward(const sparse_input<T>& x, std::span<const T> dy, workspace<T>& ws,
                        std::span<T> dparams, std::span<T> dx) const {
    check_input(config_, x);
    if (!ws.ready_for_backward || !ws.prepared)
        throw error("workspace", "forward", "a forward call on this workspace before each backward",
                    "backward without a new forward (backward consumes the workspace)");
    const auto& p = *ws.prepared;
    const auto& d = p.d;
    if (ws.batch != x.batch || ws.time != x.time)
        throw error("workspace", "shape", "the (batch, time) of the preceding forward call",
                    std::to_string(x.batch) + " x " + std::to_string(x.time));
    ws.ready_for_backward = false;
    const std::size_t bt = static_cast<std::size_t>(d.B) * d.T;
    if (dy.size() != bt * d.d_o)
        throw error("gradient", "dy", std::to_string(bt * d.d_o) + " elements [B][T][num_output]",
                    std::to_string(dy.size()));
    if (dparams.size() != params_.size())
        throw error("gradient", "dparams", std::to_string(params_.size()) + " elements",
                    std::to_string(dparams.size()));
    if (!dx.empty() && dx.size() != bt * d.d_in)
        throw error("gradient", "dx", std::to_string(bt * d.d_in) + " elements [B][T][num_input]",
                    std::to_string(dx.size()));

    // Buffers (each section on a SIMD vector boundary: the kernels use aligned vector loads): per sample Σ_t
    // dL/dκ_m and dL/dgain; per gradient chunk its gradient block (parameter layout), dL/dU and padded weight
    // accumulators, summed in chunk order below so that the result does not depend on the thread count; per
    // thread the backward's scratch. Without teams, threads take whole chunks and run them one group after
    // another (the samples of a group in lockstep): a group's dL/dU and block buffers share the cache with
    // no other group's. A group is one chunk, or as many small chunks as fill a register block of rows
    // (max_block_rows).
    const int per_chunk = chunk_size(d.B), chunks = (d.B + per_chunk - 1) / per_chunk;
    // With at least twice as many threads as chunks, a team of threads per chunk (detail::backward_team):
    // the members split the chunk's rows for the reverse recurrence and its sums among them, so that the
    // backward uses more threads than there are chunks without changing any sum's order.
    const int team_size = backward_team_size(run_threads(), chunks, per_chunk, d.l_mlp);
    const int threads = team_size > 1 ? chunks * team_size : std::min(run_threads(), chunks);
    const std::size_t P = params_.size(), grad_size = detail::padded<T>(P), proj_size = p.proj.size();
    const std::size_t per_chunk_size =
        grad_size + proj_size + detail::padded<T>(detail::padded_gradients_size(p));
    const int group = std::max(1, detail::max_block_rows / per_chunk);
    // Per thread without teams the whole scratch of a group; per team member only its private part (at most
    // a chunk's rows), and per chunk the part its team shares. Room for both layouts: a team falls back to
    // one thread per chunk when the region gets fewer threads than asked for (below).
    const std::size_t scratch =
        detail::padded<T>(detail::backward_scratch_size(p, group * per_chunk, per_chunk));
    const std::size_t member_scratch =
        team_size > 1 ? detail::padded<T>(detail::backward_private_size(p, per_chunk)) : 0;
    const std::size_t shared =
        team_size > 1 ? detail::padded<T>(detail::backward_shared_size(p, per_chunk, per_chunk)) : 0;
    const std::size_t per_thread = std::max(scratch * static_cast<std::size_t>(std::min(threads, chunks)),
                                            member_scratch * static_cast<std::size_t>(threads));
    const std::size_t rows_pm = static_cast<std::size_t>(d.B) * p.pm;
    // Zeroed inside the parallel region below, by the threads that use them (the block buffers need no
    // zeros: every step writes its rows before the sums read them).
    grow_scratch(ws.scratch, 2 * rows_pm + per_chunk_size * chunks + per_thread + shared * chunks);
    T* dkappa_rows = ws.scratch.data();
    T* dgain_rows = dkappa_rows + rows_pm;
    T* local = dgain_rows + rows_pm;
    T* thread_scratch = local + per_chunk_size * chunks;
    T* team_shared = thread_scratch + per_thread;
    std::vector<int> units_on(static_cast<std::size_t>(threads) * static_cast<std::size_t>(d.l_mlp));
    std::vector<detail::chunk_gradients<T>> outputs(static_cast<std::size_t>(chunks));
    for (int c = 0; c < chunks; ++c) {
        T* g = local + static_cast<std::size_t>(c) * per_chunk_size;
        outputs[c] = {views<T>(layout_, g, d.l_mlp), g + grad_size, g + grad_size + proj_size};
    }
    const detail::activations<T> act{ws.hidden.data(), ws.delta_m.data(), ws.memory.data()};
    const auto ev = events_of(x);
    // The buffers are zeroed and the chunks summed by all threads: on one thread that was ~1 ms of the SHD
    // train step (several MB moved). On the two-core VM of bench/README.md sharing it gains only 1-2 % (the
    // traffic is bound by memory), but a serial part weighs more with every core added.
    const std::size_t summed = grad_size + proj_size;  // whole vectors: both parts are padded
    ELM_ASSERT(summed % detail::lanes<T> == 0);
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
        T* dx_out = dx.empty() ? nullptr : dx.data();
        // Teams only with every thread asked for (fewer, e.g. inside another parallel region: one per
        // chunk as without teams); every member of a team runs the same number of blocks, so all threads
        // meet the same barriers.
        const bool teams = team_size > 1 && team == threads;
        if (tid == 0) ws.backward_threads = teams ? team : std::min(team, chunks);
        if (teams) {
            const int c = tid / team_size, member = tid % team_size;
            T* own_scratch = thread_scratch + static_cast<std::size_t>(tid) * member_scratch;
            T* chunk_shared = team_shared + static_cast<std::size_t>(c) * shared;
            if (member == 0)
                std::fill(local + static_cast<std::size_t>(c) * per_chunk_size,
                          local + static_cast<std::size_t>(c + 1) * per_chunk_size, T(0));
            const detail::backward_team<T> members{member, team_size, chunk_shared,
                                                   units_on.data() + static_cast<std::size_t>(c) * team_size *
                                                                         static_cast<std::size_t>(d.l_mlp)};
            const int b0 = c * per_chunk, b1 = std::min(d.B, b0 + per_chunk);
            detail::backward_range(p, ev, b0, b1 - b0, per_chunk, act, dy.data(), dkappa_rows, dgain_rows,
                                   outputs.data() + c, dx_out, own_scratch, members);
        } else {
            const auto [c0, c1] = detail::even_share(chunks, tid, team);
            T* own_scratch = thread_scratch + static_cast<std::size_t>(tid) * scratch;
            if (c0 < c1) std::fill(own_scratch, own_scratch + scratch, T(0));  // (no room past the chunks)
            std::fill(local + static_cast<std::size_t>(c0) * per_chunk_size,
                      local + static_cast<std::size_t>(c1) * per_chunk_size, T(0));
            for (int c = c0; c < c1; c += group) {
                const int b0 = c * per_chunk, b1 = std::min(d.B, std::min(c1, c + group) * per_chunk);
                detail::backward_range(p, ev, b0, b1 - b0, per_chunk, act, dy.data(), dkappa_rows, dgain_rows,
                                       outputs.data() + c, dx_out, own_scratch, detail::backward_team<T>{});
            }
        }
#pragma omp barrier
        // Σ over chunks in chunk order, each thread over its own share of whole vectors of elements: every
        // element gets the same additions in the same order as on one thread.
        const auto [v0, v1] = detail::even_share(static_cast<int>(summed / detail::lanes<T>), tid, team);
        const std::size_t i0 = static_cast<std::size_t>(v0) * detail::lanes<T>,
                          i1 = static_cast<std::size_t>(v1) * detail::lanes<T>;
        for (int c = 1; c < chunks; ++c) {
            const T* src = local + static_cast<std::size_t>(c) * per_chunk_size;
            for (std::size_t i = i0; i < i1; ++i) local[i] += src[i];
        }
    }
    const T* total = local;
    const T* proj_grad = local + grad_size;
    // Σ over samples, in sample order, of dL/dκ_m and dL/dgain.
    std::vector<double> dkappa(static_cast<std::size_t>(d.d_m), 0.0), dgain(dkappa.size(), 0.0);
    for (int b = 0; b < d.B; ++b)
        for (int k = 0; k < d.d_m; ++k) {
            dkappa[k] += static_cast<double>(dkappa_rows[static_cast<std::size_t>(b) * p.pm + k]);
            dgain[k] += static_cast<double>(dgain_rows[static_cast<std::size_t>(b) * p.pm + k]);
        }

    const auto pv = views<const T>(layout_, params_.data(), d.l_mlp);
    const auto gp = views<T>(layout_, dparams.data(), d.l_mlp);
    const auto tv = views<const T>(layout_, total, d.l_mlp);
    // Linear layers and readout: plain sums (the branch half of layer 0 is zero in `total`, filled below).
    for (int l = 0; l <= d.l_mlp; ++l) {
        const auto& wi = layout_[3 + 2 * l];
        const auto& bi = layout_[4 + 2 * l];
        for (std::size_t i = 0; i < wi.size; ++i) gp.weight[l][i] += tv.weight[l][i];
        for (std::size_t i = 0; i < bi.size; ++i) gp.bias[l][i] += tv.bias[l][i];
    }
    for (std::size_t i = 0; i < layout_[5 + 2 * d.l_mlp].size; ++i) gp.w_y[i] += tv.w_y[i];
    for (int i = 0; i < d.d_o; ++i) gp.b_y[i] += tv.b_y[i];
    // Input stage from dL/dU (kernels.hpp): U[c, g] = Σ_i w_s[i]·W_b[:, branch(i)], so per valid synapse i
    // dW_b[:, branch(i)] += w_s[i]·dL/dU and dw_s[i] = W_b[:, branch(i)]·dL/dU; w_s = ReLU(ŵ_s) passes the
    // gradient where ŵ_s > 0 (torch's relu backward gives 0 at 0).
    // Per branch: its column of dW_0 summed over its synapses in padded vectors, then stored once (the
    // column is strided in the parameter layout); rows of dL/dU and W_b are zero in the padding.
    const int n0 = d.n0(), dz = d.d_z(), nv0 = p.p0 / detail::lanes<T>;
    aligned_vector<T> column(static_cast<std::size_t>(p.p0));
    for (int j = 0, i = 0; j < d.d_tree; ++j) {
        std::fill(column.begin(), column.end(), T(0));
        auto* dwb = detail::as_vec(column.data());
        const auto* wb = detail::as_vec(p.branch_weight.data() + static_cast<std::size_t>(j) * p.p0);
        for (int k = 0; k < d.d_brch; ++k, ++i) {
            const auto r = p.synapse_row[i];
            if (r < 0) continue;  // masked: multiplied by 0 in the published model
            const auto* q = detail::as_vec(proj_grad + static_cast<std::size_t>(r) * p.p0);
            const T w = p.w_s[i];
            detail::vec<T> dw{};
            for (int v = 0; v < nv0; ++v) {
                dwb[v] += w * q[v];
                dw += wb[v] * q[v];
            }
            if (pv.proto_w_s[i] > T(0)) gp.proto_w_s[i] += detail::horizontal_sum<T>(dw);
        }
        for (int k = 0; k < n0; ++k) gp.weight[0][static_cast<std::size_t>(k) * dz + j] += column[k];
    }
    // τ_m through κ_m and the gain (§1.4): dτ/dp = (hi - lo)·σ(p)(1 - σ(p)).
    const double lo = config_.memory_tau_min, hi = config_.effective_tau_max();
    const double dt = config_.delta_t, lambda = config_.lambda_value;
    for (int k = 0; k < d.d_m; ++k) {
        const double s = sigmoid(static_cast<double>(pv.proto_tau_m[k]));
        const double tau = (hi - lo) * s + lo;
        if (tau <= 1e-6) continue;  // clamped: no gradient
        const double kappa = static_cast<double>(p.kappa_m[k]);
        const double dkappa_dtau = kappa * dt / (tau * tau);
        const double dgain_dtau = config_.version == model_version::v1
                                      ? -lambda * dkappa_dtau
                                      : -std::exp(-dt * lambda / tau) * dt * lambda / (tau * tau);
        const double dtau = dkappa[k] * dkappa_dtau + dgain[k] * dgain_dtau;
        gp.proto_tau_m[k] += T(dtau * (hi - lo) * s * (1 - s));
    }
}

template <class T>
std::vector<T> model<T>::memory_trace(const workspace<T>& ws) const {
    const int dm = config_.num_memory, pm = detail::padded<T>(dm);
    const std::size_t rows = static_cast<std::size_t>(ws.batch) * ws.time;
    if (ws.memory.size() != rows * pm || rows == 0)
        throw error("workspace", "memory", "the activations of a forward call of this model",
                    std::to_string(ws.memory.size()) + " stored values");
    std::vector<T> out(rows * dm);
    for (std::size_t r = 0; r < rows; ++r)
        std::copy_n(ws.memory.begin() + static_cast<std::ptrdiff_t>(r * pm), dm,
                    out.begin() + static_cast<std::ptrdiff_t>(r * dm));
    return out;
}

template <class T>
void model<T>::branch_trace(const sparse_input<T>& x, std::span<T> b) const {
    check_input(config_, x);
    const auto d = detail::make_dims(config_, x.batch, x.time);
    if (b.size() != static_cast<std::size_t>(d.B) * d.T * d.d_tree)
        throw error("output", "branch trace", "[B][T][num_branch] elements", std::to_string(b.size()));
    std::shared_ptr<detail::prepared<T>> p;
    prepare_into(*this, x.batch, x.time, p);
    detail::branch_trace(d, events_of(x), synapse_index_.data(), synapse_mask_.data(), p->w_s.data(),
                         p->kappa_synapse.data(), config_.version == model_version::v1, b.data());
}

template <class T>
void model<T>::synapse_trace(const sparse_input<T>& x, std::span<T> s) const {
    check_input(config_, x);
    if (config_.version != model_version::v1)
        throw error("model", "synapse_trace", "a v1 model (v2 keeps branch traces only)", "v2");
    const auto d = detail::make_dims(config_, x.batch, x.time);
    if (s.size() != static_cast<std::size_t>(d.B) * d.T * d.d_s)
        throw error("output", "s", "[B][T][num_synapse] elements", std::to_string(s.size()));
    const auto tau = parameter("tau_s");
    const auto proto = parameter("_proto_w_s");
    std::vector<T> w(proto.size()), kappa(tau.size());
    for (std::size_t i = 0; i < w.size(); ++i) {
        w[i] = proto[i] > T(0) ? proto[i] : T(0);
        kappa[i] = detail::decay_factor(config_.delta_t, tau[i]);
    }
    detail::synapse_forward(d, x, synapse_index_.data(), synapse_mask_.data(), w.data(), kappa.data(),
                            s.data());
}

// ---- stream ---------------------------------------------------------------------------------------------

template <class T>
stream<T>::stream(const model<T>& m, int batch) : config_(m.config()), batch_(batch) {
    if (batch < 1) throw error("stream", "batch", "at least 1 sample", std::to_string(batch));
    prepare_into(m, batch, 1, prepared_);  // the kernel layout is the snapshot of the parameters
    const auto& p = *prepared_;
    const std::size_t n = static_cast<std::size_t>(batch);
    state_.assign(n * (static_cast<std::size_t>(p.groups()) * p.p0 + detail::memory_state_width(p)), T(0));
    rows_.assign(n * (static_cast<std::size_t>(p.d.l_mlp) * p.ph + 2 * static_cast<std::size_t>(p.pm)), T(0));
    scratch_.assign(detail::step_scratch_size(p, batch), T(0));
}

template <class T>
void stream<T>::reset() {
    std::fill(state_.begin(), state_.end(), T(0));
}

template <class T>
void stream<T>::run(const std::int64_t* offsets, const std::int32_t* channels, const T* values, int time,
                    int t, std::span<T> y) {
    const auto& p = *prepared_;
    if (y.size() != static_cast<std::size_t>(batch_) * p.d.d_o)
        throw error("stream output", "y", std::to_string(batch_ * p.d.d_o) + " elements [batch][num_output]",
                    std::to_string(y.size()));
    const std::size_t n = static_cast<std::size_t>(batch_);
    detail::step_rows<T> r;
    r.hidden = rows_.data();
    r.hidden_stride = p.ph;
    r.layer_stride = n * p.ph;
    r.memory = rows_.data() + memory_offset();
    r.delta = r.memory - n * p.pm;
    r.memory_stride = p.pm;
    r.y = y.data();
    r.y_stride = p.d.d_o;
    T* input_state = state_.data();
    T* first = p.d.l_mlp > 0 ? r.hidden : r.delta;
    const std::size_t first_stride = p.d.l_mlp > 0 ? r.hidden_stride : r.memory_stride;
    detail::input_forward(p, detail::event_view<T>{offsets, channels, values, time}, 0, batch_, t, t + 1,
                          input_state, first, first_stride, 0);
    detail::step_forward(p, batch_, input_state + n * p.groups() * p.p0, scratch_.data(), r);
}

template <class T>
void stream<T>::step(std::span<const std::int64_t> offsets, std::span<const std::int32_t> channels,
                     std::span<const T> values, std::span<T> y) {
    const char* src = "stream step";
    if (offsets.size() != static_cast<std::size_t>(batch_) + 1)
        throw error(src, "offsets", std::to_string(batch_ + 1) + " entries (batch + 1)",
                    std::to_string(offsets.size()));
    if (channels.size() != values.size())
        throw error(src, "channels", std::to_string(values.size()) + " entries (one per value)",
                    std::to_string(channels.size()));
    for (int b = 0; b < batch_; ++b)
        check_step_events(src, channels.data(), values.data(), static_cast<std::int64_t>(values.size()),
                          offsets[b], offsets[b + 1], config_.num_input);
    run(offsets.data(), channels.data(), values.data(), 1, 0, y);
}

template <class T>
void stream<T>::step(const sparse_input<T>& x, int t, std::span<T> y) {
    const char* src = "stream step";
    if (x.batch != batch_ || x.num_input != config_.num_input)
        throw error(src, "input",
                    std::to_string(batch_) + " samples of " + std::to_string(config_.num_input) + " channels",
                    std::to_string(x.batch) + " samples of " + std::to_string(x.num_input) + " channels");
    if (t < 0 || t >= x.time)
        throw error(src, "t", "a step in [0, " + std::to_string(x.time) + ")", std::to_string(t));
    if (x.offsets.size() != static_cast<std::size_t>(x.batch) * x.time + 1)
        throw error(src, "offsets", "batch*time + 1 entries", std::to_string(x.offsets.size()));
    if (x.channels.size() != x.values.size())
        throw error(src, "channels", std::to_string(x.values.size()) + " entries (one per value)",
                    std::to_string(x.channels.size()));
    for (int b = 0; b < batch_; ++b) {
        const std::size_t bt = static_cast<std::size_t>(b) * x.time + t;
        check_step_events(src, x.channels.data(), x.values.data(), static_cast<std::int64_t>(x.values.size()),
                          x.offsets[bt], x.offsets[bt + 1], config_.num_input);
    }
    run(x.offsets.data(), x.channels.data(), x.values.data(), x.time, t, y);
}

template <class T>
std::size_t stream<T>::memory_offset() const {
    const auto& p = *prepared_;
    return static_cast<std::size_t>(batch_) * (p.ph * static_cast<std::size_t>(p.d.l_mlp) + p.pm);
}

template <class T>
std::vector<T> stream<T>::memory() const {
    const auto& p = *prepared_;
    std::vector<T> out(static_cast<std::size_t>(batch_) * p.d.d_m);
    const T* m = rows_.data() + memory_offset();
    for (int b = 0; b < batch_; ++b)
        std::copy_n(m + static_cast<std::size_t>(b) * p.pm, p.d.d_m,
                    out.begin() + static_cast<std::ptrdiff_t>(b) * p.d.d_m);
    return out;
}

template <class T>
void sparse_input<T>::validate(std::string_view source) const {
    const std::string src(source);
    const std::size_t rows = static_cast<std::size_t>(batch) * static_cast<std::size_t>(time);
    if (offsets.size() != rows + 1)
        throw error(src, "offsets", std::to_string(rows + 1) + " entries (batch*time + 1)",
                    std::to_string(offsets.size()));
    if (channels.size() != values.size())
        throw error(src, "channels", std::to_string(values.size()) + " entries (one per value)",
                    std::to_string(channels.size()));
    if (offsets.front() != 0 || offsets.back() != static_cast<std::int64_t>(values.size()))
        throw error(src, "offsets", "offsets[0] = 0 and offsets[last] = number of events",
                    std::to_string(offsets.front()) + " .. " + std::to_string(offsets.back()));
    // One branch-free pass over everything (it runs on every forward call): integer compares that the
    // compiler vectorises, finiteness from the exponent bits; the slower scans that name the first bad entry
    // run only when this finds a problem.
    using bits_t = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    constexpr bits_t exponent = sizeof(T) == 4 ? bits_t(0x7f800000u) : bits_t(0x7ff0000000000000ull);
    const std::int64_t* off = offsets.data();
    const std::int32_t* ch = channels.data();
    const auto limit = static_cast<std::uint32_t>(num_input);
    const std::size_t n = values.size();
    unsigned bad = 0;
    for (std::size_t r = 0; r < rows; ++r) bad |= off[r + 1] < off[r] ? 1u : 0u;
    for (std::size_t e = 0; e < n; ++e) bad |= static_cast<std::uint32_t>(ch[e]) >= limit ? 1u : 0u;
    const T* val = values.data();
    for (std::size_t e = 0; e < n; ++e) {
        bits_t b;
        std::memcpy(&b, val + e, sizeof b);
        bad |= (b & exponent) == exponent ? 1u : 0u;
    }
    if (bad == 0) return;
    for (std::size_t r = 0; r < rows; ++r)
        if (offsets[r + 1] < offsets[r])
            throw error(src, "offsets[" + std::to_string(r + 1) + "]", "non-decreasing",
                        std::to_string(offsets[r + 1]));
    check_step_events(src.c_str(), ch, val, static_cast<std::int64_t>(n), 0, static_cast<std::int64_t>(n),
                      num_input);
}

template <class T>
sparse_input<T> sparse_from_dense(std::span<const T> x, int batch, int time, int num_input,
                                  std::string_view source) {
    const std::string src(source);
    if (batch < 1 || time < 1 || num_input < 1)
        throw error(src, "shape", "positive [batch, time, num_input]",
                    std::to_string(batch) + " x " + std::to_string(time) + " x " + std::to_string(num_input));
    const std::size_t rows = static_cast<std::size_t>(batch) * time;
    if (x.size() != rows * num_input)
        throw error(src, "size", std::to_string(rows * num_input) + " elements", std::to_string(x.size()));
    sparse_input<T> s;
    s.batch = batch;
    s.time = time;
    s.num_input = num_input;
    s.offsets.resize(rows + 1, 0);
    for (std::size_t r = 0; r < rows; ++r) {
        for (int c = 0; c < num_input; ++c) {
            const T v = x[r * num_input + c];
            if (!std::isfinite(static_cast<double>(v)))
                throw error(src,
                            "[" + std::to_string(r / time) + ", " + std::to_string(r % time) + ", " +
                                std::to_string(c) + "]",
                            "a finite input value", std::isnan(static_cast<double>(v)) ? "NaN" : "inf");
            if (v != T(0)) {
                s.channels.push_back(c);
                s.values.push_back(v);
            }
        }
        s.offsets[r + 1] = static_cast<std::int64_t>(s.values.size());
    }
    return s;
}

template struct sparse_input<float>;
template struct sparse_input<double>;
template struct workspace<float>;
template struct workspace<double>;
template sparse_input<float> sparse_from_dense(std::span<const float>, int, int, int, std::string_view);
template sparse_input<double> sparse_from_dense(std::span<const double>, int, int, int, std::string_view);
template class model<float>;
template class model<double>;
template class stream<float>;
template class stream<double>;
template model<double> model<float>::cast<double>() const;
template model<float> model<double>::cast<float>() const;
template model<float> model<float>::cast<float>() const;
template model<double> model<double>::cast<double>() const;

}  // namespace elm
