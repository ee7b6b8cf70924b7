// Parameters into kernel layout (kernels.hpp `prepared`), including the input projection that folds the
// input stage (docs/model.md E1-E3; reference/paper.md §1.2, §1.3, §1.5) into the first MLP layer:
//   x̃_t = route(x_t) ⊙ mask,  v1: s_t = κ_s ⊙ s_{t-1} + w_s ⊙ x̃_t, b_t = BranchSum(s_t)
//                             v2: b_t = κ_b ⊙ b_{t-1} + BranchSum(w_s ⊙ x̃_t)
// Both are linear filters of the synapse drive, so W_b·b_t = Σ_i W_b[:, branch(i)]·s_i,t (v2: s_i,t the
// synapse's share of its branch trace, filtered with κ_b). Grouping the synapses by κ, for each group g
//   Σ_{i in g} W_b[:, branch(i)]·s_i,t = a_g,t,   a_g,t = κ_g·a_g,t-1 + Σ_{events (c, v) at t} v·U[c, g],
//   U[c, g] = Σ_{valid synapses i fed by c, κ_i = κ_g} w_s[i]·W_b[:, branch(i)].
// (One group in every published model: one τ for all synapses.)
// Also the diagnostics that compute branch and synapse traces explicitly (not on the forward path).

#include "model/kernels.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

