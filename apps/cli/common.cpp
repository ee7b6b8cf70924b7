#include "common.hpp"

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace elm::cli {

progress::progress(std::string label, std::int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      start_(std::chrono::steady_clock::now()),
      last_(start_),
      tty_(isatty(STDERR_FILENO) != 0) {}

void progress::update(std::int64_t done, double work_done, const std::string& status) {
    const auto now = std::chrono::steady_clock::now();
    // Terminals get ~10 updates/s; logs (CI, files) one line every 10 s.
    const double min_gap = tty_ ? 0.1 : 10.0;
    if (done < total_ && std::chrono::duration<double>(now - last_).count() < min_gap) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double rate = elapsed > 0 ? work_done / elapsed : 0;
    const double eta =
        done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0;
    std::fprintf(stderr, "%s%s %lld/%lld  %.3g %s/s  elapsed %.0fs  ETA %.0fs  %s%s", tty_ ? "\r\033[K" : "",
                 label_.c_str(), static_cast<long long>(done), static_cast<long long>(total_), rate,
                 unit_.c_str(), elapsed, eta, status.c_str(), tty_ ? "" : "\n");
    std::fflush(stderr);
}

void progress::finish(const std::string& status) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::fprintf(stderr, "%s%s done in %.1fs  %s\n", tty_ ? "\r\033[K" : "", label_.c_str(), elapsed,
                 status.c_str());
}

void write_json_atomic(const std::string& path, const nlohmann::json& j) {
    write_text_atomic(path, j.dump(2) + "\n");
}

void check_output_file(const std::string& path, std::initializer_list<std::string_view> inputs) {
    namespace fs = std::filesystem;
    const fs::path p(path);
    const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
    std::error_code ec;
    const char* expected = "a file in an existing, writable folder";
    if (!fs::is_directory(dir, ec)) throw elm::error(path, "path", expected, "no folder " + dir.string());
    if (fs::is_directory(p, ec)) throw elm::error(path, "path", expected, "a folder");
    if (::access(dir.c_str(), W_OK) != 0) throw elm::error(path, "path", expected, "folder not writable");
    for (const auto input : inputs)  // the same file under any name (links, ./x, a/../x)
        if (!input.empty() && fs::equivalent(p, fs::path(input), ec))
            throw elm::error(path, "path", "a file other than the command's input " + std::string(input),
                             "the same file (writing it would replace what it reads)");
}

staged_report::staged_report(const std::string& out, std::string marker)
    : out_(out), marker_(std::move(marker)) {
    namespace fs = std::filesystem;
    create_output_folder(out_);
    // Staging folders of runs that were killed (their process no longer runs) go first.
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(out_, ec)) {
        const std::string name = entry.path().filename().string();
        if (!name.starts_with(".staging.")) continue;
        const long pid = std::strtol(name.c_str() + 9, nullptr, 10);
        if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) fs::remove_all(entry, ec);
    }
    dir_ = (fs::path(out_) / (".staging." + std::to_string(::getpid()))).string();
    fs::remove_all(dir_, ec);
    create_output_folder(dir_);
}

staged_report::~staged_report() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

std::string staged_report::path(const std::string& name) const {
    return (std::filesystem::path(dir_) / name).string();
}

void staged_report::commit(const std::vector<std::string>& owned) {
    namespace fs = std::filesystem;
    const fs::path out(out_), staged(dir_);
    std::vector<std::string> written;
    for (const auto& entry : fs::directory_iterator(staged)) written.push_back(entry.path().filename());
    const auto was_written = [&](const std::string& name) {
        return std::find(written.begin(), written.end(), name) != written.end();
    };
    std::error_code ec;
    fs::remove(out / marker_, ec);  // from here until the end, the folder holds no complete report
    for (const auto& name : written)
        if (name != marker_) fs::rename(staged / name, out / name);  // same file system: atomic per file
    for (const auto& name : owned)
        if (name != marker_ && !was_written(name)) fs::remove(out / name, ec);
    if (was_written(marker_)) fs::rename(staged / marker_, out / marker_);
}

void check_memory(double bytes, const std::string& source, const std::string& field,
                  const std::string& what) {
    std::FILE* f = std::fopen("/proc/meminfo", "r");
    if (f == nullptr) return;
    double available_kb = -1, swap_kb = 0;
    char key[64];
    double value = 0;
    while (std::fscanf(f, "%63s %lf kB", key, &value) == 2) {
        if (std::strcmp(key, "MemAvailable:") == 0) available_kb = value;
        if (std::strcmp(key, "SwapFree:") == 0) swap_kb = value;
    }
    std::fclose(f);
    if (available_kb < 0) return;
    const double available = (available_kb + swap_kb) * 1024;
    const auto gb = [](double b) {
        char text[32];
        std::snprintf(text, sizeof text, "%.3g GB", b / 1e9);
        return std::string(text);
    };
    if (bytes > available)
        throw elm::error(source, field, "a request that fits the " + gb(available) + " of memory available",
                         "about " + gb(bytes) + " for " + what);
}

