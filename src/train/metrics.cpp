// NeuronIO evaluation metrics, reproducing scikit-learn 1.2 / numpy 1.24 arithmetic step by step (see
// include/elmneuron/metrics.hpp for what "exactly" covers).

// numpy's C code is built for the x86-64 baseline, so a*b + c is rounded twice there. With -march=native GCC
// would fuse such expressions into FMA (C++ keeps -ffp-contract=fast), changing the last bit of np.interp
// and of the squared errors; turn contraction off for this file.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <elmneuron/error.hpp>
#include <elmneuron/metrics.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "util/assert.hpp"

namespace elm {
namespace {

// numpy's pairwise_sum_DOUBLE (umath loops): plain loop below 8 elements, 8 accumulators up to 128,
// otherwise split at a multiple of 8 near the middle.
double pairwise_sum(const double* a, std::size_t n) {
    if (n < 8) {
        double res = 0.;
        for (std::size_t i = 0; i < n; ++i) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (std::size_t j = 0; j < 8; ++j) r[j] = a[j];
        std::size_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (std::size_t j = 0; j < 8; ++j) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) res += a[i];
        return res;
    }
    std::size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// np.add.reduce of a contiguous float64 array: the reduction starts from the identity 0.0 and the
// iterator hands the inner loop chunks of at most the buffer size (8192), each summed pairwise.
double numpy_sum(std::span<const double> a) {
    constexpr std::size_t bufsize = 8192;
    double s = 0.;
    for (std::size_t i = 0; i < a.size(); i += bufsize)
        s += pairwise_sum(a.data() + i, std::min(bufsize, a.size() - i));
    return s;
}

// np.mean / np.average(weights=None): sum, then one division by the count.
double numpy_mean(std::span<const double> a) { return numpy_sum(a) / static_cast<double>(a.size()); }

std::string size_str(std::size_t n) { return std::to_string(n); }

void check_same_length(const char* fn, const char* a_name, std::size_t a, const char* b_name, std::size_t b) {
    if (a != b)
        throw error(fn, b_name, "the same length as " + std::string(a_name) + " (" + size_str(a) + ")",
                    size_str(b));
}

void check_regression_inputs(const char* fn, std::span<const double> y_true, std::span<const double> y_pred) {
    check_same_length(fn, "y_true", y_true.size(), "y_pred", y_pred.size());
    if (y_true.empty()) throw error(fn, "y_true", "at least 1 sample", "0");
    for (std::size_t i = 0; i < y_true.size(); ++i) {
        if (!std::isfinite(y_true[i]))
            throw error(fn, "y_true[" + size_str(i) + "]", "a finite number", std::to_string(y_true[i]));
        if (!std::isfinite(y_pred[i]))
            throw error(fn, "y_pred[" + size_str(i) + "]", "a finite number", std::to_string(y_pred[i]));
    }
}

// np.argmin(np.abs(v - target)): first index of the minimum.
std::size_t argmin_abs_diff(std::span<const double> v, double target) {
    ELM_ASSERT(!v.empty());
    std::size_t best = 0;
    double best_d = std::abs(v[0] - target);
    for (std::size_t i = 1; i < v.size(); ++i) {
        const double d = std::abs(v[i] - target);
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return best;
}

void check_roc(const char* fn, const roc_curve_result& roc) {
    if (roc.fpr.size() < 2 || roc.tpr.size() != roc.fpr.size())
        throw error(fn, "roc", "an ROC curve from elm::roc_curve (>= 2 points, fpr and tpr of equal length)",
                    "fpr: " + size_str(roc.fpr.size()) + " points, tpr: " + size_str(roc.tpr.size()));
}

void check_desired_fp(const char* fn, double f) {
    if (!std::isfinite(f)) throw error(fn, "desired_fp", "a finite false-positive rate", std::to_string(f));
}

// Binary labels (0 or 1) and finite scores of equal length; returns the number of positives.
std::int64_t check_binary_scores(const char* fn, std::span<const double> y_true,
                                 std::span<const double> y_score) {
    check_same_length(fn, "y_true", y_true.size(), "y_score", y_score.size());
    std::int64_t num_pos = 0;
    for (std::size_t i = 0; i < y_true.size(); ++i) {
        if (y_true[i] != 0.0 && y_true[i] != 1.0)
            throw error(fn, "y_true[" + size_str(i) + "]", "a binary label, 0 or 1",
                        std::to_string(y_true[i]));
        if (!std::isfinite(y_score[i]))
            throw error(fn, "y_score[" + size_str(i) + "]", "a finite score", std::to_string(y_score[i]));
        num_pos += y_true[i] == 1.0;
    }
    return num_pos;
}

std::string fp_key(const char* prefix, double f) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s @ %.4f FP", prefix, f);
    return buf;
}

}  // namespace

roc_curve_result roc_curve(std::span<const double> y_true, std::span<const double> y_score) {
    constexpr const char* fn = "roc_curve";
    const std::size_t n = y_true.size();
    const std::int64_t num_pos = check_binary_scores(fn, y_true, y_score);
    const auto num_neg = static_cast<std::int64_t>(n) - num_pos;
    if (num_pos == 0 || num_neg == 0)
        throw error(fn, "y_true", "at least one positive (1) and one negative (0) sample",
                    std::to_string(num_pos) + " positives and " + std::to_string(num_neg) + " negatives",
                    "the ROC curve is undefined; scikit-learn would return NaN rates here");

    // np.argsort(y_score, kind="mergesort")[::-1]: stable ascending, then reversed, so tied scores end up
    // in reverse input order. (Counts do not depend on the order within a tie; the threshold value, e.g. the
    // sign of a zero, does.)
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return y_score[a] < y_score[b]; });
    std::reverse(order.begin(), order.end());

    // _binary_clf_curve: one point at the last index of every run of equal scores. tps is a cumsum of 0/1
    // (exact integers in float64 below 2^53) and fps = 1 + index - tps.
    std::vector<double> fps, tps, thr;
    std::int64_t tp = 0;
    for (std::size_t i = 0; i < n; ++i) {
        tp += y_true[order[i]] == 1.0;
        if (i + 1 == n || y_score[order[i + 1]] != y_score[order[i]]) {
            tps.push_back(static_cast<double>(tp));
            fps.push_back(static_cast<double>(static_cast<std::int64_t>(i) + 1 - tp));
            thr.push_back(y_score[order[i]]);
        }
    }

    // drop_intermediate: keep the ends and every point where either count has a non-zero second difference.
    if (fps.size() > 2) {
        std::size_t k = 1;
        for (std::size_t i = 1; i + 1 < fps.size(); ++i) {
            const double d2f = (fps[i + 1] - fps[i]) - (fps[i] - fps[i - 1]);
            const double d2t = (tps[i + 1] - tps[i]) - (tps[i] - tps[i - 1]);
            if (d2f != 0.0 || d2t != 0.0) {
                fps[k] = fps[i];
                tps[k] = tps[i];
                thr[k] = thr[i];
                ++k;
            }
        }
        fps[k] = fps.back();
        tps[k] = tps.back();
        thr[k] = thr.back();
        ++k;
        fps.resize(k);
        tps.resize(k);
        thr.resize(k);
    }

    roc_curve_result r;
    const std::size_t m = fps.size() + 1;
    r.fpr.resize(m);
    r.tpr.resize(m);
    r.thresholds.resize(m);
    r.fpr[0] = 0.0;
    r.tpr[0] = 0.0;
    r.thresholds[0] = thr[0] + 1;  // scikit-learn < 1.3 (Debian 12: 1.2.1); >= 1.3 has +inf
    const double total_fp = fps.back(), total_tp = tps.back();
    for (std::size_t i = 1; i < m; ++i) {
        r.fpr[i] = fps[i - 1] / total_fp;
        r.tpr[i] = tps[i - 1] / total_tp;
        r.thresholds[i] = thr[i - 1];
    }
    return r;
}

