// The restricted unpickler: real pickles from Python (protocols 2-5), a hand-assembled Python-2/numpy
// pickle shaped like the NeuronIO files, and hostile or malformed pickles that must throw elm::error
// naming the opcode/global and the byte offset, and never execute anything.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <elmneuron/error.hpp>

#include "io/pickle.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::literals;
using elm::detail::pickle_kind;
using elm::detail::pickle_ref;
using elm::detail::pickle_tree;

std::vector<std::byte> bytes_of(std::string_view s) {
    std::vector<std::byte> b(s.size());
    if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
    return b;
}

// Runs a Python 3 script and returns what it writes to stdout (Debian's python3 is always present).
std::vector<std::byte> python_output(const std::string& script) {
    const auto dir = fs::temp_directory_path();
    const auto py = dir / ("elm_pickle_test_" + std::to_string(std::hash<std::string>{}(script)) + ".py");
    const auto out = fs::path(py.string() + ".out");
    std::ofstream(py) << script;
    const std::string cmd = "python3 " + py.string() + " > " + out.string();
    EXPECT_EQ(std::system(cmd.c_str()), 0) << script;
    std::ifstream f(out, std::ios::binary);
    const std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    fs::remove(py);
    fs::remove(out);
    return bytes_of(s);
}

std::vector<std::byte> python_pickle(const std::string& expr, int protocol) {
    return python_output("import pickle, sys, collections\nsys.stdout.buffer.write(pickle.dumps(" + expr +
                         ", protocol=" + std::to_string(protocol) + "))\n");
}

const elm::detail::unpickle_options no_globals{};

elm::detail::unpickle_options numpy_globals() {
    elm::detail::unpickle_options o;
    o.allowed_globals = {{"numpy.core.multiarray", "_reconstruct"},
                         {"numpy", "ndarray"},
                         {"numpy", "dtype"},
                         {"numpy.core.multiarray", "scalar"},
                         {"collections", "OrderedDict"}};
    return o;
}

// Expects unpickle to throw elm::error whose message contains each of `parts`.
void expect_error(std::string_view pickle, const std::vector<std::string>& parts,
                  const elm::detail::unpickle_options& o = no_globals) {
    const auto b = bytes_of(pickle);
    try {
        elm::detail::unpickle(b, "test.pkl", o);
        FAIL() << "no error; expected " << parts.front();
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), "test.pkl");
        for (const auto& p : parts)
            EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
    }
}

TEST(pickle, python_values_all_protocols) {
    for (int protocol = 2; protocol <= 5; ++protocol) {
        SCOPED_TRACE(protocol);
        const auto b = python_pickle(
            "{'int': 5, 'neg': -70000, 'big': 2**62 + 3, 'vneg': -2**63, 'f': -67.7, 't': True, 'n': None, "
            "'s': 'h\\u00e9llo', 'b': " +
                std::string(protocol > 2 ? "b'\\x00\\x01'" : "0") +  // py3 bytes need protocol 3
                ", 'l': [1, [2, 3], (4,)], 'tup': (1, 2, 3, 4), 'e': (), "
                "'od': collections.OrderedDict([('z', 1), ('a', 2)])}",
            protocol);
        const auto t = elm::detail::unpickle(b, "py.pkl", numpy_globals());
        const auto r = t.root;
        EXPECT_EQ(t.dict_size(r, "root"), 13u);
        EXPECT_EQ(t.as_int(t.dict_at(r, "int", "x"), "x"), 5);
        EXPECT_EQ(t.as_int(t.dict_at(r, "neg", "x"), "x"), -70000);
        EXPECT_EQ(t.as_int(t.dict_at(r, "big", "x"), "x"), (std::int64_t(1) << 62) + 3);
        EXPECT_EQ(t.as_int(t.dict_at(r, "vneg", "x"), "x"), std::numeric_limits<std::int64_t>::min());
        EXPECT_EQ(t.as_float(t.dict_at(r, "f", "x"), "x"), -67.7);
        EXPECT_TRUE(t.as_bool(t.dict_at(r, "t", "x"), "x"));
        EXPECT_EQ(t.kind(t.dict_at(r, "n", "x")), pickle_kind::none);
        EXPECT_EQ(t.as_string(t.dict_at(r, "s", "x"), "x"), "h\xc3\xa9llo");
        if (protocol > 2) {
            EXPECT_EQ(t.as_bytes(t.dict_at(r, "b", "x"), "x").size(), 2u);
        }
        const auto l = t.as_list(t.dict_at(r, "l", "x"), "x");
        ASSERT_EQ(l.size(), 3u);
        EXPECT_EQ(t.as_list(l[1], "x").size(), 2u);
        EXPECT_EQ(t.as_int(t.as_tuple(l[2], "x")[0], "x"), 4);
        EXPECT_EQ(t.as_tuple(t.dict_at(r, "tup", "x"), "x").size(), 4u);
        EXPECT_EQ(t.as_tuple(t.dict_at(r, "e", "x"), "x").size(), 0u);
        const auto od = t.dict_at(r, "od", "x");
        ASSERT_EQ(t.dict_size(od, "od"), 2u);
        EXPECT_EQ(t.as_string(t.dict_item(od, 0).first, "k"), "z");  // order kept
        EXPECT_THROW(t.as_int(t.dict_at(r, "s", "x"), "s"), elm::error);
        EXPECT_THROW(t.dict_at(r, "missing", "root"), elm::error);
    }
}

