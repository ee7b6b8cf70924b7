// The NeuronIO reader against pickles written by Python with the published layout
// (tests/data/make_neuronio_fixture.py: Python 3 protocol 2 and 4, numpy >= 2 module names, and a
// Python-2 cPickle-style opcode stream), every decoded value checked against what the published
// conversion makes of the same data; malformed and hostile files (which would run commands if Python
// loaded them) must throw elm::error naming the file and key path and never execute anything; the
// safetensors cache round-trips exactly. The fixture needs /usr/bin/python3 with numpy: without them
// these tests fail, they are never skipped.

#include <elmneuron/error.hpp>
#include <elmneuron/neuronio.hpp>
#include <elmneuron/neuronio_task.hpp>
#include <elmneuron/tensor_file.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;

std::vector<std::byte> file_bytes(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    const std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<std::byte> b(s.size());
    std::memcpy(b.data(), s.data(), s.size());
    return b;
}

void write_bytes(const fs::path& p, std::span<const std::byte> b) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

const std::string sims = "Results.listOfSingleSimulationDicts";

class neuronio_reader : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = (fs::temp_directory_path() / ("elm_neuronio_test_" + std::to_string(::getpid()))).string();
        fs::remove_all(dir_);
        const std::string cmd =
            "/usr/bin/python3 " ELM_TEST_DATA_DIR "/make_neuronio_fixture.py " + dir_ + " 2>&1";
        const int rc = std::system(cmd.c_str());
        ok_ = rc == 0 && fs::exists(fs::path(dir_) / "expected.json");
        if (!ok_)
            message_ = "'" + cmd + "' failed (exit status " + std::to_string(rc) +
                       "); the test needs /usr/bin/python3 with numpy";
        else
            expected_ = nlohmann::json::parse(std::ifstream(fs::path(dir_) / "expected.json"));
    }
    static void TearDownTestSuite() { fs::remove_all(dir_); }
    void SetUp() override { ASSERT_TRUE(ok_) << message_; }

    static std::string path(const std::string& name) { return (fs::path(dir_) / name).string(); }

    // Every value of `f` against expected.json.
    static void expect_fixture_values(const elm::neuronio_file& f) {
        ASSERT_EQ(f.num_segments, expected_["num_segments"].get<int>());
        ASSERT_EQ(f.num_segments, 10);
        ASSERT_EQ(f.duration_ms, expected_["duration_ms"].get<int>());
        ASSERT_EQ(f.duration_ms, 1000);
        const auto& es = expected_["simulations"];
        ASSERT_EQ(f.simulations.size(), es.size());
        ASSERT_EQ(f.simulations.size(), 3u);
        for (std::size_t i = 0; i < es.size(); ++i) {
            SCOPED_TRACE("simulation " + std::to_string(i));
            const auto& s = f.simulations[i];
            const auto& e = es[i];
            const auto& events = e["events"];
            ASSERT_GT(events.size(), 200u);
            ASSERT_EQ(s.event_time.size(), events.size());
            ASSERT_EQ(s.event_channel.size(), events.size());
            for (std::size_t k = 0; k < events.size(); ++k) {
                ASSERT_EQ(s.event_time[k], events[k][0].get<int>()) << "event " << k;
                ASSERT_EQ(s.event_channel[k], events[k][1].get<int>()) << "event " << k;
            }
            std::vector<int> spikes;
            ASSERT_EQ(s.spike.size(), 1000u);
            for (std::size_t t = 0; t < s.spike.size(); ++t) {
                ASSERT_LE(s.spike[t], 1);
                if (s.spike[t] != 0) spikes.push_back(static_cast<int>(t));
            }
            EXPECT_EQ(spikes, e["spikes"].get<std::vector<int>>());
            const auto soma = e["soma"].get<std::vector<double>>();
            ASSERT_EQ(s.soma_mv.size(), soma.size());
            for (std::size_t t = 0; t < soma.size(); ++t)
                ASSERT_EQ(double(s.soma_mv[t]), soma[t]) << "t = " << t;
        }
        // What the fixture was built to contain, so the comparison above is not vacuous.
        EXPECT_TRUE(f.simulations[0].spike == std::vector<std::uint8_t>(1000, 0));
        EXPECT_EQ(f.simulations[1].spike[0], 1);    // t = 0.5
        EXPECT_EQ(f.simulations[1].spike[699], 1);  // 700.1 and 700.2 are both float16 700
        EXPECT_EQ(f.simulations[1].spike[999], 1);  // 999.4 -> float16 999.5 -> int(999.0), the last bin
        EXPECT_EQ(f.simulations[1].event_time.back(), 999);
        EXPECT_EQ(f.simulations[2].event_time.front(), 0);
        EXPECT_EQ(f.simulations[1].soma_mv[10], 33.0f);  // big-endian buffer in simulation 1
        for (const auto& s : f.simulations)
            for (const auto c : s.event_channel) EXPECT_TRUE(c != 3 && c != 13);  // segment 3 absent
    }

    static void expect_same(const elm::neuronio_file& a, const elm::neuronio_file& b) {
        EXPECT_EQ(a.source, b.source);
        EXPECT_EQ(a.num_segments, b.num_segments);
        EXPECT_EQ(a.duration_ms, b.duration_ms);
        ASSERT_EQ(a.simulations.size(), b.simulations.size());
        for (std::size_t i = 0; i < a.simulations.size(); ++i) {
            EXPECT_EQ(a.simulations[i].event_time, b.simulations[i].event_time);
            EXPECT_EQ(a.simulations[i].event_channel, b.simulations[i].event_channel);
            EXPECT_EQ(a.simulations[i].spike, b.simulations[i].spike);
            ASSERT_EQ(a.simulations[i].soma_mv.size(), b.simulations[i].soma_mv.size());
            EXPECT_EQ(0, std::memcmp(a.simulations[i].soma_mv.data(), b.simulations[i].soma_mv.data(),
                                     a.simulations[i].soma_mv.size() * 4));
        }
    }

    inline static std::string dir_, message_;
    inline static bool ok_ = false;
    inline static nlohmann::json expected_;
};

