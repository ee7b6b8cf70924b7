// The sequential part of the ELM (docs/model.md E1-E7; reference/paper.md §1.2 v1, §1.3 v2), one step at a time:
//   z_t   = [b_t, κ_m ⊙ m_{t-1}],  pre_0 = W_0·z_t + c_0 = (c_0 + Σ_g a_g,t) + W_m·(κ_m ⊙ m_{t-1})
//           where c_0 + Σ_g a_g,t, the input stage through W_b (input_stage.cpp), is already in the rows
//   Δm_t  = 1.7159·tanh((2/3)·MLP(z_t))                                 "custom_tanh" of the published code
//   m_t   = κ_m ⊙ m_{t-1} + gain ⊙ Δm_t     gain = λ(1-κ_m) (v1) or 1-κ_λ, κ_λ = exp(-Δt·λ/τ_m) (v2)
//   y_t   = W_y m_t + b_y                                                 readout of the NEW memory
// and its reverse-time transpose (BPTT). Per step everything is dense_rows on the chunk's samples; weight
// gradients, which do not feed the recurrence, are summed afterwards as [rows·T]-deep products (Eigen).

#include "model/kernels.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

namespace elm::detail {
namespace {

constexpr double tanh_scale = 1.7159;  // LeCun's scaled tanh, published custom_tanh
constexpr double tanh_slope = 2.0 / 3.0;

template <class T>
using array_map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using const_array_map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// ---- dense_rows: register-blocked rows x vectors of accumulators -------------------------------------------
// A block is SB rows x KB vectors of accumulators (SB·KB ≤ 16); for each j it loads KB vectors of row j of M
// and broadcasts SB scalars of x. Blocks of vectors are the outer loop, so the strip of M a block reads
// (n_in x KB vectors) is reused from L1 by every block of rows.
constexpr int max_block_rows = 8;
constexpr int max_accumulators = max_block_vectors * max_block_vectors;  // 16 (AVX-512) or 4
constexpr std::size_t l1_strip_bytes = 16 * 1024;

template <class T, int SB, int KB>
void dense_block(const T* x, std::size_t xs, std::size_t xj, int n_in, const T* M, int np, const T* init,
                 std::size_t is, T* out, std::size_t os) {
    using V = vec<T>;
    V acc[SB][KB];
#pragma GCC unroll 8
    for (int s = 0; s < SB; ++s)
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k) acc[s][k] = init ? as_vec(init + s * is)[k] : V{};
    for (int j = 0; j < n_in; ++j) {
        const V* m = as_vec(M + static_cast<std::size_t>(j) * np);
        V mv[KB];
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k) mv[k] = m[k];
#pragma GCC unroll 8
        for (int s = 0; s < SB; ++s) {
            const T xv = x[s * xs + j * xj];
#pragma GCC unroll 4
            for (int k = 0; k < KB; ++k) acc[s][k] += xv * mv[k];
        }
    }
#pragma GCC unroll 8
    for (int s = 0; s < SB; ++s)
#pragma GCC unroll 4
        for (int k = 0; k < KB; ++k) as_vec(out + s * os)[k] = acc[s][k];
}

template <class T>
using block_fn = void (*)(const T*, std::size_t, std::size_t, int, const T*, int, const T*, std::size_t, T*,
                          std::size_t);

// Table of dense_block<SB, KB> for SB in 1..max_block_rows, KB in 1..max_block_vectors (unused shapes with
// SB·KB > max_accumulators are left null).
template <class T, std::size_t I>
constexpr block_fn<T> block_entry() {
    constexpr int sb = static_cast<int>(I / max_block_vectors) + 1, kb = static_cast<int>(I % max_block_vectors) + 1;
    if constexpr (sb * kb <= max_accumulators || sb == 1) return &dense_block<T, sb, kb>;
    else return nullptr;
}
template <class T, std::size_t... I>
constexpr auto block_table(std::index_sequence<I...>) {
    return std::array<block_fn<T>, sizeof...(I)>{block_entry<T, I>()...};
}

