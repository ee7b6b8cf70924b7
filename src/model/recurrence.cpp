// The sequential part of the ELM (docs/model.md E1-E7; reference/paper.md §1.2 v1, §1.3 v2), one step at a
// time:
//   z_t   = [b_t, κ_m ⊙ m_{t-1}],  pre_0 = W_0·z_t + c_0 = (c_0 + Σ_g a_g,t) + W_m·(κ_m ⊙ m_{t-1})
//           where c_0 + Σ_g a_g,t, the input stage through W_b (input_stage.cpp), is already in the rows
//   Δm_t  = 1.7159·tanh((2/3)·MLP(z_t))                                 "custom_tanh" of the published code
//   m_t   = κ_m ⊙ m_{t-1} + gain ⊙ Δm_t     gain = λ(1-κ_m) (v1) or 1-κ_λ, κ_λ = exp(-Δt·λ/τ_m) (v2)
//   y_t   = W_y m_t + b_y                                                 readout of the NEW memory
// and its reverse-time transpose (BPTT), in blocks of steps. Every product is dense_rows, the one matrix
// kernel, on the samples of a thread in lockstep; weight gradients, which do not feed the recurrence, are the
// same kernel as deep products over each block's rows (deep_product). Eigen supplies the vectorised tanh and
// exp.

#include "model/kernels.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace elm::detail {
namespace {

constexpr double tanh_scale = 1.7159;  // LeCun's scaled tanh, published custom_tanh
constexpr double tanh_slope = 2.0 / 3.0;

template <class T>
using array_map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using const_array_map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// ---- dense_rows: register-blocked rows x vectors of accumulators ------------------------------------------
// A block is SB rows x KB vectors of accumulators (SB·KB ≤ 16); for each j it loads KB vectors of row j of M
// and broadcasts SB scalars of x. Blocks of vectors are the outer loop, so the strip of M a block reads
// (n_in x KB vectors) is reused from L1 by every block of rows. Accumulator registers: 16 of the 32 vector
// registers with AVX-512, 8 of the 16 otherwise (enough independent FMA chains to cover their latency, and
// room for the loaded row of M and the broadcasts).
constexpr int max_accumulators = max_block_vectors == 4 ? 16 : 8;
constexpr std::size_t l1_strip_bytes = 16 * 1024;

// Half-width last vector: where a row's real width leaves at most half of its last vector in use (d_m 100:
// 100 = 6·16 + 4), that vector's products run on half-width vectors. With AVX-512 this halves their cost on
// cores that execute 512-bit FMAs as two 256-bit halves (AMD Zen 4) and costs nothing elsewhere; the unused
// half of the output vector keeps init's values (what the zero columns of M gave before).
inline constexpr bool use_half_tail = simd_bytes == 64;
template <class T>
struct half_simd {
    typedef T vec __attribute__((vector_size(simd_bytes / 2), aligned(simd_bytes / 2), may_alias));
};
template <class T>
using half_vec = typename half_simd<T>::vec;

// The accumulators of a register block: SB rows x KB vectors, the last at half width with HalfLast; started
// from init's rows (or 0) and stored to out's, the unused half of a half-width vector from init (or 0).
template <class T, int SB, int KB, bool HalfLast>
struct block_accumulators {
    using V = vec<T>;
    using H = half_vec<T>;
    static constexpr int KF = HalfLast ? KB - 1 : KB;  // full-width vectors of the block
    static constexpr int KV = KF > 0 ? KF : 1;
    V acc[SB][KV];
    H tail[SB];

