// The sequential part of the ELM (docs/model.md E4-E6; reference/paper.md §1.2 v1, §1.3 v2):
//   z_t  = [b_t, κ_m ⊙ m_{t-1}]
//   Δm_t = 1.7159·tanh((2/3)·MLP(z_t))                       "custom_tanh" of the published code
//   m_t  = κ_m ⊙ m_{t-1} + gain ⊙ Δm_t      gain = λ(1-κ_m) (v1)  or  1-κ_λ, κ_λ = exp(-Δt·λ/τ_m) (v2)
// The first Linear layer is split as W_0 = [W_b | W_m]: W_b·b_t + c_0 does not depend on the recurrence and
// is computed for all steps of the chunk as one product; per step only W_m·(κ_m ⊙ m_{t-1}) is added.
// Per step the chunk's samples are one small matrix product (rows = samples). Buffers [B][T][n]; the rows
// of step t are strided by T·n, which Eigen maps express without copies.

#include "model/kernels.hpp"

#include <cmath>

namespace elm::detail {
namespace {

constexpr double tanh_scale = 1.7159;        // LeCun's scaled tanh, published custom_tanh
constexpr double tanh_slope = 2.0 / 3.0;

template <class T>
T sigmoid(T a) {
    return T(1) / (T(1) + std::exp(-a));
}

// out = act(pre), row by row (pre may be a strided view into a [B][T][n] buffer).
template <class In, class Out>
void apply_activation(activation act, const In& pre, Out& out) {
    using T = typename Out::Scalar;
    for (Eigen::Index r = 0; r < pre.rows(); ++r)
        for (Eigen::Index k = 0; k < pre.cols(); ++k) {
            const T a = pre(r, k);
            out(r, k) = act == activation::relu ? (a > T(0) ? a : T(0)) : a * sigmoid(a);
        }
}

// d act(a)/da; ReLU's derivative at 0 is 0, as torch's threshold_backward.
template <class T>
T activation_derivative(activation act, T a) {
    if (act == activation::relu) return a > T(0) ? T(1) : T(0);
    const T s = sigmoid(a);
    return s * (T(1) + a * (T(1) - s));
}

// Rows of step t of a [B][T][n] buffer for samples b0..b0+nb-1.
template <class T>
matrix_map<T> step_rows(T* buf, const dims& d, int b0, int nb, int t, int n) {
    return matrix_map<T>(buf + (static_cast<std::size_t>(b0) * d.T + t) * n, nb, n,
                         Eigen::OuterStride<>(static_cast<Eigen::Index>(d.T) * n));
}

template <class T>
const_matrix_map<T> weight_map(const T* w, int out, int in, int stride) {
    return const_matrix_map<T>(w, out, in, Eigen::OuterStride<>(stride));
}

template <class T>
matrix_map<T> weight_map(T* w, int out, int in, int stride) {
    return matrix_map<T>(w, out, in, Eigen::OuterStride<>(stride));
}

}  // namespace

template <class T>
void recurrence_forward(const dims& d, int b0, int nb, const parameter_views<const T>& p, activation act,
                        const T* kappa_m, const T* gain, const recurrence_buffers<T>& buf) {
    const int n0 = d.n0(), dz = d.d_z(), L = d.l_mlp;
    const std::size_t rows_all = static_cast<std::size_t>(nb) * d.T;
    const std::size_t layer_stride = static_cast<std::size_t>(d.B) * d.T * d.d_mlp;
    T* first = L > 0 ? buf.hidden : buf.delta_m;  // output of the first Linear layer

    // Hoisted: first-layer pre-activation from the branch activations, all steps at once (E4, W_b part).
    {
        const_matrix_map<T> branch(buf.branch + static_cast<std::size_t>(b0) * d.T * d.d_tree,
                                   static_cast<Eigen::Index>(rows_all), d.d_tree, Eigen::OuterStride<>(d.d_tree));
        matrix_map<T> out(first + static_cast<std::size_t>(b0) * d.T * n0, static_cast<Eigen::Index>(rows_all), n0,
                          Eigen::OuterStride<>(n0));
        out.noalias() = branch * weight_map(p.weight[0], n0, d.d_tree, dz).transpose();
        out.rowwise() += Eigen::Map<const row_vector<T>>(p.bias[0], n0);
    }

    const auto w_m = weight_map(p.weight[0] + d.d_tree, n0, d.d_m, dz);
    const Eigen::Map<const row_vector<T>> kappa(kappa_m, d.d_m), g(gain, d.d_m);
    row_matrix<T> z_m = row_matrix<T>::Zero(nb, d.d_m);  // κ_m ⊙ m_{t-1}, zero state at t = 0
    row_matrix<T> h(nb, d.d_mlp), h_next(nb, d.d_mlp);

    for (int t = 0; t < d.T; ++t) {
        auto pre0 = step_rows(first, d, b0, nb, t, n0);
        if (t > 0) pre0.noalias() += z_m * w_m.transpose();
        if (L > 0) {
            apply_activation(act, pre0, h);
            for (int l = 1; l < L; ++l) {
                auto pre = step_rows(buf.hidden + l * layer_stride, d, b0, nb, t, d.d_mlp);
                pre.noalias() = h * weight_map(p.weight[l], d.d_mlp, d.d_mlp, d.d_mlp).transpose();
                pre.rowwise() += Eigen::Map<const row_vector<T>>(p.bias[l], d.d_mlp);
                apply_activation(act, pre, h);
            }
            auto out = step_rows(buf.delta_m, d, b0, nb, t, d.d_m);
            out.noalias() = h * weight_map(p.weight[L], d.d_m, d.d_mlp, d.d_mlp).transpose();
            out.rowwise() += Eigen::Map<const row_vector<T>>(p.bias[L], d.d_m);
        }
        auto delta = step_rows(buf.delta_m, d, b0, nb, t, d.d_m);
        auto mem = step_rows(buf.memory, d, b0, nb, t, d.d_m);
        for (int r = 0; r < nb; ++r) {
            for (int k = 0; k < d.d_m; ++k) {
                const T dm = T(tanh_scale) * std::tanh(delta(r, k) * T(tanh_slope));
                delta(r, k) = dm;
                // z_m holds κ_m ⊙ m_{t-1}; m_t = κ_m ⊙ m_{t-1} + gain ⊙ Δm_t, then z_m <- κ_m ⊙ m_t.
                const T m = z_m(r, k) + g[k] * dm;
                mem(r, k) = m;
                z_m(r, k) = kappa[k] * m;
            }
        }
    }
}

template <class T>
void recurrence_backward(const dims& d, int b0, int nb, const parameter_views<const T>& p, activation act,
                         const T* kappa_m, const T* gain, const recurrence_buffers<T>& buf, T* dmemory,
                         T* dbranch, const parameter_views<T>& grad, T* dkappa_m, T* dgain) {
    const int n0 = d.n0(), dz = d.d_z(), L = d.l_mlp;
    const std::size_t rows_all = static_cast<std::size_t>(nb) * d.T;
    const std::size_t layer_stride = static_cast<std::size_t>(d.B) * d.T * d.d_mlp;
    T* first = L > 0 ? buf.hidden : buf.delta_m;

    const auto w_m = weight_map(p.weight[0] + d.d_tree, n0, d.d_m, dz);
    auto dw_m = weight_map(grad.weight[0] + d.d_tree, n0, d.d_m, dz);
    const Eigen::Map<const row_vector<T>> kappa(kappa_m, d.d_m), g(gain, d.d_m);
    Eigen::Map<row_vector<T>> dkappa(dkappa_m, d.d_m), dg(dgain, d.d_m);

    row_matrix<T> carry = row_matrix<T>::Zero(nb, d.d_m);  // dL/dm_t flowing back from step t+1
    row_matrix<T> z_m(nb, d.d_m), m_prev(nb, d.d_m), dz_m(nb, d.d_m), dout(nb, d.d_m);
    row_matrix<T> h(nb, d.d_mlp), dh(nb, d.d_mlp), dpre(nb, d.d_mlp);

    for (int t = d.T - 1; t >= 0; --t) {
        if (t > 0) m_prev = step_rows(buf.memory, d, b0, nb, t - 1, d.d_m);
        else m_prev.setZero();
        z_m = m_prev.array().rowwise() * kappa.array();
        carry += step_rows(dmemory, d, b0, nb, t, d.d_m);  // total dL/dm_t
        const auto delta = step_rows(buf.delta_m, d, b0, nb, t, d.d_m);
        // m_t = κ_m ⊙ m_{t-1} + gain ⊙ Δm_t
        dg.array() += (delta.array() * carry.array()).colwise().sum();
        dkappa.array() += (m_prev.array() * carry.array()).colwise().sum();
        // Δm = 1.7159·tanh(2/3·o)  =>  dΔm/do = (2/3)·(1.7159 - Δm²/1.7159)
        for (int r = 0; r < nb; ++r)
            for (int k = 0; k < d.d_m; ++k) {
                const T dm = delta(r, k);
                dout(r, k) = carry(r, k) * g[k] * T(tanh_slope) * (T(tanh_scale) - dm * dm / T(tanh_scale));
            }
        // Back through the MLP, recomputing each layer's input from the stored pre-activations.
        auto first_rows = step_rows(first, d, b0, nb, t, n0);
        if (L > 0) {
            const auto pre_last = step_rows(buf.hidden + (L - 1) * layer_stride, d, b0, nb, t, d.d_mlp);
            apply_activation(act, pre_last, h);
            weight_map(grad.weight[L], d.d_m, d.d_mlp, d.d_mlp).noalias() += dout.transpose() * h;
            Eigen::Map<row_vector<T>>(grad.bias[L], d.d_m) += dout.colwise().sum();
            dh.noalias() = dout * weight_map(p.weight[L], d.d_m, d.d_mlp, d.d_mlp);
            for (int l = L - 1; l >= 1; --l) {
                const auto pre = step_rows(buf.hidden + l * layer_stride, d, b0, nb, t, d.d_mlp);
                for (int r = 0; r < nb; ++r)
                    for (int k = 0; k < d.d_mlp; ++k) dpre(r, k) = dh(r, k) * activation_derivative(act, pre(r, k));
                const auto pre_in = step_rows(buf.hidden + (l - 1) * layer_stride, d, b0, nb, t, d.d_mlp);
                apply_activation(act, pre_in, h);
                weight_map(grad.weight[l], d.d_mlp, d.d_mlp, d.d_mlp).noalias() += dpre.transpose() * h;
                Eigen::Map<row_vector<T>>(grad.bias[l], d.d_mlp) += dpre.colwise().sum();
                dh.noalias() = dpre * weight_map(p.weight[l], d.d_mlp, d.d_mlp, d.d_mlp);
            }
            // The first layer's gradient overwrites its (no longer needed) pre-activation in place.
            for (int r = 0; r < nb; ++r)
                for (int k = 0; k < n0; ++k) first_rows(r, k) = dh(r, k) * activation_derivative(act, first_rows(r, k));
        } else {
            first_rows = dout;
        }
        // First layer, memory half: z_m = κ_m ⊙ m_{t-1}.
        dw_m.noalias() += first_rows.transpose() * z_m;
        dz_m.noalias() = first_rows * w_m;
        dkappa.array() += (m_prev.array() * dz_m.array()).colwise().sum();
        // dL/dm_{t-1} from step t: κ_m ⊙ (dL/dm_t + dL/dz_m)
        carry = (carry + dz_m).array().rowwise() * kappa.array();
    }

    // Hoisted first-layer branch half over all steps: dW_b += dpre0ᵀ·b, dc_0 += Σ dpre0, db = dpre0·W_b.
    const const_matrix_map<T> dfirst(first + static_cast<std::size_t>(b0) * d.T * n0,
                                     static_cast<Eigen::Index>(rows_all), n0, Eigen::OuterStride<>(n0));
    const const_matrix_map<T> branch(buf.branch + static_cast<std::size_t>(b0) * d.T * d.d_tree,
                                     static_cast<Eigen::Index>(rows_all), d.d_tree, Eigen::OuterStride<>(d.d_tree));
    weight_map(grad.weight[0], n0, d.d_tree, dz).noalias() += dfirst.transpose() * branch;
    Eigen::Map<row_vector<T>>(grad.bias[0], n0) += dfirst.colwise().sum();
    matrix_map<T> db(dbranch + static_cast<std::size_t>(b0) * d.T * d.d_tree, static_cast<Eigen::Index>(rows_all),
                     d.d_tree, Eigen::OuterStride<>(d.d_tree));
    db.noalias() = dfirst * weight_map(p.weight[0], n0, d.d_tree, dz);
}

template void recurrence_forward<float>(const dims&, int, int, const parameter_views<const float>&, activation,
                                        const float*, const float*, const recurrence_buffers<float>&);
template void recurrence_forward<double>(const dims&, int, int, const parameter_views<const double>&, activation,
                                         const double*, const double*, const recurrence_buffers<double>&);
template void recurrence_backward<float>(const dims&, int, int, const parameter_views<const float>&, activation,
                                         const float*, const float*, const recurrence_buffers<float>&, float*,
                                         float*, const parameter_views<float>&, float*, float*);
template void recurrence_backward<double>(const dims&, int, int, const parameter_views<const double>&,
                                          activation, const double*, const double*,
                                          const recurrence_buffers<double>&, double*, double*,
                                          const parameter_views<double>&, double*, double*);

}  // namespace elm::detail
