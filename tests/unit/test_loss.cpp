// Losses (src/train/loss.cpp): values against direct textbook formulas written independently here, gradients
// against central finite differences in double, stability at huge logits, float vs double, and input errors.

#include <elmneuron/error.hpp>
#include <elmneuron/loss.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <vector>

namespace {

std::vector<double> uniform(std::size_t n, double lo, double hi, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> dist(lo, hi);
    std::vector<double> v(n);
    for (double& x : v) x = dist(rng);
    return v;
}

// Central differences of loss(x) with respect to every element of x, compared to the analytic gradient.
void expect_fd_gradient(std::vector<double> x, const std::vector<double>& analytic,
                        const std::function<double(const std::vector<double>&)>& loss, double tol = 1e-8) {
    ASSERT_EQ(x.size(), analytic.size());
    const double h = 1e-5;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double x0 = x[i];
        x[i] = x0 + h;
        const double up = loss(x);
        x[i] = x0 - h;
        const double down = loss(x);
        x[i] = x0;
        EXPECT_NEAR(analytic[i], (up - down) / (2 * h), tol) << "element " << i;
    }
}

double naive_sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double naive_bce(double x, double y) {
    return -(y * std::log(naive_sigmoid(x)) + (1 - y) * std::log(1 - naive_sigmoid(x)));
}

// ---------------------------------------------------------------------------------------------- BCE

TEST(BceWithLogits, MatchesDirectFormulaAndFiniteDifferences) {
    const std::size_t n = 17;
    const auto x = uniform(n, -6, 6, 1);
    auto y = uniform(n, 0, 1, 2);
    y[0] = 0, y[1] = 1;  // hard labels as well as soft targets
    std::vector<double> dx(n);
    const double loss = elm::bce_with_logits<double>(x, y, dx);
    double direct = 0;
    for (std::size_t i = 0; i < n; ++i) direct += naive_bce(x[i], y[i]);
    EXPECT_NEAR(loss, direct / static_cast<double>(n), 1e-13);
    expect_fd_gradient(x, dx, [&](const std::vector<double>& xx) {
        std::vector<double> scratch(n);
        return elm::bce_with_logits<double>(xx, y, scratch);
    });
}

TEST(BceWithLogits, StableForHugeLogits) {
    const std::vector<double> x = {800, -800, 800, -800, 0, 40};
    const std::vector<double> y = {0, 1, 1, 0, 0.5, 1};
    std::vector<double> dx(x.size());
    const double loss = elm::bce_with_logits<double>(x, y, dx);
    // Per element: 800, 800, 0, 0, log 2, log1p(e^-40).
    const double expected = (1600 + std::log(2.0) + std::log1p(std::exp(-40.0))) / 6;
    EXPECT_NEAR(loss, expected, 1e-12);
    const std::vector<double> expected_dx = {1, -1, 0, 0, 0, naive_sigmoid(40) - 1};
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(dx[i], expected_dx[i] / 6, 1e-17) << i;
}

TEST(BceWithLogits, FloatAgreesWithDouble) {
    const auto x = uniform(50, -10, 10, 3), y = uniform(50, 0, 1, 4);
    std::vector<float> xf(x.begin(), x.end()), yf(y.begin(), y.end()), dxf(50);
    std::vector<double> xd(xf.begin(), xf.end()), yd(yf.begin(), yf.end()), dxd(50);
    const double lf = elm::bce_with_logits<float>(xf, yf, dxf);
    const double ld = elm::bce_with_logits<double>(xd, yd, dxd);
    EXPECT_NEAR(lf, ld, 1e-12);  // both accumulate in double from the same inputs
    for (std::size_t i = 0; i < 50; ++i) EXPECT_FLOAT_EQ(dxf[i], static_cast<float>(dxd[i]));
}

TEST(BceWithLogits, SizeErrors) {
    std::vector<double> a(3), b(2), d(3), empty;
    EXPECT_THROW(elm::bce_with_logits<double>(a, b, d), elm::error);
    EXPECT_THROW(elm::bce_with_logits<double>(a, a, b), elm::error);
    EXPECT_THROW(elm::bce_with_logits<double>(empty, empty, empty), elm::error);
}