    block_accumulators(const T* init, std::size_t is) {
#pragma GCC unroll 8
        for (int s = 0; s < SB; ++s) {
#pragma GCC unroll 4
            for (int k = 0; k < KF; ++k) acc[s][k] = init ? as_vec(init + s * is)[k] : V{};
            if constexpr (HalfLast)
                tail[s] = init ? *reinterpret_cast<const H*>(as_vec(init + s * is) + KF) : H{};
        }
    }
    // Loads the block's vectors of a row of M.
    static void load(const V* m, V (&mv)[KV], H& mh) {
#pragma GCC unroll 4
        for (int k = 0; k < KF; ++k) mv[k] = m[k];
        if constexpr (HalfLast) mh = *reinterpret_cast<const H*>(m + KF);
    }
    // Row s += x · (a row of M, loaded).
    void add(int s, T x, const V (&mv)[KV], H mh) {
#pragma GCC unroll 4
        for (int k = 0; k < KF; ++k) acc[s][k] += x * mv[k];
        if constexpr (HalfLast) tail[s] += x * mh;
    }
    void store(T* out, std::size_t os, const T* init, std::size_t is) const {
#pragma GCC unroll 8
        for (int s = 0; s < SB; ++s) {
#pragma GCC unroll 4
            for (int k = 0; k < KF; ++k) as_vec(out + s * os)[k] = acc[s][k];
            if constexpr (HalfLast) {
                H* o = reinterpret_cast<H*>(as_vec(out + s * os) + KF);
                o[0] = tail[s];
                o[1] = init ? reinterpret_cast<const H*>(as_vec(init + s * is) + KF)[1] : H{};
            }
        }
    }
};

template <class T, int SB, int KB, bool HalfLast>
void dense_block(const T* x, std::size_t xs, std::size_t xj, int n_in, const T* M, int np, const T* init,
                 std::size_t is, T* out, std::size_t os) {
    using A = block_accumulators<T, SB, KB, HalfLast>;
    A a(init, is);
    for (int j = 0; j < n_in; ++j) {
        typename A::V mv[A::KV];
        typename A::H mh{};
        A::load(as_vec(M + static_cast<std::size_t>(j) * np), mv, mh);  // once for all SB rows
#pragma GCC unroll 8
        for (int s = 0; s < SB; ++s) a.add(s, x[s * xs + j * xj], mv, mh);
    }
    a.store(out, os, init, is);
}

template <class T>
using block_fn = void (*)(const T*, std::size_t, std::size_t, int, const T*, int, const T*, std::size_t, T*,
                          std::size_t);

// Tables of the register blocks, kernel<SB, KB, HalfLast> at [HalfLast][(SB - 1)·max_block_vectors + KB - 1]
// for SB in 1..max_block_rows, KB in 1..max_block_vectors (shapes with SB·KB > max_accumulators are left
// null: the plans never pick them). Pick<SB, KB, HalfLast>::fn is the kernel's instance.
inline constexpr std::size_t block_shapes = static_cast<std::size_t>(max_block_rows * max_block_vectors);
template <class Fn, template <int, int, bool> class Pick, bool HalfLast, std::size_t... I>
constexpr std::array<Fn, sizeof...(I)> block_table(std::index_sequence<I...>) {
    auto entry = []<std::size_t J>(std::integral_constant<std::size_t, J>) -> Fn {
        constexpr int sb = static_cast<int>(J / max_block_vectors) + 1,
                      kb = static_cast<int>(J % max_block_vectors) + 1;
        if constexpr (sb * kb <= max_accumulators || sb == 1)
            return Pick<sb, kb, HalfLast>::fn;
        else
            return nullptr;
    };
    return {entry(std::integral_constant<std::size_t, I>{})...};
}
// (Without use_half_tail the second table is the first: no half-width blocks are compiled.)
template <class Fn, template <int, int, bool> class Pick>
constexpr std::array<std::array<Fn, block_shapes>, 2> block_tables{
    block_table<Fn, Pick, false>(std::make_index_sequence<block_shapes>{}),
    block_table<Fn, Pick, use_half_tail>(std::make_index_sequence<block_shapes>{})};

template <class T>
struct dense_pick {
    template <int SB, int KB, bool H>
    struct at {
        static constexpr block_fn<T> fn = &dense_block<T, SB, KB, H>;
    };
};
template <class T>
constexpr const auto& dense_blocks = block_tables<block_fn<T>, dense_pick<T>::template at>;

// How dense_rows and sparse_rows cut a product into blocks: the widest strip of M (kb vectors) that stays
// in L1, then as many rows as the accumulator registers allow; the last vector at half width where the real
// width leaves at most half of it in use.
struct block_plan {
    int np = 0, nv = 0, kb = 1, sb_max = 1;
    bool half_tail = false;
};
template <class T>
block_plan plan_blocks(int n_in, int n_out) {
    block_plan plan;
    plan.np = padded<T>(n_out);
    plan.nv = plan.np / lanes<T>;
    plan.half_tail = use_half_tail && 2 * (n_out - (plan.nv - 1) * lanes<T>) <= lanes<T>;
    int kb = max_block_vectors;
    while (kb > 1 && static_cast<std::size_t>(n_in) * kb * simd_bytes > l1_strip_bytes) kb /= 2;
    plan.kb = std::min(kb, plan.nv);
    plan.sb_max = std::min(max_block_rows, std::max(1, max_accumulators / plan.kb));
    return plan;
}

// ---- sparse_rows: the same product over the non-zero inputs only ---------------------------------------
// x as per-row lists of (value, element offset of row j of M), in increasing j. A block runs its rows in
// lockstep over the lists, padded to the block's longest with (-0, offset of a zero row of M): a padded entry
// adds -0·0 = -0, which leaves every sum as it is (x + -0 = x, also for x = ±0), so each row's sums are the
// dense kernel's with the zero terms left out, whatever the rows it shares a block with.
template <class T, int SB, int KB, bool HalfLast>
void sparse_block(const T* vals, const std::int32_t* offs, std::size_t ls, int n, const T* M, const T* init,
                  std::size_t is, T* out, std::size_t os) {
    using A = block_accumulators<T, SB, KB, HalfLast>;
    A a(init, is);
    for (int e = 0; e < n; ++e) {
#pragma GCC unroll 8
        for (int s = 0; s < SB; ++s) {
            typename A::V mv[A::KV];
            typename A::H mh{};
            A::load(as_vec(M + offs[s * ls + e]), mv, mh);  // each row its own row of M
            a.add(s, vals[s * ls + e], mv, mh);
        }
    }
    a.store(out, os, init, is);
}

template <class T>
using sparse_fn = void (*)(const T*, const std::int32_t*, std::size_t, int, const T*, const T*, std::size_t,
                           T*, std::size_t);

template <class T>
struct sparse_pick {
    template <int SB, int KB, bool H>
    struct at {
        static constexpr sparse_fn<T> fn = &sparse_block<T, SB, KB, H>;
    };
};
template <class T>
constexpr const auto& sparse_blocks = block_tables<sparse_fn<T>, sparse_pick<T>::template at>;

// ---- element-wise parts on padded rows ------------------------------------------------------------------

// h = act(pre) over n (padded) elements. Returns, for ReLU, the number of non-zero elements of h (0 for
// SiLU).
template <class T>
int activate(activation act, const T* pre, T* h, int n) {
    if (act == activation::relu) {
        const vec<T>* a = as_vec(pre);
        vec<T>* o = as_vec(h);
        const vec<T> zero{};
        decltype(zero > zero) on_count{};  // per lane; a comparison gives -1 where true
        for (int v = 0; v < n / lanes<T>; ++v) {
            const auto on = a[v] > zero;
            o[v] = on ? a[v] : zero;
            on_count -= on;
        }
        int active = 0;
        for (int l = 0; l < lanes<T>; ++l) active += static_cast<int>(on_count[l]);
        return active;
    }
    // SiLU: a·σ(a) = a / (1 + exp(-a))
    const const_array_map<T> a(pre, n);
    array_map<T>(h, n) = a / (T(1) + (-a).exp());
    return 0;
}

// The backward's pass over a hidden layer: g ⊙ act'(pre) into dpre and, for the weight gradients, the
// activation act(pre) recomputed into h (not stored by the forward), in one read of pre. ReLU'(0) = 0 as
// torch's threshold_backward; SiLU' = σ(a)·(1 + a·(1 - σ(a))), SiLU = a·σ(a) as activate computes it.
// Returns, as activate, ReLU's units on (0 for SiLU).
template <class T>
int activation_backward(activation act, const T* pre, const T* g, T* dpre, T* h, int n) {
    if (act == activation::relu) {
        const vec<T>* a = as_vec(pre);
        const vec<T>* gv = as_vec(g);
        vec<T>* d = as_vec(dpre);
        vec<T>* o = as_vec(h);
        const vec<T> zero{};
        decltype(zero > zero) on_count{};  // as activate's
        for (int v = 0; v < n / lanes<T>; ++v) {
            const auto on = a[v] > zero;
            d[v] = on ? gv[v] : zero;
            o[v] = on ? a[v] : zero;
            on_count -= on;
        }
        int active = 0;
        for (int l = 0; l < lanes<T>; ++l) active += static_cast<int>(on_count[l]);
        return active;
    } else {
        // One exp per element: the denominator 1 + exp(-a) goes into dpre first (element-wise, so the
        // in-place update below reads each element before writing it); same values as activate's.
        const const_array_map<T> a(pre, n);
        array_map<T> d(dpre, n);
        d = T(1) + (-a).exp();
        array_map<T>(h, n) = a / d;
        const auto s = T(1) / d;
        d = const_array_map<T>(g, n) * (s * (T(1) + a * (T(1) - s)));
    }
    return 0;
}

// Storage of `lists` lists of up to `capacity` (value, int32 offset) entries and their counts in T scratch
// ([lists][capacity] values, [lists][capacity] offsets, [lists] counts; an int32 fits in a T), whole
// vectors: its size, and carve_lists to point into it (returns where the storage ends).
template <class T>
std::size_t list_storage_size(std::size_t lists, std::size_t capacity) {
    return padded<T>(lists * (2 * capacity + 1));
}
template <class T>
T* carve_lists(T* at, std::size_t lists, std::size_t capacity, T*& vals, std::int32_t*& offs,
               std::int32_t*& counts) {
    vals = at;
    offs = reinterpret_cast<std::int32_t*>(vals + lists * capacity);
    counts = offs + lists * capacity;
    return at + list_storage_size<T>(lists, capacity);
}

// sparse_rows' lists of a ReLU layer: where pre > 0 (n elements, a whole number of vectors), (value[j],
// j·np) in increasing j; returns their number. value = pre gives ReLU(pre) (0 elsewhere, NaN included, as
// activate's `a > 0 ? a : 0`), value = dL/dpre ⊙ ReLU'(pre) its backward. The lists need room for n entries.
template <class T>
int relu_lists(const T* pre, const T* value, int n, int np, T* vals, std::int32_t* offs) {
    int count = 0;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && lanes<T> == 16) {
        const __m512i step = _mm512_set1_epi32(16 * np);
        __m512i off = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(np));
        for (int j = 0; j < n; j += 16) {
            const __m512 a = _mm512_load_ps(pre + j);
            const __mmask16 on = _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ);
            // Compress in registers, then store whole vectors: the compressing store to memory is slow on
            // some cores (AMD Zen 4). The list has room: count ≤ j before this vector.
            _mm512_storeu_ps(vals + count, _mm512_maskz_compress_ps(on, _mm512_load_ps(value + j)));
            _mm512_storeu_si512(offs + count, _mm512_maskz_compress_epi32(on, off));
            count += __builtin_popcount(static_cast<unsigned>(on));
            off = _mm512_add_epi32(off, step);
        }
        return count;
    }
