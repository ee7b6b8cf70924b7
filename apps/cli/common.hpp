#pragma once
// Helpers shared by the subcommands: progress display, atomic JSON output, the plotting script.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace elm::cli {

// One-line progress on stderr (rewritten in place on a terminal, one line per update otherwise):
// label, done/total, rate, ETA, plus a caller-provided status (loss, ...).
class progress {
public:
    progress(std::string label, std::int64_t total, std::string unit);
    void update(std::int64_t done, double work_done, const std::string& status = "");
    void finish(const std::string& status = "");

private:
    std::string label_, unit_;
    std::int64_t total_;
    std::chrono::steady_clock::time_point start_, last_;
    bool tty_;
};

void write_json_atomic(const std::string& path, const nlohmann::json& j);
// Throws elm::error unless `path` can be written later (its folder exists and is writable, and it is not a
// folder) and is none of the command's `inputs` (the same file under any name): long jobs check their output
// files before they start, not after the work.
void check_output_file(const std::string& path, std::initializer_list<std::string_view> inputs = {});

// The files of one report (eval's results, ROC, traces and plots) written side by side into a hidden folder
// of `out` and moved into place together by commit(): a run that fails or is killed leaves the previous
// report as it was (killed inside commit(), without its marker file), never one run's files beside another's.
class staged_report {
public:
    // `marker` (e.g. eval_results.json) is removed first and moved into place last by commit().
    staged_report(const std::string& out, std::string marker);
    ~staged_report();  // removes the staging folder (all of it unless committed)
    staged_report(const staged_report&) = delete;
    staged_report& operator=(const staged_report&) = delete;
    std::string path(const std::string& name) const;  // where to write the file `name` now
    // Moves every staged file into `out` and removes those of `owned` (file names) that this run did not
    // write, the marker last.
    void commit(const std::vector<std::string>& owned);

private:
    std::string out_, dir_, marker_;
};

// Throws elm::error(source, field, ...) if `bytes` (an estimate of what a request will hold in memory, e.g.
// traces) exceed the memory this machine has available now (MemAvailable + SwapFree of /proc/meminfo;
// nothing is checked where it cannot be read), so that the request fails at once with a reason instead of
// after minutes, killed by the kernel.
void check_memory(double bytes, const std::string& source, const std::string& field, const std::string& what);

// Option checks with readable messages ("--batch: expected more than 0, got '0'"; CLI11's PositiveNumber and
// NonNegativeNumber print the whole double range, 309 digits) and a non-empty text check.
CLI::Validator positive_number();
CLI::Validator non_negative_number();
CLI::Validator non_empty_text();

// The Python that runs our scripts: $ELM_PYTHON, else /usr/bin/python3 (Debian's, with its packages), else
// python3 from PATH.
std::string python_interpreter();

// Runs argv[0] (looked up in PATH) with argv as its arguments, no shell in between (any character in a
// path is passed as it is), and waits for it. The child leads its own process group and goes with us:
// SIGINT and SIGTERM sent to this process are passed on to its group (once: not also from the terminal),
// after which this process ends by the same signal; it gets SIGTERM if this process dies (SIGKILL
// included). inherit_fd (if >= 0) stays open in the child (e.g. a folder_lock's descriptor, so that the lock
// lasts until the child has gone too). Returns its exit status, 128 + the signal that ended it, or 127 if it
// could not be started.
int run_program(const std::vector<std::string>& argv, int inherit_fd = -1);

// Runs tools/plots/elm_plots.py with these arguments (python_interpreter). Returns false and prints why on
// stderr if the plot could not be made; results are never lost.
bool make_plot(const std::vector<std::string>& args);

}  // namespace elm::cli