// ---------------------------------------------------------------------------------------------- MSE

TEST(Mse, MatchesDirectFormulaAndFiniteDifferences) {
    const std::size_t n = 11;
    const auto p = uniform(n, -3, 3, 5), y = uniform(n, -3, 3, 6);
    std::vector<double> dp(n);
    const double loss = elm::mse<double>(p, y, dp);
    double direct = 0;
    for (std::size_t i = 0; i < n; ++i) direct += std::pow(p[i] - y[i], 2);
    EXPECT_NEAR(loss, direct / static_cast<double>(n), 1e-14);
    expect_fd_gradient(p, dp, [&](const std::vector<double>& pp) {
        std::vector<double> scratch(n);
        return elm::mse<double>(pp, y, scratch);
    });
}

TEST(Mse, SizeErrors) {
    std::vector<float> a(3), b(4), d(3);
    EXPECT_THROW(elm::mse<float>(a, b, d), elm::error);
    EXPECT_THROW(elm::mse<float>(a, a, b), elm::error);
}

// ------------------------------------------------------------------------------------ cross-entropy

struct ce_case {
    int batch, time, num_output;
};

TEST(CrossEntropyLastStep, MatchesDirectFormulaAndFiniteDifferences) {
    for (const ce_case c : {ce_case{3, 4, 5}, ce_case{1, 1, 1}, ce_case{2, 1, 3}, ce_case{4, 3, 2}}) {
        SCOPED_TRACE(testing::Message() << "B=" << c.batch << " T=" << c.time << " d_o=" << c.num_output);
        const std::size_t n = static_cast<std::size_t>(c.batch * c.time * c.num_output);
        const auto y = uniform(n, -4, 4, 7);
        std::vector<std::int32_t> labels(c.batch);
        for (int b = 0; b < c.batch; ++b) labels[b] = (2 * b + 1) % c.num_output;
        std::vector<double> dy(n, 123.0);  // must be overwritten everywhere
        const double loss =
            elm::cross_entropy_last_step<double>(y, c.batch, c.time, c.num_output, labels, dy);

        double direct = 0;
        for (int b = 0; b < c.batch; ++b) {
            const double* z = &y[static_cast<std::size_t>(((b * c.time) + c.time - 1) * c.num_output)];
            double s = 0;
            for (int k = 0; k < c.num_output; ++k) s += std::exp(z[k]);
            direct += -std::log(std::exp(z[labels[b]]) / s);
        }
        EXPECT_NEAR(loss, direct / c.batch, 1e-13);
        for (int b = 0; b < c.batch; ++b)
            for (int t = 0; t < c.time - 1; ++t)
                for (int k = 0; k < c.num_output; ++k)
                    EXPECT_EQ(dy[static_cast<std::size_t>((b * c.time + t) * c.num_output + k)], 0.0);
        expect_fd_gradient(y, dy, [&](const std::vector<double>& yy) {
            std::vector<double> scratch(n);
            return elm::cross_entropy_last_step<double>(yy, c.batch, c.time, c.num_output, labels, scratch);
        });
    }
}

TEST(CrossEntropyLastStep, StableForHugeLogits) {
    // One sample, T = 1: logits (1000, 0, -1000), label 1 -> loss 1000, gradient (1, -1, 0).
    const std::vector<double> y = {1000, 0, -1000};
    const std::vector<std::int32_t> labels = {1};
    std::vector<double> dy(3);
    EXPECT_NEAR(elm::cross_entropy_last_step<double>(y, 1, 1, 3, labels, dy), 1000.0, 1e-12);
    EXPECT_NEAR(dy[0], 1.0, 1e-15);
    EXPECT_NEAR(dy[1], -1.0, 1e-15);
    EXPECT_EQ(dy[2], 0.0);
}