#endif
    for (int j = 0; j < n; ++j) {  // branch-free: write every element, keep the positive ones
        vals[count] = value[j];
        offs[count] = j * np;
        count += pre[j] > T(0);
    }
    return count;
}

// Δm = 1.7159·tanh((2/3)·o) of one vector (E5), through a fixed-size Eigen array: the same packet tanh as
// over a whole row, without a row loop per call (this runs once per sample, step and memory vector).
template <class T>
vec<T> scaled_tanh(vec<T> o) {
    Eigen::Map<Eigen::Array<T, lanes<T>, 1>, Eigen::Aligned> a(reinterpret_cast<T*>(&o));
    a = T(tanh_scale) * (a * T(tanh_slope)).tanh();
    return o;
}

}  // namespace

template <class T>
void dense_rows_strided(int rows, const T* x, std::size_t xs, std::size_t xj, int n_in, const T* M, int n_out,
                        const T* init, std::size_t is, T* out, std::size_t os) {
    const block_plan plan = plan_blocks<T>(n_in, n_out);
    for (int k0 = 0; k0 < plan.nv; k0 += plan.kb) {
        const int kbl = std::min(plan.kb, plan.nv - k0);
        const std::size_t col = static_cast<std::size_t>(k0) * lanes<T>;
        for (int s0 = 0; s0 < rows; s0 += plan.sb_max) {
            const int sb = std::min(plan.sb_max, rows - s0);
            dense_blocks<T>[plan.half_tail && k0 + kbl == plan.nv ? 1 : 0]
                           [static_cast<std::size_t>((sb - 1) * max_block_vectors + kbl - 1)](
                               x + s0 * xs, xs, xj, n_in, M + col, plan.np,
                               init ? init + s0 * is + col : nullptr, is, out + s0 * os + col, os);
        }
    }
}

template <class T>
void dense_rows(int rows, const T* x, std::size_t xs, int n_in, const T* M, int n_out, const T* init,
                std::size_t is, T* out, std::size_t os) {
    dense_rows_strided(rows, x, xs, 1, n_in, M, n_out, init, is, out, os);
}

template <class T>
void sparse_rows(int rows, T* vals, std::int32_t* offs, const std::int32_t* counts, std::size_t ls, int n_in,
                 std::int32_t zero_row, const T* M, int n_out, const T* init, std::size_t is, T* out,
                 std::size_t os) {
    const block_plan plan = plan_blocks<T>(n_in, n_out);
    // Each block's lists padded to its longest with (-0, zero row), see sparse_block.
    auto longest = [&](int s0, int sb) {
        int n = 0;
        for (int s = s0; s < s0 + sb; ++s) n = std::max(n, counts[s]);
        return n;
    };
    for (int s0 = 0; s0 < rows; s0 += plan.sb_max) {
        const int sb = std::min(plan.sb_max, rows - s0), n = longest(s0, sb);
        for (int s = s0; s < s0 + sb; ++s) {
            std::fill(vals + s * ls + counts[s], vals + s * ls + n, T(-0.0));
            std::fill(offs + s * ls + counts[s], offs + s * ls + n, zero_row);
        }
    }
    for (int k0 = 0; k0 < plan.nv; k0 += plan.kb) {
        const int kbl = std::min(plan.kb, plan.nv - k0);
        const std::size_t col = static_cast<std::size_t>(k0) * lanes<T>;
        for (int s0 = 0; s0 < rows; s0 += plan.sb_max) {
            const int sb = std::min(plan.sb_max, rows - s0);
            sparse_blocks<T>[plan.half_tail && k0 + kbl == plan.nv ? 1 : 0]
                            [static_cast<std::size_t>((sb - 1) * max_block_vectors + kbl - 1)](
                                vals + s0 * ls, offs + s0 * ls, ls, longest(s0, sb), M + col,
                                init ? init + s0 * is + col : nullptr, is, out + s0 * os + col, os);
        }
    }
}

namespace {

// Appends (A[r][i], r·pb) to list i for every non-zero A[r][i], r < n, i < na (rows of A at stride pa, whole
// vectors): the column lists of a block of depth, each in increasing r.
template <class T>
void append_columns(const T* A, std::size_t pa, int n, int na, int pb, T* vals, std::int32_t* offs,
                    std::int32_t* counts, std::size_t ls) {
    std::fill(counts, counts + na, 0);
    for (int r = 0; r < n; ++r) {
        const T* a = A + static_cast<std::size_t>(r) * pa;
        auto append = [&](int i) {
            const std::size_t e = static_cast<std::size_t>(i) * ls + static_cast<std::size_t>(counts[i]++);
            vals[e] = a[i];
            offs[e] = r * pb;
        };
#if defined(__AVX512F__)
        if constexpr (std::is_same_v<T, float> && lanes<T> == 16) {
            for (int i0 = 0; i0 < na; i0 += 16) {
                unsigned on = _mm512_cmp_ps_mask(_mm512_load_ps(a + i0), _mm512_setzero_ps(), _CMP_NEQ_UQ);
                for (; on; on &= on - 1) {
                    const int i = i0 + __builtin_ctz(on);
                    if (i < na) append(i);
                }
            }
            continue;
        }
#endif
        for (int i = 0; i < na; ++i)
            if (a[i] != T(0) || a[i] != a[i]) append(i);
    }
}

}  // namespace