namespace elm::detail {
namespace {

template <class T>
void fill_layer(const T* weight, const T* bias, int out, int in, dense_layer<T>& l) {
    // The kernels derive these paddings from the real widths (dense_rows' n_out).
    const std::size_t padded_in = padded<T>(static_cast<std::size_t>(in)),
                      padded_out = padded<T>(static_cast<std::size_t>(out));
    l.transposed.assign(static_cast<std::size_t>(in + 1) * padded_out, T(0));
    l.rows.assign(static_cast<std::size_t>(out + 1) * padded_in, T(0));
    l.bias.assign(padded_out, T(0));
    for (int o = 0; o < out; ++o) {
        for (int i = 0; i < in; ++i) {
            const T w = weight[static_cast<std::size_t>(o) * in + i];
            l.transposed[static_cast<std::size_t>(i) * padded_out + o] = w;
            l.rows[static_cast<std::size_t>(o) * padded_in + i] = w;
        }
        l.bias[o] = bias[o];
    }
}

}  // namespace

template <class T>
std::size_t prepared<T>::bytes() const {
    std::size_t n = proj.size() + w_s.size() + kappa_synapse.size() + branch_weight.size() + bias0.size() +
                    memory_weight_t.size() + memory_weight.size() + kappa_m.size() + memory_leak.size() +
                    memory_gain.size() + readout.transposed.size() + readout.rows.size() +
                    readout.bias.size();
    for (const auto& l : layers) n += l.transposed.size() + l.rows.size() + l.bias.size();
    n += made_from.parameters.size() + made_from.synapse_mask.size();
    return n * sizeof(T) + (row_of.size() + synapse_row.size()) * sizeof(std::int32_t) +
           made_from.synapse_index.size() * sizeof(std::int64_t);
}

template <class T>
void prepare(const model_config& c, const parameter_views<const T>& p, const std::int64_t* synapse_index,
             const T* synapse_mask, int batch, int time, prepared<T>& o) {
    o.d = make_dims(c, batch, time);
    const dims& d = o.d;
    o.act = c.mlp_activation;
    const int n0 = d.n0(), dz = d.d_z();
    o.p0 = padded<T>(n0);
    o.ph = padded<T>(d.d_mlp);
    o.pm = padded<T>(d.d_m);
    o.po = padded<T>(d.d_o);

    // Derived quantities (E1, E5, §1.4): w_s = ReLU(ŵ_s), κ = exp(-Δt / max(τ, 1e-6)),
    // τ_m = (hi - lo)·σ(p) + lo, gain = λ(1-κ_m) (v1) or 1 - exp(-Δt·λ/max(τ_m, 1e-6)) (v2).
    o.w_s.resize(static_cast<std::size_t>(d.d_s));
    for (int i = 0; i < d.d_s; ++i) o.w_s[i] = p.proto_w_s[i] > T(0) ? p.proto_w_s[i] : T(0);
    // κ per synapse: v1 filters each synapse with its own τ_s (E1), v2 each branch with τ_b (E2). The
    // published constructors make τ_s equal within a branch, but nothing requires it. κ groups: synapses with
    // bit-identical κ share one first-layer accumulator. One exp and group lookup per change of τ from one
    // synapse to the next (a single τ in every published model).
    o.kappa_synapse.resize(static_cast<std::size_t>(d.d_s));
    std::vector<std::int32_t> synapse_group(static_cast<std::size_t>(d.d_s));
    o.group_kappa.clear();
    T last_tau = std::numeric_limits<T>::quiet_NaN();
    std::int32_t group = 0;
    for (int j = 0, i = 0; j < d.d_tree; ++j)
        for (int k = 0; k < d.d_brch; ++k, ++i) {
            const T tau = c.version == model_version::v1 ? p.tau_branch[i] : p.tau_branch[j];
            if (!(tau == last_tau)) {
                last_tau = tau;
                const T kappa = decay_factor(c.delta_t, tau);
                const auto it = std::find(o.group_kappa.begin(), o.group_kappa.end(), kappa);
                group = static_cast<std::int32_t>(it - o.group_kappa.begin());
                if (it == o.group_kappa.end()) o.group_kappa.push_back(kappa);
            }
            o.kappa_synapse[i] = o.group_kappa[static_cast<std::size_t>(group)];
            synapse_group[i] = group;
        }
    // κ_m and the gain in double, rounded once: in float, 1 - κ_m cancels for τ_m ≫ Δt (τ_m up to 1000 at
    // Δt 0.5 lost 5 of float's 24 bits, and memory traces then left the golden 1e-5 bound); -expm1 gives
    // 1 - exp(-u) to full precision.
    o.kappa_m.assign(static_cast<std::size_t>(o.pm), T(0));
    o.memory_leak.assign(static_cast<std::size_t>(o.pm), T(0));
    o.memory_gain.assign(static_cast<std::size_t>(o.pm), T(0));
    const double lo = c.memory_tau_min, hi = c.effective_tau_max();
    for (int k = 0; k < d.d_m; ++k) {
        const double tau = (hi - lo) * (1 / (1 + std::exp(-static_cast<double>(p.proto_tau_m[k])))) + lo;
        const double tc = std::max(tau, 1e-6);
        const double leak = -std::expm1(-c.delta_t / tc);  // 1 - κ_m
        o.kappa_m[k] = T(decay_factor(c.delta_t, tau));
        o.memory_leak[k] = T(leak);
        o.memory_gain[k] = T(c.version == model_version::v1 ? c.lambda_value * leak
                                                            : -std::expm1(-c.delta_t * c.lambda_value / tc));
    }

    // First layer's branch half as padded rows (column j of W_0), bias, memory half in both layouts.
    const T* w0 = p.weight[0];
    o.branch_weight.assign(static_cast<std::size_t>(d.d_tree) * o.p0, T(0));
    o.bias0.assign(static_cast<std::size_t>(o.p0), T(0));
    o.memory_weight_t.assign(static_cast<std::size_t>(d.d_m) * o.p0, T(0));
    o.memory_weight.assign(static_cast<std::size_t>(n0 + 1) * o.pm, T(0));  // + sparse_rows' zero row
    for (int k = 0; k < n0; ++k) {
        const T* row = w0 + static_cast<std::size_t>(k) * dz;
        for (int j = 0; j < d.d_tree; ++j) o.branch_weight[static_cast<std::size_t>(j) * o.p0 + k] = row[j];
        for (int j = 0; j < d.d_m; ++j) {
            o.memory_weight_t[static_cast<std::size_t>(j) * o.p0 + k] = row[d.d_tree + j];
            o.memory_weight[static_cast<std::size_t>(k) * o.pm + j] = row[d.d_tree + j];
        }
        o.bias0[k] = p.bias[0][k];
    }
    o.layers.resize(static_cast<std::size_t>(d.l_mlp));
    for (int l = 1; l <= d.l_mlp; ++l)
        fill_layer(p.weight[l], p.bias[l], l < d.l_mlp ? d.d_mlp : d.d_m, d.d_mlp, o.layers[l - 1]);
    fill_layer(p.w_y, p.b_y, d.d_o, d.d_m, o.readout);

    // Projection: one row per (κ group, channel) with a valid synapse, in (group, channel) order; each valid
    // synapse adds w_s·(its branch's W_0 column) to its row, in synapse order. The zero row comes last.
    // Synapse i = j·d_brch + k is on branch j; its (group, channel) pair indexes row_of. (Loops over j and k:
    // no division per synapse, which made prepare a visible part of a short inference call.)
    auto for_valid_synapses = [&](auto&& f) {
        for (int j = 0, i = 0; j < d.d_tree; ++j) {
            for (int k = 0; k < d.d_brch; ++k, ++i)
                if (synapse_mask[i] != T(0))
                    f(i, j,
                      static_cast<std::size_t>(synapse_group[i]) * d.d_in +
                          static_cast<std::size_t>(synapse_index[i]));
        }
    };
    o.row_of.assign(static_cast<std::size_t>(o.groups()) * d.d_in, -1);
    o.synapse_row.assign(static_cast<std::size_t>(d.d_s), -1);
    for_valid_synapses([&](int, int, std::size_t pair) { o.row_of[pair] = 0; });  // marks a pair in use
    std::int32_t rows = 0;
    for (auto& r : o.row_of)
        if (r == 0) r = rows++;
    for_valid_synapses([&](int i, int, std::size_t pair) { o.synapse_row[i] = o.row_of[pair]; });
    o.rows_are_channels = o.groups() == 1 && rows == d.d_in;
    for (auto& r : o.row_of)
        if (r < 0) r = rows;  // the zero row
    o.proj.assign((static_cast<std::size_t>(rows) + 1) * o.p0, T(0));
    for_valid_synapses([&](int i, int j, std::size_t) {
        T* u = o.proj.data() + static_cast<std::size_t>(o.synapse_row[i]) * o.p0;
        const T* wb = o.branch_weight.data() + static_cast<std::size_t>(j) * o.p0;
        const T w = o.w_s[i];
        for (int k = 0; k < n0; ++k) u[k] += w * wb[k];
    });
}

// ---- the input stage through the first layer, forward and reverse -----------------------------------------
namespace {

// A step's events are summed into 4 partial sums kept in registers (event e into sum e mod 4), so that
// consecutive events do not wait for each other; the order depends on the input alone.
constexpr int event_partials = 4;

// Direct: the row of channel c is c (prepared::rows_are_channels), no lookup per event.
template <class T, int KB, bool Direct>
void input_forward_block(const prepared<T>& p, const event_view<T>& x, int b, int t0, int t1, int g, int k0,
                         T* state, T* out, std::size_t step_stride) {
    using V = vec<T>;
    const std::size_t p0 = static_cast<std::size_t>(p.p0);
    const T* proj = p.proj.data() + static_cast<std::size_t>(k0) * lanes<T>;
    const std::int32_t* row_of = p.row_of.data() + static_cast<std::size_t>(g) * p.d.d_in;
    const V* c0 = as_vec(p.bias0.data()) + k0;
    const T kappa = p.group_kappa[g];
    V* st = as_vec(state) + k0;
    V a[KB];
#pragma GCC unroll 4
    for (int k = 0; k < KB; ++k) a[k] = st[k];
    const std::int32_t* channel = x.channels;
    const T* value = x.values;
    for (int t = t0; t < t1; ++t) {
        V part[event_partials][KB];
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k) {
            part[0][k] = kappa * a[k];
#pragma GCC unroll 4
            for (int q = 1; q < event_partials; ++q) part[q][k] = V{};
        }
        const std::int64_t bt = static_cast<std::int64_t>(b) * x.time + t;
        auto e = x.offsets[bt];
        const auto end = x.offsets[bt + 1];
        for (; e + event_partials <= end; e += event_partials) {
#pragma GCC unroll 4
            for (int q = 0; q < event_partials; ++q) {
                const V* u = as_vec(
                    proj + static_cast<std::size_t>(Direct ? channel[e + q] : row_of[channel[e + q]]) * p0);
                const T v = value[e + q];
#pragma GCC unroll 4
                for (int k = 0; k < KB; ++k) part[q][k] += v * u[k];
            }
        }
        // The last 0-3 events into partials 0, 1, 2 (compile-time indices keep the partials in registers).
#pragma GCC unroll 4
        for (int q = 0; q < event_partials - 1; ++q) {
            if (e + q >= end) break;
            const V* u = as_vec(
                proj + static_cast<std::size_t>(Direct ? channel[e + q] : row_of[channel[e + q]]) * p0);
            const T v = value[e + q];
#pragma GCC unroll 4
            for (int k = 0; k < KB; ++k) part[q][k] += v * u[k];
        }
        V* o = as_vec(out + static_cast<std::size_t>(t - t0) * step_stride) + k0;
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k) {
            a[k] = (part[0][k] + part[1][k]) + (part[2][k] + part[3][k]);
            o[k] = (g == 0 ? c0[k] : o[k]) + a[k];
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < KB; ++k) st[k] = a[k];
}

template <class T, int KB, bool Direct>
void input_backward_block(const prepared<T>& p, const event_view<T>& x, int b, int t0, int t1, int g, int k0,
                          const T* din, std::size_t step_stride, T* state, T* proj_grad, T* dx) {
    using V = vec<T>;
    const dims& d = p.d;
    const std::size_t p0 = static_cast<std::size_t>(p.p0);
    const std::size_t offset = static_cast<std::size_t>(k0) * lanes<T>;
    const T* proj = p.proj.data() + offset;
    T* q0 = proj_grad + offset;
    const std::int32_t* row_of = p.row_of.data() + static_cast<std::size_t>(g) * d.d_in;
    const T kappa = p.group_kappa[g];
    V* st = as_vec(state) + k0;
    V r[KB];
#pragma GCC unroll 4
    for (int k = 0; k < KB; ++k) r[k] = st[k];
    // Local copies: stores through the vector type may alias anything, so members would be reloaded.
    const std::int64_t* offsets = x.offsets;
    const std::int32_t* channel = x.channels;
    const T* value = x.values;
    const std::int64_t time = x.time;
    for (int t = t1 - 1; t >= t0; --t) {
        const V* di = as_vec(din + static_cast<std::size_t>(t - t0) * step_stride) + k0;
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k) r[k] = di[k] + kappa * r[k];
        const std::int64_t bt = static_cast<std::int64_t>(b) * time + t;
        const auto end = offsets[bt + 1];
        for (auto e = offsets[bt]; e < end; ++e) {
            V* q = as_vec(q0 + static_cast<std::size_t>(Direct ? channel[e] : row_of[channel[e]]) * p0);
            const T v = value[e];
#pragma GCC unroll 4
            for (int k = 0; k < KB; ++k) q[k] += v * r[k];
        }
        if (dx) {
            T* dxt = dx + static_cast<std::size_t>(bt) * d.d_in;
            for (int c = 0; c < d.d_in; ++c) {
                const V* u = as_vec(proj + static_cast<std::size_t>(Direct ? c : row_of[c]) * p0);
                V sum{};
#pragma GCC unroll 4
                for (int k = 0; k < KB; ++k) sum += u[k] * r[k];
                dxt[c] += horizontal_sum<T>(sum);
            }
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < KB; ++k) st[k] = r[k];
}

template <class T>
using forward_block_fn = void (*)(const prepared<T>&, const event_view<T>&, int, int, int, int, int, T*, T*,
                                  std::size_t);
template <class T>
using backward_block_fn = void (*)(const prepared<T>&, const event_view<T>&, int, int, int, int, int,
                                   const T*, std::size_t, T*, T*, T*);

// Tables [Direct][KB - 1].
template <class T, bool Direct, std::size_t... I>
constexpr auto forward_blocks(std::index_sequence<I...>) {
    return std::array<forward_block_fn<T>, sizeof...(I)>{
        &input_forward_block<T, static_cast<int>(I) + 1, Direct>...};
}
template <class T, bool Direct, std::size_t... I>
constexpr auto backward_blocks(std::index_sequence<I...>) {
    return std::array<backward_block_fn<T>, sizeof...(I)>{
        &input_backward_block<T, static_cast<int>(I) + 1, Direct>...};
}
template <class T>
constexpr std::array<std::array<forward_block_fn<T>, max_block_vectors>, 2> forward_tables{
    forward_blocks<T, false>(std::make_index_sequence<max_block_vectors>{}),
    forward_blocks<T, true>(std::make_index_sequence<max_block_vectors>{})};
template <class T>
constexpr std::array<std::array<backward_block_fn<T>, max_block_vectors>, 2> backward_tables{
    backward_blocks<T, false>(std::make_index_sequence<max_block_vectors>{}),
    backward_blocks<T, true>(std::make_index_sequence<max_block_vectors>{})};

}  // namespace

