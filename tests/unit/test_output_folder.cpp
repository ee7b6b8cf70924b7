// elm::create_output_folder: made when missing (parents too), accepted when it exists (trailing slash,
// relative path), and an elm::error naming the folder when it cannot be made or written.

#include <elmneuron/error.hpp>
#include <elmneuron/tensor_file.hpp>

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace fs = std::filesystem;

namespace {

fs::path scratch_dir() {
    const auto dir = fs::temp_directory_path() / ("elm_output_folder_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

void expect_folder_error(const std::string& path, const std::string& got) {
    try {
        elm::create_output_folder(path);
        FAIL() << "no error for '" << path << "'";
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), path);
        EXPECT_EQ(e.field(), "output folder");
        EXPECT_NE(e.got().find(got), std::string::npos) << e.what();
    }
}

TEST(output_folder, made_with_parents_or_accepted_when_it_exists) {
    const auto dir = scratch_dir();
    const auto nested = dir / "a" / "b" / "c";
    elm::create_output_folder(nested.string());
    EXPECT_TRUE(fs::is_directory(nested));
    elm::create_output_folder(nested.string());        // exists: fine
    elm::create_output_folder(nested.string() + "/");  // trailing slash
    std::ofstream(nested / "written.txt") << "ok";     // and files can be written into it
    EXPECT_TRUE(fs::exists(nested / "written.txt"));
    const auto cwd = fs::current_path();
    fs::current_path(dir);
    elm::create_output_folder("relative/out");
    fs::current_path(cwd);
    EXPECT_TRUE(fs::is_directory(dir / "relative" / "out"));
    fs::remove_all(dir);
}

TEST(output_folder, errors_name_the_folder) {
    const auto dir = scratch_dir();
    const auto file = dir / "a_file";
    std::ofstream(file) << "x";
    expect_folder_error(file.string(), "");            // exists, but as a file
    expect_folder_error((file / "sub").string(), "");  // under a file: cannot be made
    expect_folder_error("", "empty");
    if (::geteuid() != 0) {  // root may write into a read-only-mode folder
        const auto locked = dir / "locked";
        fs::create_directories(locked);
        ::chmod(locked.c_str(), 0555);
        expect_folder_error(locked.string(), "not writable");
        expect_folder_error((locked / "sub").string(), "");
        ::chmod(locked.c_str(), 0755);
    }
    fs::remove_all(dir);
}

}  // namespace

namespace {

// Atomic writes leave NAME.tmp.PID.N behind when their process is killed between writing and renaming. The
// next write of NAME removes those of processes no longer running (a pid above the kernel's pid_max never
// runs) and keeps a running process's (this one's: perhaps another thread's write in progress) and those of
// other files.
TEST(output_folder, a_write_removes_the_temporaries_killed_writers_left_of_its_file) {
    const auto dir = scratch_dir();
    const std::string dead = std::to_string(999999999), alive = std::to_string(::getpid());
    for (const auto& name :
         {"r.json.tmp." + dead + ".0", "r.json.tmp." + dead + ".7", "r.json.tmp." + alive + ".3",
          "other.json.tmp." + dead + ".0", "notes.tmp." + dead + ".1"})
        std::ofstream(dir / name) << "partial";
    elm::write_text_atomic((dir / "r.json").string(), "{}\n");
    EXPECT_FALSE(fs::exists(dir / ("r.json.tmp." + dead + ".0")));
    EXPECT_FALSE(fs::exists(dir / ("r.json.tmp." + dead + ".7")));
    EXPECT_TRUE(fs::exists(dir / ("r.json.tmp." + alive + ".3")));
    EXPECT_TRUE(fs::exists(dir / ("other.json.tmp." + dead + ".0")));  // another file's: left to its writer
    EXPECT_TRUE(fs::exists(dir / ("notes.tmp." + dead + ".1")));
    std::ifstream f(dir / "r.json");
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text, "{}\n");
    // The folder-wide sweep (train's start) takes every kind we write, .npy included, and keeps the rest.
    std::ofstream(dir / ("y.npy.tmp." + dead + ".2")) << "partial";
    elm::remove_stale_temporaries(dir.string());
    EXPECT_FALSE(fs::exists(dir / ("other.json.tmp." + dead + ".0")));
    EXPECT_FALSE(fs::exists(dir / ("y.npy.tmp." + dead + ".2")));
    EXPECT_TRUE(fs::exists(dir / ("notes.tmp." + dead + ".1")));
    EXPECT_TRUE(fs::exists(dir / ("r.json.tmp." + alive + ".3")));
    fs::remove_all(dir);
}

}  // namespace