// Training targets of windows (reference/datasets.md §1.7): the spike bins as the fixture's Python computed
// them, and the published soma target (min(v, -55) + 67.7) * 0.1 of the voltages Python wrote, recomputed
// here; the windows include the clip (v above -55 mV, e.g. the 33 mV peak at t = 10) and the last ms.
TEST_F(neuronio_reader, training_targets_are_the_published_formula) {
    const auto f = elm::read_neuronio_file(path("py3.p"));
    const std::vector<int> sim_ids{1, 2, 1};
    const std::vector<int> starts{0, 450, 700};
    const int window = 300;
    std::vector<float> spike, soma;
    elm::neuronio_window_targets<float>(f, sim_ids, starts, window, spike, soma);
    ASSERT_EQ(spike.size(), sim_ids.size() * window);
    ASSERT_EQ(soma.size(), spike.size());
    int clipped = 0, spikes = 0;
    for (std::size_t b = 0; b < sim_ids.size(); ++b) {
        const auto& e = expected_["simulations"][static_cast<std::size_t>(sim_ids[b])];
        const auto bins = e["spikes"].get<std::vector<int>>();
        const std::set<int> spike_bins(bins.begin(), bins.end());
        for (int t = 0; t < window; ++t) {
            const std::size_t i = b * window + static_cast<std::size_t>(t);
            const int at = starts[b] + t;
            const double v = e["soma"][static_cast<std::size_t>(at)].get<double>();
            const double expected = (std::min(v, -55.0) + 67.7) * 0.1;
            EXPECT_NEAR(soma[i], expected, 1e-6 * std::max(1.0, std::abs(expected)))
                << "b " << b << " t " << at;
            EXPECT_EQ(spike[i], spike_bins.count(at) ? 1.0f : 0.0f) << "b " << b << " t " << at;
            clipped += v > -55.0;
            spikes += spike_bins.count(at) > 0;
        }
    }
    EXPECT_GT(clipped, 10);  // the clip is exercised
    EXPECT_GE(spikes, 2);    // t = 0 and t = 999 of simulation 1 at least
    // A window reaching past the simulation is refused, naming the file.
    EXPECT_THROW(
        elm::neuronio_window_targets<float>(f, std::vector<int>{0}, std::vector<int>{800}, 300, spike, soma),
        elm::error);
}

