// Readout (docs/model.md E7; reference/paper.md §1.2): y_t = W_y m_t + b_y, a linear map of the NEW memory
// m_t (the code and the official sketch; the main text's "m_{t-1}" is not what the published model does).
// One [nb·T, d_m] x [d_m, d_o] product per chunk.

#include "model/kernels.hpp"

namespace elm::detail {

template <class T>
void readout_forward(const dims& d, int b0, int nb, const T* w_y, const T* b_y, const T* memory, T* y) {
    const auto rows = static_cast<Eigen::Index>(nb) * d.T;
    const const_matrix_map<T> m(memory + static_cast<std::size_t>(b0) * d.T * d.d_m, rows, d.d_m,
                                Eigen::OuterStride<>(d.d_m));
    const const_matrix_map<T> w(w_y, d.d_o, d.d_m, Eigen::OuterStride<>(d.d_m));
    matrix_map<T> out(y + static_cast<std::size_t>(b0) * d.T * d.d_o, rows, d.d_o, Eigen::OuterStride<>(d.d_o));
    out.noalias() = m * w.transpose();
    out.rowwise() += Eigen::Map<const row_vector<T>>(b_y, d.d_o);
}

template <class T>
void readout_backward(const dims& d, int b0, int nb, const T* w_y, const T* memory, const T* dy, T* dmemory,
                      T* dw_y, T* db_y) {
    const auto rows = static_cast<Eigen::Index>(nb) * d.T;
    const std::size_t first_row = static_cast<std::size_t>(b0) * d.T;
    const const_matrix_map<T> m(memory + first_row * d.d_m, rows, d.d_m, Eigen::OuterStride<>(d.d_m));
    const const_matrix_map<T> g(dy + first_row * d.d_o, rows, d.d_o, Eigen::OuterStride<>(d.d_o));
    const const_matrix_map<T> w(w_y, d.d_o, d.d_m, Eigen::OuterStride<>(d.d_m));
    matrix_map<T>(dw_y, d.d_o, d.d_m, Eigen::OuterStride<>(d.d_m)).noalias() += g.transpose() * m;
    Eigen::Map<row_vector<T>>(db_y, d.d_o) += g.colwise().sum();
    matrix_map<T>(dmemory + first_row * d.d_m, rows, d.d_m, Eigen::OuterStride<>(d.d_m)).noalias() = g * w;
}

template void readout_forward<float>(const dims&, int, int, const float*, const float*, const float*, float*);
template void readout_forward<double>(const dims&, int, int, const double*, const double*, const double*, double*);
template void readout_backward<float>(const dims&, int, int, const float*, const float*, const float*, float*,
                                      float*, float*);
template void readout_backward<double>(const dims&, int, int, const double*, const double*, const double*,
                                       double*, double*, double*);

}  // namespace elm::detail
