// Configuration, initialisation and routing against the published model: routing indices equal the ones
// the published code stored in the golden cases, τ_m init equals reference/paper.md §1.4's list, parameter
// counts equal reference/paper.md §1.8, and bad configs are errors naming the key.

#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/tensor_file.hpp>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace {

elm::model_config neuronio(int num_memory) {
    elm::model_config c;
    c.num_input = 1278;
    c.num_output = 2;
    c.num_memory = num_memory;
    c.num_branch = 45;
    c.num_synapse_per_branch = 100;
    c.input_to_synapse_routing = elm::routing::neuronio;
    c.memory_tau_max = 150;
    return c;
}

TEST(routing, neuronio_indices_equal_the_published_ones) {
    const auto golden =
        elm::read_safetensors(std::string(ELM_GOLDEN_DIR) + "/v1_neuronio_routing.safetensors");
    const auto index = golden.at("param.input_to_synapse_indices").to<std::int64_t>();
    const auto mask = golden.at("param.valid_indices_mask").to<double>();
    elm::model<float> m(neuronio(15), 0);
    ASSERT_EQ(m.synapse_input_index().size(), index.size());
    for (std::size_t i = 0; i < index.size(); ++i) {
        EXPECT_EQ(m.synapse_input_index()[i], index[i]) << "synapse " << i;
        EXPECT_EQ(m.synapse_mask()[i], static_cast<float>(mask[i])) << "synapse " << i;
    }
}

TEST(routing, neuronio_window_counts_of_reference) {
    // reference/paper.md §1.5: interlocking 0, 639, 1, 640, ...; 4282 valid of 4500; last branches 89, 60,
    // 31, 2.
    elm::model<float> m(neuronio(15), 0);
    const auto idx = m.synapse_input_index();
    EXPECT_EQ(idx[0], 0);
    EXPECT_EQ(idx[1], 639);
    EXPECT_EQ(idx[2], 1);
    EXPECT_EQ(idx[3], 640);
    int valid = 0;
    std::vector<int> per_branch(45, 0);
    for (int i = 0; i < 4500; ++i)
        if (m.synapse_mask()[i] == 1.f) {
            ++valid;
            ++per_branch[i / 100];
        }
    EXPECT_EQ(valid, 4282);
    for (int b = 0; b <= 40; ++b) EXPECT_EQ(per_branch[b], 100);
    EXPECT_EQ(per_branch[41], 89);
    EXPECT_EQ(per_branch[42], 60);
    EXPECT_EQ(per_branch[43], 31);
    EXPECT_EQ(per_branch[44], 2);
}

TEST(routing, random_routing_is_seeded_and_in_range) {
    elm::model_config c;
    c.num_input = 700;
    c.num_output = 19;
    c.num_memory = 5;
    c.num_branch = 100;
    c.num_synapse_per_branch = 15;
    c.input_to_synapse_routing = elm::routing::random;
    elm::model<float> a(c, 11), b(c, 11), other(c, 12);
    EXPECT_TRUE(std::equal(a.synapse_input_index().begin(), a.synapse_input_index().end(),
                           b.synapse_input_index().begin()));
    EXPECT_FALSE(std::equal(a.synapse_input_index().begin(), a.synapse_input_index().end(),
                            other.synapse_input_index().begin()));
    std::vector<int> hits(700, 0);
    for (auto i : a.synapse_input_index()) {
        ASSERT_GE(i, 0);
        ASSERT_LT(i, 700);
        ++hits[static_cast<std::size_t>(i)];
    }
    // 1500 draws over 700 channels: with replacement, so some channels repeat and some are missing.
    EXPECT_GT(*std::max_element(hits.begin(), hits.end()), 1);
    EXPECT_GT(std::count(hits.begin(), hits.end(), 0), 0);
}