TEST_F(neuronio_reader, decodes_every_value_of_each_pickle_flavour) {
    for (const char* name : {"py2.p", "py3.p", "py3_numpy2.p", "py3_p4.p", "py3_p5.p", "py3_p5_numpy2.p"}) {
        SCOPED_TRACE(name);
        const auto f = elm::read_neuronio_file(path(name));
        EXPECT_EQ(f.source, path(name));
        EXPECT_EQ(f.num_channels(), 20);
        expect_fixture_values(f);
        // From memory: the same result.
        const auto bytes = file_bytes(path(name));
        auto g = elm::parse_neuronio_pickle(bytes, path(name));
        expect_same(f, g);
    }
    EXPECT_EQ(elm::neuronio_synapse_sign(9, 10), 1.0f);
    EXPECT_EQ(elm::neuronio_synapse_sign(10, 10), -1.0f);
}

TEST_F(neuronio_reader, malformed_files_name_the_file_and_key_path) {
    struct bad_case {
        const char* file;
        std::string field;  // the error's field starts with this
        const char* message_part;
    };
    const std::vector<bad_case> cases = {
        {"bad_soma_str.p", sims + "[1].somaVoltageLowRes", "1-D numpy array"},
        {"bad_soma_2d.p", sims + "[1].somaVoltageLowRes", "shape tuple(1000, 1) is not (n,)"},
        {"bad_soma_object.p", sims + "[1].somaVoltageLowRes", "type 'O8'"},
        {"bad_soma_length.p", sims + "[2].somaVoltageLowRes", "1000 samples"},
        {"bad_soma_nan.p", sims + "[0].somaVoltageLowRes[5]", "finite"},
        {"bad_missing_inh.p", sims + "[1].inhInputSpikeTimes", "no such key"},
        {"bad_missing_params.p", "Params", "no such key"},
        {"bad_missing_segtypes.p", "Params.allSegmentsType", "no such key"},
        {"bad_segment_range.p", sims + "[2].exInputSpikeTimes[10]", "[0, 10)"},
        {"bad_segment_negative.p", sims + "[0].inhInputSpikeTimes[-1]", "[0, 10)"},
        {"bad_segment_float.p", sims + "[0].exInputSpikeTimes{key #", "an integer"},
        {"bad_time_range.p", sims + "[1].exInputSpikeTimes[7][", "got 1000"},
        {"bad_time_negative.p", sims + "[1].inhInputSpikeTimes[2][", "got -3"},
        {"bad_time_str.p", sims + "[1].inhInputSpikeTimes[2][", "an integer"},
        {"bad_time_float.p", sims + "[1].exInputSpikeTimes[0][", "<f4 scalar"},
        {"bad_times_not_list.p", sims + "[1].exInputSpikeTimes[4]", "a list"},
        {"bad_times_float_array.p", sims + "[1].exInputSpikeTimes[4]", "an integer array"},
        {"bad_times_array_range.p", sims + "[1].inhInputSpikeTimes[2][1]", "got 1000"},
        {"bad_output_early.p", sims + "[1].outputSpikeTimes[0]", "0 <= t"},
        {"bad_output_late.p", sims + "[1].outputSpikeTimes[0]", "t < 1000.5"},
        {"bad_output_inf.p", sims + "[1].outputSpikeTimes[0]", "inf"},
        {"bad_duration.p", "Params.totalSimDurationInSec", "1000 ms"},
        {"bad_num_sims.p", "Params.numSimulations", "got 128"},
        {"bad_no_sims.p", sims, "at least one"},
        {"bad_sim_not_dict.p", sims + "[1]", "a dict"},
        {"bad_structured_dtype.p", sims + "[0].outputSpikeTimes", "type '"},
        {"bad_p5_shape.p", sims + "[1].somaVoltageLowRes", "1001 x 2 data bytes"},
        {"bad_p5_order.p", sims + "[1].somaVoltageLowRes", "order is not 'C' or 'F'"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.file);
        try {
            elm::read_neuronio_file(path(c.file));
            ADD_FAILURE() << "no error";
        } catch (const elm::error& e) {
            EXPECT_EQ(e.file(), path(c.file));
            EXPECT_TRUE(e.field().starts_with(c.field)) << e.what();
            EXPECT_NE(std::string(e.what()).find(c.message_part), std::string::npos) << e.what();
        }
    }
}

