#pragma once
// Forward and backward kernels of the ELM (docs/model.md "Computation"), over raw buffers. model.cpp
// sequences them: the forward over each thread's samples, the backward over whole, batch-derived gradient
// chunks per thread.
//
// The input stage is folded into the first MLP layer (docs/model.md "Computation"): with one κ per
// branch, the branch traces are linear in the input events, so W_b·b_t (the branch half of the first layer)
// equals a κ-filtered sum of per-event rows U[c] = Σ_{synapses i of channel c} w_s[i]·W_b[:, branch(i)].
// Each input event adds one padded row of U to a first-layer accumulator instead of touching synapses and
// branches: O(events·d_mlp) instead of O(events·fan-out + T·d_tree·d_mlp). Branches with different κ fall
// into separate κ groups, each with its own accumulator (one group in every published model).
//
// Per step the recurrence is a chain of small dense layers on a few samples ("rows"): dense_rows below,
// the one matrix kernel, written with SIMD vectors over the output features (feature rows padded to whole
// vectors, simd.hpp), and sparse_rows, its form over the non-zero inputs of mostly-off ReLU layers. Every
// sample goes through the same instructions whatever the chunking, so a sample's output does not depend on
// the batch it is in or on the thread count.

#include <elmneuron/config.hpp>
#include <elmneuron/model.hpp>

#include "model/simd.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace elm::detail {

// Items [first, last) of part `part` of `parts` (samples or gradient chunks of a thread, rows of a team
// member, vectors of the chunk sums), as even as can be: the recurrence runs a thread's samples in lockstep,
// so that each step's weights are read once for all of them. A sample's arithmetic does not depend on the
// grouping.
inline std::pair<int, int> even_share(int items, int part, int parts) {
    const int base = items / parts, extra = items % parts;
    const int first = part * base + std::min(part, extra);
    return {first, first + base + (part < extra ? 1 : 0)};
}

struct dims {
    int B = 0, T = 0;
    int d_in = 0;                                       // input channels
    int d_s = 0;                                        // synapses = d_tree·d_brch
    int d_tree = 0;                                     // branches
    int d_brch = 0;                                     // synapses per branch
    int d_mlp = 0;                                      // hidden width
    int l_mlp = 0;                                      // hidden layers
    int d_m = 0;                                        // memory units
    int d_o = 0;                                        // outputs
    int n0() const { return l_mlp > 0 ? d_mlp : d_m; }  // width of the first Linear layer's output
    int d_z() const { return d_tree + d_m; }            // MLP input: [b_t, κ_m ⊙ m_{t-1}]
};

inline dims make_dims(const model_config& c, int batch, int time) {
    dims d;
    d.B = batch;
    d.T = time;
    d.d_in = c.num_input;
    d.d_s = c.num_synapse();
    d.d_tree = c.branches();
    d.d_brch = c.num_synapse_per_branch;
    d.d_mlp = c.hidden_size();
    d.l_mlp = c.mlp_num_layers;
    d.d_m = c.num_memory;
    d.d_o = c.num_output;
    return d;
}

// Views of the parameters (or of their gradients) inside the flat block, in layout order.
template <class P>
struct parameter_views {
    P* proto_w_s = nullptr;    // [d_s]
    P* tau_branch = nullptr;   // v1 tau_s [d_s], v2 tau_b [d_tree]
    P* proto_tau_m = nullptr;  // [d_m]
    std::vector<P*> weight;    // l_mlp + 1 Linear layers, [out][in]
    std::vector<P*> bias;      // [out]
    P* w_y = nullptr;          // [d_o][d_m]
    P* b_y = nullptr;          // [d_o]
};

// Input events: those of sample b at step t are [offsets[b·time + t], offsets[b·time + t + 1]).
template <class T>
struct event_view {
    const std::int64_t* offsets = nullptr;
    const std::int32_t* channels = nullptr;
    const T* values = nullptr;
    int time = 1;
};

// A Linear layer in the two layouts the kernels read: transposed [in][pad(out)] for forward products
// (h·Wᵀ), as stored [out][pad(in)] for backward ones (g·W); zeros in the padding.
template <class T>
struct dense_layer {
    aligned_vector<T> transposed;  // [in + 1][pad(out)], the last row zero (sparse_rows' padding entries)
    aligned_vector<T> rows;        // [out + 1][pad(in)], the last row zero (as transposed's)
    aligned_vector<T> bias;        // [pad(out)]
};

// A trace's decay per step, κ = exp(-Δt / max(τ, 1e-6)) (reference/paper.md §1.2-1.3; the published clamp),
// computed in double and rounded once, for every precision.
template <class T>
T decay_factor(double delta_t, T tau) {
    return T(std::exp(-delta_t / std::max(static_cast<double>(tau), 1e-6)));
}

