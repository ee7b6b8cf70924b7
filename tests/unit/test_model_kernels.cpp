// The fast paths against independent references (llm.c style: every kernel checked):
// - dense_rows and deep_product, the one matrix kernel, against plain triple loops on random shapes that
//   cover every register block, strip width and remainder;
// - the whole forward against a plain step-by-step transcription of reference/paper.md §1.2-1.5 written
//   here (synapse traces, branch sums, concatenation, MLP, scaled tanh, memory update, readout), including
//   per-branch τ (several κ groups), which none of the published golden cases has;
// - infer and stream are bit-identical to forward; a sample's output does not depend on the batch it is in;
//   sequences longer than the forward and backward blocks of steps.

#include <elmneuron/benchmark.hpp>
#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>

#include "model/kernels.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

using elm::detail::padded;

template <class T>
elm::aligned_vector<T> random_vector(std::size_t n, std::mt19937_64& gen) {
    std::normal_distribution<double> normal(0.0, 1.0);
    elm::aligned_vector<T> v(n);
    for (auto& x : v) x = T(normal(gen));
    return v;
}

template <class T>
void check_dense_rows(int rows, int n_in, int n_out, bool with_init, std::mt19937_64& gen) {
    const int np = padded<T>(n_out);
    const std::size_t xs = static_cast<std::size_t>(n_in) + 3;  // rows of x with a gap between them
    const auto x = random_vector<T>(rows * xs, gen);
    auto M = random_vector<T>(static_cast<std::size_t>(n_in) * np, gen);
    for (int j = 0; j < n_in; ++j)  // the kernel's contract: M's padding columns are zero
        for (int k = n_out; k < np; ++k) M[static_cast<std::size_t>(j) * np + k] = T(0);
    const auto init = random_vector<T>(static_cast<std::size_t>(rows) * np, gen);
    elm::aligned_vector<T> out(static_cast<std::size_t>(rows) * np, T(-7));
    elm::detail::dense_rows<T>(rows, x.data(), xs, n_in, M.data(), n_out, with_init ? init.data() : nullptr,
                               static_cast<std::size_t>(np), out.data(), static_cast<std::size_t>(np));
    // Every element, padding included (which must come out as init's, or 0: later element-wise passes run
    // over whole vectors and read it).
    for (int s = 0; s < rows; ++s)
        for (int k = 0; k < np; ++k) {
            double ref = with_init ? double(init[s * np + k]) : 0.0;
            for (int j = 0; j < n_in; ++j)
                ref += double(x[s * xs + j]) * double(M[static_cast<std::size_t>(j) * np + k]);
            if (k >= n_out) {  // padding: init + Σ x·0 is init exactly
                ASSERT_EQ(out[s * np + k], with_init ? init[s * np + k] : T(0))
                    << "padding, rows " << rows << " n_in " << n_in << " n_out " << n_out << " at " << k;
                continue;
            }
            const double tol = (std::is_same_v<T, float> ? 1e-5 : 1e-13) * (1 + std::sqrt(double(n_in)));
            ASSERT_NEAR(double(out[s * np + k]), ref, tol * (1 + std::abs(ref)))
                << "rows " << rows << " n_in " << n_in << " n_out " << n_out << " at (" << s << ", " << k
                << ")";
        }
}

TEST(kernels, dense_rows_matches_triple_loop) {
    std::mt19937_64 gen(11);
    for (int rows : {1, 2, 3, 5, 8, 9, 17})
        for (int n_in : {1, 7, 30, 100, 300})
            for (int n_out : {1, 2, 15, 16, 30, 100, 130}) {
                check_dense_rows<float>(rows, n_in, n_out, (rows + n_in) % 2 == 0, gen);
                check_dense_rows<double>(rows, n_in, n_out, (rows + n_out) % 2 == 1, gen);
            }
}

TEST(kernels, dense_rows_with_one_init_row_broadcasts_it) {
    std::mt19937_64 gen(3);
    const int rows = 6, n_in = 9, n_out = 20, np = padded<float>(n_out);
    const auto x = random_vector<float>(rows * n_in, gen);
    auto M = random_vector<float>(static_cast<std::size_t>(n_in) * np, gen);
    for (int j = 0; j < n_in; ++j)
        for (int k = n_out; k < np; ++k) M[static_cast<std::size_t>(j) * np + k] = 0.0f;
    const auto bias = random_vector<float>(np, gen);
    elm::aligned_vector<float> out(static_cast<std::size_t>(rows) * np);
    elm::detail::dense_rows<float>(rows, x.data(), n_in, n_in, M.data(), n_out, bias.data(), 0, out.data(),
                                   np);
    for (int s = 0; s < rows; ++s)
        for (int k = 0; k < np; ++k) {
            double ref = bias[k];
            for (int j = 0; j < n_in; ++j) ref += double(x[s * n_in + j]) * M[j * np + k];
            EXPECT_NEAR(out[s * np + k], ref, 1e-5 * (1 + std::abs(ref)));
        }
}