TEST_F(neuronio_reader, hostile_pickles_are_refused_and_never_executed) {
    const std::vector<std::pair<const char*, const char*>> cases = {
        {"hostile_posix_system.p", "posix.system"},
        {"hostile_eval.p", "builtins.eval"},
        {"hostile_exec.p", "__builtin__.exec"},
        {"hostile_os_system.p", "os.system"},
        {"hostile_inst.p", "INST"},
    };
    for (const auto& [file, part] : cases) {
        SCOPED_TRACE(file);
        try {
            elm::read_neuronio_file(path(file));
            ADD_FAILURE() << "no error";
        } catch (const elm::error& e) {
            EXPECT_EQ(e.file(), path(file));
            EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
        }
    }
    for (const char* m : {"pwned_posix_system", "pwned_eval", "pwned_exec", "pwned_os_system", "pwned_inst"})
        EXPECT_FALSE(fs::exists(fs::path(dir_) / m)) << m;
}

TEST_F(neuronio_reader, truncated_or_mutated_files_throw) {
    for (const char* name : {"py2.p", "py3.p"}) {
        SCOPED_TRACE(name);
        const auto bytes = file_bytes(path(name));
        std::vector<std::size_t> cuts;
        for (std::size_t n = 0; n < 2048; ++n) cuts.push_back(n);
        for (std::size_t n = 2048; n < bytes.size(); n += bytes.size() / 700) cuts.push_back(n);
        for (std::size_t n = bytes.size() - 256; n < bytes.size(); ++n) cuts.push_back(n);
        for (const auto n : cuts) {
            try {
                elm::parse_neuronio_pickle(std::span(bytes).first(n), "cut.p");
                ADD_FAILURE() << "no error at " << n;
            } catch (const elm::error& e) {
                ASSERT_EQ(e.file(), "cut.p") << n;
            }
        }
        // Through a file: the error names it.
        const auto cut = path(std::string("cut_") + name);
        write_bytes(cut, std::span(bytes).first(bytes.size() / 2));
        try {
            elm::read_neuronio_file(cut);
            ADD_FAILURE() << "no error";
        } catch (const elm::error& e) {
            EXPECT_EQ(e.file(), cut);
        }
    }
    // Single-byte mutations: a result or elm::error, nothing else (no crash, no other exception).
    auto bytes = file_bytes(path("py2.p"));
    std::mt19937 rng(7);
    int errors = 0;
    for (int i = 0; i < 300; ++i) {
        const auto pos = std::uniform_int_distribution<std::size_t>(0, bytes.size() - 1)(rng);
        const auto old = bytes[pos];
        bytes[pos] = std::byte(std::uniform_int_distribution<int>(0, 255)(rng));
        try {
            elm::parse_neuronio_pickle(bytes, "mutated.p");
        } catch (const elm::error& e) {
            ++errors;
            EXPECT_EQ(e.file(), "mutated.p");
        }
        bytes[pos] = old;
    }
    EXPECT_GT(errors, 0);
}

TEST_F(neuronio_reader, missing_empty_and_directory_paths) {
    EXPECT_THROW(elm::read_neuronio_file(path("no_such_file.p")), elm::file_not_found_error);
    write_bytes(path("empty.p"), {});
    try {
        elm::read_neuronio_file(path("empty.p"));
        ADD_FAILURE() << "no error";
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), path("empty.p"));
    }
    EXPECT_THROW(elm::read_neuronio_file(dir_), elm::error);
}

TEST_F(neuronio_reader, cache_round_trip_is_identical) {
    const auto f = elm::read_neuronio_file(path("py2.p"));
    const auto cache = path("py2.cache.safetensors");
    elm::write_neuronio_cache(cache, f);
    const auto g = elm::read_neuronio_cache(cache);
    expect_same(f, g);
    EXPECT_EQ(g.source, path("py2.p"));
    const auto tf = elm::read_safetensors(cache);
    EXPECT_EQ(tf.metadata.at("format"), "elmneuron.neuronio.v1");
    EXPECT_EQ(tf.at("event_time").type, elm::dtype::i16);
    EXPECT_EQ(tf.at("event_channel").type, elm::dtype::i16);
    EXPECT_EQ(tf.at("soma_mv").shape, (std::vector<std::int64_t>{3, 1000}));

    // Values beyond int16 are stored as I32; zero events and an event-less simulation are fine.
    elm::neuronio_file big;
    big.source = "big";
    big.num_segments = 20000;
    big.duration_ms = 40000;
    big.simulations.resize(2);
    for (auto& s : big.simulations) {
        s.spike.assign(40000, 0);
        s.soma_mv.assign(40000, -70.25f);
    }
    big.simulations[1].event_time = {0, 0, 39999};
    big.simulations[1].event_channel = {5, 39999, 0};
    big.simulations[1].spike[39999] = 1;
    elm::write_neuronio_cache(path("big.safetensors"), big);
    EXPECT_EQ(elm::read_safetensors(path("big.safetensors")).at("event_time").type, elm::dtype::i32);
    expect_same(big, elm::read_neuronio_cache(path("big.safetensors")));
}

