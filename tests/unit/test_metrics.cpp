// elm metrics (src/train/metrics.cpp) against scikit-learn and numpy themselves: the test generates inputs,
// runs /usr/bin/python3 (or $ELM_PYTHON) once per process on a small script that computes the reference
// values with sklearn.metrics / numpy, and compares to 1e-12 (relative for values above 1). It FAILS, never
// skips, if python3, numpy or scikit-learn is missing: scripts/install-deps.sh installs python3-sklearn
// python3-numpy. Hand-checked cases and the input checks (elm::error) need no Python.

#include <elmneuron/error.hpp>
#include <elmneuron/metrics.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

using json = nlohmann::json;
using vec = std::vector<double>;

// The reference computations. The NeuronIO helpers follow paper §5 (neuronio_eval_utils.py).
constexpr const char* reference_script = R"PY(
import json, sys, warnings
import numpy as np
import sklearn
from sklearn.metrics import (auc, explained_variance_score, mean_absolute_error, mean_squared_error,
                             roc_curve)

def enc(v):
    v = float(v)
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v

def enc_list(a):
    return [enc(v) for v in np.asarray(a, dtype=np.float64).ravel()]

def arr(v):
    return np.asarray(v, dtype=np.float64)

def tp_at_fp(fpr, tpr, f):
    i = np.argmin(np.abs(fpr - f))
    if i == 0:
        i = 1
    return tpr[i]

def auc_at_fp(fpr, tpr, f):
    grid = np.linspace(0, 1, num=20000)
    t = np.interp(grid, fpr, tpr)
    i = min(max(1, np.argmin(np.abs(grid - f))), t.shape[0] - 1)
    return t[:i].mean()