TEST(CrossEntropyLastStep, FloatAgreesWithDouble) {
    const auto y = uniform(2 * 3 * 4, -5, 5, 8);
    const std::vector<std::int32_t> labels = {3, 0};
    std::vector<float> yf(y.begin(), y.end()), dyf(y.size());
    std::vector<double> yd(yf.begin(), yf.end()), dyd(y.size());
    EXPECT_NEAR(elm::cross_entropy_last_step<float>(yf, 2, 3, 4, labels, dyf),
                elm::cross_entropy_last_step<double>(yd, 2, 3, 4, labels, dyd), 1e-12);
    for (std::size_t i = 0; i < y.size(); ++i) EXPECT_FLOAT_EQ(dyf[i], static_cast<float>(dyd[i]));
}

TEST(CrossEntropyLastStep, Errors) {
    std::vector<double> y(2 * 3 * 4), dy(2 * 3 * 4), short_dy(5);
    const std::vector<std::int32_t> ok = {0, 3}, negative = {0, -1}, too_big = {4, 0}, one = {1};
    EXPECT_NO_THROW(elm::cross_entropy_last_step<double>(y, 2, 3, 4, ok, dy));
    try {
        elm::cross_entropy_last_step<double>(y, 2, 3, 4, negative, dy);
        ADD_FAILURE() << "no throw";
    } catch (const elm::error& e) {
        EXPECT_EQ(e.field(), "labels[1]");
        EXPECT_EQ(e.got(), "-1");
    }
    EXPECT_THROW(elm::cross_entropy_last_step<double>(y, 2, 3, 4, too_big, dy), elm::error);
    EXPECT_THROW(elm::cross_entropy_last_step<double>(y, 2, 3, 4, one, dy), elm::error);       // labels size
    EXPECT_THROW(elm::cross_entropy_last_step<double>(y, 2, 3, 4, ok, short_dy), elm::error);  // dy size
    EXPECT_THROW(elm::cross_entropy_last_step<double>(y, 2, 4, 4, ok, dy), elm::error);        // y size
    EXPECT_THROW(elm::cross_entropy_last_step<double>(y, 0, 3, 4, ok, dy), elm::error);
}

// ----------------------------------------------------------------------------------------- NeuronIO

TEST(NeuronioLoss, MatchesDirectFormulaAndFiniteDifferences) {
    const int B = 2, T = 5, d_o = 3;
    const std::size_t n = B * T * d_o;
    const auto y = uniform(n, -4, 4, 9);
    auto spike = uniform(B * T, 0, 1, 10);
    for (double& s : spike) s = s < 0.3 ? 1.0 : 0.0;
    const auto soma = uniform(B * T, -1, 1, 11);
    for (const int burn_in : {0, 2, 4}) {
        SCOPED_TRACE(testing::Message() << "burn_in=" << burn_in);
        std::vector<double> dy(n, 7.0);
        const double loss = elm::neuronio_loss<double>(y, B, T, d_o, spike, soma, burn_in, dy);
        double bce = 0, sq = 0;
        for (int b = 0; b < B; ++b)
            for (int t = burn_in; t < T; ++t) {
                bce += naive_bce(y[(b * T + t) * d_o], spike[b * T + t]);
                sq += std::pow(y[(b * T + t) * d_o + 1] - soma[b * T + t], 2);
            }
        const double count = B * (T - burn_in);
        EXPECT_NEAR(loss, 0.5 * bce / count + 0.5 * sq / count, 1e-13);
        for (int b = 0; b < B; ++b)
            for (int t = 0; t < T; ++t)
                for (int k = 0; k < d_o; ++k)
                    if (t < burn_in || k >= 2) {
                        EXPECT_EQ(dy[(b * T + t) * d_o + k], 0.0) << b << ' ' << t << ' ' << k;
                    }
        expect_fd_gradient(y, dy, [&](const std::vector<double>& yy) {
            std::vector<double> scratch(n);
            return elm::neuronio_loss<double>(yy, B, T, d_o, spike, soma, burn_in, scratch);
        });
    }
}