TEST_F(neuronio_reader, cache_rejects_inconsistent_data) {
    const auto good = elm::read_neuronio_file(path("py3.p"));
    const auto out = path("bad.cache.safetensors");
    auto expect_write_error = [&](const elm::neuronio_file& f, const std::string& field) {
        try {
            elm::write_neuronio_cache(out, f);
            ADD_FAILURE() << "no error for " << field;
        } catch (const elm::error& e) {
            EXPECT_EQ(e.file(), out);
            EXPECT_EQ(e.field(), field) << e.what();
        }
    };
    auto f = good;
    std::swap(f.simulations[1].event_time[3], f.simulations[1].event_time[200]);
    expect_write_error(f, "simulations[1].event_time[4]");
    f = good;
    f.simulations[2].event_channel[0] = 20;
    expect_write_error(f, "simulations[2].event_channel[0]");
    f = good;
    f.simulations[0].spike.pop_back();
    expect_write_error(f, "simulations[0].spike");
    f = good;
    f.simulations[0].spike[3] = 2;
    expect_write_error(f, "simulations[0].spike[3]");
    f = good;
    f.simulations[0].event_time.pop_back();
    expect_write_error(f, "simulations[0].event_channel");
    f = good;
    f.num_segments = 0;
    expect_write_error(f, "num_segments");
    EXPECT_FALSE(fs::exists(out));

    // Cache files edited after writing: each is an elm::error naming the cache file.
    elm::write_neuronio_cache(out, good);
    const auto original = elm::read_safetensors(out);
    auto expect_read_error = [&](const elm::tensor_file& tf, const std::string& field) {
        const auto p = path("edited.safetensors");
        elm::write_safetensors(p, tf);
        try {
            elm::read_neuronio_cache(p);
            ADD_FAILURE() << "no error for " << field;
        } catch (const elm::error& e) {
            EXPECT_EQ(e.file(), p);
            EXPECT_TRUE(e.field().starts_with(field)) << e.what();
        }
    };
    auto tf = original;
    tf.metadata["format"] = "something.else";
    expect_read_error(tf, "metadata.format");
    tf = original;
    tf.metadata["duration_ms"] = "999";
    expect_read_error(tf, "spike");
    tf = original;
    tf.metadata["num_segments"] = "ten";
    expect_read_error(tf, "metadata.num_segments");
    tf = original;
    for (auto& t : tf.tensors)
        if (t.name == "soma_mv") std::memset(t.data.data() + 8, 0xff, 4);  // NaN
    expect_read_error(tf, "simulations[0].soma_mv[2]");
    tf = original;
    for (auto& t : tf.tensors)
        if (t.name == "event_offset") std::memset(t.data.data() + 8, 0xff, 8);  // offset[1] = -1
    expect_read_error(tf, "event_offset[1]");
    tf = original;
    std::erase_if(tf.tensors, [](const elm::tensor& t) { return t.name == "event_time"; });
    expect_read_error(tf, "event_time");
    // Truncated cache file.
    const auto bytes = file_bytes(out);
    write_bytes(path("cut.safetensors"), std::span(bytes).first(bytes.size() - 100));
    EXPECT_THROW(elm::read_neuronio_cache(path("cut.safetensors")), elm::error);
}