namespace {

CLI::Validator number_above(bool allow_zero) {
    return CLI::Validator(
        [allow_zero](std::string& text) -> std::string {
            char* end = nullptr;
            const double v = std::strtod(text.c_str(), &end);
            const bool ok =
                end != text.c_str() && *end == '\0' && std::isfinite(v) && (allow_zero ? v >= 0 : v > 0);
            return ok ? std::string()
                      : std::string(allow_zero ? "expected 0 or more" : "expected more than 0") + ", got '" +
                            text + "'";
        },
        allow_zero ? "NONNEGATIVE" : "POSITIVE");
}

}  // namespace

CLI::Validator positive_number() { return number_above(false); }
CLI::Validator non_negative_number() { return number_above(true); }
CLI::Validator non_empty_text() {
    return CLI::Validator(
        [](std::string& text) {
            return text.empty() ? std::string("expected a non-empty value") : std::string();
        },
        "TEXT");
}

std::string python_interpreter() {
    if (const char* env = std::getenv("ELM_PYTHON")) return env;
    return std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

namespace {
volatile sig_atomic_t running_child = 0;  // its process group: the child leads one of its own
volatile sig_atomic_t caught_signal = 0;
extern "C" void pass_signal_on(int sig) {
    const int saved = errno;
    caught_signal = sig;
    if (running_child > 0) ::kill(-static_cast<pid_t>(running_child), sig);
    errno = saved;
}
}  // namespace

int run_program(const std::vector<std::string>& argv, int inherit_fd) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    // Made before fork: the child of a process with threads may only call async-signal-safe functions.
    const std::string exec_failed = "elmneuron: cannot run " + argv.front() + "\n";
    std::fflush(stdout);
    std::fflush(stderr);
    // Our SIGINT/SIGTERM are passed on (below); the child's group gets them from us only, once, and not
    // also from the terminal or a kill of our group. SIGCHLD at its default, so that waitpid reaps.
    struct sigaction pass {
    }, old_int{}, old_term{}, default_chld{}, old_chld{};
    pass.sa_handler = pass_signal_on;
    sigemptyset(&pass.sa_mask);
    default_chld.sa_handler = SIG_DFL;
    sigemptyset(&default_chld.sa_mask);
    ::sigaction(SIGCHLD, &default_chld, &old_chld);
    caught_signal = 0;
    const pid_t parent = ::getpid();
    const pid_t child = ::fork();
    if (child < 0) {
        std::fprintf(stderr, "elmneuron: cannot start %s: %s\n", argv.front().c_str(), std::strerror(errno));
        ::sigaction(SIGCHLD, &old_chld, nullptr);
        return 127;
    }
    if (child == 0) {
        ::setpgid(0, 0);
        // Dies with us: without this, a killed `elmneuron simulate` left its generator running and writing.
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != parent) ::_exit(128 + SIGTERM);     // we died before the prctl
        if (inherit_fd >= 0) ::fcntl(inherit_fd, F_SETFD, 0);  // e.g. the output folder's lock
        ::execvp(args[0], args.data());
        [[maybe_unused]] const auto written = ::write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
        ::_exit(127);
    }
    ::setpgid(child, child);  // also here: whichever of the two runs first
    running_child = child;
    ::sigaction(SIGINT, &pass, &old_int);
    ::sigaction(SIGTERM, &pass, &old_term);
    int status = -1;
    pid_t reaped;
    while ((reaped = ::waitpid(child, &status, 0)) < 0 && errno == EINTR) {
    }
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &block, &old_mask);  // no signal to a reaped pid
    running_child = 0;
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::sigaction(SIGCHLD, &old_chld, nullptr);
    ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    // A signal meant for us ends us too, as it would have without a child (after the child has gone).
    if (caught_signal != 0) ::raise(caught_signal);
    if (reaped < 0) {
        std::fprintf(stderr, "elmneuron: lost track of %s: %s\n", argv.front().c_str(), std::strerror(errno));
        return 127;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 127;
}

bool make_plot(const std::vector<std::string>& args) {
    std::string script = std::string(ELM_SOURCE_DIR) + "/tools/plots/elm_plots.py";
    if (const char* env = std::getenv("ELM_PLOTS_SCRIPT")) script = env;
    std::vector<std::string> argv{python_interpreter(), script};
    argv.insert(argv.end(), args.begin(), args.end());
    const int rc = run_program(argv);
    if (rc != 0) {
        std::fprintf(stderr,
                     "elmneuron: warning: plot failed (%s exited with %d); the numeric results are written\n",
                     script.c_str(), rc);
        return false;
    }
    return true;
}

}  // namespace elm::cli
