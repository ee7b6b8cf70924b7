#pragma once
// Evaluation metrics of the NeuronIO protocol (paper §5; published code src/neuronio/neuronio_eval_utils.py),
// computed exactly as scikit-learn and numpy compute them, so that numbers are comparable with the published
// eval_results.json files. Everything is in double.
//
// Bit-for-bit agreement with numpy (checked by tests/unit/test_metrics.cpp against the installed
// scikit-learn):
//   - sums and means use numpy's reduction order: pairwise summation (blocks of 8, leaves <= 128) applied to
//     successive chunks of 8192 elements (numpy's default buffer size, np.getbufsize()), which is what
//     np.mean, np.average and np.trapz do on contiguous float64 arrays (numpy 1.24);
//   - no floating-point contraction into FMA (numpy's baseline build has none), whatever -march is used;
//   - np.interp's branch structure and np.linspace's i*step formula are reproduced.
//
// Deliberate difference from scikit-learn: roc_curve throws elm::error when y_true has no positive or no
// negative sample. scikit-learn instead warns (UndefinedMetricWarning) and returns an all-NaN tpr (or fpr).
// compute_neuronio_metrics gives NaN spike metrics there (see it).

#include <array>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace elm {

struct roc_curve_result {
    std::vector<double> fpr;         // non-decreasing, fpr[0] = 0, fpr.back() = 1
    std::vector<double> tpr;         // non-decreasing, tpr[0] = 0, tpr.back() = 1
    std::vector<double> thresholds;  // decreasing; thresholds[0] = thresholds[1] + 1 (see roc_curve)
};

// sklearn.metrics.roc_curve(y_true, y_score) with defaults (pos_label = 1, no sample weights,
// drop_intermediate = True):
//   - scores sorted descending as np.argsort(y_score, kind="mergesort")[::-1];
//   - one point per distinct score value (ties form one point);
//   - a point is dropped when it is collinear in count space with both neighbours
//     (np.diff(fps, 2) == 0 and np.diff(tps, 2) == 0), only when there are more than 2 points;
//   - the point (0, 0) is prepended with threshold max(y_score) + 1. This is scikit-learn < 1.3 behaviour,
//     which Debian 12's python3-sklearn 1.2.1 has; scikit-learn >= 1.3 uses +inf there instead. fpr and tpr
//     are identical either way, and no NeuronIO metric reads thresholds.
// y_true: each value exactly 0 or 1, with at least one of each. y_score: finite. Same length.
// Throws elm::error otherwise.
roc_curve_result roc_curve(std::span<const double> y_true, std::span<const double> y_score);

// sklearn.metrics.auc: trapezoid rule (np.trapz) over points (x[i], y[i]); x must be monotonic
// (non-decreasing, or non-increasing: the sign is flipped). Throws elm::error for fewer than 2 points,
// different lengths or non-monotonic x.
double auc(std::span<const double> x, std::span<const double> y);

// auc(roc_curve(y_true, y_score)): the published "AUC".
double roc_auc(std::span<const double> y_true, std::span<const double> y_score);

// calc_TP_at_desired_FP: tpr[argmin |fpr - f|] (first minimum), the index forced to >= 1 so that the
// prepended (0, 0) point is never the answer.
double tp_at_fp(const roc_curve_result& roc, double desired_fp);

// calc_AUC_at_desired_FP: TPR = np.interp(FPR, fpr, tpr) on FPR = np.linspace(0, 1, 20000); with
// k = min(max(1, argmin |FPR - f|), 19999), the mean of TPR[0 .. k) (a normalised partial AUC over
// FPR in [0, ~f)).
double auc_at_fp(const roc_curve_result& roc, double desired_fp);

// numpy.interp(x, xp, fp) with default left = fp[0], right = fp.back(); xp non-decreasing (not checked,
// as numpy). Throws elm::error if xp is empty or xp and fp differ in length.
std::vector<double> interp(std::span<const double> x, std::span<const double> xp, std::span<const double> fp);

// Regression metrics of scikit-learn (uniform weights, one output). Inputs must be finite, non-empty and of
// equal length (elm::error otherwise), as sklearn's input checks require.
double mean_squared_error(std::span<const double> y_true, std::span<const double> y_pred);
double root_mean_squared_error(std::span<const double> y_true, std::span<const double> y_pred);  // sqrt(MSE)
double mean_absolute_error(std::span<const double> y_true, std::span<const double> y_pred);
// 1 - Var(y_true - y_pred) / Var(y_true), with sklearn's force_finite conventions: a zero numerator gives
// 1.0 (even when Var(y_true) = 0), a non-zero numerator with Var(y_true) = 0 gives 0.0.
double explained_variance_score(std::span<const double> y_true, std::span<const double> y_pred);

// The false-positive rates the published evaluation reports (desired_FP_list).
inline constexpr std::array<double, 2> neuronio_desired_fp{0.0025, 0.0100};

struct neuronio_fp_point {
    double desired_fp = 0;  // f
    double tp = 0;          // "TP @ f FP"  (tp_at_fp)
    double auc = 0;         // "AUC @ f FP" (auc_at_fp)
};

struct neuronio_metrics {
    double auc = 0;                              // "AUC"
    std::vector<neuronio_fp_point> at_fp;        // one per desired FP rate, in the order given
    double soma_mae = 0;                         // "soma_MAE", mV
    double soma_rmse = 0;                        // "soma_RMSE", mV
    double soma_explained_variance_percent = 0;  // "soma_explained_variance_percent"

    // The published results dict: keys "AUC", "TP @ %.4f FP", "AUC @ %.4f FP", "soma_MAE", "soma_RMSE",
    // "soma_explained_variance_percent" (as in models/official/*/eval_results.json). Converts directly to a
    // JSON object with nlohmann::json.
    std::map<std::string, double> to_map() const;
};

// extract_core_results on flattened (simulations x time) arrays, after the protocol's filtering and soma
// re-scaling, which are the caller's job. spike_true is 0/1, spike_prob the predicted spike probability,
// soma_true / soma_pred in mV. All four have the same length (elm::error otherwise). Without both classes
// in spike_true the ROC is undefined and the spike metrics are NaN: with no spike at all (e.g. a
// subthreshold test set) exactly what the published code's scikit-learn calls give (with a warning); with a
// spike in every millisecond NaN as well. The soma metrics stand.
neuronio_metrics compute_neuronio_metrics(std::span<const double> spike_true,
                                          std::span<const double> spike_prob,
                                          std::span<const double> soma_true,
                                          std::span<const double> soma_pred,
                                          std::span<const double> desired_fp = neuronio_desired_fp);

// The published key for a desired FP rate: "TP @ 0.0025 FP" etc. (Python "%.4f").
std::string neuronio_tp_key(double desired_fp);
std::string neuronio_auc_key(double desired_fp);

}  // namespace elm
