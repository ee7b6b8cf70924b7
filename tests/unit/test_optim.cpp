// Optimisers, schedules and clipping (src/train/optim.cpp) against trajectories recorded from real PyTorch
// (tests/data/optim_reference.json, written by tests/data/make_optim_reference.py: torch.optim Adam, AdamW,
// Adamax, SGD with cosine schedules and clip_grad_norm_, in float64 and float32), plus masks, checkpoint
// round trips and input errors.
// Tolerances: double within 1e-12 of torch float64 (|diff| <= 1e-12·max(1, |ref|)); float within 1e-6 of
// torch float32 in the same sense (a few float32 ulps: torch's vector kernels round differently).

#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/optim.hpp>
#include <elmneuron/tensor_file.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace {

using json = nlohmann::json;

const json& reference() {
    static const json j = [] {
        const std::string path = std::string(ELM_TEST_DATA_DIR) + "/optim_reference.json";
        std::ifstream f(path);
        if (!f) throw std::runtime_error("cannot open " + path);
        return json::parse(f);
    }();
    return j;
}

elm::optimizer_config config_of(const json& c) {
    elm::optimizer_config cfg;
    cfg.kind = elm::parse_optimizer_kind(c.at("kind").get<std::string>(), "optim_reference.json");
    cfg.lr = c.at("schedule").at("base_lr").get<double>();
    cfg.weight_decay = c.at("weight_decay").get<double>();
    if (cfg.kind == elm::optimizer_kind::sgd) {
        cfg.momentum = c.at("momentum").get<double>();
        cfg.dampening = c.at("dampening").get<double>();
        cfg.nesterov = c.at("nesterov").get<bool>();
    } else {
        cfg.beta1 = c.at("beta1").get<double>();
        cfg.beta2 = c.at("beta2").get<double>();
        cfg.eps = c.at("eps").get<double>();
    }
    return cfg;
}

elm::lr_schedule schedule_of(const json& c) {
    const json& s = c.at("schedule");
    elm::lr_schedule sched;
    sched.kind = s.at("kind").get<std::string>() == "cosine" ? elm::schedule_kind::cosine
                                                             : elm::schedule_kind::constant;
    sched.base_lr = s.at("base_lr").get<double>();
    sched.eta_min = s.at("eta_min").get<double>();
    sched.total_steps = s.at("total_steps").get<std::int64_t>();
    return sched;
}

// |ours - ref| <= tol·max(1, |ref|) everywhere; reports the first bad index and the largest difference.
template <class T>
void expect_close(const std::vector<T>& ours, const std::vector<double>& ref, double tol,
                  const std::string& what) {
    ASSERT_EQ(ours.size(), ref.size()) << what;
    double max_diff = 0;
    std::size_t first_bad = ref.size();
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double d = std::abs(static_cast<double>(ours[i]) - ref[i]);
        max_diff = std::max(max_diff, d);
        if (!(d <= tol * std::max(1.0, std::abs(ref[i]))) && first_bad == ref.size()) first_bad = i;
    }
    EXPECT_EQ(first_bad, ref.size()) << what << ": first bad index " << first_bad << " ours "
                                     << static_cast<double>(ours[first_bad]) << " torch " << ref[first_bad]
                                     << ", max abs diff " << max_diff;
}

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// v repeated `copies` times.
template <class V>
V tiled(const V& v, std::size_t copies) {
    V out;
    for (std::size_t k = 0; k < copies; ++k) out.insert(out.end(), v.begin(), v.end());
    return out;
}