TEST(pickle, shared_and_cyclic_references) {
    // x is memoized, then shared; the list contains itself.
    const auto b = python_output(
        "import pickle, sys\nx = [1]\nl = [x, x]\nl.append(l)\nsys.stdout.buffer.write(pickle.dumps(l, "
        "protocol=2))\n");
    const auto t = elm::detail::unpickle(b, "cyc.pkl", no_globals);
    const auto l = t.as_list(t.root, "l");
    ASSERT_EQ(l.size(), 3u);
    EXPECT_EQ(l[0], l[1]);                        // same object
    EXPECT_EQ(l[2], t.root);                      // cycle
    EXPECT_FALSE(t.describe(t.root, 3).empty());  // depth-limited, terminates
}

// A Python-2 protocol-2 pickle as cPickle writes NeuronIO files: py2 str keys (SHORT_BINSTRING), a numpy
// float16 array via _reconstruct + BUILD, a memoized dtype reused through BINGET, a numpy int64 scalar.
std::string neuronio_like_pickle() {
    std::string p = "\x80\x02}q\x00(U\x06Paramsq\x01}q\x02U\x0enumSimulationsq\x03K\x80sU\x04somaq\x04"s;
    p += "cnumpy.core.multiarray\n_reconstruct\nq\x05"
         "cnumpy\nndarray\nq\x06K\x00\x85U\x01"
         "b\x87Rq\x07"s;
    p += "(K\x01K\x03\x85"
         "cnumpy\ndtype\nq\x08U\x02"
         "f2K\x00K\x01\x87Rq\x09"s;
    p += "(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"s;
    p += std::string("\x89U\x06\x00\x3c\x00\xc0\x00\x00", 9) + "tb";
    p += "U\x03segcnumpy.core.multiarray\nscalar\nq\x0ah\x09U\x08";
    p += std::string("\x05\x00\x00\x00\x00\x00\x00\x00", 8) + "\x86Rq\x0bu.";
    return p;
}

TEST(pickle, python2_numpy_structures_without_executing) {
    const auto raw = neuronio_like_pickle();
    const auto b = bytes_of(raw);
    const auto t = elm::detail::unpickle(b, "sim.p", numpy_globals());
    EXPECT_EQ(t.as_int(t.dict_at(t.dict_at(t.root, "Params", "root"), "numSimulations", "Params"), "n"), 128);
    // soma = build(reduce(_reconstruct, (ndarray, (0,), 'b')), (1, (3,), dtype, False, raw))
    const auto soma = t.dict_at(t.root, "soma", "root");
    ASSERT_EQ(t.kind(soma), pickle_kind::build);
    const auto reduce = t.children(soma)[0];
    ASSERT_EQ(t.kind(reduce), pickle_kind::reduce);
    EXPECT_TRUE(t.is_global(t.children(reduce)[0], "numpy.core.multiarray", "_reconstruct"));
    const auto state = t.as_tuple(t.children(soma)[1], "state");
    ASSERT_EQ(state.size(), 5u);
    EXPECT_EQ(t.as_int(t.as_tuple(state[1], "shape")[0], "n"), 3);
    EXPECT_FALSE(t.as_bool(state[3], "fortran"));
    const auto data = t.as_bytes(state[4], "raw");  // py2 str accepted as bytes
    ASSERT_EQ(data.size(), 6u);
    EXPECT_EQ(std::to_integer<int>(data[1]), 0x3c);
    // The dtype was BUILT after being memoized: the later BINGET (inside scalar) sees the built dtype.
    const auto dtype = state[2];
    ASSERT_EQ(t.kind(dtype), pickle_kind::build);
    const auto seg = t.dict_at(t.root, "seg", "root");
    ASSERT_EQ(t.kind(seg), pickle_kind::reduce);
    EXPECT_TRUE(t.is_global(t.children(seg)[0], "numpy.core.multiarray", "scalar"));
    const auto args = t.as_tuple(t.children(seg)[1], "args");
    EXPECT_EQ(args[0], dtype);
    EXPECT_EQ(t.as_string(t.as_tuple(t.children(dtype)[1], "dtype state")[1], "endian"), "<");
    EXPECT_EQ(t.as_bytes(args[1], "scalar")[0], std::byte{5});
    // Truncated anywhere: an error, never a crash.
    for (std::size_t n = 0; n < raw.size(); ++n)
        EXPECT_THROW(elm::detail::unpickle(bytes_of(raw.substr(0, n)), "cut", numpy_globals()), elm::error)
            << n;
}

