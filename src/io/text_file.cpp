#include <elmneuron/tensor_file.hpp>

#include <elmneuron/error.hpp>

#include "io/io_detail.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <regex>
#include <set>
#include <system_error>
#include <vector>

namespace elm {

void write_text_atomic(const std::string& path, std::string_view text) {
    detail::write_file_atomic(path, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

void create_output_folder(const std::string& path, const std::string& field) {
    namespace fs = std::filesystem;
    const char* expected = "a folder that exists or can be created, and is writable";
    if (path.empty()) throw error(path, field, expected, "an empty path");
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec) throw error(path, field, expected, ec.message());
    if (!fs::is_directory(path, ec)) throw error(path, field, expected, "not a folder");
    if (::access(path.c_str(), W_OK | X_OK) != 0) throw error(path, field, expected, "not writable");
}

void remove_stale_temporaries(const std::string& folder) { detail::remove_stale_temporaries(folder, ""); }

namespace detail {

nlohmann::json parse_json_strict(std::string_view text, std::string_view source, std::string_view field,
                                 std::size_t max_depth) {
    const std::string src(source), fld(field);
    std::vector<std::set<std::string>> keys;  // of the objects open at this point
    try {
        return nlohmann::json::parse(text, [&](int depth, nlohmann::json::parse_event_t e,
                                               nlohmann::json& v) {
            using ev = nlohmann::json::parse_event_t;
            if (static_cast<std::size_t>(depth) > max_depth)
                throw error(src, fld, "JSON nested at most " + std::to_string(max_depth) + " deep", "deeper");
            if (e == ev::object_start)
                keys.emplace_back();
            else if (e == ev::object_end && !keys.empty())
                keys.pop_back();
            else if (e == ev::key && !keys.empty() && !keys.back().insert(v.get<std::string>()).second)
                throw error(src, v.get<std::string>(), "each key once in its object", "a duplicate key");
            return true;
        });
    } catch (const nlohmann::json::exception& e) {
        throw error(src, fld, "valid JSON", e.what());
    }
}

void remove_stale_temporaries(const std::string& folder, std::string_view target) {
    namespace fs = std::filesystem;
    // write_file_atomic's names: NAME.tmp.PID.N
    static const std::regex temporary(R"((.+)\.tmp\.([0-9]{1,10})\.[0-9]{1,10})");
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
        const std::string name = entry.path().filename().string();
        std::smatch match;
        if (!entry.is_regular_file(ec) || !std::regex_match(name, match, temporary)) continue;
        // Only temporaries of the kinds our writers make: a user's notes.tmp.2024.05 stays.
        const std::string made_for = match[1].str();
        if (target.empty() ? !made_for.ends_with(".safetensors") && !made_for.ends_with(".csv") &&
                                 !made_for.ends_with(".json") && !made_for.ends_with(".npy")
                           : made_for != target)
            continue;
        long long pid = 0;
        const std::string digits = match[2].str();
        std::from_chars(digits.data(), digits.data() + digits.size(), pid);
        const bool running = pid > 0 && pid <= std::numeric_limits<pid_t>::max() &&
                             (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
        if (!running) fs::remove(entry.path(), ec);
    }
}

}  // namespace detail

folder_lock::folder_lock(const std::string& folder, const std::string& field) {
    const std::string path = (std::filesystem::path(folder) / ".lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw error(folder, field, "a writable folder", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        ::close(fd_);
        fd_ = -1;
        if (err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS) {
            std::fprintf(
                stderr, "elmneuron: warning: %s cannot be locked (%s); make sure no other job writes there\n",
                folder.c_str(), std::strerror(err));
            return;
        }
        if (err == EWOULDBLOCK)
            throw error(folder, field, "a folder no other job is writing to", "locked by another running job",
                        "wait for it to finish, or use another folder");
        throw error(folder, field, "a lockable folder", std::strerror(err));
    }
}

folder_lock::~folder_lock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock (unless a child process still holds it)
}

}  // namespace elm