template <class T>
void input_forward(const prepared<T>& p, const event_view<T>& x, int b0, int rows, int t0, int t1, T* state,
                   T* out, std::size_t sample_stride, std::size_t step_stride) {
    const auto& blocks = forward_tables<T>[p.rows_are_channels ? 1 : 0];
    const int nv0 = p.p0 / lanes<T>;
    // Vector blocks outermost: one pass touches only that block's columns of U, which stays in cache.
    for (int g = 0; g < p.groups(); ++g)
        for (int k0 = 0; k0 < nv0; k0 += max_block_vectors)
            for (int s = 0; s < rows; ++s)
                blocks[static_cast<std::size_t>(std::min(max_block_vectors, nv0 - k0) - 1)](
                    p, x, b0 + s, t0, t1, g, k0, state + (static_cast<std::size_t>(g) * rows + s) * p.p0,
                    out + s * sample_stride, step_stride);
}

template <class T>
void input_backward(const prepared<T>& p, const event_view<T>& x, int b0, int rows, int t0, int t1,
                    const T* din, std::size_t sample_stride, std::size_t step_stride, T* state,
                    int state_rows, T* proj_grad, T* dx) {
    const auto& blocks = backward_tables<T>[p.rows_are_channels ? 1 : 0];
    const dims& d = p.d;
    const int nv0 = p.p0 / lanes<T>;
    if (dx)
        for (int s = 0; s < rows; ++s)
            std::fill(dx + (static_cast<std::size_t>(b0 + s) * d.T + t0) * d.d_in,
                      dx + (static_cast<std::size_t>(b0 + s) * d.T + t1) * d.d_in, T(0));
    for (int g = 0; g < p.groups(); ++g)
        for (int k0 = 0; k0 < nv0; k0 += max_block_vectors)
            for (int s = 0; s < rows; ++s)
                blocks[static_cast<std::size_t>(std::min(max_block_vectors, nv0 - k0) - 1)](
                    p, x, b0 + s, t0, t1, g, k0, din + s * sample_stride, step_stride,
                    state + (static_cast<std::size_t>(g) * state_rows + s) * p.p0, proj_grad, dx);
}