template <class T>
void check_deep_product(std::mt19937_64& gen) {
    for (std::size_t depth :
         {std::size_t(1), std::size_t(127), std::size_t(128), std::size_t(129), std::size_t(1000)})
        for (int na : {1, 2, 15, 100})
            for (int nb : {1, 15, 30, 100, 200}) {
                const int pa = padded<T>(na), pb = padded<T>(nb);
                const auto A = random_vector<T>(depth * pa, gen);
                auto B = random_vector<T>(depth * pb, gen);
                for (std::size_t r = 0; r < depth;
                     ++r)  // padding of B's rows is zero, as in the model's rows
                    for (int j = nb; j < pb; ++j) B[r * pb + j] = T(0);
                auto out = random_vector<T>(static_cast<std::size_t>(na) * pb, gen);
                const auto before = out;
                elm::detail::deep_product<T>(depth, A.data(), pa, na, B.data(), nb, out.data());
                const double eps = std::is_same_v<T, float> ? 1e-5 : 1e-12;
                for (int i = 0; i < na; ++i)
                    for (int j = 0; j < pb; ++j) {
                        if (j >= nb) {  // padding keeps its value exactly (B's padding is zero)
                            ASSERT_EQ(out[i * pb + j], before[i * pb + j])
                                << "padding, depth " << depth << " na " << na << " nb " << nb << " at " << j;
                            continue;
                        }
                        double ref = before[i * pb + j];
                        for (std::size_t r = 0; r < depth; ++r)
                            ref += double(A[r * pa + i]) * double(B[r * pb + j]);
                        ASSERT_NEAR(double(out[i * pb + j]), ref,
                                    eps * (1 + std::abs(ref)) * std::sqrt(double(depth)))
                            << "depth " << depth << " na " << na << " nb " << nb << " at (" << i << ", " << j
                            << ")";
                    }
            }
}

TEST(kernels, deep_product_matches_triple_loop) {
    std::mt19937_64 gen(5);
    check_deep_product<double>(gen);
    check_deep_product<float>(gen);
}

// sparse_rows is dense_rows without its zero terms: the same sums bit for bit (x·M[j] for x = 0 adds ±0,
// which changes no sum but a -0 one), whatever the density, the rows (lists padded inside register blocks)
// and the shapes (strips, half-width last vectors, the padding of out).
template <class T>
void check_sparse_rows(int rows, int n_in, int n_out, double density, bool with_init, std::mt19937_64& gen) {
    const int np = padded<T>(n_out);
    auto x = random_vector<T>(static_cast<std::size_t>(rows) * n_in, gen);
    std::uniform_real_distribution<double> u(0, 1);
    for (auto& v : x)
        if (u(gen) >= density) v = T(0);
    auto M = random_vector<T>(static_cast<std::size_t>(n_in + 1) * np, gen);
    for (int j = 0; j <= n_in; ++j)  // zero padding columns, and the zero row n_in the kernel pads with
        for (int k = 0; k < np; ++k)
            if (k >= n_out || j == n_in) M[static_cast<std::size_t>(j) * np + k] = T(0);
    const auto init = random_vector<T>(static_cast<std::size_t>(rows) * np, gen);
    const std::size_t ls = static_cast<std::size_t>(n_in) + 3;
    // Unused list entries hold NaN: the kernel must write its own padding.
    elm::aligned_vector<T> vals(rows * ls, std::numeric_limits<T>::quiet_NaN());
    std::vector<std::int32_t> offs(rows * ls, -1), counts(static_cast<std::size_t>(rows), 0);
    for (int s = 0; s < rows; ++s)
        for (int j = 0; j < n_in; ++j)
            if (x[static_cast<std::size_t>(s) * n_in + j] != T(0)) {
                const std::size_t e = s * ls + static_cast<std::size_t>(counts[s]++);
                vals[e] = x[static_cast<std::size_t>(s) * n_in + j];
                offs[e] = j * np;
            }
    elm::aligned_vector<T> dense(static_cast<std::size_t>(rows) * np, T(-7)), sparse(dense);
    const T* in = with_init ? init.data() : nullptr;
    elm::detail::dense_rows<T>(rows, x.data(), static_cast<std::size_t>(n_in), n_in, M.data(), n_out, in,
                               static_cast<std::size_t>(np), dense.data(), static_cast<std::size_t>(np));
    elm::detail::sparse_rows<T>(rows, vals.data(), offs.data(), counts.data(), ls, n_in, n_in * np, M.data(),
                                n_out, in, static_cast<std::size_t>(np), sparse.data(),
                                static_cast<std::size_t>(np));
    for (std::size_t i = 0; i < dense.size(); ++i)
        ASSERT_EQ(sparse[i], dense[i]) << "rows " << rows << " n_in " << n_in << " n_out " << n_out
                                       << " density " << density << " at " << i;
}