template <class T>
constexpr auto dense_blocks = block_table<T>(std::make_index_sequence<max_block_rows * max_block_vectors>{});

// ---- element-wise parts on padded rows ---------------------------------------------------------------------

// h = act(pre) over n (padded) elements.
template <class T>
void activate(activation act, const T* pre, T* h, int n) {
    if (act == activation::relu) {
        const vec<T>* a = as_vec(pre);
        vec<T>* o = as_vec(h);
        const vec<T> zero{};
        for (int v = 0; v < n / lanes<T>; ++v) o[v] = a[v] > zero ? a[v] : zero;
    } else {
        // SiLU: a·σ(a) = a / (1 + exp(-a))
        const const_array_map<T> a(pre, n);
        array_map<T>(h, n) = a / (T(1) + (-a).exp());
    }
}

// g ⊙ act'(pre) into out. ReLU'(0) = 0 as torch's threshold_backward; SiLU' = σ(a)·(1 + a·(1 - σ(a))).
template <class T>
void activation_backward(activation act, const T* pre, const T* g, T* out, int n) {
    if (act == activation::relu) {
        const vec<T>* a = as_vec(pre);
        const vec<T>* gv = as_vec(g);
        vec<T>* o = as_vec(out);
        const vec<T> zero{};
        for (int v = 0; v < n / lanes<T>; ++v) o[v] = a[v] > zero ? gv[v] : zero;
    } else {
        const const_array_map<T> a(pre, n);
        const auto s = T(1) / (T(1) + (-a).exp());
        array_map<T>(out, n) = const_array_map<T>(g, n) * (s * (T(1) + a * (T(1) - s)));
    }
}

// Δm = 1.7159·tanh((2/3)·o) in place (E5).
template <class T>
void scaled_tanh(T* o, int n) {
    array_map<T> a(o, n);
    a = T(tanh_scale) * (a * T(tanh_slope)).tanh();
}

}  // namespace

template <class T>
void dense_rows_strided(int rows, const T* x, std::size_t xs, std::size_t xj, int n_in, const T* M, int np,
                        const T* init, std::size_t is, T* out, std::size_t os) {
    const int nv = np / lanes<T>;
    // Widest strip of M that stays in L1, then as many rows as the accumulator registers allow.
    int kb = max_block_vectors;
    while (kb > 1 && static_cast<std::size_t>(n_in) * kb * simd_bytes > l1_strip_bytes) kb /= 2;
    kb = std::min(kb, nv);
    const int sb_max = std::min(max_block_rows, std::max(1, max_accumulators / kb));
    for (int k0 = 0; k0 < nv; k0 += kb) {
        const int kbl = std::min(kb, nv - k0);
        const std::size_t col = static_cast<std::size_t>(k0) * lanes<T>;
        for (int s0 = 0; s0 < rows; s0 += sb_max) {
            const int sb = std::min(sb_max, rows - s0);
            dense_blocks<T>[static_cast<std::size_t>((sb - 1) * max_block_vectors + kbl - 1)](
                x + s0 * xs, xs, xj, n_in, M + col, np, init ? init + s0 * is + col : nullptr, is, out + s0 * os + col,
                os);
        }
    }
}

template <class T>
void dense_rows(int rows, const T* x, std::size_t xs, int n_in, const T* M, int np, const T* init, std::size_t is,
                T* out, std::size_t os) {
    dense_rows_strided(rows, x, xs, 1, n_in, M, np, init, is, out, os);
}