template <class T>
void deep_product(std::size_t depth, const T* A, int pa, int na, const T* B, int nb, T* out,
                  const column_lists<T>* lists) {
    // out[i][:] += Σ_r A[r][i]·B[r][:]: dense_rows with the roles of rows and depth swapped (x[i][r] =
    // A[r][i]), over blocks of depth small enough that their strips of B and A stay in cache; blocks in
    // order. With lists, each block runs sparse_rows over per-i lists of its non-zero A[r][i] instead (in
    // order of r: the same sums without their zero terms).
    const int pb = padded<T>(nb);
    for (std::size_t r0 = 0; r0 < depth; r0 += deep_block) {
        const int n = static_cast<int>(std::min(deep_block, depth - r0));
        const T* a = A + r0 * pa;
        const T* b = B + r0 * pb;
        if (lists) {
            append_columns(a, static_cast<std::size_t>(pa), n, na, pb, lists->vals, lists->offs,
                           lists->counts, deep_block);
            sparse_rows(na, lists->vals, lists->offs, lists->counts, deep_block, n,
                        static_cast<std::int32_t>(lists->zero - b), b, nb, out, static_cast<std::size_t>(pb),
                        out, static_cast<std::size_t>(pb));
        } else {
            dense_rows_strided(na, a, 1, static_cast<std::size_t>(pa), n, b, nb, out,
                               static_cast<std::size_t>(pb), out, static_cast<std::size_t>(pb));
        }
    }
}

template <class T>
void step_forward(const prepared<T>& p, int rows, T* memory_in, T* scratch, const step_rows<T>& out) {
    using V = vec<T>;
    const dims& d = p.d;
    const int L = d.l_mlp, nvm = p.pm / lanes<T>;
    T* first = L > 0 ? out.hidden : out.delta;  // rows of the first layer's output, holding c_0 + Σ_g a_g
    const std::size_t fs = L > 0 ? out.hidden_stride : out.memory_stride;
    // First layer, memory half (E4): pre_0 += W_m·(κ_m ⊙ m_{t-1}).
    const std::size_t ms = memory_state_width(p);
    dense_rows(rows, memory_in, ms, d.d_m, p.memory_weight_t.data(), d.n0(), first, fs, first, fs);

    // Hidden layers: h = act(pre_l), pre_{l+1} = W_{l+1}·h + c_{l+1}; the last one gives the MLP output.
    // With ReLU, h is 0 wherever pre ≤ 0: about half of it in a freshly initialised model, 60-95 % in the
    // published NeuronIO models (d_m 15 to 100). Where few enough are on, the product runs over the non-zero
    // elements only (sparse_rows: the same sums without their zero terms).
    T* h = scratch;
    const std::size_t ls = static_cast<std::size_t>(p.ph);
    T* vals;
    std::int32_t *offs, *counts;
    carve_lists(h + static_cast<std::size_t>(rows) * ls, static_cast<std::size_t>(rows), ls, vals, offs,
                counts);
    for (int l = 0; l < L; ++l) {
        T* pre_l = out.hidden + l * out.layer_stride;
        const auto& w = p.layers[static_cast<std::size_t>(l)];
        const bool last = l + 1 == L;
        T* next = last ? out.delta : out.hidden + (l + 1) * out.layer_stride;
        const int n_out = last ? d.d_m : d.d_mlp;
        const std::size_t next_stride = last ? out.memory_stride : out.hidden_stride;
        int active = 0;
        for (int s = 0; s < rows; ++s)
            active += activate(p.act, pre_l + s * out.hidden_stride, h + s * ls, p.ph);
        if (p.act == activation::relu && sparse_product_pays(active, rows, d.d_mlp)) {
            for (int s = 0; s < rows; ++s)
                counts[s] = relu_lists(pre_l + s * out.hidden_stride, pre_l + s * out.hidden_stride, p.ph,
                                       padded<T>(n_out), vals + s * ls, offs + s * ls);
            sparse_rows(rows, vals, offs, counts, ls, d.d_mlp, d.d_mlp * padded<T>(n_out),
                        w.transposed.data(), n_out, w.bias.data(), 0, next, next_stride);
        } else {
            dense_rows(rows, h, p.ph, d.d_mlp, w.transposed.data(), n_out, w.bias.data(), 0, next,
                       next_stride);
        }
    }

    // E5-E6: Δm = 1.7159·tanh((2/3)·o); m = κ_m⊙m_{t-1} + gain⊙Δm, computed as m_{t-1} + (gain⊙Δm -
    // (1-κ_m)⊙m_{t-1}): for τ_m ≫ Δt a rounded κ_m is off by up to half an ulp of 1, which is 1e-4 of
    // 1-κ_m (Δt 0.5, τ_m 1000); in this form only the accurate 1-κ_m and gain enter the recurrence, so m
    // keeps float precision both while it builds up and at its steady state λΔm (v1). Carry κ_m⊙m (the
    // MLP's memory input) and m for the next step.
    const V* kappa = as_vec(p.kappa_m.data());
    const V* leak = as_vec(p.memory_leak.data());
    const V* gain = as_vec(p.memory_gain.data());
    for (int s = 0; s < rows; ++s) {
        V* dm = as_vec(out.delta + s * out.memory_stride);
        V* m = as_vec(out.memory + s * out.memory_stride);
        V* z = as_vec(memory_in + static_cast<std::size_t>(s) * ms);
        V* mprev = z + nvm;
        for (int v = 0; v < nvm; ++v) {
            const V delta = scaled_tanh<T>(dm[v]);
            dm[v] = delta;
            const V mv = mprev[v] + (gain[v] * delta - leak[v] * mprev[v]);
            m[v] = mv;
            mprev[v] = mv;
            z[v] = kappa[v] * mv;
        }
    }

    // E7: y = W_y·m + b_y.
    T* y = scratch;
    dense_rows(rows, out.memory, out.memory_stride, d.d_m, p.readout.transposed.data(), d.d_o,
               p.readout.bias.data(), 0, y, static_cast<std::size_t>(p.po));
    for (int s = 0; s < rows; ++s)
        std::memcpy(out.y + s * out.y_stride, y + static_cast<std::size_t>(s) * p.po, sizeof(T) * d.d_o);
}

namespace {

// Steps per block of the forward: the input stage runs one block ahead of the recurrence, so that the rows it
// writes are still in cache when the recurrence reads them.
constexpr int time_block = 32;

}  // namespace

template <class T>
std::size_t step_scratch_size(const prepared<T>& p, int rows) {
    // h or the ReLU lists (values, offsets, counts; an int32 fits in a T), later the readout's rows.
    const std::size_t n = static_cast<std::size_t>(rows);
    return std::max(padded<T>(n * p.ph) + list_storage_size<T>(n, p.ph), padded<T>(n * std::max(p.ph, p.po)));
}