TEST(kernels, sparse_rows_is_dense_rows_without_its_zero_terms) {
    std::mt19937_64 gen(17);
    for (int rows : {1, 2, 5, 8, 9, 17})
        for (int n_in : {1, 7, 64, 100, 300})
            for (int n_out : {1, 15, 16, 30, 100, 130})
                for (double density : {0.0, 0.05, 0.5, 1.0}) {
                    check_sparse_rows<float>(rows, n_in, n_out, density, (rows + n_in) % 2 == 0, gen);
                    check_sparse_rows<double>(rows, n_in, n_out, density, (rows + n_out) % 2 == 1, gen);
                }
}

TEST(kernels, sparse_rows_pays_only_on_wide_mostly_zero_inputs) {
    using elm::detail::sparse_product_pays;
    EXPECT_TRUE(sparse_product_pays(8 * 200 / 20, 8, 200));  // 5 % on (published NeuronIO d_m 100)
    EXPECT_FALSE(sparse_product_pays(8 * 200 / 2, 8, 200));  // half on (a freshly initialised model)
    EXPECT_FALSE(sparse_product_pays(0, 8, 30));  // too narrow to pay for the lists (d_m 15: 30 inputs)
}

// deep_product with column lists: blocks of mostly-zero A (ReLU layers) sum only their non-zero terms, the
// same sums bit for bit as without lists, at any density (dense blocks and sparse ones) and depth (blocks of
// deep_block rows and partial ones).
template <class T>
void check_sparse_deep_product(std::mt19937_64& gen) {
    std::uniform_real_distribution<double> u(0, 1);
    for (std::size_t depth : {std::size_t(1), std::size_t(64), std::size_t(127), std::size_t(128),
                              std::size_t(200), std::size_t(1000)})
        for (int na : {1, 15, 64, 100, 200})
            for (int nb : {1, 15, 100})
                for (double density : {0.0, 0.05, 0.3, 1.0}) {
                    const int pa = padded<T>(na), pb = padded<T>(nb);
                    auto A = random_vector<T>(depth * pa, gen);
                    for (std::size_t r = 0; r < depth; ++r)
                        for (int i = 0; i < pa; ++i)
                            if (i >= na || u(gen) >= density) A[r * pa + i] = T(0);
                    // B, then one zero row above it (the lists' padding entries point there).
                    auto B = random_vector<T>((depth + 1) * pb, gen);
                    for (std::size_t r = 0; r <= depth; ++r)
                        for (int j = 0; j < pb; ++j)
                            if (j >= nb || r == depth) B[r * pb + j] = T(0);
                    const auto before = random_vector<T>(static_cast<std::size_t>(na) * pb, gen);
                    auto dense = before, sparse = before;
                    elm::aligned_vector<T> vals(static_cast<std::size_t>(na) * elm::detail::deep_block);
                    std::vector<std::int32_t> offs(vals.size()), counts(static_cast<std::size_t>(na));
                    const elm::detail::column_lists<T> lists{vals.data(), offs.data(), counts.data(),
                                                             B.data() + depth * pb};
                    elm::detail::deep_product<T>(depth, A.data(), pa, na, B.data(), nb, dense.data());
                    elm::detail::deep_product<T>(depth, A.data(), pa, na, B.data(), nb, sparse.data(),
                                                 &lists);
                    for (std::size_t k = 0; k < dense.size(); ++k)
                        ASSERT_EQ(sparse[k], dense[k]) << "depth " << depth << " na " << na << " nb " << nb
                                                       << " density " << density << " at " << k;
                }
}

TEST(kernels, deep_product_over_mostly_zero_rows_sums_only_their_non_zero_terms) {
    std::mt19937_64 gen(23);
    check_sparse_deep_product<float>(gen);
    check_sparse_deep_product<double>(gen);
}

// ---- reference forward: reference/paper.md §1.2 (v1) and §1.3 (v2), one step at a time, in double ---------