template <class T>
void deep_product(std::size_t depth, const T* A, int pa, int na, const T* B, int pb, T* out) {
    // out[i][:] += Σ_r A[r][i]·B[r][:]: dense_rows with the roles of rows and depth swapped (x[i][r] = A[r][i]),
    // over blocks of depth small enough that their strips of B and A stay in cache; blocks in order.
    constexpr std::size_t block = 128;
    for (std::size_t r0 = 0; r0 < depth; r0 += block) {
        const int n = static_cast<int>(std::min(block, depth - r0));
        dense_rows_strided(na, A + r0 * pa, 1, static_cast<std::size_t>(pa), n, B + r0 * pb, pb, out,
                           static_cast<std::size_t>(pb), out, static_cast<std::size_t>(pb));
    }
}

template <class T>
void step_forward(const prepared<T>& p, int rows, T* memory_in, T* scratch, const step_rows<T>& out) {
    using V = vec<T>;
    const dims& d = p.d;
    const int L = d.l_mlp, nvm = p.pm / lanes<T>;
    T* first = L > 0 ? out.hidden : out.delta;  // rows of the first layer's output, holding c_0 + Σ_g a_g
    const std::size_t fs = L > 0 ? out.hidden_stride : out.memory_stride;
    if (out.memory_in)
        for (int s = 0; s < rows; ++s)
            std::memcpy(out.memory_in + s * out.memory_stride, memory_in + static_cast<std::size_t>(s) * p.pm,
                        sizeof(T) * p.pm);
    // First layer, memory half (E4): pre_0 += W_m·(κ_m ⊙ m_{t-1}).
    dense_rows(rows, memory_in, p.pm, d.d_m, p.memory_weight_t.data(), p.p0, first, fs, first, fs);

    // Hidden layers: h = act(pre_l), pre_{l+1} = W_{l+1}·h + c_{l+1}; the last one gives the MLP output.
    T* h = scratch;
    for (int l = 0; l < L; ++l) {
        T* pre_l = out.hidden + l * out.layer_stride;
        for (int s = 0; s < rows; ++s) activate(p.act, pre_l + s * out.hidden_stride, h + s * p.ph, p.ph);
        const auto& w = p.layers[static_cast<std::size_t>(l)];
        const bool last = l + 1 == L;
        T* next = last ? out.delta : out.hidden + (l + 1) * out.layer_stride;
        dense_rows(rows, h, p.ph, d.d_mlp, w.transposed.data(), w.padded_out, w.bias.data(), 0, next,
                   last ? out.memory_stride : out.hidden_stride);
    }

    // E5-E6: Δm = 1.7159·tanh((2/3)·o); m = κ_m⊙m_{t-1} + gain⊙Δm; carry κ_m⊙m for the next step.
    const V* kappa = as_vec(p.kappa_m.data());
    const V* gain = as_vec(p.memory_gain.data());
    for (int s = 0; s < rows; ++s) {
        T* delta = out.delta + s * out.memory_stride;
        scaled_tanh(delta, p.pm);
        const V* dm = as_vec(delta);
        V* m = as_vec(out.memory + s * out.memory_stride);
        V* z = as_vec(memory_in + static_cast<std::size_t>(s) * p.pm);
        for (int v = 0; v < nvm; ++v) {
            const V mv = z[v] + gain[v] * dm[v];
            m[v] = mv;
            z[v] = kappa[v] * mv;
        }
    }

    // E7: y = W_y·m + b_y.
    T* y = scratch;
    dense_rows(rows, out.memory, out.memory_stride, d.d_m, p.readout.transposed.data(), p.po, p.readout.bias.data(), 0,
               y, static_cast<std::size_t>(p.po));
    for (int s = 0; s < rows; ++s)
        std::memcpy(out.y + s * out.y_stride, y + static_cast<std::size_t>(s) * p.po, sizeof(T) * d.d_o);
}

namespace {

// Steps per block of the forward: the input stage runs one block ahead of the recurrence, so that the rows it
// writes are still in cache when the recurrence reads them.
constexpr int time_block = 32;

}  // namespace