template <class T>
void branch_trace(const dims& d, const event_view<T>& x, const std::int64_t* synapse_index,
                  const T* synapse_mask, const T* w_s, const T* kappa_synapse, bool per_synapse, T* branch) {
    std::vector<T> dense(static_cast<std::size_t>(d.d_in)), s(static_cast<std::size_t>(d.d_s));
    for (int b = 0; b < d.B; ++b) {
        std::fill(s.begin(), s.end(), T(0));
        for (int t = 0; t < d.T; ++t) {
            const std::size_t bt = static_cast<std::size_t>(b) * d.T + t;
            std::fill(dense.begin(), dense.end(), T(0));
            for (auto e = x.offsets[bt]; e < x.offsets[bt + 1]; ++e) dense[x.channels[e]] += x.values[e];
            T* cur = branch + bt * static_cast<std::size_t>(d.d_tree);
            for (int j = 0; j < d.d_tree; ++j) {
                T drive = 0;
                for (int k = 0; k < d.d_brch; ++k) {
                    const int i = j * d.d_brch + k;
                    const T xi =
                        w_s[i] * (dense[static_cast<std::size_t>(synapse_index[i])] * synapse_mask[i]);
                    if (per_synapse) {  // v1 (E1): s_t = κ_s ⊙ s_{t-1} + w_s ⊙ x̃_t, b_t = BranchSum(s_t)
                        s[i] = (t > 0 ? kappa_synapse[i] * s[i] : T(0)) + xi;
                        drive += s[i];
                    } else {
                        drive += xi;
                    }
                }
                // v2 (E2): b_t = κ_b ⊙ b_{t-1} + BranchSum(w_s ⊙ x̃_t)
                cur[j] = per_synapse
                             ? drive
                             : (t > 0 ? kappa_synapse[j * d.d_brch] * cur[j - d.d_tree] : T(0)) + drive;
            }
        }
    }
}