// Branch traces b_t [B][T][d_tree] of a dense input [B][T][num_input] (E1-E2); for v1 also the synapse
// traces s_t [B][T][d_s] into `synapses` if given.
std::vector<double> reference_branches(const elm::model<double>& m, const std::vector<double>& dense, int B,
                                       int T, std::vector<double>* synapses = nullptr) {
    const auto& c = m.config();
    const int n_in = c.num_input, S = c.num_synapse(), nb = c.branches(), db = c.num_synapse_per_branch;
    const bool v1 = c.version == elm::model_version::v1;
    const auto idx = m.synapse_input_index();
    const auto mask = m.synapse_mask();
    const auto proto_ws = m.parameter("_proto_w_s");
    const auto tau = m.parameter(v1 ? "tau_s" : "tau_b");
    const double dt = c.delta_t;
    std::vector<double> out(static_cast<std::size_t>(B) * T * nb);
    if (synapses) synapses->assign(v1 ? static_cast<std::size_t>(B) * T * S : 0, 0.0);
    for (int b = 0; b < B; ++b) {
        std::vector<double> trace(v1 ? S : nb, 0.0);
        for (int t = 0; t < T; ++t) {
            const double* x = dense.data() + (static_cast<std::size_t>(b) * T + t) * n_in;
            double* branch = out.data() + (static_cast<std::size_t>(b) * T + t) * nb;
            if (v1) {  // s_t = κ_s ⊙ s_{t-1} + w_s ⊙ x̃_t, b_t = BranchSum(s_t)
                for (int i = 0; i < S; ++i) {
                    trace[i] = std::exp(-dt / std::max(tau[i], 1e-6)) * trace[i] +
                               std::max(0.0, proto_ws[i]) * x[idx[i]] * mask[i];
                    branch[i / db] += trace[i];
                }
                if (synapses)
                    std::copy(trace.begin(), trace.end(),
                              synapses->begin() +
                                  static_cast<std::ptrdiff_t>((static_cast<std::size_t>(b) * T + t) * S));
            } else {  // b_t = κ_b ⊙ b_{t-1} + BranchSum(w_s ⊙ x̃_t)
                for (int i = 0; i < S; ++i)
                    branch[i / db] += std::max(0.0, proto_ws[i]) * x[idx[i]] * mask[i];
                for (int j = 0; j < nb; ++j) {
                    trace[j] = std::exp(-dt / std::max(tau[j], 1e-6)) * trace[j] + branch[j];
                    branch[j] = trace[j];
                }
            }
        }
    }
    return out;
}

std::vector<double> reference_forward(const elm::model<double>& m, const std::vector<double>& dense, int B,
                                      int T) {
    const auto& c = m.config();
    const int nb = c.branches();
    const int dm = c.num_memory, dh = c.hidden_size(), L = c.mlp_num_layers, d_o = c.num_output;
    const bool v1 = c.version == elm::model_version::v1;
    const auto proto_tau_m = m.parameter("_proto_tau_m");
    const double dt = c.delta_t, lam = c.lambda_value, lo = c.memory_tau_min, hi = c.effective_tau_max();
    std::vector<double> kappa_m(dm), tau_m(dm);
    for (int k = 0; k < dm; ++k) {
        tau_m[k] = (hi - lo) / (1 + std::exp(-proto_tau_m[k])) + lo;
        kappa_m[k] = std::exp(-dt / std::max(tau_m[k], 1e-6));
    }
    auto linear = [&](int l, const std::vector<double>& in) {
        const std::string name = "mlp.network." + std::to_string(2 * l);
        const auto w = m.parameter(name + ".weight");
        const auto b = m.parameter(name + ".bias");
        std::vector<double> out(b.size());
        for (std::size_t o = 0; o < out.size(); ++o) {
            double acc = b[o];
            for (std::size_t i = 0; i < in.size(); ++i) acc += w[o * in.size() + i] * in[i];
            out[o] = acc;
        }
        return out;
    };
    const auto wy = m.parameter("w_y.weight");
    const auto by = m.parameter("w_y.bias");
    std::vector<double> y(static_cast<std::size_t>(B) * T * d_o);
    const auto branches = reference_branches(m, dense, B, T);
    for (int b = 0; b < B; ++b) {
        std::vector<double> mem(dm, 0.0);
        for (int t = 0; t < T; ++t) {
            const double* branch = branches.data() + (static_cast<std::size_t>(b) * T + t) * nb;
            std::vector<double> z(branch, branch + nb);
            for (int k = 0; k < dm; ++k) z.push_back(kappa_m[k] * mem[k]);
            auto h = z;
            for (int l = 0; l <= L; ++l) {
                h = linear(l, h);
                if (l < L)
                    for (auto& v : h)
                        v = c.mlp_activation == elm::activation::relu ? std::max(0.0, v)
                                                                      : v / (1 + std::exp(-v));
            }
            (void)dh;
            for (int k = 0; k < dm; ++k) {
                const double delta = 1.7159 * std::tanh(2.0 / 3.0 * h[k]);
                const double gain =
                    v1 ? lam * (1 - kappa_m[k]) : 1 - std::exp(-dt * lam / std::max(tau_m[k], 1e-6));
                mem[k] = kappa_m[k] * mem[k] + gain * delta;
            }
            for (int o = 0; o < d_o; ++o) {
                double acc = by[o];
                for (int k = 0; k < dm; ++k) acc += wy[o * dm + k] * mem[k];
                y[(static_cast<std::size_t>(b) * T + t) * d_o + o] = acc;
            }
        }
    }
    return y;
}