template <class T>
std::size_t forward_scratch_size(const prepared<T>& p, int rows, bool keep) {
    const std::size_t n = static_cast<std::size_t>(rows);
    std::size_t size = n * (static_cast<std::size_t>(p.groups) * p.p0 + p.pm + std::max(p.ph, p.po));
    if (!keep)  // block buffers for the activations
        size += n * time_block * (static_cast<std::size_t>(p.d.l_mlp) * p.ph + 2 * static_cast<std::size_t>(p.pm));
    return size;
}

template <class T>
void forward_chunk(const prepared<T>& p, const event_view<T>& x, int b0, int rows, const activations<T>* keep, T* y,
                   T* scratch) {
    const dims& d = p.d;
    const std::size_t n = static_cast<std::size_t>(rows), T_ = static_cast<std::size_t>(d.T);
    T* input_state = scratch;
    T* memory_in = input_state + n * p.groups * p.p0;
    T* tmp = memory_in + n * p.pm;
    std::fill(scratch, tmp, T(0));  // zero initial state (Table S1: s0 = 0, m0 = 0)
    T* block = tmp + n * std::max(p.ph, p.po);
    // Where the activations go: the whole-batch buffers [l_mlp][B][T][ph], [B][T][pm] (kept for backward), or
    // blocks of time_block steps [l_mlp][rows][time_block][ph], [rows][time_block][pm] (inference).
    const std::size_t steps = keep ? T_ : static_cast<std::size_t>(time_block);
    T* hidden = keep ? keep->hidden + static_cast<std::size_t>(b0) * T_ * p.ph : block;
    T* delta = keep ? keep->delta + static_cast<std::size_t>(b0) * T_ * p.pm : block + n * steps * p.ph * d.l_mlp;
    T* memory = keep ? keep->memory + static_cast<std::size_t>(b0) * T_ * p.pm : delta + n * steps * p.pm;
    T* kept_in = keep ? keep->memory_in + static_cast<std::size_t>(b0) * T_ * p.pm : nullptr;
    step_rows<T> r;
    r.layer_stride = (keep ? static_cast<std::size_t>(d.B) : n) * steps * p.ph;
    r.hidden_stride = steps * p.ph;
    r.memory_stride = steps * p.pm;
    r.y_stride = T_ * d.d_o;
    for (int t0 = 0; t0 < d.T; t0 += time_block) {
        const int t1 = std::min(d.T, t0 + time_block);
        const std::size_t at = keep ? static_cast<std::size_t>(t0) : 0;  // step t0's index in the buffers
        // The input stage does not depend on the recurrence: the whole block first, into the first layer's rows.
        if (d.l_mlp > 0) input_forward(p, x, b0, rows, t0, t1, input_state, hidden + at * p.ph, r.hidden_stride, p.ph);
        else input_forward(p, x, b0, rows, t0, t1, input_state, delta + at * p.pm, r.memory_stride, p.pm);
        for (int t = t0; t < t1; ++t) {
            const std::size_t i = at + static_cast<std::size_t>(t - t0);
            r.hidden = d.l_mlp > 0 ? hidden + i * p.ph : nullptr;
            r.delta = delta + i * p.pm;
            r.memory = memory + i * p.pm;
            r.memory_in = kept_in ? kept_in + i * p.pm : nullptr;
            r.y = y + (static_cast<std::size_t>(b0) * T_ + t) * d.d_o;
            step_forward(p, rows, memory_in, tmp, r);
        }
    }
}

template <class T>
std::size_t backward_scratch_size(const prepared<T>& p, int rows) {
    const std::size_t n = static_cast<std::size_t>(rows);
    return n * (2 * static_cast<std::size_t>(p.pm) + p.ph) + p.pm;
}

