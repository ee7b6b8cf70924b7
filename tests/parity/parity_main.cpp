// Parity with the published PyTorch ELM (golden/README.md): for every *.safetensors case in a folder,
// checks outputs, state traces, gradients and Adam steps (those the case holds) in float32 and float64 at
// the stated tolerances, and pretrained cases through the .pt loader. One row per file and precision; any
// failure, NaN or unknown case type makes the exit status non-zero.
//
//   elm_parity [--golden DIR] [--models DIR]     (defaults: $ELM_GOLDEN_DIR, $ELM_MODELS_DIR, else the
//                  repo's tests/data/golden and DIR/../models/official as in golden/README.md, else the
//                  repo's models/official)

#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/model_file.hpp>
#include <elmneuron/optim.hpp>
#include <elmneuron/tensor_file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct tolerance {
    double state, grad;  // outputs and traces; gradients and Adam steps
};
template <class T>
constexpr tolerance tolerance_for() {
    return sizeof(T) == 4 ? tolerance{1e-5, 1e-4} : tolerance{1e-10, 1e-10};
}

// ‖ours − ref‖ / ‖ref‖ (absolute norm if ref is zero). NaN anywhere, or an infinity on one side only, gives
// +inf; equal infinities (the published ±inf τ_m logits, see model::validate_parameters) match.
template <class Vector>
double relative_error(const Vector& ours, const std::vector<double>& ref) {
    if (ours.size() != ref.size()) return INFINITY;
    double num = 0, den = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double o = static_cast<double>(ours[i]);
        if (std::isinf(o) && o == ref[i]) continue;
        if (!std::isfinite(o) || !std::isfinite(ref[i])) return INFINITY;
        num += (o - ref[i]) * (o - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct row {
    // The largest error of each kind; -1: not checked (the case does not hold it).
    double output = -1, trace = -1, grad = -1, adam = -1;
    std::vector<std::string> failures;
    void check(const std::string& what, double err, double tol, double& slot) {
        slot = std::max(slot, err);
        if (!(err < tol))
            failures.push_back(what + " rel.err " + std::to_string(err) + " >= " + std::to_string(tol));
    }
};

// A reference stored as F32 (the traces) carries float32 rounding (2^-24 relative per element), so in float64
// it is compared at 1e-6 instead of 1e-10: the bound its own storage allows, still 20x above that rounding.
double reference_tolerance(const elm::tensor& ref, double tol) {
    return ref.type == elm::dtype::f32 ? std::max(tol, 1e-6) : tol;
}

template <class T>
std::vector<T> values(const elm::tensor& t) {
    return t.to<T>();
}

// State dict of a model case: the param.* tensors under their published names.
elm::tensor_file params_of(const elm::tensor_file& f) {
    elm::tensor_file sd;
    sd.source = f.source;
    for (const auto& t : f.tensors)
        if (t.name.rfind("param.", 0) == 0) {
            auto copy = t;
            copy.name = t.name.substr(6);
            sd.tensors.push_back(std::move(copy));
        }
    return sd;
}

template <class T>
elm::sparse_input<T> input_of(const elm::tensor_file& f) {
    const auto& in = f.at("input");
    if (in.shape.size() != 3)
        throw elm::error(f.source, "input", "shape [B, T, num_input]",
                         "rank " + std::to_string(in.shape.size()));
    return elm::sparse_from_dense<T>(values<T>(in), static_cast<int>(in.shape[0]),
                                     static_cast<int>(in.shape[1]), static_cast<int>(in.shape[2]),
                                     f.source + ":input");
}

template <class T>
row check_model_case(const elm::tensor_file& f) {
    const tolerance tol = tolerance_for<T>();
    row r;
    const auto version =
        f.metadata.at("model_version") == "v2" ? elm::model_version::v2 : elm::model_version::v1;
    const auto config = elm::parse_model_config(f.metadata.at("config"), f.source + ":config", version);
    auto m = elm::model_from_state_dict<T>(config, params_of(f));

    // The case's trainable set: the published model's (learn_memory_tau decides _proto_tau_m), or fewer if
    // the reference froze some by hand; those are the gradients checked and the parameters Adam moves. One
    // the published model would train and ours would not is a failure.
    std::set<std::string> ours;
    for (const auto& p : m.layout())
        if (p.trainable) ours.insert(p.name);
    std::set<std::string> expected = ours;
    if (f.metadata.count("trainable")) {
        expected.clear();
        for (const auto& name : json::parse(f.metadata.at("trainable")))
            expected.insert(name.get<std::string>());
    }
    for (const auto& name : expected)
        if (!ours.contains(name))
            r.failures.push_back("trainable parameter " + name + " is not trainable in ours");
    std::vector<unsigned char> mask(m.parameters().size(), 0);
    for (const auto& name : expected) {
        if (!ours.contains(name)) continue;
        const auto& p = m.info(name);
        std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(p.offset), p.size, 1);
    }

    const auto x = input_of<T>(f);
    const std::size_t out_size = static_cast<std::size_t>(x.batch) * x.time * config.num_output;
    std::vector<T> y(out_size);
    elm::workspace<T> ws;
    m.forward(x, y, ws);
    r.check("output", relative_error(y, f.at("output").to<double>()), tol.state, r.output);
    // Traces, gradients and Adam steps are checked where the case has them (the visible cases have all).
    if (const auto* ref = f.find("trace.memory"))
        r.check("trace.memory", relative_error(m.memory_trace(ws), ref->to<double>()),
                reference_tolerance(*ref, tol.state), r.trace);
    if (const auto* ref = f.find("trace.branch")) {
        std::vector<T> b(static_cast<std::size_t>(x.batch) * x.time * config.branches());
        m.branch_trace(x, b);
        r.check("trace.branch", relative_error(b, ref->to<double>()), reference_tolerance(*ref, tol.state),
                r.trace);
    }
    if (const auto* ref = f.find("trace.synapse")) {
        std::vector<T> s(static_cast<std::size_t>(x.batch) * x.time * config.num_synapse());
        m.synapse_trace(x, s);
        r.check("trace.synapse", relative_error(s, ref->to<double>()), reference_tolerance(*ref, tol.state),
                r.trace);
    }
    if (!f.find("grad_output")) return r;

    // loss = sum(output * grad_output): dL/dy = grad_output.
    const auto dy = values<T>(f.at("grad_output"));
    std::vector<T> grads(m.parameters().size(), T(0));
    m.backward(x, dy, ws, grads);
    for (const auto& name : expected) {
        if (!ours.contains(name)) continue;
        const auto& p = m.info(name);
        std::vector<T> g(grads.begin() + static_cast<std::ptrdiff_t>(p.offset),
                         grads.begin() + static_cast<std::ptrdiff_t>(p.offset + p.size));
        r.check("grad." + name, relative_error(g, f.at("grad." + name).to<double>()), tol.grad, r.grad);
    }
    if (!f.metadata.count("adam")) return r;

    // torch.optim.Adam steps on the same loss, recomputed at every step.
    const auto adam = json::parse(f.metadata.at("adam"));
    elm::optimizer_config oc;
    oc.kind = elm::optimizer_kind::adam;
    oc.lr = adam.at("lr").get<double>();
    oc.beta1 = adam.at("betas").at(0).get<double>();
    oc.beta2 = adam.at("betas").at(1).get<double>();
    oc.eps = adam.at("eps").get<double>();
    oc.weight_decay = adam.at("weight_decay").get<double>();
    elm::optimizer<T> opt(oc, m.parameters().size());
    for (int step = 0; step < adam.at("steps").get<int>(); ++step) {
        m.forward(x, y, ws);
        std::fill(grads.begin(), grads.end(), T(0));
        m.backward(x, dy, ws, grads);
        opt.step(m.parameters(), grads, mask, oc.lr);
    }
    for (const auto& name : expected) {
        if (!ours.contains(name)) continue;
        const auto after = m.parameter(name);
        const std::vector<T> a(after.begin(), after.end());
        r.check("adam3." + name, relative_error(a, f.at("adam3." + name).to<double>()), tol.grad, r.adam);
    }
    return r;
}

template <class T>
row check_pretrained_case(const elm::tensor_file& f, const fs::path& models) {
    const tolerance tol = tolerance_for<T>();
    row r;
    const fs::path folder = models / f.metadata.at("model");
    auto m = elm::load_model<T>(folder.string());
    // The folder's model_config.json must be the one the golden case was made with.
    const auto expected = elm::parse_model_config(f.metadata.at("config"), f.source + ":config");
    if (elm::to_json(expected) != elm::to_json(m.config()))
        r.failures.push_back("config differs from " + folder.string());
    const auto x = input_of<T>(f);
    std::vector<T> y(static_cast<std::size_t>(x.batch) * x.time * m.config().num_output);
    elm::workspace<T> ws;
    m.forward(x, y, ws);
    r.check("output", relative_error(y, f.at("output").to<double>()), tol.state, r.output);
    // Evaluation transform (reference/paper.md §5): sigmoid(spike logit), soma / 0.1.
    std::vector<T> eval(y.size());
    for (std::size_t i = 0; i < y.size(); i += 2) {
        eval[i] = T(1) / (T(1) + std::exp(-y[i]));
        eval[i + 1] = y[i + 1] / T(0.1);
    }
    r.check("eval_output", relative_error(eval, f.at("eval_output").to<double>()), tol.state, r.output);
    return r;
}

template <class T>
bool run_case(const elm::tensor_file& f, const fs::path& models, const char* precision) {
    row r;
    std::string kind;
    try {
        if (f.metadata.count("model")) {
            kind = "pretrained";
            r = check_pretrained_case<T>(f, models);
        } else if (f.metadata.count("model_version") && f.metadata.count("config")) {
            kind = "model";
            r = check_model_case<T>(f);
        } else {
            kind = "UNKNOWN";
            r.failures.push_back(
                "unknown case type: metadata has neither 'model' nor 'model_version'+'config'");
        }
    } catch (const std::exception& e) {
        r.failures.push_back(std::string("error: ") + e.what());
    }
    const auto shown = [](double e) {  // "-": not in the case
        char text[16];
        std::snprintf(text, sizeof text, "%.2e", e);
        return e < 0 ? std::string("   -    ") : std::string(text);
    };
    std::printf("%-48s %-10s %-4s output %s  trace %s  grad %s  adam3 %s  %s\n",
                fs::path(f.source).filename().c_str(), kind.c_str(), precision, shown(r.output).c_str(),
                shown(r.trace).c_str(), shown(r.grad).c_str(), shown(r.adam).c_str(),
                r.failures.empty() ? "ok" : "FAIL");
    for (const auto& why : r.failures) std::printf("    %s\n", why.c_str());
    return r.failures.empty();
}

}  // namespace