enum class tau_pattern { constant, per_branch, per_synapse };

struct reference_case {
    const char* name;
    elm::model_config config;
    tau_pattern tau = tau_pattern::constant;
};

std::vector<reference_case> reference_cases() {
    std::vector<reference_case> out;
    for (auto v : {elm::model_version::v1, elm::model_version::v2}) {
        elm::model_config c;
        c.version = v;
        c.num_input = 40;
        c.num_output = 3;
        c.num_memory = 9;
        c.num_branch = 6;
        c.num_synapse_per_branch = 8;
        c.input_to_synapse_routing = elm::routing::neuronio;
        c.mlp_num_layers = 2;
        c.mlp_hidden_size = 21;
        out.push_back({v == elm::model_version::v1 ? "v1_routed_per_branch_tau" : "v2_routed_per_branch_tau",
                       c, tau_pattern::per_branch});
        if (v == elm::model_version::v1)  // τ_s varying inside branches: κ groups of synapses, not branches
            out.push_back({"v1_routed_per_synapse_tau", c, tau_pattern::per_synapse});
        c.mlp_activation = elm::activation::silu;
        c.input_to_synapse_routing = elm::routing::random;
        out.push_back({v == elm::model_version::v1 ? "v1_random_silu" : "v2_random_silu", c});
        elm::model_config vanilla;
        vanilla.version = v;
        vanilla.num_input = 33;
        vanilla.num_output = 2;
        vanilla.num_memory = 17;
        vanilla.mlp_num_layers = 0;
        out.push_back({v == elm::model_version::v1 ? "v1_vanilla_linear_mlp" : "v2_vanilla_linear_mlp",
                       vanilla, tau_pattern::per_branch});
    }
    return out;
}

TEST(forward, matches_a_plain_transcription_of_the_equations) {
    for (const auto& rc : reference_cases()) {
        elm::model<double> m(rc.config, 21);
        std::mt19937_64 gen(8);
        std::normal_distribution<double> normal(0.0, 1.0);
        for (auto& w : m.parameter("_proto_w_s")) w = 0.5 + 0.5 * normal(gen);
        const bool v1 = rc.config.version == elm::model_version::v1;
        auto tau = m.parameter(v1 ? "tau_s" : "tau_b");
        const int per = v1 ? rc.config.num_synapse_per_branch : 1;
        if (rc.tau == tau_pattern::per_branch)  // a different κ on every branch: one κ group per branch
            for (std::size_t i = 0; i < tau.size(); ++i) tau[i] = 1.5 + 2.0 * static_cast<double>(i / per);
        if (rc.tau == tau_pattern::per_synapse)  // five κ shared by synapses across and within branches
            for (std::size_t i = 0; i < tau.size(); ++i) tau[i] = 1.5 + 2.0 * static_cast<double>(i % 5);
        const int B = 3, T = 90;  // longer than a forward block of steps
        std::vector<double> dense(static_cast<std::size_t>(B) * T * rc.config.num_input);
        std::uniform_real_distribution<double> u(0, 1);
        for (auto& v : dense) v = u(gen) < 0.1 ? normal(gen) : 0.0;
        const auto x = elm::sparse_from_dense<double>(dense, B, T, rc.config.num_input);
        std::vector<double> y(static_cast<std::size_t>(B) * T * rc.config.num_output);
        elm::workspace<double> ws;
        m.forward(x, y, ws);
        const auto ref = reference_forward(m, dense, B, T);
        double num = 0, den = 0;
        for (std::size_t i = 0; i < y.size(); ++i) {
            num += (y[i] - ref[i]) * (y[i] - ref[i]);
            den += ref[i] * ref[i];
        }
        EXPECT_LT(std::sqrt(num / den), 1e-12) << rc.name;
    }
}