template <class T>
void backward_sweep(const prepared<T>& p, int b0, int rows, const activations<T>& a, const T* dy, T* dkappa_rows,
                    T* dgain_rows, T* scratch) {
    using V = vec<T>;
    const dims& d = p.d;
    const int L = d.l_mlp, n0 = d.n0(), nvm = p.pm / lanes<T>;
    const std::size_t T_ = static_cast<std::size_t>(d.T), n = static_cast<std::size_t>(rows);
    T* carry = scratch;              // [rows][pm] dL/dm_t
    T* dz = carry + n * p.pm;        // [rows][pm] dL/d(κ_m ⊙ m_{t-1})
    T* dh = dz + n * p.pm;           // [rows][ph]
    T* zero = dh + n * p.ph;         // [pm] m_{-1} = 0
    std::fill(scratch, scratch + backward_scratch_size(p, rows), T(0));
    T* dk = dkappa_rows + static_cast<std::size_t>(b0) * p.pm;  // Σ_t dL/dκ_m per sample
    T* dg = dgain_rows + static_cast<std::size_t>(b0) * p.pm;   // Σ_t dL/dgain per sample

    const std::size_t layer_stride = static_cast<std::size_t>(d.B) * T_ * p.ph;
    const std::size_t hs = T_ * p.ph, ms = T_ * p.pm;  // strides between samples at one step
    const V* kappa = as_vec(p.kappa_m.data());
    const V* gain = as_vec(p.memory_gain.data());
    const V slope = V{} + T(tanh_slope), scale = V{} + T(tanh_scale), inv_scale = V{} + T(1) / T(tanh_scale);

    for (int t = d.T - 1; t >= 0; --t) {
        const std::size_t row0 = static_cast<std::size_t>(b0) * T_ + t;
        T* delta = a.delta + row0 * p.pm;  // Δm_t, replaced by dL/d(MLP output)
        // Readout (E7): dL/dm_t += W_yᵀ·dy_t.
        dense_rows(rows, dy + row0 * d.d_o, T_ * d.d_o, d.d_o, p.readout.rows.data(), p.pm, carry, p.pm, carry, p.pm);
        // E6 and E5 backward: m_t = κ_m⊙m_{t-1} + gain⊙Δm_t, Δm = 1.7159·tanh(2/3·o) so
        // dΔm/do = (2/3)·(1.7159 - Δm²/1.7159).
        for (int s = 0; s < rows; ++s) {
            const V* mprev = as_vec(t > 0 ? a.memory + (row0 - 1) * p.pm + s * ms : zero);
            const V* c = as_vec(carry + s * p.pm);
            V* dm = as_vec(delta + s * ms);
            V* dks = as_vec(dk + s * p.pm);
            V* dgs = as_vec(dg + s * p.pm);
            for (int v = 0; v < nvm; ++v) {
                const V m = dm[v];
                dgs[v] += m * c[v];
                dks[v] += mprev[v] * c[v];
                dm[v] = c[v] * gain[v] * slope * (scale - m * m * inv_scale);
            }
        }
        // Back through the MLP: dpre_l = dh ⊙ act'(pre_l), dh = dpre_l·W_l.
        T* dfirst = delta;
        std::size_t fs = ms;
        if (L > 0) {
            const auto& last = p.layers[static_cast<std::size_t>(L - 1)];
            dense_rows(rows, delta, ms, d.d_m, last.rows.data(), p.ph, static_cast<const T*>(nullptr), 0, dh,
                       static_cast<std::size_t>(p.ph));
            for (int l = L - 1; l >= 0; --l) {
                const T* pre = a.hidden + l * layer_stride + row0 * p.ph;
                T* dpre = a.dhidden + l * layer_stride + row0 * p.ph;
                for (int s = 0; s < rows; ++s) activation_backward(p.act, pre + s * hs, dh + s * p.ph, dpre + s * hs, p.ph);
                if (l > 0) {
                    const auto& w = p.layers[static_cast<std::size_t>(l - 1)];
                    dense_rows(rows, dpre, hs, d.d_mlp, w.rows.data(), p.ph, static_cast<const T*>(nullptr), 0, dh,
                               static_cast<std::size_t>(p.ph));
                }
            }
            dfirst = a.dhidden + row0 * p.ph;
            fs = hs;
        }
        // First layer, memory half (E4): z = κ_m ⊙ m_{t-1}, dz = dpre_0·W_m; dL/dm_{t-1} = κ_m ⊙ (dL/dm_t + dz)
        // (its readout part is added at step t-1); dκ_m += m_{t-1} ⊙ dz (the dL/dm_t part is added above).
        dense_rows(rows, dfirst, fs, n0, p.memory_weight.data(), p.pm, static_cast<const T*>(nullptr), 0, dz,
                   static_cast<std::size_t>(p.pm));
        for (int s = 0; s < rows; ++s) {
            const V* mprev = as_vec(t > 0 ? a.memory + (row0 - 1) * p.pm + s * ms : zero);
            V* c = as_vec(carry + s * p.pm);
            const V* dzs = as_vec(dz + s * p.pm);
            V* dks = as_vec(dk + s * p.pm);
            for (int v = 0; v < nvm; ++v) {
                const V total = c[v] + dzs[v];
                dks[v] += mprev[v] * dzs[v];
                c[v] = kappa[v] * total;
            }
        }
    }
}