def run(case):
    kind = case["kind"]
    if kind == "roc":
        yt, ys = arr(case["y_true"]), arr(case["y_score"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fpr, tpr, thr = roc_curve(yt, ys)
        out = {"fpr": enc_list(fpr), "tpr": enc_list(tpr), "thresholds": enc_list(thr)}
        if np.all(np.isfinite(fpr)) and np.all(np.isfinite(tpr)):
            out["auc"] = enc(auc(fpr, tpr))
            out["tp_at_fp"] = [enc(tp_at_fp(fpr, tpr, f)) for f in case["fp"]]
            out["auc_at_fp"] = [enc(auc_at_fp(fpr, tpr, f)) for f in case["fp"]]
        return out
    if kind == "auc":
        try:
            return {"auc": enc(auc(arr(case["x"]), arr(case["y"])))}
        except ValueError as e:
            return {"error": str(e)}
    if kind == "interp":
        return {"y": enc_list(np.interp(arr(case["x"]), arr(case["xp"]), arr(case["fp"])))}
    if kind == "regression":
        yt, yp = arr(case["y_true"]), arr(case["y_pred"])
        return {"mse": enc(mean_squared_error(yt, yp)), "rmse": enc(np.sqrt(mean_squared_error(yt, yp))),
                "mae": enc(mean_absolute_error(yt, yp)), "ev": enc(explained_variance_score(yt, yp))}
    if kind == "neuronio":
        st, sp = arr(case["spike_true"]), arr(case["spike_prob"])
        vt, vp = arr(case["soma_true"]), arr(case["soma_pred"])
        out = []
        for fp_list in case["fp_lists"]:
            d = {}
            with warnings.catch_warnings():  # no positive sample: UndefinedMetricWarning and NaN rates
                warnings.simplefilter("ignore")
                for f in fp_list:
                    fpr, tpr, _ = roc_curve(st.ravel(), sp.ravel())
                    d["TP @ %.4f FP" % f] = enc(tp_at_fp(fpr, tpr, f))
                    d["AUC @ %.4f FP" % f] = enc(auc_at_fp(fpr, tpr, f))
                fpr, tpr, _ = roc_curve(st.ravel(), sp.ravel())
                d["AUC"] = enc(auc(fpr, tpr))
            d["soma_explained_variance_percent"] = enc(100.0 * explained_variance_score(vt.ravel(), vp.ravel()))
            d["soma_RMSE"] = enc(np.sqrt(mean_squared_error(vt.ravel(), vp.ravel())))
            d["soma_MAE"] = enc(mean_absolute_error(vt.ravel(), vp.ravel()))
            out.append(d)
        return {"dicts": out}
    raise RuntimeError("unknown case kind " + kind)

with open(sys.argv[1]) as f:
    cases = json.load(f)
result = {"sklearn": sklearn.__version__, "numpy": np.__version__,
          "results": {name: run(case) for name, case in cases.items()}}
with open(sys.argv[2], "w") as f:
    json.dump(result, f, allow_nan=False)
)PY";

// ---- deterministic inputs (generation need not match anything: the inputs travel to Python as JSON) ----

struct rng {
    std::mt19937_64 g;
    explicit rng(std::uint64_t seed) : g(seed) {}
    double uniform() { return static_cast<double>(g() >> 11) * 0x1.0p-53; }
    double normal() {
        const double u1 = 1.0 - uniform(), u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
    bool bernoulli(double p) { return uniform() < p; }
};

const vec fp_list{0.0, 0.00005, 0.0025, 0.01, 0.1, 0.5, 1.0, 1.5};

struct roc_case {
    vec y_true, y_score;
};

// Spike probabilities like a trained model's: sigmoid of a logit, rare positives, stored as float32 and
// rounded to 1e-5 so that many probabilities tie.
void neuronio_like(rng& r, std::size_t n, double p_pos, vec& spike, vec& prob) {
    spike.resize(n);
    prob.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        spike[i] = r.bernoulli(p_pos) ? 1.0 : 0.0;
        const double logit = -7.0 + 2.0 * r.normal() + (spike[i] == 1.0 ? 6.0 : 0.0);
        double p = 1.0 / (1.0 + std::exp(-logit));
        if (i % 3 == 0) p = std::round(p * 1e5) / 1e5;
        prob[i] = static_cast<double>(static_cast<float>(p));
    }
}

std::map<std::string, roc_case> make_roc_cases() {
    std::map<std::string, roc_case> c;
    rng r(20240611);
    {
        roc_case& k = c["random_continuous"];
        for (int i = 0; i < 2000; ++i) {
            k.y_true.push_back(r.bernoulli(0.1) ? 1.0 : 0.0);
            k.y_score.push_back(r.uniform() + 0.3 * k.y_true.back());
        }
    }
    {
        roc_case& k = c["ties_few_values"];
        for (int i = 0; i < 5000; ++i) {
            k.y_true.push_back(r.bernoulli(0.3) ? 1.0 : 0.0);
            k.y_score.push_back(std::floor(std::min(0.999, r.uniform() + 0.2 * k.y_true.back()) * 5.0) / 4.0);
        }
    }
    {
        roc_case& k = c["all_equal_scores"];
        for (int i = 0; i < 50; ++i) {
            k.y_true.push_back(i % 7 == 0 ? 1.0 : 0.0);
            k.y_score.push_back(0.5);
        }
    }
    {
        roc_case& k = c["two_distinct_scores"];
        for (int i = 0; i < 30; ++i) {
            k.y_true.push_back(r.bernoulli(0.4) ? 1.0 : 0.0);
            k.y_score.push_back(r.bernoulli(0.5) ? 0.25 : 0.75);
        }
        k.y_true[0] = 0.0;
        k.y_true[1] = 1.0;
    }
    c["tiny_2"] = {{0, 1}, {0.3, 0.7}};
    c["tiny_2_inverted"] = {{0, 1}, {0.7, 0.3}};
    c["tiny_2_tied"] = {{1, 0}, {0.4, 0.4}};
    c["tiny_3_tie"] = {{1, 0, 1}, {0.5, 0.5, 0.2}};
    c["sklearn_doc_example"] = {{0, 0, 1, 1}, {0.1, 0.4, 0.35, 0.8}};
    c["signed_zeros"] = {{1, 0, 0, 1, 0, 1, 0, 0, 1, 0},
                         {-0.0, 0.0, -0.0, 1.0, -1.0, 0.0, 1.0, -0.0, -1.0, 0.0}};
    {
        // Every tie group holds one positive and one negative: all points collinear, all but the ends
        // dropped.
        roc_case& k = c["collinear_pairs"];
        for (int i = 0; i < 40; ++i) {
            k.y_true.push_back(1.0);
            k.y_score.push_back(i * 0.125);
            k.y_true.push_back(0.0);
            k.y_score.push_back(i * 0.125);
        }
    }
    {
        // Runs of positives then negatives, with collinear stretches inside each run.
        roc_case& k = c["staircase"];
        for (int i = 0; i < 300; ++i) {
            k.y_true.push_back((i / 7) % 2 == 0 ? 1.0 : 0.0);
            k.y_score.push_back(-static_cast<double>(i));
        }
    }
    {
        roc_case& k = c["single_positive"];
        for (int i = 0; i < 20000; ++i) {
            k.y_true.push_back(i == 12345 ? 1.0 : 0.0);
            k.y_score.push_back(std::floor(r.uniform() * 50.0));
        }
    }
    {
        roc_case& k = c["single_negative"];
        for (int i = 0; i < 300; ++i) {
            k.y_true.push_back(i == 7 ? 0.0 : 1.0);
            k.y_score.push_back(r.normal());
        }
    }
    {
        roc_case& k = c["neuronio_like"];
        neuronio_like(r, 60000, 0.004, k.y_true, k.y_score);
    }
    {
        roc_case& k = c["large_scores"];  // thresholds[0] = max + 1 rounds back to max
        for (int i = 0; i < 100; ++i) {
            k.y_true.push_back(i % 2 == 0 ? 1.0 : 0.0);
            k.y_score.push_back(1e17 * (1.0 + r.uniform()));
        }
    }
    return c;
}

struct regression_case {
    vec y_true, y_pred;
};

std::map<std::string, regression_case> make_regression_cases() {
    std::map<std::string, regression_case> c;
    rng r(77);
    auto noisy = [&](std::size_t n, double offset, double scale, double noise) {
        regression_case k;
        for (std::size_t i = 0; i < n; ++i) {
            k.y_true.push_back(offset + scale * r.normal());
            k.y_pred.push_back(k.y_true.back() + noise * r.normal() + 0.1 * noise);
        }
        return k;
    };
    c["random_1000"] = noisy(1000, 0.0, 1.0, 0.3);
    c["soma_like_100003"] = noisy(100003, -67.7, 3.0, 0.7);  // crosses numpy's 8192-element reduction chunks
    c["chunk_edge_8193"] = noisy(8193, 5.0, 2.0, 1.0);
    c["large_offset"] = noisy(5000, 1e6, 1e-3, 1e-4);
    c["single"] = {{1.5}, {0.5}};
    c["single_exact"] = {{1.5}, {1.5}};
    c["constant_true_wrong_pred"] = {vec(20, 3.0), vec(20, 3.0)};
    c["constant_true_wrong_pred"].y_pred[4] = 2.0;
    c["constant_true_exact_pred"] = {vec(20, 3.0), vec(20, 3.0)};
    {
        regression_case k = noisy(500, 0.0, 1.0, 0.0);
        for (double& v : k.y_pred) v += 0.5;  // constant shift: numerator ~ 0
        c["shifted"] = k;
    }
    {
        regression_case k = noisy(300, 0.0, 1.0, 0.0);
        k.y_pred = k.y_true;
        c["perfect"] = k;
    }
    return c;
}

struct auc_case {
    vec x, y;
};

std::map<std::string, auc_case> make_auc_cases() {
    std::map<std::string, auc_case> c;
    rng r(5);
    {
        auc_case& k = c["increasing_10000"];
        double x = 0;
        for (int i = 0; i < 10000; ++i) {
            x += r.uniform() * (i % 5 == 0 ? 0.0 : 1.0);  // plateaus
            k.x.push_back(x);
            k.y.push_back(r.normal());
        }
    }
    {
        auc_case& k = c["decreasing"];
        double x = 10;
        for (int i = 0; i < 500; ++i) {
            x -= r.uniform() * (i % 3 == 0 ? 0.0 : 1.0);
            k.x.push_back(x);
            k.y.push_back(r.uniform());
        }
    }
    c["two_points"] = {{0.0, 1.0}, {0.25, 0.75}};
    c["constant_x"] = {{2.0, 2.0, 2.0}, {1.0, 5.0, 3.0}};
    c["not_monotonic"] = {{0.0, 1.0, 0.5}, {1.0, 1.0, 1.0}};
    return c;
}

struct interp_case {
    vec x, xp, fp;
};

std::map<std::string, interp_case> make_interp_cases() {
    std::map<std::string, interp_case> c;
    // Duplicated xp (vertical ROC segments), queries on, between, below and above the points.
    c["duplicates"] = {{-1.0, 0.0, 0.1, 0.2, 0.25, 0.5, 0.7, 0.9, 1.0, 2.0},
                       {0.0, 0.0, 0.2, 0.2, 0.2, 0.5, 1.0, 1.0},
                       {0.0, 0.3, 0.4, 0.6, 0.65, 0.9, 0.95, 1.0}};
    // NaN queries travel as JSON null, which numpy reads back as NaN.
    const double nan = std::numeric_limits<double>::quiet_NaN();
    c["short_xp"] = {{-0.5, 0.0, 0.3, 1.0, 1.5, nan}, {0.0, 1.0}, {2.0, 4.0}};
    c["single_xp"] = {{-0.5, 0.0, 0.5, nan}, {0.0}, {7.0}};  // numpy gives fp[0] for NaN here
    rng r(9);
    interp_case k;
    double x = 0;
    for (int i = 0; i < 3000; ++i) {
        x += i % 4 == 0 ? 0.0 : r.uniform();
        k.xp.push_back(x);
        k.fp.push_back(r.normal());
    }
    for (int i = 0; i < 7000; ++i) k.x.push_back(-5.0 + (x + 10.0) * r.uniform());
    for (int i = 0; i < 100; ++i) k.x.push_back(k.xp[static_cast<std::size_t>(i) * 29]);
    c["random_long"] = k;
    return c;
}

struct neuronio_case {
    vec spike_true, spike_prob, soma_true, soma_pred;
};

neuronio_case make_neuronio_case() {
    neuronio_case k;
    rng r(31337);
    neuronio_like(r, 110000, 0.002, k.spike_true, k.spike_prob);
    for (std::size_t i = 0; i < k.spike_true.size(); ++i) {
        k.soma_true.push_back(std::min(-55.0, -70.0 + 4.0 * r.normal()) + 67.7);
        k.soma_pred.push_back(k.soma_true.back() + 0.8 * r.normal());
    }
    return k;
}

// The published desired_FP_list, then other rates.
std::vector<vec> neuronio_fp_lists() {
    return {vec(elm::neuronio_desired_fp.begin(), elm::neuronio_desired_fp.end()), vec{0.001, 0.05, 0.3}};
}

// ---- running the reference once per process ----

struct reference {
    bool ok = false;
    std::string message;
    json results;
    std::string versions;
    bool bit_exact = false;  // numpy 1.24 (Debian 12), whose reduction order metrics.cpp reproduces
};

std::string read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

const reference& sklearn_reference() {
    static const reference ref = [] {
        reference out;
        json cases = json::object();
        for (const auto& [name, k] : make_roc_cases())
            cases["roc/" + name] = {
                {"kind", "roc"}, {"y_true", k.y_true}, {"y_score", k.y_score}, {"fp", fp_list}};
        cases["roc/no_positives"] = {{"kind", "roc"},
                                     {"y_true", vec(5, 0.0)},
                                     {"y_score", vec{0.1, 0.2, 0.3, 0.4, 0.5}},
                                     {"fp", fp_list}};
        cases["roc/no_negatives"] = {{"kind", "roc"},
                                     {"y_true", vec(5, 1.0)},
                                     {"y_score", vec{0.1, 0.2, 0.3, 0.4, 0.5}},
                                     {"fp", fp_list}};
        for (const auto& [name, k] : make_regression_cases())
            cases["regression/" + name] = {
                {"kind", "regression"}, {"y_true", k.y_true}, {"y_pred", k.y_pred}};
        for (const auto& [name, k] : make_auc_cases())
            cases["auc/" + name] = {{"kind", "auc"}, {"x", k.x}, {"y", k.y}};
        for (const auto& [name, k] : make_interp_cases())
            cases["interp/" + name] = {{"kind", "interp"}, {"x", k.x}, {"xp", k.xp}, {"fp", k.fp}};
        const neuronio_case nk = make_neuronio_case();
        cases["neuronio"] = {{"kind", "neuronio"},          {"spike_true", nk.spike_true},
                             {"spike_prob", nk.spike_prob}, {"soma_true", nk.soma_true},
                             {"soma_pred", nk.soma_pred},   {"fp_lists", neuronio_fp_lists()}};
        // A subthreshold set: no output spike at all (the published code's spike metrics come out NaN).
        cases["neuronio_no_spikes"] = cases["neuronio"];
        cases["neuronio_no_spikes"]["spike_true"] = vec(nk.spike_true.size(), 0.0);

        static int counter = 0;
        const std::filesystem::path dir =
            std::filesystem::temp_directory_path() /
            ("elm_test_metrics_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
        std::filesystem::create_directories(dir);
        const auto script = dir / "reference.py", in = dir / "cases.json", res = dir / "reference.json";
        std::ofstream(script) << reference_script;
        std::ofstream(in) << cases.dump();

        const char* env = std::getenv("ELM_PYTHON");
        const std::string python = env && *env ? env : "/usr/bin/python3";
        const std::string cmd =
            "'" + python + "' '" + script.string() + "' '" + in.string() + "' '" + res.string() + "' 2>&1";
        std::string output;
        int status = -1;
        if (FILE* p = popen(cmd.c_str(), "r")) {
            char buf[4096];
            while (std::size_t got = std::fread(buf, 1, sizeof buf, p)) output.append(buf, got);
            status = pclose(p);
        }
        if (status != 0) {
            out.message =
                "the scikit-learn reference could not be computed: `" + cmd + "` " +
                (status != -1 && WIFEXITED(status)
                     ? "exited with status " + std::to_string(WEXITSTATUS(status))
                     : "could not be run or was killed") +
                ". These tests need python3 with numpy and scikit-learn (Debian: python3-numpy "
                "python3-sklearn, installed by scripts/install-deps.sh; or set ELM_PYTHON). Output:\n" +
                output;
        } else {
            try {
                const json j = json::parse(read_file(res));
                out.results = j.at("results");
                out.versions = "scikit-learn " + j.at("sklearn").get<std::string>() + ", numpy " +
                               j.at("numpy").get<std::string>();
                out.bit_exact = j.at("numpy").get<std::string>().rfind("1.24.", 0) == 0;
                out.ok = true;
            } catch (const std::exception& e) {
                out.message =
                    std::string("unreadable reference output from python: ") + e.what() + "\n" + output;
            }
        }
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
        if (out.ok)
            std::printf("[ reference] %s: %s\n", out.versions.c_str(),
                        out.bit_exact ? "results must be bit-identical"
                                      : "not numpy 1.24, so only agreement to 1e-12 is required");
        return out;
    }();
    return ref;
}

double num(const json& v) {
    if (v.is_string()) {
        const std::string s = v.get<std::string>();
        if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
        if (s == "inf") return std::numeric_limits<double>::infinity();
        if (s == "-inf") return -std::numeric_limits<double>::infinity();
    }
    return v.get<double>();
}

vec nums(const json& v) {
    vec out;
    for (const json& e : v) out.push_back(num(e));
    return out;
}

// Counts comparisons and bit-identical results. With numpy 1.24 every value must be bit-identical (the
// summation order and the absence of FMA contraction are part of what metrics.cpp reproduces; a 1e-12
// tolerance alone would not notice either going wrong).
struct tally {
    explicit tally(const reference& r) : ref(r) {}
    tally(const tally&) = delete;
    tally& operator=(const tally&) = delete;
    const reference& ref;
    std::size_t compared = 0, identical = 0;
    std::string first_difference;
    ~tally() {
        std::printf("[ compared ] %zu values, %zu bit-identical to numpy/scikit-learn\n", compared,
                    identical);
        if (ref.bit_exact) {
            EXPECT_EQ(identical, compared)
                << "values not bit-identical to " << ref.versions << ", first: " << first_difference;
        }
    }
};

::testing::AssertionResult close(const char* what, double got, double want, tally& t) {
    ++t.compared;
    if ((got == want && std::signbit(got) == std::signbit(want)) || (std::isnan(got) && std::isnan(want))) {
        ++t.identical;
        return ::testing::AssertionSuccess();
    }
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s: elm %.17g, reference %.17g (diff %.3g)", what, got, want, got - want);
    if (t.first_difference.empty()) t.first_difference = buf;
    if (std::abs(got - want) <= 1e-12 * std::max(1.0, std::abs(want))) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << buf;
}

::testing::AssertionResult close_all(const std::string& what, const vec& got, const vec& want, tally& t) {
    if (got.size() != want.size())
        return ::testing::AssertionFailure()
               << what << ": elm has " << got.size() << " values, reference " << want.size();
    for (std::size_t i = 0; i < got.size(); ++i) {
        const std::string w = what + "[" + std::to_string(i) + "]";
        if (auto r = close(w.c_str(), got[i], want[i], t); !r) return r;
    }
    return ::testing::AssertionSuccess();
}

#define REQUIRE_REFERENCE(ref)                  \
    const reference& ref = sklearn_reference(); \
    ASSERT_TRUE(ref.ok) << ref.message;         \
    RecordProperty("reference", ref.versions)

// ---- comparisons with scikit-learn / numpy ----

TEST(metrics_sklearn, roc_curve_auc_and_fp_helpers) {
    REQUIRE_REFERENCE(ref);
    tally t{ref};
    for (const auto& [name, k] : make_roc_cases()) {
        SCOPED_TRACE(name);
        const json& want = ref.results.at("roc/" + name);
        const elm::roc_curve_result got = elm::roc_curve(k.y_true, k.y_score);
        EXPECT_TRUE(close_all("fpr", got.fpr, nums(want.at("fpr")), t));
        EXPECT_TRUE(close_all("tpr", got.tpr, nums(want.at("tpr")), t));
        // thresholds[0]: max + 1 here (scikit-learn < 1.3, Debian 12's 1.2.1); scikit-learn >= 1.3 gives
        // +inf.
        const vec want_thr = nums(want.at("thresholds"));
        ASSERT_EQ(got.thresholds.size(), want_thr.size());
        EXPECT_TRUE(want_thr[0] == got.thresholds[1] + 1 || std::isinf(want_thr[0])) << want_thr[0];
        EXPECT_EQ(got.thresholds[0], got.thresholds[1] + 1);
        EXPECT_TRUE(close_all("thresholds[1:]", vec(got.thresholds.begin() + 1, got.thresholds.end()),
                              vec(want_thr.begin() + 1, want_thr.end()), t));
        for (std::size_t i = 1; i < got.thresholds.size(); ++i)  // the sign of a zero threshold too
            EXPECT_EQ(std::signbit(got.thresholds[i]), std::signbit(want_thr[i]))
                << "thresholds[" << i << "]";
        EXPECT_TRUE(close("auc", elm::auc(got.fpr, got.tpr), num(want.at("auc")), t));
        EXPECT_TRUE(close("roc_auc", elm::roc_auc(k.y_true, k.y_score), num(want.at("auc")), t));
        for (std::size_t i = 0; i < fp_list.size(); ++i) {
            const std::string f = std::to_string(fp_list[i]);
            EXPECT_TRUE(close(("tp_at_fp " + f).c_str(), elm::tp_at_fp(got, fp_list[i]),
                              num(want.at("tp_at_fp")[i]), t));
            EXPECT_TRUE(close(("auc_at_fp " + f).c_str(), elm::auc_at_fp(got, fp_list[i]),
                              num(want.at("auc_at_fp")[i]), t));
        }
    }
}

TEST(metrics_sklearn, no_positives_or_negatives_throw_where_sklearn_returns_nan) {
    REQUIRE_REFERENCE(ref);
    // Documented deviation: scikit-learn warns and returns an all-NaN rate; elm throws elm::error.
    for (const char* name : {"roc/no_positives", "roc/no_negatives"}) {
        SCOPED_TRACE(name);
        const json& want = ref.results.at(name);
        const vec rate = nums(want.at(std::string(name) == "roc/no_positives" ? "tpr" : "fpr"));
        ASSERT_FALSE(rate.empty());
        for (double v : rate) EXPECT_TRUE(std::isnan(v));
    }
    EXPECT_THROW(elm::roc_curve(vec(5, 0.0), vec{0.1, 0.2, 0.3, 0.4, 0.5}), elm::error);
    EXPECT_THROW(elm::roc_curve(vec(5, 1.0), vec{0.1, 0.2, 0.3, 0.4, 0.5}), elm::error);
}

TEST(metrics_sklearn, auc_trapezoid) {
    REQUIRE_REFERENCE(ref);
    tally t{ref};
    for (const auto& [name, k] : make_auc_cases()) {
        SCOPED_TRACE(name);
        const json& want = ref.results.at("auc/" + name);
        if (want.contains("error")) {
            EXPECT_THROW(elm::auc(k.x, k.y), elm::error) << "sklearn: " << want.at("error");
            continue;
        }
        EXPECT_TRUE(close("auc", elm::auc(k.x, k.y), num(want.at("auc")), t));
    }
}

TEST(metrics_sklearn, numpy_interp) {
    REQUIRE_REFERENCE(ref);
    tally t{ref};
    for (const auto& [name, k] : make_interp_cases()) {
        SCOPED_TRACE(name);
        EXPECT_TRUE(close_all("interp", elm::interp(k.x, k.xp, k.fp),
                              nums(ref.results.at("interp/" + name).at("y")), t));
    }
}

TEST(metrics_sklearn, regression_metrics) {
    REQUIRE_REFERENCE(ref);
    tally t{ref};
    for (const auto& [name, k] : make_regression_cases()) {
        SCOPED_TRACE(name);
        const json& want = ref.results.at("regression/" + name);
        EXPECT_TRUE(close("mse", elm::mean_squared_error(k.y_true, k.y_pred), num(want.at("mse")), t));
        EXPECT_TRUE(close("rmse", elm::root_mean_squared_error(k.y_true, k.y_pred), num(want.at("rmse")), t));
        EXPECT_TRUE(close("mae", elm::mean_absolute_error(k.y_true, k.y_pred), num(want.at("mae")), t));
        EXPECT_TRUE(close("explained_variance", elm::explained_variance_score(k.y_true, k.y_pred),
                          num(want.at("ev")), t));
    }
}

TEST(metrics_sklearn, neuronio_results_dict) {
    REQUIRE_REFERENCE(ref);
    tally t{ref};
    const std::vector<vec> fp_lists = neuronio_fp_lists();
    for (const char* name : {"neuronio", "neuronio_no_spikes"}) {
        neuronio_case k = make_neuronio_case();
        const bool spikes = std::string(name) == "neuronio";
        if (!spikes) k.spike_true.assign(k.spike_true.size(), 0.0);
        for (std::size_t c = 0; c < fp_lists.size(); ++c) {
            SCOPED_TRACE(std::string(name) + ", desired FP list " + std::to_string(c));
            const json& want = ref.results.at(name).at("dicts").at(c);
            const std::map<std::string, double> got =
                elm::compute_neuronio_metrics(k.spike_true, k.spike_prob, k.soma_true, k.soma_pred,
                                              fp_lists[c])
                    .to_map();
            ASSERT_EQ(got.size(), want.size());
            for (const auto& [key, value] : want.items()) {
                ASSERT_TRUE(got.count(key)) << "missing key '" << key << "'";
                // Without spikes the spike metrics are NaN on both sides, the soma ones numbers.
                if (!spikes) {
                    EXPECT_EQ(std::isnan(got.at(key)), !key.starts_with("soma_")) << key;
                }
                EXPECT_TRUE(close(key.c_str(), got.at(key), num(value), t));
            }
        }
    }
}

// ---- no Python needed ----

TEST(metrics, sklearn_documentation_example_by_hand) {
    // sklearn.metrics.roc_curve docstring: y = [1, 1, 2, 2] (here 0/1), scores [0.1, 0.4, 0.35, 0.8].
    const elm::roc_curve_result r = elm::roc_curve(vec{0, 0, 1, 1}, vec{0.1, 0.4, 0.35, 0.8});
    EXPECT_EQ(r.fpr, (vec{0.0, 0.0, 0.5, 0.5, 1.0}));
    EXPECT_EQ(r.tpr, (vec{0.0, 0.5, 0.5, 1.0, 1.0}));
    EXPECT_EQ(r.thresholds, (vec{1.8, 0.8, 0.4, 0.35, 0.1}));
    EXPECT_EQ(elm::auc(r.fpr, r.tpr), 0.75);
    // argmin |fpr - 0.0025| is index 0 (first of the ties at 0), forced to 1.
    EXPECT_EQ(elm::tp_at_fp(r, 0.0025), 0.5);
    EXPECT_EQ(elm::tp_at_fp(r, 0.6), 0.5);  // fpr 0.5 first reached at index 2
    EXPECT_EQ(elm::tp_at_fp(r, 1.0), 1.0);
}

TEST(metrics, perfect_and_reversed_classifiers) {
    const vec y{0, 0, 0, 1, 1};
    EXPECT_EQ(elm::roc_auc(y, vec{0.1, 0.2, 0.3, 0.8, 0.9}), 1.0);
    EXPECT_EQ(elm::roc_auc(y, vec{0.9, 0.8, 0.7, 0.2, 0.1}), 0.0);
    EXPECT_EQ(elm::roc_auc(y, vec(5, 0.3)), 0.5);  // all tied: the diagonal
    // Perfect classifier: fpr = [0, 0, 0, 1], tpr = [0, 0.5, 1, 1]. np.interp at FPR 0 takes the last of the
    // duplicated xp = 0 points, so TPR is 1 on the whole grid; TP @ FP forces index 1, i.e. tpr 0.5 here.
    const elm::roc_curve_result r = elm::roc_curve(y, vec{0.1, 0.2, 0.3, 0.8, 0.9});
    EXPECT_EQ(r.fpr, (vec{0.0, 0.0, 0.0, 1.0}));
    EXPECT_EQ(r.tpr, (vec{0.0, 0.5, 1.0, 1.0}));
    EXPECT_EQ(elm::auc_at_fp(r, 0.01), 1.0);
    EXPECT_EQ(elm::tp_at_fp(r, 0.01), 0.5);
}

TEST(metrics, explained_variance_conventions) {
    EXPECT_EQ(elm::explained_variance_score(vec(4, 2.0), vec(4, 2.0)), 1.0);              // 0/0 -> 1
    EXPECT_EQ(elm::explained_variance_score(vec(4, 2.0), vec{2.0, 2.0, 2.0, 3.0}), 0.0);  // x/0 -> 0
    EXPECT_EQ(elm::explained_variance_score(vec{1.0, 2.0, 3.0}, vec{2.0, 3.0, 4.0}),
              1.0);  // bias is not penalised
    EXPECT_EQ(elm::mean_squared_error(vec{1.0, 2.0}, vec{2.0, 4.0}), 2.5);
    EXPECT_EQ(elm::root_mean_squared_error(vec{0.0, 0.0}, vec{3.0, 3.0}), 3.0);
    EXPECT_EQ(elm::mean_absolute_error(vec{1.0, 2.0}, vec{2.0, 4.0}), 1.5);
}

TEST(metrics, result_keys_match_published_eval_results) {
    std::ifstream f(std::string(ELM_MODELS_DIR) + "/num_memory_15/eval_results.json");
    ASSERT_TRUE(f) << "missing " << ELM_MODELS_DIR << "/num_memory_15/eval_results.json";
    const json published = json::parse(f).at("test_results");
    const elm::neuronio_metrics m = elm::compute_neuronio_metrics(vec{0, 1, 0, 1}, vec{0.1, 0.8, 0.3, 0.6},
                                                                  vec{1, 2, 3, 4}, vec{1, 2, 3, 5});
    const json got = m.to_map();
    std::set<std::string> want_keys, got_keys;
    for (const auto& [key, value] : published.items()) want_keys.insert(key);
    for (const auto& [key, value] : got.items()) got_keys.insert(key);
    EXPECT_EQ(got_keys, want_keys);
    EXPECT_EQ(elm::neuronio_tp_key(0.01), "TP @ 0.0100 FP");
    EXPECT_EQ(elm::neuronio_auc_key(0.0025), "AUC @ 0.0025 FP");
    ASSERT_EQ(m.at_fp.size(), 2u);
    EXPECT_EQ(m.at_fp[0].desired_fp, 0.0025);
    EXPECT_EQ(m.auc, 1.0);
    EXPECT_EQ(m.soma_mae, 0.25);
}

TEST(metrics, bad_inputs_throw_elm_error) {
    const vec y{0, 1, 0, 1};
    const vec s{0.1, 0.2, 0.3, 0.4};
    EXPECT_THROW(elm::roc_curve(y, vec{0.1, 0.2, 0.3}), elm::error);                // lengths
    EXPECT_THROW(elm::roc_curve(vec{}, vec{}), elm::error);                         // empty
    EXPECT_THROW(elm::roc_curve(vec{0, 2, 0, 1}, s), elm::error);                   // not 0/1
    EXPECT_THROW(elm::roc_curve(vec{0, 0.5, 0, 1}, s), elm::error);                 // not 0/1
    EXPECT_THROW(elm::roc_curve(vec{0, 1, 0, std::nan("")}, s), elm::error);        // NaN label
    EXPECT_THROW(elm::roc_curve(y, vec{0.1, std::nan(""), 0.3, 0.4}), elm::error);  // NaN score
    EXPECT_THROW(elm::roc_curve(y, vec{0.1, HUGE_VAL, 0.3, 0.4}), elm::error);      // inf score
    // compute_neuronio_metrics checks labels and scores also where it has no ROC to compute (no 1 among
    // the labels): bad ones are errors there as everywhere, never a quiet NaN.
    const vec v{1, 2, 3, 4};
    EXPECT_THROW(elm::compute_neuronio_metrics(vec{0, 0.5, 0, 0}, s, v, v), elm::error);  // not 0/1
    EXPECT_THROW(elm::compute_neuronio_metrics(vec{0, 2, 0, 0}, s, v, v), elm::error);    // not 0/1
    EXPECT_THROW(elm::compute_neuronio_metrics(vec(4, 0.0), vec{0.1, std::nan(""), 0.3, 0.4}, v, v),
                 elm::error);                                                          // NaN score
    EXPECT_TRUE(std::isnan(elm::compute_neuronio_metrics(vec(4, 0.0), s, v, v).auc));  // valid: undefined
    EXPECT_THROW(elm::auc(vec{0.0}, vec{1.0}), elm::error);                            // < 2 points
    EXPECT_THROW(elm::auc(vec{0.0, 1.0}, vec{1.0}), elm::error);                       // lengths
    EXPECT_THROW(elm::auc(vec{0.0, 1.0, 0.5}, vec{1.0, 1.0, 1.0}), elm::error);        // not monotonic
    EXPECT_THROW(elm::interp(vec{0.5}, vec{}, vec{}), elm::error);
    EXPECT_THROW(elm::interp(vec{0.5}, vec{0.0, 1.0}, vec{0.0}), elm::error);
    EXPECT_THROW(elm::mean_squared_error(vec{}, vec{}), elm::error);
    EXPECT_THROW(elm::mean_absolute_error(vec{1.0}, vec{1.0, 2.0}), elm::error);
    EXPECT_THROW(elm::explained_variance_score(vec{1.0, INFINITY}, vec{1.0, 2.0}), elm::error);
    EXPECT_THROW(elm::tp_at_fp(elm::roc_curve_result{}, 0.01), elm::error);
    EXPECT_THROW(elm::auc_at_fp(elm::roc_curve(y, s), std::nan("")), elm::error);
    EXPECT_THROW(elm::compute_neuronio_metrics(y, s, vec{1, 2, 3}, vec{1, 2, 3, 4}), elm::error);
    try {
        elm::roc_curve(vec(3, 0.0), vec{0.1, 0.2, 0.3});
        FAIL() << "no positives must throw";
    } catch (const elm::error& e) {
        EXPECT_EQ(e.field(), "y_true");
        EXPECT_NE(std::string(e.what()).find("0 positives"), std::string::npos) << e.what();
    }
}

}  // namespace
