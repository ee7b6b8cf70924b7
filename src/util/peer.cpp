// The PyTorch speed peer (bench/peer_pytorch.py) in a child process, for elmneuron bench and
// bench/bench_model (include/elmneuron/benchmark.hpp). The script reads a JSON request on stdin and answers
// one JSON line per result; its protocol is in bench/peer_pytorch.py.

#include <elmneuron/benchmark.hpp>
#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>

#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace elm {
namespace {

using json = nlohmann::json;

// Single-quoted for /bin/sh.
std::string shell_quote(const std::string& v) {
    std::string q = "'";
    for (char c : v) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

std::string peer_hint(const peer_flag_names& f) {
    return "the peer needs Debian's python3-torch: scripts/install-deps.sh --peer, and " + f.python +
           " /usr/bin/python3 if another python3 comes first in PATH";
}

// Runs the peer script with `args` and stdin from `request` (if not empty); returns its last JSON line that
// has `key`. Throws elm::error when it gives none.
json run_peer_script(const peer_options& o, const std::string& args, const std::string& request,
                     const char* key) {
    namespace fs = std::filesystem;
    const fs::path req = fs::temp_directory_path() / ("elmneuron-peer-" + std::to_string(getpid()) + ".json");
    std::string cmd = shell_quote(o.python) + " " + shell_quote(o.script) + " " + args;
    if (!request.empty()) {
        std::ofstream f(req);
        f << request << "\n";
        cmd += " < " + shell_quote(req.string());
    }
    std::fflush(stdout);
    FILE* p = popen(cmd.c_str(), "r");
    std::error_code ec;
    if (!p) {
        fs::remove(req, ec);
        throw error(o.flags.program, o.flags.python, "a runnable Python interpreter", "cannot start: " + cmd);
    }
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    const int status = pclose(p);
    fs::remove(req, ec);
    std::optional<json> result;
    std::string reported;  // the script's own error, if it gave one
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty() || line.front() != '{') continue;
        auto j = json::parse(line, nullptr, false);
        if (j.is_discarded()) continue;
        if (j.contains(key))
            result = std::move(j);
        else if (j.contains("error") && j["error"].is_string())
            reported = j["error"].get<std::string>();
    }
    if (!result) {
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (!reported.empty() && !o.published_code.empty())
            throw error(o.flags.program, o.flags.published_code,
                        "a checkout of github.com/AaronSpieler/elmneuron whose classes the peer can import",
                        reported);
        throw error(o.flags.program, o.flags.peer, "JSON results from " + o.script,
                    (reported.empty() ? "no result" : reported) + " (exit status " + std::to_string(code) +
                        "; command: " + cmd + ")",
                    peer_hint(o.flags));
    }
    return *result;
}

}  // namespace

std::string locate_peer_script(const std::string& given, const peer_flag_names& flags) {
    namespace fs = std::filesystem;
    if (!given.empty()) {
        if (!fs::is_regular_file(given)) throw file_not_found_error(given);
        return given;
    }
    if (const char* env = std::getenv("ELM_PEER_SCRIPT"); env && *env) {
        if (!fs::is_regular_file(env)) throw file_not_found_error(env);
        return env;
    }
    std::vector<fs::path> candidates;
#ifdef ELM_SOURCE_DIR
    candidates.push_back(fs::path(ELM_SOURCE_DIR) / "bench" / "peer_pytorch.py");
#endif
    std::error_code ec;
    const fs::path exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
    if (!ec) {
        candidates.push_back(exe_dir / ".." / "bench" / "peer_pytorch.py");
        candidates.push_back(exe_dir / "bench" / "peer_pytorch.py");
        candidates.push_back(exe_dir / ".." / "share" / "elmneuron" / "peer_pytorch.py");
    }
    std::string tried;
    for (const auto& c : candidates) {
        if (fs::is_regular_file(c)) return fs::weakly_canonical(c).string();
        tried += (tried.empty() ? "" : ", ") + c.string();
    }
    throw error(flags.program, flags.script, "the path of bench/peer_pytorch.py",
                "not found (tried " + tried + ")", "pass " + flags.script + " PATH or set ELM_PEER_SCRIPT");
}

std::string default_peer_python() {
    return std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

std::string published_code_folder(const std::string& given, const peer_flag_names& flags) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (given.empty() || !fs::is_directory(given, ec))
        throw error(flags.program, flags.published_code,
                    "a checkout of github.com/AaronSpieler/elmneuron (a folder)",
                    "'" + given + "', not a folder");
    return fs::absolute(given).lexically_normal().string();
}

std::string run_peer(const benchmark_shape& s, const peer_options& o) {
    const int repeats = o.repeats > 0 ? o.repeats : (s.time > 1000 ? 1 : 3);
    json request{{"threads", o.threads},
                 {"repeats", repeats},
                 {"warmup", o.warmup},
                 {"seed", 0},
                 {"shapes",
                  {{{"name", s.name},
                    {"config", json::parse(to_json(s.config))},
                    {"batch", s.batch},
                    {"time", s.time},
                    {"input_kind", s.input_kind},
                    // The rate given, if any (null: the kind's own; a onehot input takes none).
                    {"input_rate", s.input_rate ? json(*s.input_rate) : json(nullptr)}}}}};
    if (!o.published_code.empty()) request["published_code"] = o.published_code;
    json answer = run_peer_script(o, "", request.dump(), "shape");
    if (answer.contains("error") && !answer["error"].is_string()) answer["error"] = answer["error"].dump();
    // Checked here, once for both tools: a time missing from the answer would otherwise surface as a JSON
    // type error where a ratio is computed.
    if (!answer.contains("error"))
        for (const auto m : all_measurements) {
            const json t = answer.value(peer_time_key(m), json());
            if (!t.is_number() || !(t.get<double>() >= 0))
                throw error(o.flags.program, o.flags.peer,
                            "each measurement's time (ms) in the answer of " + o.script,
                            std::string(t.is_null() ? "no " : "a bad ") + peer_time_key(m) +
                                " in its answer for shape " + s.name + (t.is_null() ? "" : ": " + t.dump()));
        }
    return answer.dump();
}

peer_sgemm_peak run_peer_sgemm_peak(const peer_options& o) {
    const std::string args =
        "--sgemm-peak --threads 1" +
        (o.published_code.empty() ? std::string() : " --published-code " + shell_quote(o.published_code));
    const json a = run_peer_script(o, args, "", "sgemm_gflops");
    if (!a["sgemm_gflops"].is_number() || !(a["sgemm_gflops"].get<double>() > 0))
        throw error(o.flags.program, o.flags.peer, "a positive number as the sgemm peak from " + o.script,
                    a["sgemm_gflops"].dump());
    // The BLAS's summary only describes the run: "?" if the script gives none.
    const json blas = a.value("blas", json::object());
    const bool has_summary = blas.is_object() && blas.contains("summary") && blas["summary"].is_string();
    return {a["sgemm_gflops"].get<double>(), has_summary ? blas["summary"].get<std::string>() : "?"};
}

}  // namespace elm