// Runs every reference case in T and compares lr, total norm and parameters after each step. With copies > 1
// the tensor is that many copies of the reference's elements (each must follow torch; clipping, where a case
// has it, is done per copy); the final parameters of each case are appended to `finals` when given.
template <class T>
void check_against_torch(double tol, const char* params_key, const char* norm_key, std::size_t copies = 1,
                         std::vector<std::vector<T>>* finals = nullptr) {
    const json& ref = reference();
    const auto init = tiled(ref.at("init").get<std::vector<double>>(), copies);
    auto grads = ref.at("grads").get<std::vector<std::vector<double>>>();
    for (auto& g : grads) g = tiled(g, copies);
    const auto mask = tiled(ref.at("mask").get<std::vector<unsigned char>>(), copies);
    const int steps = ref.at("steps").get<int>();
    ASSERT_GE(ref.at("cases").size(), 8u);
    for (const json& c : ref.at("cases")) {
        const std::string name = c.at("name").get<std::string>();
        SCOPED_TRACE(name);
        const elm::lr_schedule sched = schedule_of(c);
        elm::optimizer<T> opt(config_of(c), init.size());
        std::vector<T> params(init.begin(), init.end());
        const bool clip = !c.at("max_norm").is_null();
        for (int k = 0; k < steps; ++k) {
            const std::string at_step = name + " step " + std::to_string(k);
            // The frozen tensor's gradients are nonzero here: the mask alone must keep them out.
            std::vector<T> g(grads[k].begin(), grads[k].end());
            if (clip) {  // each copy clipped as torch clipped the reference
                const std::size_t n = g.size() / copies;
                for (std::size_t r = 0; r < copies; ++r) {
                    const double norm =
                        elm::clip_grad_norm<T>(std::span<T>(g.data() + r * n, n),
                                               std::span<const unsigned char>(mask.data() + r * n, n),
                                               c.at("max_norm").get<double>());
                    const double torch_norm = c.at(norm_key)[k].get<double>();
                    ASSERT_NEAR(norm, torch_norm, tol * torch_norm) << at_step << " copy " << r;
                }
            }
            const double lr = sched.at(k);
            EXPECT_NEAR(lr, c.at("lr")[k].get<double>(), 1e-15) << at_step;
            opt.step(params, g, mask, lr);
            EXPECT_EQ(opt.steps(), k + 1);
            expect_close(params, tiled(c.at(params_key)[k].get<std::vector<double>>(), copies), tol, at_step);
            for (std::size_t i = 0; i < mask.size(); ++i)
                if (!mask[i]) {
                    ASSERT_EQ(params[i], static_cast<T>(init[i])) << at_step << " frozen element " << i;
                }
        }
        if (finals) finals->push_back(params);
    }
}

TEST(Optimizer, MatchesTorchFloat64) { check_against_torch<double>(1e-12, "params_f64", "total_norm_f64"); }

TEST(Optimizer, MatchesTorchFloat32) { check_against_torch<float>(1e-6, "params_f32", "total_norm_f32"); }

// Tensors long enough for the update to run on the library's threads and in SIMD lanes (optim.cpp: from 32768
// elements): every copy of the reference's elements still follows torch, and the result is bit for bit the
// same on 1, 2 and 3 threads (3: the split is not a multiple of the SIMD width).
template <class T>
void check_long_tensors(double tol, const char* params_key, const char* norm_key) {
    const std::size_t n = reference().at("init").size(), copies = 65536 / n + 1;
    std::vector<std::vector<std::vector<T>>> finals(3);
    for (int threads = 1; threads <= 3; ++threads) {
        SCOPED_TRACE("threads " + std::to_string(threads));
        elm::set_num_threads(threads);
        check_against_torch<T>(tol, params_key, norm_key, copies, &finals[threads - 1]);
    }
    elm::set_num_threads(0);
    ASSERT_FALSE(finals[0].empty());
    for (int t = 1; t < 3; ++t) {
        ASSERT_EQ(finals[t].size(), finals[0].size());
        for (std::size_t c = 0; c < finals[0].size(); ++c)
            EXPECT_TRUE(bitwise_equal(finals[t][c], finals[0][c])) << "case " << c << ", threads " << t + 1;
    }
}

TEST(Optimizer, LongTensorsMatchTorchOnAnyThreadCountFloat64) {
    check_long_tensors<double>(1e-12, "params_f64", "total_norm_f64");
}

TEST(Optimizer, LongTensorsMatchTorchOnAnyThreadCountFloat32) {
    check_long_tensors<float>(1e-6, "params_f32", "total_norm_f32");
}

// The reference cases must actually move the parameters (guards against a trivially passing comparison).
TEST(Optimizer, ReferenceCasesMoveParameters) {
    const json& ref = reference();
    const auto init = ref.at("init").get<std::vector<double>>();
    for (const json& c : ref.at("cases")) {
        const auto last = c.at("params_f64").back().get<std::vector<double>>();
        double moved = 0;
        for (std::size_t i = 0; i < init.size(); ++i) moved = std::max(moved, std::abs(last[i] - init[i]));
        EXPECT_GT(moved, 1e-3) << c.at("name");
    }
}

const std::vector<elm::optimizer_config>& all_kinds() {
    static const std::vector<elm::optimizer_config> configs = [] {
        std::vector<elm::optimizer_config> v;
        elm::optimizer_config c;
        c.kind = elm::optimizer_kind::adam, c.lr = 1e-2, c.weight_decay = 0.01;
        v.push_back(c);
        c.kind = elm::optimizer_kind::adamw;
        v.push_back(c);
        c.kind = elm::optimizer_kind::adamax;
        v.push_back(c);
        c.kind = elm::optimizer_kind::sgd, c.momentum = 0.9, c.nesterov = true;
        v.push_back(c);
        c.momentum = 0, c.nesterov = false;
        v.push_back(c);
        return v;
    }();
    return configs;
}