namespace {

// out[k] += Σ_r rows[r·stride + k], k < n, rows in order.
template <class T>
void add_column_sums(const T* rows, std::size_t count, std::size_t stride, int n, T* out) {
    for (std::size_t r = 0; r < count; ++r) {
        const T* row = rows + r * stride;
        for (int k = 0; k < n; ++k) out[k] += row[k];
    }
}

}  // namespace

template <class T>
void backward_gradients(const prepared<T>& p, const event_view<T>& x, int b0, int rows, const activations<T>& a,
                        const T* dy, const parameter_views<T>& g, T* proj_grad, T* dx, T* scratch) {
    T* wtmp = scratch;  // [rows of a weight][padded width]
    T* dy_pad = scratch + static_cast<std::size_t>(std::max({p.d.d_m, p.d.d_mlp, p.d.d_o, p.d.n0()})) *
                              static_cast<std::size_t>(std::max({p.ph, p.pm, p.po}));
    const dims& d = p.d;
    const int L = d.l_mlp, n0 = d.n0();
    const std::size_t T_ = static_cast<std::size_t>(d.T), n = static_cast<std::size_t>(rows);
    const std::size_t layer_stride = static_cast<std::size_t>(d.B) * T_ * p.ph;
    const std::size_t first_row = static_cast<std::size_t>(b0) * T_, count = n * T_;

    // Input stage (E1-E3 through layer 0), reverse time, from dL/dpre_0 of all steps.
    if (L > 0) input_backward(p, x, b0, rows, a.dhidden + first_row * p.ph, T_ * p.ph, proj_grad, dx);
    else input_backward(p, x, b0, rows, a.delta + first_row * p.pm, T_ * p.pm, proj_grad, dx);

    // Weight gradients: [rows·T]-deep products of stored activations and their gradients (the samples'
    // rows are contiguous: sample-major buffers), into padded rows, then added to the parameter layout.
    for (int l = 0; l < L; ++l) {  // pre-activations -> activations, in place
        T* pre = a.hidden + l * layer_stride + first_row * p.ph;
        for (std::size_t r = 0; r < count; ++r) activate(p.act, pre + r * p.ph, pre + r * p.ph, p.ph);
    }
    auto product = [&](const T* A, int pa, int na, const T* B, int pb, int nb, T* w, std::size_t w_stride) {
        std::fill(wtmp, wtmp + static_cast<std::size_t>(na) * pb, T(0));
        deep_product(count, A + first_row * pa, pa, na, B + first_row * pb, pb, wtmp);
        for (int i = 0; i < na; ++i)
            for (int j = 0; j < nb; ++j) w[static_cast<std::size_t>(i) * w_stride + j] += wtmp[static_cast<std::size_t>(i) * pb + j];
    };
    if (L > 0) {
        product(a.delta, p.pm, d.d_m, a.hidden + (L - 1) * layer_stride, p.ph, d.d_mlp, g.weight[L], d.d_mlp);
        add_column_sums(a.delta + first_row * p.pm, count, p.pm, d.d_m, g.bias[L]);
        for (int l = L - 1; l >= 1; --l) {
            const T* dpre = a.dhidden + l * layer_stride;
            product(dpre, p.ph, d.d_mlp, a.hidden + (l - 1) * layer_stride, p.ph, d.d_mlp, g.weight[l], d.d_mlp);
            add_column_sums(dpre + first_row * p.ph, count, p.ph, d.d_mlp, g.bias[l]);
        }
    }
    const T* dfirst = L > 0 ? a.dhidden : a.delta;
    const int fstride = L > 0 ? p.ph : p.pm;
    product(dfirst, fstride, n0, a.memory_in, p.pm, d.d_m, g.weight[0] + d.d_tree, d.d_z());
    add_column_sums(dfirst + first_row * fstride, count, fstride, n0, g.bias[0]);
    // The readout's dy rows are not padded: pad them block by block into the scratch.
    {
        std::fill(wtmp, wtmp + static_cast<std::size_t>(d.d_o) * p.pm, T(0));
        constexpr std::size_t block = 128;
        for (std::size_t r0 = 0; r0 < count; r0 += block) {
            const std::size_t nr = std::min(block, count - r0);
            for (std::size_t r = 0; r < nr; ++r)
                for (int o = 0; o < p.po; ++o)
                    dy_pad[r * p.po + o] = o < d.d_o ? dy[(first_row + r0 + r) * d.d_o + o] : T(0);
            deep_product(nr, dy_pad, p.po, d.d_o, a.memory + (first_row + r0) * p.pm, p.pm, wtmp);
        }
        for (int o = 0; o < d.d_o; ++o)
            for (int k = 0; k < d.d_m; ++k) g.w_y[static_cast<std::size_t>(o) * d.d_m + k] += wtmp[static_cast<std::size_t>(o) * p.pm + k];
    }
    add_column_sums(dy + first_row * d.d_o, count, d.d_o, d.d_o, g.b_y);
}