template <class T>
std::size_t forward_scratch_size(const prepared<T>& p, int rows, bool keep) {
    const std::size_t n = static_cast<std::size_t>(rows);
    std::size_t size = n * (static_cast<std::size_t>(p.groups()) * p.p0 + memory_state_width(p)) +
                       step_scratch_size(p, rows);
    if (!keep)  // block buffers for the activations
        size += n * time_block *
                (static_cast<std::size_t>(p.d.l_mlp) * p.ph + 2 * static_cast<std::size_t>(p.pm));
    return size;
}

template <class T>
void forward_chunk(const prepared<T>& p, const event_view<T>& x, int b0, int rows, const activations<T>* keep,
                   T* y, T* scratch) {
    const dims& d = p.d;
    const std::size_t n = static_cast<std::size_t>(rows), T_ = static_cast<std::size_t>(d.T);
    T* input_state = scratch;
    T* memory_in = input_state + n * p.groups() * p.p0;
    T* tmp = memory_in + n * memory_state_width(p);
    std::fill(scratch, tmp, T(0));  // zero initial state (Table S1: s0 = 0, m0 = 0)
    T* block = tmp + step_scratch_size(p, rows);
    // Where the activations go: the whole-batch buffers [l_mlp][B][T][ph], [B][T][pm] (kept for backward), or
    // blocks of time_block steps [l_mlp][rows][time_block][ph], [rows][time_block][pm] (inference).
    const std::size_t steps = keep ? T_ : static_cast<std::size_t>(time_block);
    T* hidden = keep ? keep->hidden + static_cast<std::size_t>(b0) * T_ * p.ph : block;
    T* delta =
        keep ? keep->delta + static_cast<std::size_t>(b0) * T_ * p.pm : block + n * steps * p.ph * d.l_mlp;
    T* memory = keep ? keep->memory + static_cast<std::size_t>(b0) * T_ * p.pm : delta + n * steps * p.pm;
    step_rows<T> r;
    r.layer_stride = (keep ? static_cast<std::size_t>(d.B) : n) * steps * p.ph;
    r.hidden_stride = steps * p.ph;
    r.memory_stride = steps * p.pm;
    r.y_stride = T_ * d.d_o;
    for (int t0 = 0; t0 < d.T; t0 += time_block) {
        const int t1 = std::min(d.T, t0 + time_block);
        const std::size_t at = keep ? static_cast<std::size_t>(t0) : 0;  // step t0's index in the buffers
        // The input stage does not depend on the recurrence: the whole block first, into the first layer's
        // rows.
        if (d.l_mlp > 0)
            input_forward(p, x, b0, rows, t0, t1, input_state, hidden + at * p.ph, r.hidden_stride, p.ph);
        else
            input_forward(p, x, b0, rows, t0, t1, input_state, delta + at * p.pm, r.memory_stride, p.pm);
        for (int t = t0; t < t1; ++t) {
            const std::size_t i = at + static_cast<std::size_t>(t - t0);
            r.hidden = d.l_mlp > 0 ? hidden + i * p.ph : nullptr;
            r.delta = delta + i * p.pm;
            r.memory = memory + i * p.pm;
            r.y = y + (static_cast<std::size_t>(b0) * T_ + t) * d.d_o;
            step_forward(p, rows, memory_in, tmp, r);
        }
    }
}

// ---- backward ------------------------------------------------------------------------------------------
namespace {

// out[k] += Σ_r rows[r·stride + k], k < n: the rows summed in order, then added to out (bias gradients).
// Padded rows (stride a whole number of vectors, aligned: our buffers, not the caller's dy) are summed in
// whole vectors.
template <class T>
void add_column_sums(const T* rows, std::size_t count, std::size_t stride, int n, T* out) {
    if (stride % lanes<T> == 0 && reinterpret_cast<std::uintptr_t>(rows) % simd_bytes == 0) {
        for (int v = 0; v * lanes<T> < n; ++v) {
            vec<T> sum{};
            for (std::size_t r = 0; r < count; ++r) sum += as_vec(rows + r * stride)[v];
            for (int l = 0; l < lanes<T> && v * lanes<T> + l < n; ++l) out[v * lanes<T> + l] += sum[l];
        }
        return;
    }
    for (int k = 0; k < n; ++k) {
        T sum = 0;
        for (std::size_t r = 0; r < count; ++r) sum += rows[r * stride + k];
        out[k] += sum;
    }
}

// The reverse recurrence reads the forward's stored rows (hidden pre-activations, Δm, m) one step at a time
// from the last back, one row per sample and buffer: a descending stream per sample and buffer, more than the
// hardware prefetchers follow, so every row came from memory while the step waited for it. Asking for the
// rows of a step reverse_prefetch_steps ahead hides that (NeuronIO d_m 100 train step, one thread: 58.4
// → 55.7 ms); into L2, not L1: the weights that each step's products stream through L1 would evict them
// before their use (prefetching into L1 gained 1 %).
constexpr int reverse_prefetch_steps = 2;
constexpr std::size_t cache_line_bytes = 64;  // x86-64

template <class T>
void prefetch_to_l2(const T* row, int width) {
    const char* bytes = reinterpret_cast<const char*>(row);
    for (std::size_t at = 0; at < static_cast<std::size_t>(width) * sizeof(T); at += cache_line_bytes)
        __builtin_prefetch(bytes + at, 0, 1);  // read, locality 1: kept in L2 (x86 prefetcht1)
}

// Steps per backward block: as many as keep the block's buffers (dL/d(MLP output), κ_m ⊙ m_{t-1}, hidden
// gradients and activations) of one gradient chunk in about 1 MB. From the chunk size, which the batch alone
// sets: the blocks order the weight-gradient sums, which must not depend on the thread count.
template <class T>
int backward_block_steps(const prepared<T>& p, int chunk_size) {
    const std::size_t per_step =
        static_cast<std::size_t>(chunk_size) * sizeof(T) *
        (2 * static_cast<std::size_t>(p.pm) + 2 * static_cast<std::size_t>(p.d.l_mlp) * p.ph);
    return static_cast<int>(
        std::clamp<std::size_t>((1024 * 1024) / std::max<std::size_t>(per_step, 1), 4, 64));
}

// Offsets of the padded weight-gradient accumulators of one chunk (padded_gradients_size).
template <class T>
struct padded_offsets {
    std::size_t last = 0, hidden = 0, memory = 0, readout = 0, total = 0;
    explicit padded_offsets(const prepared<T>& p) {
        const dims& d = p.d;
        const std::size_t L = static_cast<std::size_t>(d.l_mlp);
        // [d_m][ph], or transposed [d_mlp][pm] (L > 0; backward_range picks one per call)
        last = 0;
        hidden = last + (L > 0 ? std::max(static_cast<std::size_t>(d.d_m) * p.ph,
                                          static_cast<std::size_t>(d.d_mlp) * p.pm)
                               : 0);                                 // (L-1) x [d_mlp][ph]
        memory = hidden + (L > 1 ? (L - 1) * d.d_mlp * p.ph : 0);    // [n0][pm]
        readout = memory + static_cast<std::size_t>(d.n0()) * p.pm;  // [d_o][pm]
        total = readout + static_cast<std::size_t>(d.d_o) * p.pm;
    }
};

}  // namespace