TEST(NeuronioLoss, FloatAgreesWithDouble) {
    const int B = 3, T = 4, d_o = 2;
    const auto y = uniform(B * T * d_o, -6, 6, 12), spike = uniform(B * T, 0, 1, 13),
               soma = uniform(B * T, -2, 2, 14);
    std::vector<float> yf(y.begin(), y.end()), sf(spike.begin(), spike.end()), vf(soma.begin(), soma.end());
    std::vector<double> yd(yf.begin(), yf.end()), sd(sf.begin(), sf.end()), vd(vf.begin(), vf.end());
    std::vector<float> dyf(y.size());
    std::vector<double> dyd(y.size());
    EXPECT_NEAR(elm::neuronio_loss<float>(yf, B, T, d_o, sf, vf, 1, dyf),
                elm::neuronio_loss<double>(yd, B, T, d_o, sd, vd, 1, dyd), 1e-12);
    for (std::size_t i = 0; i < y.size(); ++i) EXPECT_FLOAT_EQ(dyf[i], static_cast<float>(dyd[i]));
}

TEST(NeuronioLoss, Errors) {
    std::vector<double> y(2 * 3 * 2), dy(2 * 3 * 2), s(6), bad(5), y1(2 * 3);
    EXPECT_NO_THROW(elm::neuronio_loss<double>(y, 2, 3, 2, s, s, 2, dy));
    EXPECT_THROW(elm::neuronio_loss<double>(y, 2, 3, 2, s, s, 3, dy), elm::error);   // burn_in >= T
    EXPECT_THROW(elm::neuronio_loss<double>(y, 2, 3, 2, s, s, -1, dy), elm::error);  // negative burn_in
    EXPECT_THROW(elm::neuronio_loss<double>(y1, 2, 3, 1, s, s, 0, y1), elm::error);  // d_o < 2
    EXPECT_THROW(elm::neuronio_loss<double>(y, 2, 3, 2, bad, s, 0, dy), elm::error);
    EXPECT_THROW(elm::neuronio_loss<double>(y, 2, 3, 2, s, bad, 0, dy), elm::error);
    EXPECT_THROW(elm::neuronio_loss<double>(y, 2, 3, 2, s, s, 0, bad), elm::error);
}

// ----------------------------------------------------------------------------------------- accuracy

TEST(LastStepAccuracy, CountsArgmaxOfLastStep) {
    // B = 4, T = 2, d_o = 3. Step 0 is a decoy with a different argmax everywhere.
    const std::vector<float> y = {
        9, 0, 0, /**/ 0, 5, 1,  // sample 0: argmax 1
        9, 0, 0, /**/ 2, 1, 0,  // sample 1: argmax 0
        0, 0, 9, /**/ 3, 3, 1,  // sample 2: tie between 0 and 1 -> first index, 0
        0, 9, 0, /**/ 0, 1, 4,  // sample 3: argmax 2
    };
    EXPECT_DOUBLE_EQ(elm::last_step_accuracy<float>(y, 4, 2, 3, std::vector<std::int32_t>{1, 0, 0, 2}), 1.0);
    EXPECT_DOUBLE_EQ(elm::last_step_accuracy<float>(y, 4, 2, 3, std::vector<std::int32_t>{1, 1, 1, 2}), 0.5);
    EXPECT_DOUBLE_EQ(elm::last_step_accuracy<float>(y, 4, 2, 3, std::vector<std::int32_t>{0, 1, 2, 0}), 0.0);
    EXPECT_THROW(elm::last_step_accuracy<float>(y, 4, 2, 3, std::vector<std::int32_t>{1, 0, 3, 2}),
                 elm::error);
    EXPECT_THROW(elm::last_step_accuracy<float>(y, 4, 2, 3, std::vector<std::int32_t>{1, 0, 0}), elm::error);
    EXPECT_THROW(elm::last_step_accuracy<float>(y, 4, 3, 3, std::vector<std::int32_t>{1, 0, 0, 2}),
                 elm::error);
}

}  // namespace