template <class T>
void synapse_forward(const dims& d, const sparse_input<T>& x, const std::int64_t* synapse_index,
                     const T* synapse_mask, const T* w_s, const T* kappa_s, T* s) {
    std::vector<T> dense(static_cast<std::size_t>(d.d_in));
    for (int b = 0; b < d.B; ++b) {
        for (int t = 0; t < d.T; ++t) {
            const std::size_t bt = static_cast<std::size_t>(b) * d.T + t;
            std::fill(dense.begin(), dense.end(), T(0));
            for (auto e = x.offsets[bt]; e < x.offsets[bt + 1]; ++e) dense[x.channels[e]] += x.values[e];
            T* cur = s + bt * static_cast<std::size_t>(d.d_s);
            const T* prev = t > 0 ? cur - d.d_s : nullptr;
            for (int i = 0; i < d.d_s; ++i) {
                const T xi = dense[static_cast<std::size_t>(synapse_index[i])] * synapse_mask[i];
                cur[i] = (prev ? kappa_s[i] * prev[i] : T(0)) + w_s[i] * xi;
            }
        }
    }
}

#define ELM_INSTANTIATE(T)                                                                                  \
    template struct prepared<T>;                                                                            \
    template void prepare<T>(const model_config&, const parameter_views<const T>&, const std::int64_t*,     \
                             const T*, int, int, prepared<T>&);                                             \
    template void input_forward<T>(const prepared<T>&, const event_view<T>&, int, int, int, int, T*, T*,    \
                                   std::size_t, std::size_t);                                               \
    template void input_backward<T>(const prepared<T>&, const event_view<T>&, int, int, int, int, const T*, \
                                    std::size_t, std::size_t, T*, int, T*, T*);                             \
    template void branch_trace<T>(const dims&, const event_view<T>&, const std::int64_t*, const T*,         \
                                  const T*, const T*, bool, T*);                                            \
    template void synapse_forward<T>(const dims&, const sparse_input<T>&, const std::int64_t*, const T*,    \
                                     const T*, const T*, T*);
ELM_INSTANTIATE(float)
ELM_INSTANTIATE(double)
#undef ELM_INSTANTIATE

}  // namespace elm::detail