double auc(std::span<const double> x, std::span<const double> y) {
    constexpr const char* fn = "auc";
    check_same_length(fn, "x", x.size(), "y", y.size());
    if (x.size() < 2)
        throw error(fn, "x", "at least 2 points to compute an area under the curve", size_str(x.size()));
    bool any_neg = false, all_nonpos = true;
    for (std::size_t i = 0; i + 1 < x.size(); ++i) {
        const double dx = x[i + 1] - x[i];
        any_neg = any_neg || dx < 0;
        all_nonpos = all_nonpos && dx <= 0;
    }
    double direction = 1;
    if (any_neg) {
        if (!all_nonpos)
            throw error(fn, "x", "monotonic (non-decreasing or non-increasing) values", "neither");
        direction = -1;
    }
    // np.trapz: sum of d * (y[1:] + y[:-1]) / 2.0, evaluated as ((d * s) / 2.0), summed as numpy sums.
    std::vector<double> terms(x.size() - 1);
    for (std::size_t i = 0; i + 1 < x.size(); ++i) terms[i] = (x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2.0;
    return direction * numpy_sum(terms);
}

double roc_auc(std::span<const double> y_true, std::span<const double> y_score) {
    const roc_curve_result r = roc_curve(y_true, y_score);
    return auc(r.fpr, r.tpr);
}

std::vector<double> interp(std::span<const double> x, std::span<const double> xp,
                           std::span<const double> fp) {
    constexpr const char* fn = "interp";
    if (xp.empty()) throw error(fn, "xp", "at least 1 point", "0");
    check_same_length(fn, "xp", xp.size(), "fp", fp.size());
    const std::size_t len = xp.size();
    const double left = fp[0], right = fp[len - 1];
    std::vector<double> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double xv = x[i];
        if (len == 1) {  // numpy's single-point branch (a NaN query gets fp[0] there)
            out[i] = xv < xp[0] ? left : (xv > xp[0] ? right : fp[0]);
            continue;
        }
        if (std::isnan(xv)) {
            out[i] = xv;
            continue;
        }
        // binary_search_with_guess returns, for non-decreasing xp, the last j with xp[j] <= x
        // (-1 below xp[0], len above xp[len-1]); its guess only speeds the search up.
        if (xv > xp[len - 1]) {
            out[i] = right;
            continue;
        }
        if (xv < xp[0]) {
            out[i] = left;
            continue;
        }
        const auto j = static_cast<std::size_t>(std::upper_bound(xp.begin(), xp.end(), xv) - xp.begin()) - 1;
        if (j == len - 1 || xp[j] == xv) {
            out[i] = fp[j];
            continue;
        }
        const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
        double v = slope * (xv - xp[j]) + fp[j];
        if (std::isnan(v)) {
            v = slope * (xv - xp[j + 1]) + fp[j + 1];
            if (std::isnan(v) && fp[j] == fp[j + 1]) v = fp[j];
        }
        out[i] = v;
    }
    return out;
}