int main(int argc, char** argv) {
    const char* env_golden = std::getenv("ELM_GOLDEN_DIR");
    const char* env_models = std::getenv("ELM_MODELS_DIR");
    fs::path golden = env_golden ? env_golden : ELM_GOLDEN_DIR, models = env_models ? env_models : "";
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if ((a == "--golden" || a == "--models") && i + 1 < argc) {
            (a == "--golden" ? golden : models) = argv[++i];
            // An environment variable overrides the built-in default given on the command line by ctest.
            if (a == "--golden" && env_golden) golden = env_golden;
            if (a == "--models" && env_models) models = env_models;
        } else {
            std::fprintf(stderr, "usage: elm_parity [--golden DIR] [--models DIR]\n");
            return 2;
        }
    }
    if (golden.empty() || !fs::is_directory(golden)) {
        std::fprintf(stderr, "elm_parity: golden folder '%s' does not exist\n", golden.c_str());
        return 2;
    }
    // golden/README.md: a pretrained case names a folder of ../models/official/ (beside the golden folder).
    // Else the repository's copy.
    if (models.empty()) {
        const fs::path beside = golden / ".." / "models" / "official";
        models = fs::is_directory(beside) ? beside : fs::path(ELM_MODELS_DIR);
    }
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(golden))
        if (e.path().extension() == ".safetensors") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) {
        std::fprintf(stderr, "elm_parity: no *.safetensors cases in %s\n", golden.c_str());
        return 1;
    }
    int passed = 0, failed = 0;
    for (const auto& path : files) {
        elm::tensor_file f;
        try {
            f = elm::read_safetensors(path.string());
        } catch (const std::exception& e) {
            std::printf("%-48s unreadable: %s\n", path.filename().c_str(), e.what());
            ++failed;
            continue;
        }
        (run_case<float>(f, models, "f32") ? passed : failed)++;
        (run_case<double>(f, models, "f64") ? passed : failed)++;
    }
    std::printf("parity: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
