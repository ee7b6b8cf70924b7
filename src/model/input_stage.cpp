// Input stage of the ELM (docs/model.md E1-E3; reference/paper.md §1.2, §1.3, §1.5):
//   x̃_t = route(x_t) ⊙ mask,  v1: s_t = κ_s ⊙ s_{t-1} + w_s ⊙ x̃_t, b_t = BranchSum(s_t)
//                             v2: b_t = κ_b ⊙ b_{t-1} + BranchSum(w_s ⊙ x̃_t)
// With τ_s equal within a branch (checked by model::validate_parameters) the two are the same linear
// filter, so both run as one branch-level trace over the routed input events. This needs no
// recurrence on the memory, so it runs for all steps at once, before the recurrence.

#include "model/kernels.hpp"

#include <algorithm>

namespace elm::detail {

fanout build_fanout(const dims& d, const std::int64_t* synapse_index, const unsigned char* synapse_valid) {
    fanout f;
    f.offsets.assign(static_cast<std::size_t>(d.d_in) + 1, 0);
    for (int i = 0; i < d.d_s; ++i)
        if (synapse_valid[i]) ++f.offsets[static_cast<std::size_t>(synapse_index[i]) + 1];
    for (int c = 0; c < d.d_in; ++c) f.offsets[c + 1] += f.offsets[c];
    f.synapse.resize(static_cast<std::size_t>(f.offsets[d.d_in]));
    f.branch.resize(f.synapse.size());
    std::vector<std::int32_t> fill(f.offsets.begin(), f.offsets.end() - 1);
    for (int i = 0; i < d.d_s; ++i) {
        if (!synapse_valid[i]) continue;
        const auto pos = fill[static_cast<std::size_t>(synapse_index[i])]++;
        f.synapse[pos] = i;
        f.branch[pos] = i / d.d_brch;
    }
    return f;
}

template <class T>
void branch_forward(const dims& d, int b0, int nb, const sparse_input<T>& x, const fanout& f, const T* w_s,
                    const T* kappa_branch, T* branch) {
    const std::size_t row = static_cast<std::size_t>(d.d_tree);
    T* out = branch + static_cast<std::size_t>(b0) * d.T * row;
    std::fill(out, out + static_cast<std::size_t>(nb) * d.T * row, T(0));
    // Drive: Σ_k w_s ⊙ x̃ pushed from each input event to the synapses it feeds.
    for (int b = b0; b < b0 + nb; ++b) {
        for (int t = 0; t < d.T; ++t) {
            T* drive = branch + (static_cast<std::size_t>(b) * d.T + t) * row;
            const std::size_t bt = static_cast<std::size_t>(b) * d.T + t;
            for (auto e = x.offsets[bt]; e < x.offsets[bt + 1]; ++e) {
                const int c = x.channels[e];
                const T v = x.values[e];
                for (auto k = f.offsets[c]; k < f.offsets[c + 1]; ++k) drive[f.branch[k]] += w_s[f.synapse[k]] * v;
            }
        }
        // Trace: b_t = κ ⊙ b_{t-1} + drive_t (E1/E2), zero initial state.
        T* s = branch + static_cast<std::size_t>(b) * d.T * row;
        for (int t = 1; t < d.T; ++t) {
            T* cur = s + static_cast<std::size_t>(t) * row;
            const T* prev = cur - row;
            for (int j = 0; j < d.d_tree; ++j) cur[j] += kappa_branch[j] * prev[j];
        }
    }
}

template <class T>
void branch_backward(const dims& d, int b0, int nb, const sparse_input<T>& x, const fanout& f, const T* w_s,
                     const T* kappa_branch, T* dbranch, T* dw_s, T* dx) {
    const std::size_t row = static_cast<std::size_t>(d.d_tree);
    for (int b = b0; b < b0 + nb; ++b) {
        // Reverse trace: G_t = dL/db_t + κ ⊙ G_{t+1} (transpose of the forward filter).
        T* g = dbranch + static_cast<std::size_t>(b) * d.T * row;
        for (int t = d.T - 2; t >= 0; --t) {
            T* cur = g + static_cast<std::size_t>(t) * row;
            const T* next = cur + row;
            for (int j = 0; j < d.d_tree; ++j) cur[j] += kappa_branch[j] * next[j];
        }
        for (int t = 0; t < d.T; ++t) {
            const std::size_t bt = static_cast<std::size_t>(b) * d.T + t;
            const T* gt = dbranch + bt * row;
            // dL/dw_s[i] = Σ_t G_t[branch(i)]·x̃_t[i]: only input events contribute.
            for (auto e = x.offsets[bt]; e < x.offsets[bt + 1]; ++e) {
                const int c = x.channels[e];
                const T v = x.values[e];
                for (auto k = f.offsets[c]; k < f.offsets[c + 1]; ++k) dw_s[f.synapse[k]] += gt[f.branch[k]] * v;
            }
            if (dx) {
                // dL/dx_t[c] = Σ_{synapses i fed by c} G_t[branch(i)]·w_s[i]·mask[i] (masked ones are absent).
                T* dxt = dx + bt * static_cast<std::size_t>(d.d_in);
                for (int c = 0; c < d.d_in; ++c) {
                    T acc = 0;
                    for (auto k = f.offsets[c]; k < f.offsets[c + 1]; ++k) acc += gt[f.branch[k]] * w_s[f.synapse[k]];
                    dxt[c] = acc;
                }
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

#define ELM_INSTANTIATE(T)                                                                                   \
    template void branch_forward<T>(const dims&, int, int, const sparse_input<T>&, const fanout&, const T*,   \
                                    const T*, T*);                                                           \
    template void branch_backward<T>(const dims&, int, int, const sparse_input<T>&, const fanout&, const T*,  \
                                     const T*, T*, T*, T*);                                                  \
    template void synapse_forward<T>(const dims&, const sparse_input<T>&, const std::int64_t*, const T*,      \
                                     const T*, const T*, T*);
ELM_INSTANTIATE(float)
ELM_INSTANTIATE(double)
#undef ELM_INSTANTIATE

}  // namespace elm::detail