std::vector<float> random_vector(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.f, 1.f);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

// A mask inside one block: masked elements are untouched, and the others evolve exactly as if the masked
// elements did not exist (the same optimiser on the compacted vector, clipping included).
TEST(Optimizer, MaskedElementsAreFrozen) {
    const std::size_t n = 23;
    std::vector<unsigned char> mask(n);
    for (std::size_t i = 0; i < n; ++i) mask[i] = (i % 3 == 1 || i == 20) ? 0 : 1;
    std::vector<std::size_t> kept;
    for (std::size_t i = 0; i < n; ++i)
        if (mask[i]) kept.push_back(i);
    const std::vector<unsigned char> all(kept.size(), 1);

    for (const elm::optimizer_config& cfg : all_kinds()) {
        SCOPED_TRACE(elm::to_string(cfg.kind));
        elm::optimizer<float> full(cfg, n), compact(cfg, kept.size());
        std::vector<float> p = random_vector(n, 1), pc(kept.size());
        const std::vector<float> p0 = p;
        for (std::size_t j = 0; j < kept.size(); ++j) pc[j] = p[kept[j]];
        for (unsigned step = 0; step < 4; ++step) {
            std::vector<float> g = random_vector(n, 100 + step), gc(kept.size());
            for (std::size_t j = 0; j < kept.size(); ++j) gc[j] = g[kept[j]];
            EXPECT_EQ(elm::clip_grad_norm<float>(g, mask, 1.0), elm::clip_grad_norm<float>(gc, all, 1.0));
            full.step(p, g, mask, 0.05);
            compact.step(pc, gc, all, 0.05);
        }
        for (std::size_t i = 0; i < n; ++i) {
            if (!mask[i]) {
                EXPECT_EQ(p[i], p0[i]) << i;
            }
        }
        for (std::size_t j = 0; j < kept.size(); ++j) EXPECT_EQ(p[kept[j]], pc[j]) << kept[j];
        // State of masked elements stays zero.
        elm::tensor_file state;
        full.save_state(state);
        for (const elm::tensor& t : state.tensors) {
            if (t.name == "optim.step") continue;
            const auto v = t.to<float>();
            for (std::size_t i = 0; i < n; ++i) {
                if (!mask[i]) {
                    EXPECT_EQ(v[i], 0.f) << t.name << ' ' << i;
                }
            }
        }
    }
}

// Saving after k steps and loading into a fresh optimiser continues bit-identically, through the real
// safetensors bytes.
template <class T>
void check_round_trip() {
    const std::size_t n = 9;
    const std::vector<unsigned char> mask = {1, 1, 0, 1, 1, 1, 1, 0, 1};
    for (const elm::optimizer_config& cfg : all_kinds()) {
        SCOPED_TRACE(elm::to_string(cfg.kind));
        elm::optimizer<T> a(cfg, n);
        const auto r = random_vector(n, 7);
        std::vector<T> p(r.begin(), r.end());
        for (unsigned step = 0; step < 3; ++step) {
            const auto g = random_vector(n, 200 + step);
            a.step(p, std::vector<T>(g.begin(), g.end()), mask, 0.01);
        }
        elm::tensor_file saved;
        saved.source = "round_trip.safetensors";
        a.save_state(saved);
        a.save_state(saved);  // saving twice replaces, it does not duplicate
        const auto bytes = elm::serialize_safetensors(saved);
        const elm::tensor_file loaded = elm::parse_safetensors(bytes, "round_trip.safetensors");
        EXPECT_EQ(loaded.tensors.size(), saved.tensors.size());

        elm::optimizer<T> b(cfg, n);
        b.load_state(loaded);
        EXPECT_EQ(b.steps(), 3);
        std::vector<T> q = p;
        for (unsigned step = 3; step < 6; ++step) {
            const auto g = random_vector(n, 200 + step);
            const std::vector<T> gt(g.begin(), g.end());
            a.step(p, gt, mask, 0.02);
            b.step(q, gt, mask, 0.02);
        }
        EXPECT_TRUE(bitwise_equal(p, q));
        elm::tensor_file sa, sb;
        a.save_state(sa);
        b.save_state(sb);
        ASSERT_EQ(sa.tensors.size(), sb.tensors.size());
        for (std::size_t i = 0; i < sa.tensors.size(); ++i) {
            EXPECT_EQ(sa.tensors[i].name, sb.tensors[i].name);
            EXPECT_EQ(sa.tensors[i].data, sb.tensors[i].data) << sa.tensors[i].name;
        }
    }
}