TEST(init, memory_timescales_match_reference_list) {
    // reference/paper.md §1.4: τ 1-150 ms, d_m = 20.
    const double expected[] = {1.0,    1.302, 1.695, 2.206,  2.872,  3.738,  4.866,  6.335,  8.246,   10.734,
                               13.974, 18.19, 23.68, 30.825, 40.127, 52.236, 67.998, 88.517, 115.229, 150.0};
    auto c = neuronio(20);
    elm::model<double> m(c, 0);
    const auto p = m.parameter("_proto_tau_m");
    for (int k = 0; k < 20; ++k) {
        const double tau = (150.0 - 1.0) / (1.0 + std::exp(-p[k])) + 1.0;
        EXPECT_NEAR(tau, expected[k], 1.5e-3) << "memory unit " << k;
    }
}

TEST(init, decoupled_init_range_stays_inside_bounds) {
    elm::model_config c;
    c.num_input = 3;
    c.num_output = 1;
    c.num_memory = 4;
    c.memory_tau_min = 0;
    c.memory_tau_max = 1000;
    c.memory_tau_init_min = 1;
    c.memory_tau_init_max = 150;
    elm::model<double> m(c, 0);
    const auto p = m.parameter("_proto_tau_m");
    EXPECT_NEAR(1000.0 / (1.0 + std::exp(-p[0])), 1.0, 1e-5);
    EXPECT_NEAR(1000.0 / (1.0 + std::exp(-p[3])), 150.0, 1e-4);
}

TEST(init, linear_layers_follow_torch_default_bounds_and_seed) {
    auto c = neuronio(10);
    elm::model<double> a(c, 5), b(c, 5), other(c, 6);
    for (const auto& name :
         {"mlp.network.0.weight", "mlp.network.0.bias", "mlp.network.2.weight", "w_y.weight"}) {
        const auto& info = a.info(name);
        const std::string weight = std::string(name).substr(0, std::string(name).rfind('.')) + ".weight";
        const double bound = 1.0 / std::sqrt(static_cast<double>(a.info(weight).shape[1]));
        double max_abs = 0;
        for (double v : a.parameter(name)) max_abs = std::max(max_abs, std::abs(v));
        EXPECT_LE(max_abs, bound) << name;
        EXPECT_GT(max_abs, 0.8 * bound) << name << " (uniform over the full range)";
        (void)info;
    }
    EXPECT_TRUE(std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin()));
    EXPECT_FALSE(std::equal(a.parameters().begin(), a.parameters().end(), other.parameters().begin()));
    for (double w : a.parameter("_proto_w_s")) EXPECT_EQ(w, 0.5);
    for (double t : a.parameter("tau_s")) EXPECT_EQ(t, 5.0);
}

TEST(config, parameter_counts_match_paper_table) {
    // reference/paper.md §1.8: NeuronIO Branch-ELM 45 x 100, d_o = 2.
    const int dms[] = {1, 2, 3, 5, 7, 10, 15, 20, 25, 30, 40, 50, 75, 100};
    const std::int64_t counts[] = {4601, 4708, 4823,  5077,  5363,  5852,  6827,
                                   8002, 9377, 10952, 14702, 19252, 34127, 54002};
    for (int i = 0; i < 14; ++i) {
        EXPECT_EQ(elm::count_trainable_parameters(neuronio(dms[i])), counts[i]) << "d_m = " << dms[i];
        EXPECT_EQ(elm::model<float>(neuronio(dms[i]), 0).num_trainable(), counts[i]) << "d_m = " << dms[i];
    }
}