double tp_at_fp(const roc_curve_result& roc, double desired_fp) {
    check_roc("tp_at_fp", roc);
    check_desired_fp("tp_at_fp", desired_fp);
    std::size_t ind = argmin_abs_diff(roc.fpr, desired_fp);
    if (ind == 0) ind = 1;
    return roc.tpr[ind];
}

double auc_at_fp(const roc_curve_result& roc, double desired_fp) {
    check_roc("auc_at_fp", roc);
    check_desired_fp("auc_at_fp", desired_fp);
    // np.linspace(0, 1, num=20000): i * (1.0 / 19999), last point set to exactly 1.
    constexpr std::size_t num = 20000;
    const double step = 1.0 / static_cast<double>(num - 1);
    std::vector<double> fpr_lin(num);
    for (std::size_t i = 0; i < num; ++i) fpr_lin[i] = static_cast<double>(i) * step + 0.0;
    fpr_lin[num - 1] = 1.0;
    const std::vector<double> tpr_lin = interp(fpr_lin, roc.fpr, roc.tpr);
    const std::size_t ind = std::min(std::max<std::size_t>(1, argmin_abs_diff(fpr_lin, desired_fp)), num - 1);
    return numpy_mean(std::span<const double>(tpr_lin).first(ind));
}

double mean_squared_error(std::span<const double> y_true, std::span<const double> y_pred) {
    check_regression_inputs("mean_squared_error", y_true, y_pred);
    std::vector<double> sq(y_true.size());
    for (std::size_t i = 0; i < sq.size(); ++i) {
        const double d = y_true[i] - y_pred[i];
        sq[i] = d * d;
    }
    return numpy_mean(sq);
}