template <class T>
std::size_t gradients_scratch_size(const prepared<T>& p) {
    const std::size_t widest = static_cast<std::size_t>(std::max({p.ph, p.pm, p.po}));
    const std::size_t rows = static_cast<std::size_t>(std::max({p.d.d_m, p.d.d_mlp, p.d.d_o, p.d.n0()}));
    return rows * widest + 128 * static_cast<std::size_t>(p.po);
}

#define ELM_INSTANTIATE(T)                                                                                      \
    template void dense_rows<T>(int, const T*, std::size_t, int, const T*, int, const T*, std::size_t, T*,        \
                                std::size_t);                                                                   \
    template void step_forward<T>(const prepared<T>&, int, T*, T*, const step_rows<T>&);                        \
    template std::size_t forward_scratch_size<T>(const prepared<T>&, int, bool);                                \
    template std::size_t backward_scratch_size<T>(const prepared<T>&, int);                                     \
    template void forward_chunk<T>(const prepared<T>&, const event_view<T>&, int, int, const activations<T>*, T*, \
                                   T*);                                                                         \
    template void backward_sweep<T>(const prepared<T>&, int, int, const activations<T>&, const T*, T*, T*, T*);    \
    template void backward_gradients<T>(const prepared<T>&, const event_view<T>&, int, int, const activations<T>&, \
                                        const T*, const parameter_views<T>&, T*, T*, T*);                      \
    template std::size_t gradients_scratch_size<T>(const prepared<T>&);                                          \
    template void deep_product<T>(std::size_t, const T*, int, int, const T*, int, T*);
ELM_INSTANTIATE(float)
ELM_INSTANTIATE(double)
#undef ELM_INSTANTIATE

}  // namespace elm::detail
