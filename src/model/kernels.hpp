#pragma once
// Forward and backward kernels of the ELM stages (docs/model.md), as free functions over raw buffers of a
// chunk of samples [b0, b0 + nb). Buffers are batch-major [B][T][n], row-major, so a sample's trajectory
// is contiguous and each chunk has exactly one writer per output element. model.cpp sequences them.

#include <elmneuron/config.hpp>
#include <elmneuron/model.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <vector>

namespace elm::detail {

struct dims {
    int B = 0, T = 0;
    int d_in = 0;    // input channels
    int d_s = 0;     // synapses = d_tree·d_brch
    int d_tree = 0;  // branches
    int d_brch = 0;  // synapses per branch
    int d_mlp = 0;   // hidden width
    int l_mlp = 0;   // hidden layers
    int d_m = 0;     // memory units
    int d_o = 0;     // outputs
    int n0() const { return l_mlp > 0 ? d_mlp : d_m; }  // width of the first Linear layer's output
    int d_z() const { return d_tree + d_m; }              // MLP input: [b_t, κ_m ⊙ m_{t-1}]
};

template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using matrix_map = Eigen::Map<row_matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using const_matrix_map = Eigen::Map<const row_matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using row_vector = Eigen::Matrix<T, 1, Eigen::Dynamic>;

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

// For each input channel, the valid synapses it feeds and their branches (the routing inverted, so that
// input events are pushed to synapses: cost ∝ events, not synapses × steps). Masked synapses are left out:
// their input is multiplied by 0 in the published model, so they neither contribute nor get gradient.
struct fanout {
    std::vector<std::int32_t> offsets;  // [d_in + 1]
    std::vector<std::int32_t> synapse;  // synapse index
    std::vector<std::int32_t> branch;   // synapse / d_brch
};
fanout build_fanout(const dims& d, const std::int64_t* synapse_index, const unsigned char* synapse_valid);

// ---- input stage (E1-E3): routing, w_s, traces, branch sums -----------------------------------------
// branch[b][t][j] = b_t[j] = κ_b[j]·b_{t-1}[j] + Σ_{k} w_s[j·d_brch+k]·x̃_t[j·d_brch+k]
template <class T>
void branch_forward(const dims& d, int b0, int nb, const sparse_input<T>& x, const fanout& f, const T* w_s,
                    const T* kappa_branch, T* branch);
// In: dbranch = dL/db_t (direct). Out: dbranch becomes G_t = dL/d(drive_t) (reverse trace, in place);
// dw_s += Σ G·x̃ per synapse; dx (if not null) = dense dL/dx for the chunk's samples.
template <class T>
void branch_backward(const dims& d, int b0, int nb, const sparse_input<T>& x, const fanout& f, const T* w_s,
                     const T* kappa_branch, T* dbranch, T* dw_s, T* dx);
// v1 diagnostic: per-synapse currents s[b][t][i] (E1).
template <class T>
void synapse_forward(const dims& d, const sparse_input<T>& x, const std::int64_t* synapse_index,
                     const T* synapse_mask, const T* w_s, const T* kappa_s, T* s);

// ---- recurrence (E4-E6): MLP on [b_t, κ_m ⊙ m_{t-1}], Δm, memory update ------------------------------
template <class T>
struct recurrence_buffers {
    T* branch;   // [B][T][d_tree]
    T* hidden;   // [l_mlp][B][T][d_mlp] hidden pre-activations
    T* delta_m;  // [B][T][d_m]
    T* memory;   // [B][T][d_m]
};
template <class T>
void recurrence_forward(const dims& d, int b0, int nb, const parameter_views<const T>& p, activation act,
                        const T* kappa_m, const T* gain, const recurrence_buffers<T>& buf);
// dmemory: [B][T][d_m] dL/dm_t from the readout (consumed). Writes dbranch [B][T][d_tree] = dL/db_t;
// accumulates weight, bias, dκ_m and d(gain) gradients into g (chunk-local).
template <class T>
void recurrence_backward(const dims& d, int b0, int nb, const parameter_views<const T>& p, activation act,
                         const T* kappa_m, const T* gain, const recurrence_buffers<T>& buf, T* dmemory,
                         T* dbranch, const parameter_views<T>& g, T* dkappa_m, T* dgain);

// ---- readout (E7): y_t = W_y m_t + b_y ---------------------------------------------------------------
template <class T>
void readout_forward(const dims& d, int b0, int nb, const T* w_y, const T* b_y, const T* memory, T* y);
// dmemory (=) dy·W_y; dw_y, db_y (+=).
template <class T>
void readout_backward(const dims& d, int b0, int nb, const T* w_y, const T* memory, const T* dy, T* dmemory,
                      T* dw_y, T* db_y);

}  // namespace elm::detail