TEST_F(neuronio_reader, load_uses_and_refreshes_the_cache) {
    const auto src = path("load_src.p");
    fs::copy_file(path("py3.p"), src, fs::copy_options::overwrite_existing);
    const auto cache_dir = path("cache/nested");
    const auto direct = elm::load_neuronio(src);
    expect_fixture_values(direct);

    const auto first = elm::load_neuronio(src, cache_dir);
    expect_same(direct, first);
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(cache_dir)) files.push_back(e.path());
    ASSERT_EQ(files.size(), 1u);
    const auto name = files[0].filename().string();
    EXPECT_TRUE(name.starts_with("load_src.p." + std::to_string(fs::file_size(src)) + ".")) << name;
    EXPECT_TRUE(name.ends_with(".neuronio.safetensors")) << name;

    // The second load reads the cache: an edit to the cache (key kept) shows through.
    auto tf = elm::read_safetensors(files[0].string());
    for (auto& t : tf.tensors)
        if (t.name == "soma_mv") {
            const float v = -12.5f;
            std::memcpy(t.data.data(), &v, 4);
        }
    elm::write_safetensors(files[0].string(), tf);
    const auto second = elm::load_neuronio(src, cache_dir);
    EXPECT_EQ(second.simulations[0].soma_mv[0], -12.5f);
    EXPECT_EQ(second.source, src);

    // A new modification time is a new key: the pickle is read again and a second cache written.
    fs::last_write_time(src, fs::last_write_time(src) + std::chrono::seconds(5));
    const auto third = elm::load_neuronio(src, cache_dir);
    expect_same(direct, third);
    EXPECT_EQ(std::distance(fs::directory_iterator(cache_dir), fs::directory_iterator()), 2);

    // A corrupt cache under the current key is an error with a hint, not a silent rebuild.
    for (const auto& e : fs::directory_iterator(cache_dir)) {
        const auto b = file_bytes(e.path());
        write_bytes(e.path(), std::span(b).first(b.size() / 2));
    }
    try {
        elm::load_neuronio(src, cache_dir);
        ADD_FAILURE() << "no error";
    } catch (const elm::error& e) {
        EXPECT_NE(e.hint().find("delete the cache file"), std::string::npos) << e.what();
    }
    EXPECT_THROW(elm::load_neuronio(path("no_such.p"), cache_dir), elm::file_not_found_error);
    // A cache folder that cannot be made (under a regular file) is an error naming it and the config key.
    const auto blocked = (fs::path(src) / "cache").string();
    try {
        elm::load_neuronio(path("py3.p"), blocked);
        ADD_FAILURE() << "no error";
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), blocked);
        EXPECT_EQ(e.field(), "cache_dir");
    }
}

TEST_F(neuronio_reader, list_files) {
    const auto d = fs::path(path("listing"));
    fs::create_directories(d / "sub.p");
    // Sidecars and caches beside the pickles (sim__...json, ...safetensors) are not pickles, nor are hidden
    // files (macOS's AppleDouble "._a.p" from an archive, ".hidden.pkl").
    for (const char* n :
         {"sim__b_randomSeed_2.p", "a.p", "notes.txt", "c.pkl", "x_sim__y", ".p", "d.pickle",
          "sim__b_randomSeed_2.json", "a.p.7.123.neuronio.safetensors", "E.P", "._a.p", ".hidden.pkl"})
        std::ofstream(d / n) << "x";
    const auto files = elm::list_neuronio_files(d.string());
    EXPECT_EQ(files,
              (std::vector<std::string>{(d / "E.P").string(), (d / "a.p").string(), (d / "c.pkl").string(),
                                        (d / "d.pickle").string(), (d / "sim__b_randomSeed_2.p").string()}));
    // A file reached twice (named and through its folder) would count twice: refused, naming it.
    try {
        elm::list_neuronio_files(std::vector<std::string>{d.string(), (d / "c.pkl").string()});
        ADD_FAILURE() << "a file listed twice was accepted";
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), (d / "c.pkl").string());
        EXPECT_NE(std::string(e.what()).find("twice"), std::string::npos) << e.what();
    }
    EXPECT_EQ(elm::list_neuronio_files((d / "notes.txt").string()),
              std::vector<std::string>{(d / "notes.txt").string()});
    EXPECT_THROW(elm::list_neuronio_files((d / "missing").string()), elm::file_not_found_error);
    fs::create_directories(d / "empty");
    EXPECT_THROW(elm::list_neuronio_files((d / "empty").string()), elm::error);
}

}  // namespace