// The model's parameters in kernel layout, with the per-call derived quantities (reference/paper.md §1.2-1.4:
// w_s = ReLU(ŵ_s), κ = exp(-Δt/max(τ, 1e-6)), τ_m = scaled sigmoid, the memory gain). Built by prepare()
// once per forward call (kept in the workspace for the backward) or once per stream.
template <class T>
struct prepared {
    dims d;
    activation act = activation::relu;
    int p0 = 0, ph = 0, pm = 0, po = 0;  // padded widths: first-layer output, hidden, memory, output

    // Input stage folded into the first layer (header comment).
    std::vector<T> group_kappa;  // [groups]: the distinct κ values of the synapses
    int groups() const { return static_cast<int>(group_kappa.size()); }
    // U as compact rows, one per (group, channel) with a valid synapse, plus one zero row last: row_of maps
    // [groups][d_in] to a row (the zero row where the channel has no synapse in the group), so the event
    // loops need no branch and memory grows with the synapses, not with groups × channels.
    aligned_vector<T> proj;                 // [rows + 1][p0], rows in (group, channel) order
    std::vector<std::int32_t> row_of;       // [groups][d_in]
    bool rows_are_channels = false;         // one group and every channel connected: row_of[c] == c
    std::vector<std::int32_t> synapse_row;  // [d_s]: row of each synapse, -1 if masked
    aligned_vector<T> w_s;                  // [d_s] ReLU(ŵ_s)
    aligned_vector<T> kappa_synapse;        // [d_s]: κ_s (v1) or its branch's κ_b (v2)
    aligned_vector<T> branch_weight;        // [d_tree][p0]: column j of W_0 (branch half), for dw_s

    // MLP: first layer split into the memory half W_m (transposed [d_m][p0] and as stored [n0][pm]) and c_0;
    // layers 1..l_mlp; readout W_y.
    aligned_vector<T> bias0;             // [p0]
    aligned_vector<T> memory_weight_t;   // [d_m][p0]
    aligned_vector<T> memory_weight;     // [n0 + 1][pm], the last row zero (sparse_rows)
    std::vector<dense_layer<T>> layers;  // l_mlp layers after the first
    dense_layer<T> readout;              // d_m -> d_o
    // κ_m, its complement 1 - κ_m (to full precision, not 1 minus a rounded κ_m) and the gain; 0 in the
    // padding.
    aligned_vector<T> kappa_m, memory_leak, memory_gain;  // [pm]

    // What it was made from (model.cpp prepare_into reuses it when a call's model has an equal config and
    // the same bits of parameters and routing).
    struct source {
        bool valid = false;
        model_config config;
        std::vector<T> parameters;
        std::vector<std::int64_t> synapse_index;
        std::vector<T> synapse_mask;
    } made_from;

    std::size_t bytes() const;
};

// Builds `out` (reusing its storage) from the parameter block. Routing: input channel and 0/1 validity of
// each synapse.
template <class T>
void prepare(const model_config& config, const parameter_views<const T>& p, const std::int64_t* synapse_index,
             const T* synapse_mask, int batch, int time, prepared<T>& out);

// ---- the matrix kernel ----------------------------------------------------------------------------------
// out[s][:] = init[s][:] + Σ_{j < n_in} x[s][j]·M[j][:] for s < rows (init = nullptr: 0). M: [n_in][np],
// np = padded(n_out), the real width n_out padded to whole SIMD vectors (M's padding columns are zero);
// x: rows of n_in scalars (row stride xs); out/init rows of np values (strides os, is; is = 0 repeats one
// init row, e.g. a bias; init may be out). Summation order per element: init, then j = 0, 1, ..., the same
// for every row. Padding elements of out get init's (0 without init) where x is finite.
//
// Rows per register block of dense_rows: a product over fewer rows reloads its weights for fewer of them.
inline constexpr int max_block_rows = 8;

template <class T>
void dense_rows(int rows, const T* x, std::size_t xs, int n_in, const T* M, int n_out, const T* init,
                std::size_t is, T* out, std::size_t os);