TEST(traces, v1_branch_trace_sums_per_synapse_traces_of_different_tau) {
    // v1 with τ_s varying inside branches: b_t[j] = Σ_k s_t[j·d_brch + k], s_t = κ_s ⊙ s_{t-1} + w_s ⊙ x̃_t
    // (E1-E2), as reference_branches writes it out per synapse; synapse_trace gives the same s_t.
    elm::model_config c;
    c.num_input = 30;
    c.num_output = 2;
    c.num_memory = 4;
    c.num_branch = 5;
    c.num_synapse_per_branch = 7;
    c.input_to_synapse_routing = elm::routing::random;
    elm::model<double> m(c, 3);
    auto tau = m.parameter("tau_s");
    for (std::size_t i = 0; i < tau.size(); ++i) tau[i] = 1.0 + 3.0 * static_cast<double>(i % 4);
    const int B = 2, T = 40, S = c.num_synapse(), nb = c.num_branch;
    const auto x = elm::synthetic_input<double>("counts", B, T, c.num_input, 5, 0.2);
    std::vector<double> branch(static_cast<std::size_t>(B) * T * nb),
        syn(static_cast<std::size_t>(B) * T * S);
    m.branch_trace(x, branch);
    m.synapse_trace(x, syn);
    std::vector<double> dense(static_cast<std::size_t>(B) * T * c.num_input, 0.0);
    for (std::size_t r = 0; r + 1 < x.offsets.size(); ++r)
        for (auto e = x.offsets[r]; e < x.offsets[r + 1]; ++e)
            dense[r * c.num_input + static_cast<std::size_t>(x.channels[e])] += x.values[e];
    std::vector<double> ref_syn;
    const auto ref = reference_branches(m, dense, B, T, &ref_syn);
    for (std::size_t i = 0; i < syn.size(); ++i)
        EXPECT_NEAR(syn[i], ref_syn[i], 1e-12 * (1 + std::abs(ref_syn[i]))) << "synapse entry " << i;
    for (std::size_t i = 0; i < branch.size(); ++i)
        EXPECT_NEAR(branch[i], ref[i], 1e-12 * (1 + std::abs(ref[i])))
            << "row " << i / nb << " branch " << i % nb;
}

elm::model_config neuronio_like(int num_memory) {
    elm::model_config c;
    c.num_input = 300;
    c.num_output = 2;
    c.num_memory = num_memory;
    c.num_branch = 12;
    c.num_synapse_per_branch = 40;
    c.input_to_synapse_routing = elm::routing::neuronio;
    return c;
}

TEST(forward, infer_and_stream_are_bit_identical_to_forward) {
    for (int dm : {1, 15, 40}) {
        const auto c = neuronio_like(dm);
        elm::model<float> m(c, 4);
        const int B = 5, T = 77;
        const auto x = elm::synthetic_input<float>("neuronio", B, T, c.num_input, 9);
        std::vector<float> y(static_cast<std::size_t>(B) * T * 2), yi(y.size()), ys(y.size());
        elm::workspace<float> ws;
        m.forward(x, y, ws);
        m.infer(x, yi);
        EXPECT_EQ(y, yi) << "d_m " << dm;
        elm::stream<float> st(m, B);
        std::vector<float> yt(static_cast<std::size_t>(B) * 2);
        for (int t = 0; t < T; ++t) {
            st.step(x, t, yt);
            for (int b = 0; b < B; ++b)
                for (int o = 0; o < 2; ++o) ys[(static_cast<std::size_t>(b) * T + t) * 2 + o] = yt[b * 2 + o];
        }
        EXPECT_EQ(y, ys) << "d_m " << dm;
        // The stream's memory after the last step is the forward's m_{T-1}.
        const auto mem = st.memory();
        const auto trace = m.memory_trace(ws);
        for (int b = 0; b < B; ++b)
            for (int k = 0; k < dm; ++k)
                EXPECT_EQ(mem[b * dm + k], trace[(static_cast<std::size_t>(b) * T + T - 1) * dm + k]);
        st.reset();
        st.step(x, 0, yt);
        for (int o = 0; o < 2; ++o) EXPECT_EQ(yt[o], y[o]);
    }
}