TEST(config, json_round_trip_and_published_keys) {
    const auto c = elm::parse_model_config(
        R"({"input_to_synapse_routing": "neuronio_routing", "learn_memory_tau": false, "memory_tau_max": 150.0,
            "memory_tau_min": 1.0, "mlp_activation": "silu", "num_branch": 45, "num_input": 1278, "num_memory": 100,
            "num_output": 2, "num_synapse_per_branch": 100})",
        "model_config.json");
    EXPECT_EQ(c.mlp_activation, elm::activation::silu);
    EXPECT_EQ(c.hidden_size(), 200);
    const auto again = elm::parse_model_config(elm::to_json(c), "round trip");
    EXPECT_EQ(elm::to_json(again), elm::to_json(c));
    const auto v2 = elm::parse_model_config(R"({"num_input": 3, "num_output": 2, "tau_b_value": 7})", "v2",
                                            elm::model_version::v2);
    EXPECT_EQ(v2.tau_s_value, 7);
    EXPECT_EQ(v2.version, elm::model_version::v2);
    // The keys the parser knows are exactly those to_json writes (each from its own field) for a v1 and a v2
    // config with the optional init range set.
    auto v2_full = v2;
    v2_full.memory_tau_init_min = 2;
    v2_full.memory_tau_init_max = 9;
    std::vector<std::string> written, known;
    for (const auto& config : {c, v2_full}) {
        const auto j = nlohmann::json::parse(elm::to_json(config));
        for (const auto& [key, value] : j.items())
            if (std::find(written.begin(), written.end(), key) == written.end()) written.push_back(key);
    }
    for (const auto key : elm::model_config_keys()) known.emplace_back(key);
    EXPECT_EQ(known.front(), "num_input");  // the published constructor's order
    EXPECT_EQ(known.back(), "model_version");
    std::sort(written.begin(), written.end());
    std::sort(known.begin(), known.end());
    EXPECT_EQ(known, written);
}

// Keys starting with '_' are notes, as in the run and simulate configs; without the '_' the same key is an
// unknown setting.
TEST(config, note_keys_are_ignored) {
    const auto plain = elm::parse_model_config(R"({"num_input": 3, "num_output": 2})", "plain.json");
    const auto noted = elm::parse_model_config(
        R"({"_comment": "a note", "num_input": 3, "_num_memory": 7, "num_output": 2, "_list": [1, {"a": 2}]})",
        "noted.json");
    EXPECT_EQ(noted, plain);
    EXPECT_TRUE(elm::is_note_key("_comment"));
    EXPECT_FALSE(elm::is_note_key("comment_"));
    EXPECT_THROW(elm::parse_model_config(R"({"num_input": 3, "num_output": 2, "comment": "x"})", "x.json"),
                 elm::error);
}

void expect_config_error(const std::string& json, const std::string& field) {
    try {
        elm::parse_model_config(json, "bad.json");
        FAIL() << "no error for " << json;
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), "bad.json");
        EXPECT_EQ(e.field(), field) << e.what();
    }
}

TEST(config, bad_configs_name_the_key) {
    expect_config_error(R"({"num_input": 3, "num_output": 2, "num_memroy": 4})", "num_memroy");
    expect_config_error(R"({"num_output": 2})", "num_input");
    expect_config_error(R"({"num_input": "3", "num_output": 2})", "num_input");
    expect_config_error(R"({"num_input": 3.5, "num_output": 2})", "num_input");
    expect_config_error(R"({"num_input": 3, "num_output": 0})", "num_output");
    expect_config_error(R"({"num_input": 3, "num_output": 2, "mlp_activation": "gelu"})", "mlp_activation");
    expect_config_error(R"({"num_input": 3, "num_output": 2, "num_branch": 2})", "input_to_synapse_routing");
    expect_config_error(
        R"({"num_input": 1278, "num_output": 2, "num_branch": 45, "num_synapse_per_branch": 20,
                            "input_to_synapse_routing": "neuronio_routing"})",
        "num_synapse_per_branch");
    expect_config_error(R"({"num_input": 3, "num_output": 2, "memory_tau_min": 5, "memory_tau_max": 5})",
                        "memory_tau_max");
    expect_config_error(R"({"num_input": 3, "num_output": 2, "delta_t": -1})", "delta_t");
    expect_config_error(R"({"num_input": 3, "num_output": 2, "input_to_synapse_routing": "magic"})",
                        "input_to_synapse_routing");
    expect_config_error(R"({"num_input": 3, "num_output": 2, "tau_s_value": -1})", "tau_s_value");
    expect_config_error(R"({"num_input": 3, "num_output": 2, "lambda_value": -0.5})", "lambda_value");
    expect_config_error(R"({"num_input": 3, "num_output": 2, "mlp_hidden_size": -2})", "mlp_hidden_size");
    // Sizes whose products overflow the int sizes (synapses, weight matrices) and values float32 cannot hold.
    expect_config_error(R"({"num_input": 10, "num_output": 2, "num_branch": 4, "num_synapse_per_branch":
                            1073741849, "input_to_synapse_routing": "random_routing"})",
                        "num_synapse_per_branch");
    expect_config_error(R"({"num_input": 100000, "num_output": 2, "mlp_hidden_size": 100000})",
                        "mlp_hidden_size");
    expect_config_error(R"({"num_input": 3, "num_output": 2, "lambda_value": 1e39})", "lambda_value");
    expect_config_error(R"({"num_input": 3, "num_output": 2, "w_s_value": -1e39})", "w_s_value");
    // A key twice: JSON parsers keep one of the values silently.
    expect_config_error(R"({"num_input": 3, "num_output": 2, "num_memory": 4, "num_memory": 5})",
                        "num_memory");
    expect_config_error("[1, 2]", "(top level)");
    expect_config_error("{\"num_input\": ", "(JSON)");
}