TEST(pickle, hostile_globals_are_refused_and_never_run) {
    const auto marker = fs::temp_directory_path() / "elm_pickle_pwned";
    fs::remove(marker);
    const std::string cmd = "touch " + marker.string();
    const std::string arg = "X" + std::string(1, char(cmd.size())) + std::string(3, '\0') + cmd;
    expect_error(
        "\x80\x02"
        "cos\nsystem\n" +
            arg + "\x85R.",
        {"os.system", "byte 2"});
    expect_error(
        "\x80\x02"
        "cposix\nsystem\n" +
            arg + "\x85R.",
        {"posix.system"});
    expect_error(
        "\x80\x04\x8c\x08"
        "builtins\x8c\x04"
        "eval\x93" +
            arg + "\x85R.",
        {"builtins.eval", "byte 18"});
    expect_error(
        "\x80\x02"
        "c__builtin__\ngetattr\n.",
        {"__builtin__.getattr"});
    // Allowed-list matching is exact: a prefix or a different module is not enough.
    expect_error(
        "\x80\x02"
        "cnumpy\ndtypes\n.",
        {"numpy.dtypes"}, numpy_globals());
    expect_error(
        "\x80\x02"
        "cnumpy.core\nmultiarray\n.",
        {"numpy.core.multiarray"}, numpy_globals());
    // STACK_GLOBAL needs strings.
    expect_error("\x80\x04K\x01K\x02\x93.", {"global module"});
    // Python-2 INST/OBJ and extension registry opcodes.
    expect_error("(ios\nsystem\nS'ls'\n.", {"INST", "byte 1"});
    expect_error("(cos\nsystem\no.", {"os.system"});
    expect_error("(o.", {"OBJ"});
    expect_error("\x80\x02\x82\x01.", {"EXT1", "byte 2"});
    expect_error("\x80\x02\x83\x01\x00."sv, {"EXT2"});
    expect_error("\x80\x02\x84\x01\x00\x00\x00."sv, {"EXT4"});
    expect_error("\x80\x02P1\n.", {"PERSID"});
    expect_error("\x80\x02\xff.", {"0xff", "unknown opcode"});
    EXPECT_FALSE(fs::exists(marker));
}

TEST(pickle, malformed_structure) {
    expect_error("", {"STOP"});
    expect_error("\x80\x02", {"STOP"});
    expect_error("\x80\x09N.", {"PROTO"});
    expect_error("\x80\x02.", {"STOP"});  // nothing on the stack
    expect_error("\x80\x02NN.", {"STOP", "2 objects"});
    expect_error("\x80\x02(N.", {"STOP", "1 marks"});
    expect_error(
        "\x80\x02"
        "a.",
        {"underflow"});                            // APPEND on empty stack
    expect_error("\x80\x02]N(a.", {"underflow"});  // cannot pop below a MARK
    expect_error(
        "\x80\x02K\x01"
        "a.",
        {"APPEND", "list"});                               // APPEND to an int
    expect_error("\x80\x02]NNu.", {"MARK"});               // SETITEMS without MARK
    expect_error("\x80\x02](NNu.", {"SETITEMS", "dict"});  // SETITEMS on a list
    expect_error("\x80\x02}(Nu.", {"SETITEMS", "pairs"});
    expect_error("\x80\x02(Nd.", {"DICT", "pairs"});
    expect_error("\x80\x02h\x05.", {"memo"});
    expect_error("\x80\x02Nr\xff\xff\xff\xff.", {"memo index"});  // would allocate 16 GiB
    expect_error(
        "\x80\x02X\xff\xff\xff\x7f"
        "abc.",
        {"truncated"});
    expect_error("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff.", {"truncated"});
    expect_error("\x80\x02T\xff\xff\xff\xff.", {"BINSTRING", "non-negative"});
    expect_error("\x80\x02\x8b\xff\xff\xff\x7f\x00."sv, {"truncated"});
    expect_error("\x80\x02\x8b\x00\x00\x00\x80."sv, {"LONG4", "non-negative"});
    expect_error(std::string("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", 14), {"64 bits"});
    const auto min = bytes_of("\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80."sv);
    const auto t = elm::detail::unpickle(min, "min", no_globals);
    EXPECT_EQ(t.as_int(t.root, "min"), std::numeric_limits<std::int64_t>::min());
    expect_error("\x80\x02NN\x86\x86.", {"TUPLE2", "underflow"});
    expect_error("\x80\x02NK\x01R.", {"REDUCE", "tuple"});
    expect_error("\x80\x02I12x\n.", {"INT"});
    expect_error(
        "\x80\x02"
        "cos",
        {"truncated"});
    expect_error("\x80\x02\x95\xff\xff\x00\x00\x00\x00\x00\x00N."sv,
                 {"truncated"});  // FRAME longer than the data
    // What this reader does not take says how to re-save the file: protocol 0 (Python 2's default) and
    // protocol 5's out-of-band buffers (never in a file; its in-band BYTEARRAY8 is read, test below).
    expect_error("(dp0\nS'a'\np1\nI1\ns.", {"PUT", "protocol 0", "protocol=2"});
    expect_error("\x80\x05\x97."sv, {"NEXT_BUFFER", "out-of-band", "protocol=2"});
    expect_error("\x80\x05\x98."sv, {"READONLY_BUFFER", "out-of-band", "protocol=2"});
    // A global outside the reader's list names the global and the list.
    elm::detail::unpickle_options numpy;
    numpy.allowed_globals.emplace_back("numpy", "ndarray");
    expect_error("\x80\x04\x8c\x12numpy.core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94.",
                 {"numpy.core.numeric._frombuffer", "numpy.ndarray"}, numpy);
}