// The same product over the non-zero inputs only, for inputs that are mostly 0 (ReLU's output): row s's
// inputs as a list of counts[s] entries (vals[s·ls + e], offs[s·ls + e] = element offset of row j of M, e.g.
// j·np), in increasing j; out[s][:] = init[s][:] + Σ_e vals·M[j][:]. The kernel pads each block's lists to
// its longest with entries (-0, zero_row), so M + zero_row must be a row of zeros and the lists need room
// for n_in entries; n_in (the number of rows of M) sets the blocking as in dense_rows. Each element's sum is
// dense_rows' without its zero terms, bit for bit where M is finite (adding x·0 or -0 leaves a
// sum unchanged, except that +0 turns a -0 sum into +0; 0·inf would be NaN).
template <class T>
void sparse_rows(int rows, T* vals, std::int32_t* offs, const std::int32_t* counts, std::size_t ls, int n_in,
                 std::int32_t zero_row, const T* M, int n_out, const T* init, std::size_t is, T* out,
                 std::size_t os);
// Whether sparse_rows beats dense_rows on a product with `active` non-zero inputs over rows × n_in: its
// every FMA loads its own row of M, so it does about twice a dense FMA's work per product (AMD Zen 4: even
// at half the inputs on), and below 64 inputs building the lists costs what the skipped products save
// (bench/README.md "Where the time goes").
inline bool sparse_product_pays(int active, int rows, int n_in) {
    return n_in >= 64 && 3 * active < rows * n_in;
}

// The same kernel as a deep product for weight gradients: out[i][:] += Σ_{r < depth} A[r][i]·B[r][:] for
// i < na; A rows padded to pa, B and out rows nb wide, padded to whole vectors. Sums in order of r, in blocks
// of deep_block rows. With `lists` (for an A that is mostly 0, e.g. a ReLU layer's h: sparse_product_pays),
// each block sums its non-zero terms only (sparse_rows: bit for bit the same sums): lists holds room for na
// lists of deep_block entries, and zero points to a row of pad(nb) zeros at a higher address than every row
// of B.
inline constexpr std::size_t deep_block = 128;
template <class T>
struct column_lists {
    T* vals = nullptr;               // [na][deep_block]
    std::int32_t* offs = nullptr;    // [na][deep_block]
    std::int32_t* counts = nullptr;  // [na]
    const T* zero = nullptr;
};
template <class T>
void deep_product(std::size_t depth, const T* A, int pa, int na, const T* B, int nb, T* out,
                  const column_lists<T>* lists = nullptr);
// ---- one time step for `rows` samples (b0, b0+1, ...) -----------------------------------------------------
// Where step t's activations of the samples go: row s of a buffer at base + s·stride.
template <class T>
struct step_rows {
    T* hidden = nullptr;  // pre-activations of hidden layer l at hidden + l·layer_stride (l_mlp > 0)
    std::size_t layer_stride = 0, hidden_stride = 0;
    T* delta = nullptr;   // Δm_t
    T* memory = nullptr;  // m_t
    std::size_t memory_stride = 0;
    T* y = nullptr;  // y_t: d_o values per row
    std::size_t y_stride = 0;
};

// ---- the input stage through the first layer (input_stage.cpp) ----------------------------------------
// Steps [t0, t1) for `rows` samples: out[s, t] = c_0 + Σ_g a_g,t with a_g,t = κ_g·a_g,t-1 + Σ_events v·U_g[c]
// (row of sample s, step t at out + s·sample_stride + (t - t0)·step_stride). state: a_g before t0
// ([groups][rows][p0], zero before the first step), updated to a_g at t1 - 1.
template <class T>
void input_forward(const prepared<T>& p, const event_view<T>& x, int b0, int rows, int t0, int t1, T* state,
                   T* out, std::size_t sample_stride, std::size_t step_stride);
// Its transpose, steps [t1 - 1 .. t0] in reverse: din = dL/dpre_0 (row of sample s, step t at
// din + s·sample_stride + (t - t0)·step_stride); state: r_g after step t1 - 1 ([groups][state_rows][p0] from
// sample b0's row; zero after the last step), updated to r_g,t0. r_g,t = din_t + κ_g·r_g,t+1;
// proj_grad[g][c] += v·r_g,t per event (c, v); dx (optional) [b][t][c] = Σ_g U_g[c]·r_g,t for these steps.
template <class T>
void input_backward(const prepared<T>& p, const event_view<T>& x, int b0, int rows, int t0, int t1,
                    const T* din, std::size_t sample_stride, std::size_t step_stride, T* state,
                    int state_rows, T* proj_grad, T* dx);

// ---- one time step of the recurrence for `rows` samples ------------------------------------------------
// The first layer's rows already hold c_0 + Σ_g a_g,t (input_forward). memory_in: per sample the MLP's memory
// input κ_m ⊙ m_{t-1} and m_{t-1} ([rows][2·pm], zero before the first step), updated to those of m_t.
// scratch: step_scratch_size elements, vector-aligned.
template <class T>
constexpr std::size_t memory_state_width(const prepared<T>& p) {
    return 2 * static_cast<std::size_t>(p.pm);
}
template <class T>
void step_forward(const prepared<T>& p, int rows, T* memory_in, T* scratch, const step_rows<T>& out);
template <class T>
std::size_t step_scratch_size(const prepared<T>& p, int rows);

