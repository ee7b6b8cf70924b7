#include <elmneuron/error.hpp>

namespace elm {
namespace {

std::string describe(const std::string& file, const std::string& field, const std::string& expected,
                     const std::string& got, const std::string& hint) {
    std::string msg = file.empty() ? std::string("error") : file;
    if (!field.empty()) msg += ": field '" + field + "'";
    if (!expected.empty()) msg += ": expected " + expected;
    if (!got.empty()) msg += ", got " + got;
    if (!hint.empty()) msg += " (hint: " + hint + ")";
    return msg;
}

}  // namespace

error::error(std::string file, std::string field, std::string expected, std::string got, std::string hint)
    : std::runtime_error(describe(file, field, expected, got, hint)),
      file_(std::move(file)),
      field_(std::move(field)),
      expected_(std::move(expected)),
      got_(std::move(got)),
      hint_(std::move(hint)) {}

file_not_found_error::file_not_found_error(const std::string& path)
    : error(path, "", "an existing, readable file", "no such file or it cannot be opened") {}

}  // namespace elm