// Hidden layers that are mostly off, as in trained models (the published NeuronIO d_m 100 model has ~5 % of
// its hidden units on), run on sparse_rows: still the transcription's outputs, and infer and stream still
// bit-identical to forward. Two hidden layers: the sparse product feeds a hidden layer and the output layer.
TEST(forward, mostly_off_relu_layers_match_the_transcription) {
    auto c = neuronio_like(40);  // hidden width 80, wide enough for sparse_rows
    c.mlp_num_layers = 2;
    elm::model<double> m(c, 6);
    for (const char* layer : {"mlp.network.0.bias", "mlp.network.2.bias"})
        for (auto& b : m.parameter(layer)) b -= 0.3;  // most pre-activations below 0
    const int B = 4, T = 70;
    std::vector<double> dense(static_cast<std::size_t>(B) * T * c.num_input);
    std::mt19937_64 gen(4);
    std::uniform_real_distribution<double> u(0, 1);
    for (auto& v : dense) v = u(gen) < 0.03 ? 1.0 : 0.0;
    const auto x = elm::sparse_from_dense<double>(dense, B, T, c.num_input);
    std::vector<double> y(static_cast<std::size_t>(B) * T * c.num_output), yi(y.size()), ys(y.size());
    elm::workspace<double> ws;
    m.forward(x, y, ws);
    // The fraction of hidden units on, over both layers and all steps: low enough for sparse_rows.
    const int ph = padded<double>(c.hidden_size());
    std::size_t on = 0;
    for (std::size_t i = 0; i < ws.hidden.size(); ++i) on += ws.hidden[i] > 0;
    const std::size_t units = ws.hidden.size() / ph * c.hidden_size();
    ASSERT_GT(on, 0u);
    ASSERT_TRUE(elm::detail::sparse_product_pays(static_cast<int>(on),
                                                 static_cast<int>(units / c.hidden_size()), c.hidden_size()))
        << on << " of " << units << " hidden units on";
    const auto ref = reference_forward(m, dense, B, T);
    double num = 0, den = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
        num += (y[i] - ref[i]) * (y[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    EXPECT_LT(std::sqrt(num / den), 1e-12);
    m.infer(x, yi);
    EXPECT_EQ(y, yi);
    elm::stream<double> st(m, B);
    std::vector<double> yt(static_cast<std::size_t>(B) * c.num_output);
    for (int t = 0; t < T; ++t) {
        st.step(x, t, yt);
        for (int b = 0; b < B; ++b)
            for (int o = 0; o < c.num_output; ++o)
                ys[(static_cast<std::size_t>(b) * T + t) * c.num_output + o] = yt[b * c.num_output + o];
    }
    EXPECT_EQ(y, ys);
}

TEST(forward, a_sample_does_not_depend_on_its_batch) {
    const auto c = neuronio_like(20);
    elm::model<float> m(c, 2);
    const int B = 13, T = 40;
    const auto x = elm::synthetic_input<float>("neuronio", B, T, c.num_input, 5);
    std::vector<float> y(static_cast<std::size_t>(B) * T * 2);
    elm::workspace<float> ws;
    m.forward(x, y, ws);
    for (int b : {0, 6, 12}) {  // the sample alone
        elm::sparse_input<float> one;
        one.batch = 1;
        one.time = T;
        one.num_input = c.num_input;
        const auto first = x.offsets[static_cast<std::size_t>(b) * T];
        for (int t = 0; t <= T; ++t)
            one.offsets.push_back(x.offsets[static_cast<std::size_t>(b) * T + t] - first);
        one.channels.assign(x.channels.begin() + first,
                            x.channels.begin() + x.offsets[static_cast<std::size_t>(b + 1) * T]);
        one.values.assign(x.values.begin() + first,
                          x.values.begin() + x.offsets[static_cast<std::size_t>(b + 1) * T]);
        std::vector<float> y1(static_cast<std::size_t>(T) * 2);
        m.infer(one, y1);
        for (int i = 0; i < T * 2; ++i)
            ASSERT_EQ(y1[i], y[static_cast<std::size_t>(b) * T * 2 + i]) << "sample " << b;
    }
}

// A workspace keeps the kernel layout of the parameters it last ran and reuses it when a model is bit-for-bit
// the same: any change of a parameter (each kind: synapse weight, branch τ, first layer, memory τ, readout),
// of the routing or of the config must give what a fresh workspace gives.
TEST(forward, a_reused_workspace_follows_every_change_of_the_model) {
    const auto c = neuronio_like(15);
    elm::model<float> m(c, 3);
    const int B = 3, T = 30;
    const auto x = elm::synthetic_input<float>("neuronio", B, T, c.num_input, 4);
    std::vector<float> y(static_cast<std::size_t>(B) * T * 2), fresh(y.size()), before(y.size());
    elm::workspace<float> ws;
    m.forward(x, before, ws);
    auto expect_fresh = [&](const elm::model<float>& mm, const std::string& what) {
        mm.infer(x, y, ws);
        elm::workspace<float> other;
        mm.infer(x, fresh, other);
        EXPECT_EQ(y, fresh) << what;
        EXPECT_NE(y, before) << what << ": the change should change the output";
        mm.forward(x, before, ws);  // the new baseline, through the same workspace
        EXPECT_EQ(before, fresh) << what;
    };
    for (const auto& entry : m.layout()) {
        auto params = m.parameters().subspan(entry.offset, entry.size);
        for (auto& v : params) v = v * 1.1f + 0.05f;
        expect_fresh(m, "parameter " + entry.name);
    }
    // The very last parameter alone (the compared range must cover the whole block).
    m.parameters().back() += 0.25f;
    expect_fresh(m, "last parameter");
    // Routing: one synapse moved to another input channel, then one synapse masked off.
    std::vector<std::int64_t> index(m.synapse_input_index().begin(), m.synapse_input_index().end());
    std::vector<float> mask(m.synapse_mask().begin(), m.synapse_mask().end());
    const auto first_valid = static_cast<std::size_t>(
        std::find_if(mask.begin(), mask.end(), [](float v) { return v != 0.f; }) - mask.begin());
    ASSERT_LT(first_valid, mask.size());
    index[first_valid] = (index[first_valid] + 1) % c.num_input;
    m.set_routing(index, mask, "test");
    expect_fresh(m, "routing index");
    mask[first_valid] = 0.f;
    m.set_routing(index, mask, "test");
    expect_fresh(m, "routing mask");
    // Another batch and length through the same (reused) layout.
    const auto x2 = elm::synthetic_input<float>("neuronio", 2, 17, c.num_input, 8);
    std::vector<float> y2(2 * 17 * 2), y2_fresh(y2.size());
    m.infer(x2, y2, ws);
    elm::workspace<float> other;
    m.infer(x2, y2_fresh, other);
    EXPECT_EQ(y2, y2_fresh);
    // A backward after a forward that reused the layout gives the gradients of a fresh workspace.
    std::vector<float> dy(y.size(), 1e-2f), g(m.parameters().size(), 0.f), g_fresh(g.size(), 0.f);
    m.forward(x, y, ws);
    m.backward(x, dy, ws, g);
    elm::workspace<float> fresh_ws;
    m.forward(x, fresh, fresh_ws);
    m.backward(x, dy, fresh_ws, g_fresh);
    EXPECT_EQ(g, g_fresh);
    // Config: another model with the same parameter block but a different Δt.
    auto c2 = c;
    c2.delta_t = 2.0;
    elm::model<float> m2(c2, 3);
    std::copy(m.parameters().begin(), m.parameters().end(), m2.parameters().begin());
    m2.set_routing(index, mask, "test");
    expect_fresh(m2, "config delta_t");
}

TEST(stream, rejects_bad_steps_with_clear_errors) {
    const auto c = neuronio_like(5);
    elm::model<float> m(c, 1);
    elm::stream<float> st(m, 2);
    std::vector<float> y(4);
    const std::vector<std::int64_t> offsets{0, 1, 2};
    const std::vector<std::int32_t> channels{3, 299};
    const std::vector<float> values{1.f, -1.f};
    EXPECT_NO_THROW(st.step(offsets, channels, values, y));
    EXPECT_THROW(st.step(std::vector<std::int64_t>{0, 1}, channels, values, y), elm::error);     // batch + 1
    EXPECT_THROW(st.step(std::vector<std::int64_t>{0, 2, 1}, channels, values, y), elm::error);  // decreasing
    EXPECT_THROW(st.step(offsets, std::vector<std::int32_t>{3, 300}, values, y), elm::error);    // channel
    EXPECT_THROW(st.step(offsets, channels, std::vector<float>{1.f, std::nanf("")}, y), elm::error);  // NaN
    std::vector<float> short_y(3);
    EXPECT_THROW(st.step(offsets, channels, values, short_y), elm::error);  // y size
    EXPECT_THROW(elm::stream<float>(m, 0), elm::error);
    const auto x = elm::synthetic_input<float>("neuronio", 2, 4, c.num_input, 1);
    EXPECT_THROW(st.step(x, 4, y), elm::error);  // step out of range
}

}  // namespace

namespace {

TEST(forward, one_kappa_group_per_synapse_stays_compact) {
    // A vanilla ELM with a different τ_s on every synapse: 2000 κ groups. The projection has one row per
    // (group, channel) with a synapse (2000 + 1 rows), not one matrix per group (2000 x 2000 rows, 256 MB).
    elm::model_config c;
    c.num_input = 2000;
    c.num_output = 1;
    c.num_memory = 4;
    elm::model<float> m(c, 3);
    auto tau = m.parameter("tau_s");
    for (std::size_t i = 0; i < tau.size(); ++i) tau[i] = 2.0f + 0.01f * static_cast<float>(i);
    const auto x = elm::synthetic_input<float>("counts", 2, 5, c.num_input, 4);
    std::vector<float> y(2 * 5);
    elm::workspace<float> ws;
    m.forward(x, y, ws);
    EXPECT_LT(ws.bytes(), std::size_t(32) << 20);
    for (float v : y) EXPECT_TRUE(std::isfinite(v));
    // Same outputs as the plain transcription of the equations.
    const auto md = m.cast<double>();
    std::vector<double> dense(static_cast<std::size_t>(2) * 5 * c.num_input, 0.0);
    for (int r = 0; r < 10; ++r)
        for (auto e = x.offsets[r]; e < x.offsets[r + 1]; ++e)
            dense[static_cast<std::size_t>(r) * c.num_input + x.channels[e]] = x.values[e];
    const auto ref = reference_forward(md, dense, 2, 5);
    for (int i = 0; i < 10; ++i) EXPECT_NEAR(y[i], ref[i], 1e-5 * (1 + std::abs(ref[i])));
}

}  // namespace