TEST(Optimizer, SaveLoadContinuesBitIdenticallyFloat) { check_round_trip<float>(); }
TEST(Optimizer, SaveLoadContinuesBitIdenticallyDouble) { check_round_trip<double>(); }

TEST(Optimizer, SaveStateNames) {
    elm::optimizer_config cfg;
    elm::tensor_file f;
    elm::optimizer<float>(cfg, 4).save_state(f);
    EXPECT_EQ(f.metadata.at("optim.kind"), "adam");
    EXPECT_NE(f.find("optim.step"), nullptr);
    EXPECT_NE(f.find("optim.exp_avg"), nullptr);
    EXPECT_NE(f.find("optim.exp_avg_sq"), nullptr);
    cfg.kind = elm::optimizer_kind::adamax;
    elm::tensor_file fx;
    elm::optimizer<float>(cfg, 4).save_state(fx);
    EXPECT_NE(fx.find("optim.exp_inf"), nullptr);
    cfg.kind = elm::optimizer_kind::sgd;
    elm::tensor_file fs;
    elm::optimizer<float>(cfg, 4).save_state(fs);
    EXPECT_EQ(fs.tensors.size(), 1u);  // no momentum: only the step
    cfg.momentum = 0.5;
    elm::tensor_file fm;
    elm::optimizer<float>(cfg, 4).save_state(fm);
    EXPECT_NE(fm.find("optim.momentum_buffer"), nullptr);
}

TEST(Optimizer, LoadStateErrors) {
    elm::optimizer_config adam;
    elm::optimizer<double> opt(adam, 5);
    std::vector<double> p(5, 1.0), g(5, 0.5);
    const std::vector<unsigned char> mask(5, 1);
    opt.step(p, g, mask, 0.1);
    elm::tensor_file good;
    good.source = "ckpt.safetensors";
    opt.save_state(good);

    const auto expect_error = [](const elm::optimizer<double>& target, const elm::tensor_file& f,
                                 const char* field) {
        elm::optimizer<double> o = target;
        const std::int64_t steps_before = o.steps();
        try {
            o.load_state(f);
            ADD_FAILURE() << "no throw for " << field;
        } catch (const elm::error& e) {
            EXPECT_EQ(e.file(), "ckpt.safetensors") << field;
            EXPECT_EQ(e.field(), field) << e.what();
        }
        EXPECT_EQ(o.steps(), steps_before);  // a failed load changes nothing
    };
    const elm::optimizer<double> fresh(adam, 5);

    elm::tensor_file wrong_kind = good;
    wrong_kind.metadata["optim.kind"] = "sgd";
    expect_error(fresh, wrong_kind, "optim.kind");

    elm::tensor_file no_kind = good;
    no_kind.metadata.erase("optim.kind");
    expect_error(fresh, no_kind, "optim.kind");

    elm::optimizer_config adamw = adam;
    adamw.kind = elm::optimizer_kind::adamw;
    elm::optimizer<double> other_kind(adamw, 5);
    EXPECT_THROW(other_kind.load_state(good), elm::error);

    elm::optimizer<double> wrong_size(adam, 6);
    EXPECT_THROW(wrong_size.load_state(good), elm::error);

    elm::tensor_file missing = good;
    std::erase_if(missing.tensors, [](const elm::tensor& t) { return t.name == "optim.exp_avg_sq"; });
    EXPECT_THROW(elm::optimizer<double>(fresh).load_state(missing), elm::error);

    elm::tensor_file negative = good;
    for (elm::tensor& t : negative.tensors)
        if (t.name == "optim.exp_avg_sq") {
            const std::vector<double> v = {0.1, -0.2, 0.3, 0.4, 0.5};
            t = elm::make_tensor<double>("optim.exp_avg_sq", {5}, v);
        }
    expect_error(fresh, negative, "optim.exp_avg_sq");
}

TEST(Optimizer, StepSizeErrors) {
    elm::optimizer<float> opt(elm::optimizer_config{}, 4);
    std::vector<float> p(4), g(4), short_v(3);
    const std::vector<unsigned char> mask(4, 1), short_mask(3, 1);
    EXPECT_THROW(opt.step(short_v, g, mask, 0.1), elm::error);
    EXPECT_THROW(opt.step(p, short_v, mask, 0.1), elm::error);
    EXPECT_THROW(opt.step(p, g, short_mask, 0.1), elm::error);
    EXPECT_THROW(opt.step(p, g, mask, -0.1), elm::error);
    EXPECT_THROW(opt.step(p, g, mask, std::nan("")), elm::error);
    EXPECT_EQ(opt.steps(), 0);
}