// Values the published constructor takes although they look degenerate: mlp_hidden_size 0 (falsy: the
// default 2·num_memory), τ = 0 (clamped to 1e-6: κ = 0, the trace holds only the current input) and λ = 0
// (no memory update).
TEST(config, degenerate_published_values_are_accepted_and_mean_what_they_mean_there) {
    const auto c = elm::parse_model_config(
        R"({"num_input": 3, "num_output": 2, "num_memory": 4, "mlp_hidden_size": 0, "tau_s_value": 0,
            "lambda_value": 0})",
        "ok.json");
    EXPECT_EQ(c.hidden_size(), 8);
    elm::model<double> m(c, 3);
    const std::vector<double> dense{1, 0, -2, 0.5, 3, 0, 0, 0, 1.5, -1, 2, 2};  // [1][4][3]
    const auto x = elm::sparse_from_dense<double>(dense, 1, 4, 3);
    std::vector<double> s(12), y(8);
    m.synapse_trace(x, s);
    const auto w = m.parameter("_proto_w_s");
    for (std::size_t i = 0; i < s.size(); ++i) EXPECT_EQ(s[i], std::max(w[i % 3], 0.0) * dense[i]);
    elm::workspace<double> ws;
    m.forward(x, y, ws);
    for (const double v : m.memory_trace(ws)) EXPECT_EQ(v, 0.0);  // gain λ(1-κ_m) = 0 from m_0 = 0
    c.validate("ok.json");
    auto v2 = c;
    v2.version = elm::model_version::v2;  // gain 1 - exp(-Δt·λ/τ_m) = 0
    elm::model<double> m2(v2, 3);
    m2.forward(x, y, ws);
    for (const double v : m2.memory_trace(ws)) EXPECT_EQ(v, 0.0);
}