template <class T>
std::size_t padded_gradients_size(const prepared<T>& p) {
    return padded_offsets<T>(p).total;
}

// A backward call's scratch: a part private to the thread (the reverse recurrence's state for its rows,
// carried from block to block, and the list storage of the sparse products) and a part for the call's rows
// (the block buffers and the input stage's reverse state), which a team's members share.
template <class T>
std::size_t backward_private_size(const prepared<T>& p, int rows) {
    const std::size_t n = static_cast<std::size_t>(rows);
    return n * (2 * static_cast<std::size_t>(p.pm) + p.ph) + p.pm +           // carry, dz, dh; m_{-1} = 0
           list_storage_size<T>(n, p.ph) +                                    // sparse_rows' lists
           list_storage_size<T>(static_cast<std::size_t>(p.ph), deep_block);  // deep_product's lists
}
template <class T>
std::size_t backward_shared_size(const prepared<T>& p, int rows, int chunk_size) {
    const std::size_t n = static_cast<std::size_t>(rows),
                      tb = static_cast<std::size_t>(backward_block_steps(p, chunk_size));
    return n * p.groups() * p.p0 +  // the input stage's reverse state
           n * tb * (2 * static_cast<std::size_t>(p.pm) + 2 * static_cast<std::size_t>(p.d.l_mlp) * p.ph) +
           static_cast<std::size_t>(std::max(p.pm, p.ph));  // a zero row after the blocks
}
template <class T>
std::size_t backward_scratch_size(const prepared<T>& p, int rows, int chunk_size) {
    return backward_private_size(p, rows) + backward_shared_size(p, rows, chunk_size);
}