TEST(Optimizer, ConfigErrors) {
    const auto rejects = [](elm::optimizer_config c, const char* field) {
        try {
            elm::optimizer<double> o(c, 3);
            ADD_FAILURE() << "accepted bad " << field;
        } catch (const elm::error& e) {
            EXPECT_EQ(e.field(), field) << e.what();
        }
    };
    elm::optimizer_config c;
    c.lr = -1;
    rejects(c, "lr");
    c = {}, c.beta1 = 1.0;
    rejects(c, "beta1");
    c = {}, c.beta2 = -0.1;
    rejects(c, "beta2");
    c = {}, c.eps = -1e-8;
    rejects(c, "eps");
    c = {}, c.weight_decay = std::nan("");
    rejects(c, "weight_decay");
    c = {}, c.kind = elm::optimizer_kind::sgd, c.nesterov = true;  // torch: nesterov needs momentum
    rejects(c, "nesterov");
    c.momentum = 0.9, c.dampening = 0.1;  // ... and zero dampening
    rejects(c, "nesterov");
}

TEST(OptimizerKind, ParseAndPrint) {
    for (auto k : {elm::optimizer_kind::sgd, elm::optimizer_kind::adam, elm::optimizer_kind::adamw,
                   elm::optimizer_kind::adamax})
        EXPECT_EQ(elm::parse_optimizer_kind(elm::to_string(k), "test"), k);
    EXPECT_EQ(elm::parse_optimizer_kind("AdamW", "test"), elm::optimizer_kind::adamw);  // torch class name
    try {
        elm::parse_optimizer_kind("rmsprop", "train.json");
        ADD_FAILURE() << "no throw";
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), "train.json");
        EXPECT_EQ(e.field(), "optimizer");
        EXPECT_EQ(e.got(), "\"rmsprop\"");
    }
}

TEST(LrSchedule, ConstantAndCosine) {
    elm::lr_schedule s;
    s.base_lr = 5e-4;
    EXPECT_EQ(s.at(0), 5e-4);
    EXPECT_EQ(s.at(123456), 5e-4);
    s.kind = elm::schedule_kind::cosine, s.eta_min = 1e-5, s.total_steps = 1000;
    EXPECT_EQ(s.at(0), 5e-4);
    EXPECT_NEAR(s.at(500), (5e-4 + 1e-5) / 2, 1e-18);
    EXPECT_NEAR(s.at(1000), 1e-5, 1e-18);
    EXPECT_NEAR(s.at(250), 1e-5 + (5e-4 - 1e-5) * (1 + std::sqrt(0.5)) / 2, 1e-18);
    for (std::int64_t k = 1; k <= 1000; ++k) EXPECT_LT(s.at(k), s.at(k - 1));
    s.total_steps = 0;
    EXPECT_THROW(s.at(0), elm::error);
    s.total_steps = 10;
    EXPECT_THROW(s.at(-1), elm::error);
}

TEST(ClipGradNorm, ScalesOnlyAboveMaxNormAndOnlyMaskedIn) {
    std::vector<double> g = {3, 100, 4};
    const std::vector<unsigned char> mask = {1, 0, 1};
    EXPECT_DOUBLE_EQ(elm::clip_grad_norm<double>(g, mask, 10.0), 5.0);
    EXPECT_EQ(g, (std::vector<double>{3, 100, 4}));  // below max_norm: untouched (bitwise)
    EXPECT_DOUBLE_EQ(elm::clip_grad_norm<double>(g, mask, 1.0), 5.0);
    const double coef = 1.0 / (5.0 + 1e-6);  // torch's clip_coef, with its 1e-6
    EXPECT_EQ(g[0], 3 * coef);
    EXPECT_EQ(g[1], 100.0);
    EXPECT_EQ(g[2], 4 * coef);

    std::vector<float> gf = {1, 2};
    const std::vector<unsigned char> mf(2, 1), short_mask(1, 1);
    EXPECT_THROW(elm::clip_grad_norm<float>(gf, short_mask, 1.0), elm::error);
    EXPECT_THROW(elm::clip_grad_norm<float>(gf, mf, 0.0), elm::error);
    // A non-finite norm poisons the gradients, as in torch (error_if_nonfinite=False).
    std::vector<float> bad = {1, std::nanf("")};
    EXPECT_TRUE(std::isnan(elm::clip_grad_norm<float>(bad, mf, 1.0)));
    EXPECT_TRUE(std::isnan(bad[0]));
}

}  // namespace