double root_mean_squared_error(std::span<const double> y_true, std::span<const double> y_pred) {
    return std::sqrt(mean_squared_error(y_true, y_pred));
}

double mean_absolute_error(std::span<const double> y_true, std::span<const double> y_pred) {
    check_regression_inputs("mean_absolute_error", y_true, y_pred);
    std::vector<double> ad(y_true.size());
    for (std::size_t i = 0; i < ad.size(); ++i) ad[i] = std::abs(y_pred[i] - y_true[i]);
    return numpy_mean(ad);
}

double explained_variance_score(std::span<const double> y_true, std::span<const double> y_pred) {
    check_regression_inputs("explained_variance_score", y_true, y_pred);
    const std::size_t n = y_true.size();
    std::vector<double> tmp(n);
    for (std::size_t i = 0; i < n; ++i) tmp[i] = y_true[i] - y_pred[i];
    const double diff_avg = numpy_mean(tmp);
    for (std::size_t i = 0; i < n; ++i) {
        const double d = (y_true[i] - y_pred[i]) - diff_avg;
        tmp[i] = d * d;
    }
    const double numerator = numpy_mean(tmp);
    const double true_avg = numpy_mean(y_true);
    for (std::size_t i = 0; i < n; ++i) {
        const double d = y_true[i] - true_avg;
        tmp[i] = d * d;
    }
    const double denominator = numpy_mean(tmp);
    // _assemble_r2_explained_variance with force_finite=True.
    if (numerator == 0.0) return 1.0;
    if (denominator == 0.0) return 0.0;
    return 1 - (numerator / denominator);
}

std::string neuronio_tp_key(double desired_fp) { return fp_key("TP", desired_fp); }
std::string neuronio_auc_key(double desired_fp) { return fp_key("AUC", desired_fp); }

std::map<std::string, double> neuronio_metrics::to_map() const {
    std::map<std::string, double> m;
    for (const neuronio_fp_point& p : at_fp) {
        m[neuronio_tp_key(p.desired_fp)] = p.tp;
        m[neuronio_auc_key(p.desired_fp)] = p.auc;
    }
    m["AUC"] = auc;
    m["soma_explained_variance_percent"] = soma_explained_variance_percent;
    m["soma_RMSE"] = soma_rmse;
    m["soma_MAE"] = soma_mae;
    return m;
}

neuronio_metrics compute_neuronio_metrics(std::span<const double> spike_true,
                                          std::span<const double> spike_prob,
                                          std::span<const double> soma_true,
                                          std::span<const double> soma_pred,
                                          std::span<const double> desired_fp) {
    constexpr const char* fn = "compute_neuronio_metrics";
    check_same_length(fn, "spike_true", spike_true.size(), "spike_prob", spike_prob.size());
    check_same_length(fn, "spike_true", spike_true.size(), "soma_true", soma_true.size());
    check_same_length(fn, "spike_true", spike_true.size(), "soma_pred", soma_pred.size());

    neuronio_metrics m;
    const auto spikes = check_binary_scores(fn, spike_true, spike_prob);
    if (spikes == 0 || spikes == static_cast<std::int64_t>(spike_true.size())) {
        // One class only: the ROC is undefined (header: NaN spike metrics).
        constexpr double undefined = std::numeric_limits<double>::quiet_NaN();
        for (const double f : desired_fp) m.at_fp.push_back({f, undefined, undefined});
        m.auc = undefined;
    } else {
        const roc_curve_result roc =
            roc_curve(spike_true, spike_prob);  // the published code recomputes it per metric
        for (const double f : desired_fp) m.at_fp.push_back({f, tp_at_fp(roc, f), auc_at_fp(roc, f)});
        m.auc = auc(roc.fpr, roc.tpr);
    }
    m.soma_explained_variance_percent = 100.0 * explained_variance_score(soma_true, soma_pred);
    m.soma_rmse = root_mean_squared_error(soma_true, soma_pred);
    m.soma_mae = mean_absolute_error(soma_true, soma_pred);
    return m;
}

}  // namespace elm