template <class T>
void backward_range(const prepared<T>& p, const event_view<T>& x, int b0, int rows, int chunk_size,
                    const activations<T>& a, const T* dy, T* dkappa_rows, T* dgain_rows,
                    const chunk_gradients<T>* chunks, T* dx, T* scratch, const backward_team<T>& team) {
    using V = vec<T>;
    const dims& d = p.d;
    const int L = d.l_mlp, n0 = d.n0(), nvm = p.pm / lanes<T>;
    const std::size_t T_ = static_cast<std::size_t>(d.T), n = static_cast<std::size_t>(rows);
    const int tb = backward_block_steps(p, chunk_size);
    const bool shared_work = team.size > 1;
    // This member's rows of the reverse recurrence, [r0, r0 + mine) of the call's (all of them without a
    // team). A sample's arithmetic does not depend on which rows run beside it.
    const auto [r0, r1] = even_share(rows, team.member, team.size);
    const int mine = r1 - r0;
    const std::size_t m_rows = static_cast<std::size_t>(mine);
    // Private: state carried from step to step (zero after the last step) and list storage.
    T* carry = scratch;             // [mine][pm] dL/dm_t
    T* dz = carry + m_rows * p.pm;  // [mine][pm] dL/d(κ_m ⊙ m_{t-1})
    T* dh = dz + m_rows * p.pm;     // [mine][ph]
    T* zero = dh + m_rows * p.ph;   // [pm] m_{-1} = 0
    // sparse_rows' lists of dL/dpre_l, a row's up to ph entries each.
    T* list_vals;
    std::int32_t *list_offs, *list_counts;
    T* lists_end =
        carve_lists(zero + p.pm, m_rows, static_cast<std::size_t>(p.ph), list_vals, list_offs, list_counts);
    // deep_product's column lists for the weight gradients of ReLU layers (zero row: after the blocks).
    column_lists<T> columns;
    T* private_end = carve_lists(lists_end, static_cast<std::size_t>(p.ph), deep_block, columns.vals,
                                 columns.offs, columns.counts);
    std::fill(scratch, private_end, T(0));
    // Shared by the team (the call's rows): the input stage's reverse state and the block buffers.
    T* input_state =
        shared_work ? team.shared : private_end;        // [groups][rows][p0] reverse-filtered dL/dpre_0
    T* dout_blk = input_state + n * p.groups() * p.p0;  // [rows][steps][pm]
    T* zm_blk = dout_blk + n * tb * p.pm;               // [rows][steps][pm]
    T* dpre_blk = zm_blk + n * tb * p.pm;               // [l_mlp][rows][steps][ph]
    T* h_blk = dpre_blk + static_cast<std::size_t>(L) * n * tb * p.ph;  // [l_mlp][rows][steps][ph]
    T* zero_row = h_blk + static_cast<std::size_t>(L) * n * tb * p.ph;  // [max(pm, ph)]
    if (team.member == 0) {  // the others read them only after the first barrier below
        std::fill(input_state, dout_blk, T(0));
        std::fill(zero_row, zero_row + std::max(p.pm, p.ph), T(0));
    }
    columns.zero = zero_row;
    // Σ_t dL/dκ_m and dL/dgain of this member's samples.
    T* dk = dkappa_rows + static_cast<std::size_t>(b0 + r0) * p.pm;
    T* dg = dgain_rows + static_cast<std::size_t>(b0 + r0) * p.pm;
    std::fill(dk, dk + m_rows * p.pm, T(0));
    std::fill(dg, dg + m_rows * p.pm, T(0));

    const std::size_t layer_stride = static_cast<std::size_t>(d.B) * T_ * p.ph;  // of the forward's buffers
    const std::size_t hs = T_ * p.ph, ms = T_ * p.pm;  // strides between samples in the forward's buffers
    const V* kappa = as_vec(p.kappa_m.data());
    const V* gain = as_vec(p.memory_gain.data());
    const V slope = V{} + T(tanh_slope), scale = V{} + T(tanh_scale), inv_scale = V{} + T(1) / T(tanh_scale);
    const padded_offsets<T> off(p);
    const int first_chunk = b0 / chunk_size;

    // Per hidden layer, its units on over the block (all of this call's rows, summed over the team's
    // members): whether its weight gradients' sums take deep_product's column lists.
    std::vector<int> block_on(static_cast<std::size_t>(L), 0);
    // The last layer's weight gradient Σ_r dL/dout_r ⊗ h_r sums over h only when kept transposed ([in][out]),
    // which costs the dense product a little (more, narrower rows): transposed when the first block (the
    // last steps) finds h mostly 0, for the whole call. Either way the same sums in the same order.
    bool last_transposed = false;
    for (int t1 = d.T; t1 > 0; t1 -= tb) {
        const int t0 = std::max(0, t1 - tb);
        const std::size_t steps = static_cast<std::size_t>(t1 - t0);
        std::fill(block_on.begin(), block_on.end(), 0);
        // Block buffers are [sample][step] for this block's steps: a chunk's rows are contiguous; this
        // member's rows start at row r0.
        const std::size_t bs_m = steps * p.pm, bs_h = steps * p.ph, blayer = n * bs_h;
        for (int t = t1 - 1; t >= t0 && mine > 0; --t) {
            const std::size_t row0 = static_cast<std::size_t>(b0 + r0) * T_ + t,
                              i = static_cast<std::size_t>(t - t0);
            if (t > reverse_prefetch_steps) {  // the forward's rows of step t - reverse_prefetch_steps
                const std::size_t ahead = row0 - reverse_prefetch_steps;
                for (int s = 0; s < mine; ++s) {
                    prefetch_to_l2(a.delta + ahead * p.pm + s * ms, p.pm);
                    prefetch_to_l2(a.memory + (ahead - 1) * p.pm + s * ms, p.pm);  // its m_{t-1}
                    for (int l = 0; l < L; ++l)
                        prefetch_to_l2(a.hidden + l * layer_stride + ahead * p.ph + s * hs, p.ph);
                }
            }
            const T* delta = a.delta + row0 * p.pm;  // Δm_t
            T* dout = dout_blk + static_cast<std::size_t>(r0) * bs_m + i * p.pm;
            // Readout (E7): dL/dm_t += W_yᵀ·dy_t.
            dense_rows(mine, dy + row0 * d.d_o, T_ * d.d_o, d.d_o, p.readout.rows.data(), d.d_m, carry, p.pm,
                       carry, p.pm);
            // E6 and E5 backward: m_t = κ_m⊙m_{t-1} + gain⊙Δm_t, Δm = 1.7159·tanh(2/3·o), so
            // dΔm/do = (2/3)·(1.7159 - Δm²/1.7159). Also the MLP's memory input κ_m ⊙ m_{t-1}, as forward
            // made it.
            for (int s = 0; s < mine; ++s) {
                const V* mprev = as_vec(t > 0 ? a.memory + (row0 - 1) * p.pm + s * ms : zero);
                const V* c = as_vec(carry + s * p.pm);
                const V* dm = as_vec(delta + s * ms);
                V* o = as_vec(dout + s * bs_m);
                V* z = as_vec(zm_blk + (r0 + s) * bs_m + i * p.pm);
                V* dks = as_vec(dk + s * p.pm);
                V* dgs = as_vec(dg + s * p.pm);
                for (int v = 0; v < nvm; ++v) {
                    const V m = dm[v];
                    dgs[v] += m * c[v];
                    dks[v] += mprev[v] * c[v];
                    o[v] = c[v] * gain[v] * slope * (scale - m * m * inv_scale);
                    z[v] = kappa[v] * mprev[v];
                }
            }
            // Back through the MLP: dpre_l = dh ⊙ act'(pre_l), dh = dpre_l·W_l; h_l = act(pre_l) kept for dW.
            if (L > 0) {
                const auto& last = p.layers[static_cast<std::size_t>(L - 1)];
                dense_rows(mine, static_cast<const T*>(dout), bs_m, d.d_m, last.rows.data(), d.d_mlp,
                           static_cast<const T*>(nullptr), 0, dh, static_cast<std::size_t>(p.ph));
                // dL/dh_{l-1} = dpre_l·W_l, and for l = 0 the first layer's memory half (E4): z = κ_m ⊙
                // m_{t-1}, dz = dpre_0·W_m. dpre_l is 0 where ReLU is off, so mostly-off layers take
                // sparse_rows as in the forward.
                for (int l = L - 1; l >= 0; --l) {
                    const T* pre = a.hidden + l * layer_stride + row0 * p.ph;
                    T* dpre = dpre_blk + l * blayer + static_cast<std::size_t>(r0) * bs_h + i * p.ph;
                    T* h = h_blk + l * blayer + static_cast<std::size_t>(r0) * bs_h + i * p.ph;
                    int active = 0;
                    for (int s = 0; s < mine; ++s)
                        active += activation_backward(p.act, pre + s * hs, dh + s * p.ph, dpre + s * bs_h,
                                                      h + s * bs_h, p.ph);
                    block_on[static_cast<std::size_t>(l)] += active;
                    const T* M = l > 0 ? p.layers[static_cast<std::size_t>(l - 1)].rows.data()
                                       : p.memory_weight.data();
                    const int n_out = l > 0 ? d.d_mlp : d.d_m;
                    T* target = l > 0 ? dh : dz;
                    const std::size_t ts = static_cast<std::size_t>(l > 0 ? p.ph : p.pm);
                    if (p.act == activation::relu && sparse_product_pays(active, mine, d.d_mlp)) {
                        for (int s = 0; s < mine; ++s)
                            list_counts[s] = relu_lists(pre + s * hs, dpre + s * bs_h, p.ph, padded<T>(n_out),
                                                        list_vals + s * p.ph, list_offs + s * p.ph);
                        sparse_rows(mine, list_vals, list_offs, list_counts, static_cast<std::size_t>(p.ph),
                                    d.d_mlp, d.d_mlp * padded<T>(n_out), M, n_out,
                                    static_cast<const T*>(nullptr), 0, target, ts);
                    } else {
                        dense_rows(mine, static_cast<const T*>(dpre), bs_h, d.d_mlp, M, n_out,
                                   static_cast<const T*>(nullptr), 0, target, ts);
                    }
                }
            } else {
                // No hidden layer: the MLP's output is the first layer's (E4, memory half as above).
                dense_rows(mine, static_cast<const T*>(dout), bs_m, n0, p.memory_weight.data(), d.d_m,
                           static_cast<const T*>(nullptr), 0, dz, static_cast<std::size_t>(p.pm));
            }
            // dL/dm_{t-1} = κ_m ⊙ (dL/dm_t + dz) (its readout part is added at step t-1); dκ_m += m_{t-1} ⊙
            // dz (the dL/dm_t part is added above).
            for (int s = 0; s < mine; ++s) {
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
        if (shared_work) {  // every member's rows of the block are in the buffers, and their units-on counts
            std::copy(block_on.begin(), block_on.end(),
                      team.units_on + static_cast<std::size_t>(team.member) * static_cast<std::size_t>(L));
#pragma omp barrier
            for (int l = 0; l < L; ++l) {
                block_on[static_cast<std::size_t>(l)] = 0;
                for (int mb = 0; mb < team.size; ++mb)
                    block_on[static_cast<std::size_t>(l)] +=
                        team.units_on[static_cast<std::size_t>(mb * L + l)];
            }
        }

        // This block's contribution to each chunk's gradients, while its buffers are in cache. The order of
        // the sums is fixed by the chunk alone: blocks from the last step back, then samples, then steps.
        // Each sum is one task, of one thread: with a team, task k of a chunk is member k mod size's. (dL/dU,
        // the input stage's, goes to the parameters in model.cpp.)
        const T* dfirst_blk = L > 0 ? dpre_blk : dout_blk;
        const std::size_t f_stride = L > 0 ? bs_h : bs_m;
        const int fw = L > 0 ? p.ph : p.pm;
        // Column lists for the weight gradients over layer l's h or dL/dpre (0 where its ReLU is off) when
        // few of its units were on in this block (the sparse products' rule, over the block's rows and
        // steps).
        auto columns_of = [&](int l) -> const column_lists<T>* {
            const bool sparse = p.act == activation::relu &&
                                sparse_product_pays(static_cast<int>(block_on[static_cast<std::size_t>(l)]),
                                                    rows * static_cast<int>(steps), d.d_mlp);
            return sparse ? &columns : nullptr;
        };
        if (L > 0 && t1 == d.T) last_transposed = columns_of(L - 1) != nullptr;
        int task = 0;
        auto my_task = [&] { return task++ % team.size == team.member; };
        const bool last_block = t0 == 0;
        for (int c0 = 0; c0 < rows; c0 += chunk_size) {
            const int nb = std::min(chunk_size, rows - c0);
            const chunk_gradients<T>& cg = chunks[(b0 + c0) / chunk_size - first_chunk];
            const parameter_views<T>& g = cg.g;
            const std::size_t depth = static_cast<std::size_t>(nb) * steps;
            // After a sum's last block, its padded accumulator into the parameter layout, by the thread that
            // summed it: rows i (na of them, pw apart) into w[i·w_row + j·w_col], j < nw.
            auto to_layout = [&](std::size_t from, int na, int pw, int nw, T* w, std::size_t w_row,
                                 std::size_t w_col) {
                for (int i = 0; i < na; ++i)
                    for (int j = 0; j < nw; ++j)
                        w[static_cast<std::size_t>(i) * w_row + static_cast<std::size_t>(j) * w_col] +=
                            cg.padded[from + static_cast<std::size_t>(i) * pw + j];
            };
            // Input stage (E1-E3 through layer 0), reverse time.
            if (my_task())
                input_backward(p, x, b0 + c0, nb, t0, t1, dfirst_blk + c0 * f_stride, f_stride,
                               static_cast<std::size_t>(fw),
                               input_state + static_cast<std::size_t>(c0) * p.p0, rows, cg.proj_grad, dx);
            const T* dout_c = dout_blk + c0 * bs_m;
            if (L > 0) {
                if (my_task()) {
                    if (last_transposed)
                        deep_product(depth, h_blk + (L - 1) * blayer + c0 * bs_h, p.ph, d.d_mlp, dout_c,
                                     d.d_m, cg.padded + off.last, columns_of(L - 1));
                    else
                        deep_product(depth, dout_c, p.pm, d.d_m, h_blk + (L - 1) * blayer + c0 * bs_h,
                                     d.d_mlp, cg.padded + off.last);
                    add_column_sums(dout_c, depth, p.pm, d.d_m, g.bias[L]);
                    if (last_block && last_transposed)  // [d_mlp][pm] into the [d_m][d_mlp] weight
                        to_layout(off.last, d.d_mlp, p.pm, d.d_m, g.weight[L], 1, d.d_mlp);
                    else if (last_block)
                        to_layout(off.last, d.d_m, p.ph, d.d_mlp, g.weight[L], d.d_mlp, 1);
                }
                for (int l = L - 1; l >= 1; --l) {
                    if (!my_task()) continue;
                    const T* dpre_c = dpre_blk + l * blayer + c0 * bs_h;
                    deep_product(depth, dpre_c, p.ph, d.d_mlp, h_blk + (l - 1) * blayer + c0 * bs_h, d.d_mlp,
                                 cg.padded + off.hidden + static_cast<std::size_t>(l - 1) * d.d_mlp * p.ph,
                                 columns_of(l));
                    add_column_sums(dpre_c, depth, p.ph, d.d_mlp, g.bias[l]);
                    if (last_block)
                        to_layout(off.hidden + static_cast<std::size_t>(l - 1) * d.d_mlp * p.ph, d.d_mlp,
                                  p.ph, d.d_mlp, g.weight[l], d.d_mlp, 1);
                }
            }
            if (my_task()) {
                const T* dfirst_c = dfirst_blk + c0 * f_stride;
                deep_product(depth, dfirst_c, fw, n0, zm_blk + c0 * bs_m, d.d_m, cg.padded + off.memory,
                             L > 0 ? columns_of(0) : nullptr);
                add_column_sums(dfirst_c, depth, static_cast<std::size_t>(fw), n0, g.bias[0]);
                if (last_block) to_layout(off.memory, n0, p.pm, d.d_m, g.weight[0] + d.d_tree, d.d_z(), 1);
            }
            // Readout: dy rows are the caller's [B][T][d_o] (deep_product broadcasts them, no padding
            // needed).
            if (my_task()) {
                for (int s = c0; s < c0 + nb; ++s) {
                    const std::size_t row = static_cast<std::size_t>(b0 + s) * T_ + t0;
                    deep_product(steps, dy + row * d.d_o, d.d_o, d.d_o, a.memory + row * p.pm, d.d_m,
                                 cg.padded + off.readout);
                    add_column_sums(dy + row * d.d_o, steps, static_cast<std::size_t>(d.d_o), d.d_o, g.b_y);
                }
                if (last_block) to_layout(off.readout, d.d_o, p.pm, d.d_m, g.w_y, d.d_m, 1);
            }
        }
        if (shared_work) {  // the sums have read the block buffers before the next block overwrites them
#pragma omp barrier
        }
    }
}

#define ELM_INSTANTIATE(T)                                                                                  \
    template void dense_rows<T>(int, const T*, std::size_t, int, const T*, int, const T*, std::size_t, T*,  \
                                std::size_t);                                                               \
    template void deep_product<T>(std::size_t, const T*, int, int, const T*, int, T*,                       \
                                  const column_lists<T>*);                                                  \
    template void step_forward<T>(const prepared<T>&, int, T*, T*, const step_rows<T>&);                    \
    template std::size_t step_scratch_size<T>(const prepared<T>&, int);                                     \
    template std::size_t forward_scratch_size<T>(const prepared<T>&, int, bool);                            \
    template std::size_t backward_scratch_size<T>(const prepared<T>&, int, int);                            \
    template std::size_t backward_private_size<T>(const prepared<T>&, int);                                 \
    template std::size_t backward_shared_size<T>(const prepared<T>&, int, int);                             \
    template std::size_t padded_gradients_size<T>(const prepared<T>&);                                      \
    template void forward_chunk<T>(const prepared<T>&, const event_view<T>&, int, int,                      \
                                   const activations<T>*, T*, T*);                                          \
    template void backward_range<T>(const prepared<T>&, const event_view<T>&, int, int, int,                \
                                    const activations<T>&, const T*, T*, T*, const chunk_gradients<T>*, T*, \
                                    T*, const backward_team<T>&);
ELM_INSTANTIATE(float)
ELM_INSTANTIATE(double)
#undef ELM_INSTANTIATE

}  // namespace elm::detail