// For τ_m ≫ Δt a rounded κ_m is off by up to 1e-4 of 1 - κ_m (Δt 0.5, τ_m 1000). The memory update runs
// on 1 - κ_m and the gain computed to full precision (m_{t-1} + (gain·Δm - (1-κ_m)·m_{t-1})), so the float
// model's memory keeps float precision: 3.4e-5 here when the gain was λ(1 - rounded κ_m) (over the golden
// 1e-5 bound), 3.6e-6 with κ_m·m_{t-1} + gain·Δm and an accurate gain, 2.9e-7 now. Reference: the double
// model with the same (float) parameters, itself checked against the golden cases at 1e-10.
TEST(model, float_memory_stays_accurate_for_slow_timescales) {
    for (const auto version : {elm::model_version::v1, elm::model_version::v2}) {
        elm::model_config c;
        c.version = version;
        c.num_input = 12;
        c.num_output = 2;
        c.num_memory = 100;
        c.delta_t = 0.5;
        c.lambda_value = version == elm::model_version::v2 ? 1.0 : 5.0;
        elm::model<double> init(c, 11);
        // Slow units only (τ_m from 880 to 999 ms): over these 250 ms each m_t grows by the gain at every
        // step, so the gain's rounding shows in full (the published init spreads τ_m over 1-1000 ms).
        const auto proto = init.parameter("_proto_tau_m");
        for (std::size_t k = 0; k < proto.size(); ++k) proto[k] = 2.0 + 0.05 * static_cast<double>(k);
        const auto mf = init.cast<float>();
        const auto md = mf.cast<double>();
        std::mt19937 gen(4);
        std::normal_distribution<float> normal;
        std::vector<float> dense(2 * 500 * 12);
        for (auto& v : dense) v = gen() % 4 == 0 ? normal(gen) : 0.f;
        const std::vector<double> dd(dense.begin(), dense.end());
        std::vector<float> yf(2 * 500 * 2);
        std::vector<double> yd(yf.size());
        elm::workspace<float> wf;
        elm::workspace<double> wd;
        mf.forward(elm::sparse_from_dense<float>(dense, 2, 500, 12), yf, wf);
        md.forward(elm::sparse_from_dense<double>(dd, 2, 500, 12), yd, wd);
        const auto mem_f = mf.memory_trace(wf);
        const auto mem_d = md.memory_trace(wd);
        double num = 0, den = 0;
        for (std::size_t i = 0; i < mem_d.size(); ++i) {
            num += (mem_f[i] - mem_d[i]) * (mem_f[i] - mem_d[i]);
            den += mem_d[i] * mem_d[i];
        }
        EXPECT_LT(std::sqrt(num / den), 1e-6) << elm::to_string(version);  // golden bound: 1e-5
    }
}

TEST(model, rejects_bad_inputs_with_clear_errors) {
    elm::model_config c;
    c.num_input = 4;
    c.num_output = 1;
    c.num_memory = 2;
    elm::model<float> m(c, 0);
    std::vector<float> dense(2 * 3 * 4, 0.f);
    dense[5] = std::nanf("");
    EXPECT_THROW(elm::sparse_from_dense<float>(dense, 2, 3, 4), elm::error);
    dense[5] = 0;
    auto x = elm::sparse_from_dense<float>(dense, 2, 3, 4);
    std::vector<float> y(2 * 3), wrong(5);
    elm::workspace<float> ws;
    EXPECT_THROW(m.forward(x, wrong, ws), elm::error);
    x.num_input = 5;
    EXPECT_THROW(m.forward(x, y, ws), elm::error);
    x.num_input = 4;
    x.channels.push_back(9);
    x.values.push_back(1.f);
    x.offsets.back() = 1;
    EXPECT_THROW(m.forward(x, y, ws), elm::error);
    EXPECT_THROW(m.parameter("no_such_parameter"), elm::error);
    std::vector<std::int64_t> bad_index(4, 7);
    std::vector<float> mask(4, 1.f);
    EXPECT_THROW(m.set_routing(bad_index, mask, "test"), elm::error);
}

TEST(model, float_and_double_agree) {
    auto c = neuronio(7);
    elm::model<double> md(c, 9);
    const auto mf = md.cast<float>();
    std::mt19937 gen(1);
    std::vector<float> dense(2 * 40 * 1278, 0.f);
    for (auto& v : dense) v = (gen() % 50 == 0) ? 1.f : 0.f;
    const auto xf = elm::sparse_from_dense<float>(dense, 2, 40, 1278);
    const std::vector<double> dd(dense.begin(), dense.end());
    const auto xd = elm::sparse_from_dense<double>(dd, 2, 40, 1278);
    std::vector<float> yf(2 * 40 * 2);
    std::vector<double> yd(yf.size());
    elm::workspace<float> wf;
    elm::workspace<double> wd;
    mf.forward(xf, yf, wf);
    md.forward(xd, yd, wd);
    for (std::size_t i = 0; i < yf.size(); ++i) EXPECT_NEAR(yf[i], yd[i], 1e-4 * (1 + std::abs(yd[i])));
}

}  // namespace