// ---- a range of samples over all steps -------------------------------------------------------------------
// Forward activations of the whole batch, kept for backward: [B][T][padded width] (hidden:
// [l_mlp][B][T][ph]).
template <class T>
struct activations {
    T* hidden = nullptr;  // pre-activations of the hidden layers
    T* delta = nullptr;   // Δm_t
    T* memory = nullptr;  // m_t
};

// Scratch sizes (elements) of forward_chunk and backward_range for `rows` samples (backward: in chunks of
// chunk_size).
template <class T>
std::size_t forward_scratch_size(const prepared<T>& p, int rows, bool keep);
template <class T>
std::size_t backward_scratch_size(const prepared<T>& p, int rows, int chunk_size);
// Its two parts: private to a thread (the reverse recurrence's state for its `rows` and the list storage of
// the sparse products) and the call's (the block buffers of all its rows, the input stage's reverse state and
// a zero row), which a team's members share.
template <class T>
std::size_t backward_private_size(const prepared<T>& p, int rows);
template <class T>
std::size_t backward_shared_size(const prepared<T>& p, int rows, int chunk_size);

// Forward of samples [b0, b0 + rows) over all steps, in blocks of steps. keep: the whole-batch activation
// buffers to fill for backward, or nullptr for inference (activations only in scratch blocks).
template <class T>
void forward_chunk(const prepared<T>& p, const event_view<T>& x, int b0, int rows, const activations<T>* keep,
                   T* y, T* scratch);

// The outputs of one fixed gradient chunk (chunk_size samples from the batch's start): the parameter-layout
// block (MLP and readout weights and biases; the branch half of layer 0 and w_s come from proj_grad), dL/dU
// (layout of proj) and padded weight accumulators (padded_gradients_size, zero before the call).
template <class T>
struct chunk_gradients {
    parameter_views<T> g;
    T* proj_grad = nullptr;
    T* padded = nullptr;
};
template <class T>
std::size_t padded_gradients_size(const prepared<T>& p);

// Backward (BPTT) of samples [b0, b0 + rows), whole chunks (chunks[0] is the chunk of sample b0), in blocks
// of steps from the last one back: per block the reverse recurrence for all the samples in lockstep, then
// each chunk's input-stage and weight-gradient sums over the block while its buffers are in cache. Writes
// each sample's Σ_t dL/dκ_m and dL/dgain to its row of dkappa_rows / dgain_rows ([B][pm]); dx (optional)
// dense dL/dx [B][T][d_in]. The summation order of every chunk is fixed by the chunk alone.
//
// A team (size > 1, one gradient chunk, inside an OpenMP parallel region whose every thread is a member of
// some team) runs one call together: each member the reverse recurrence of its share of the rows, then,
// after a barrier, its share of the chunk's sums (each sum, e.g. dL/dU or one weight gradient, whole on one
// member, so every element is summed in the same order as without a team), and a barrier before the next
// block. Without a team (size 1) scratch holds both parts of backward_scratch_size; with one, it holds
// backward_private_size for the member's rows, and `shared` the call's part, the same for every member.
template <class T>
struct backward_team {
    int member = 0, size = 1;
    T* shared = nullptr;      // backward_shared_size(p, rows, chunk_size) elements, vector-aligned
    int* units_on = nullptr;  // [size][l_mlp]: each member's ReLU units on in the current block
};
template <class T>
void backward_range(const prepared<T>& p, const event_view<T>& x, int b0, int rows, int chunk_size,
                    const activations<T>& a, const T* dy, T* dkappa_rows, T* dgain_rows,
                    const chunk_gradients<T>* chunks, T* dx, T* scratch, const backward_team<T>& team);

// ---- diagnostics (not on the forward path) ---------------------------------------------------------------
// Branch traces b_t[b][t][j] (E1-E3): v1's BranchSum(s_t) with per-synapse traces (per_synapse), v2's
// state b_t filtered per branch (κ_b = kappa_synapse of the branch's first synapse).
template <class T>
void branch_trace(const dims& d, const event_view<T>& x, const std::int64_t* synapse_index,
                  const T* synapse_mask, const T* w_s, const T* kappa_synapse, bool per_synapse, T* branch);
// v1 per-synapse currents s[b][t][i] (E1).
template <class T>
void synapse_forward(const dims& d, const sparse_input<T>& x, const std::int64_t* synapse_index,
                     const T* synapse_mask, const T* w_s, const T* kappa_s, T* s);

}  // namespace elm::detail