TEST(pickle, protocol_5_bytearray_is_read_in_band) {
    // pickle.dumps(bytearray(b'\x00\x01\xff'), protocol=5): BYTEARRAY8 holds the bytes themselves.
    const auto b = python_pickle("bytearray(b'\\x00\\x01\\xff')", 5);
    ASSERT_EQ(b.size(), 25u);  // PROTO, FRAME (9 bytes), BYTEARRAY8 + 8-byte length + 3 bytes, MEMOIZE, STOP
    ASSERT_EQ(std::to_integer<int>(b[11]), 0x96) << "Python wrote no BYTEARRAY8";
    const auto t = elm::detail::unpickle(b, "bytearray.pkl", no_globals);
    const auto bytes = t.as_bytes(t.root, "root");
    ASSERT_EQ(bytes.size(), 3u);
    EXPECT_EQ(std::to_integer<int>(bytes[0]), 0x00);
    EXPECT_EQ(std::to_integer<int>(bytes[1]), 0x01);
    EXPECT_EQ(std::to_integer<int>(bytes[2]), 0xff);
    expect_error("\x80\x05\x96\x05\x00\x00\x00\x00\x00\x00\x00ab."sv, {"truncated"});
}

TEST(pickle, deep_nesting_has_no_recursion) {
    // 200k nested lists and marks: the parser is iterative and the tree is flat.
    constexpr int depth = 200000;
    std::string p = "\x80\x02";
    for (int i = 0; i < depth; ++i) p += ']';
    for (int i = 1; i < depth; ++i) p += 'a';
    p += '.';
    const auto b = bytes_of(p);
    const auto t = elm::detail::unpickle(b, "deep", no_globals);
    EXPECT_EQ(t.as_list(t.root, "root").size(), 1u);
    EXPECT_FALSE(t.describe(t.root).empty());
    std::string marks = "\x80\x02" + std::string(depth, '(') + ".";
    expect_error(marks, {"STOP"});
}

TEST(pickle, text_int_and_misc_opcodes) {
    const auto b = bytes_of(
        "\x80\x02(I-42\nI01\nI00\nG\xc0\x50\xec\xcc\xcc\xcc\xcc\xcd"
        "C\x02hiNN0\x8a\x01\xff"
        "2t.");
    const auto t = elm::detail::unpickle(b, "misc", no_globals);
    const auto items = t.as_tuple(t.root, "root");
    ASSERT_EQ(items.size(), 8u);
    EXPECT_EQ(t.as_int(items[0], "i"), -42);
    EXPECT_TRUE(t.as_bool(items[1], "b"));
    EXPECT_FALSE(t.as_bool(items[2], "b"));
    EXPECT_EQ(t.as_float(items[3], "f"), -67.7);
    EXPECT_EQ(t.kind(items[4]), pickle_kind::bytes);
    EXPECT_EQ(t.kind(items[5]), pickle_kind::none);
    EXPECT_EQ(t.as_int(items[6], "long1"), -1);
    EXPECT_EQ(items[6], items[7]);  // DUP
}

}  // namespace
