#include <elmneuron/tensor_file.hpp>

#include <elmneuron/error.hpp>

#include "io/io_detail.hpp"

#include <unistd.h>

#include <filesystem>
#include <system_error>

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

}  // namespace elm
