// PyTorch state dicts (.pt zip archives) and whole-model files: the official pretrained models,
// synthetic archives assembled by a small Python script (torch is not needed: the pickles are written
// opcode by opcode, as torch.save writes them), malformed archives, and model load/save round trips.

#include <bit>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <elmneuron/config.hpp>
#include <elmneuron/error.hpp>
#include <elmneuron/model.hpp>
#include <elmneuron/model_file.hpp>
#include <elmneuron/tensor_file.hpp>

#include "io/io_detail.hpp"

namespace {

namespace fs = std::filesystem;
using elm::dtype;

// Writes torch.save-style archives into `dir` (argv[1]): good.pt and one bad_*.pt per malformation.
const char* make_archives_py = R"PY(
import struct, sys, zipfile
out = sys.argv[1]
def S(s): b = s.encode(); return b'X' + struct.pack('<I', len(b)) + b
def I(v): return b'J' + struct.pack('<i', v)
def T(items): return b'(' + b''.join(items) + b't'
def G(m, n): return b'c' + m.encode() + b'\n' + n.encode() + b'\n'
HOOKS = G('collections', 'OrderedDict') + b')R'
def pid(stype, key, numel): return T([S('storage'), G('torch', stype), S(key), S('cpu'), I(numel)]) + b'Q'
def tensor(stype, key, numel, offset, size, stride, p=None):
    storage = p if p is not None else pid(stype, key, numel)
    return (G('torch._utils', '_rebuild_tensor_v2') + b'(' + storage + I(offset) + T([I(x) for x in size]) +
            T([I(x) for x in stride]) + b'\x89' + HOOKS + b'tR')
def param(inner): return G('torch._utils', '_rebuild_parameter') + b'(' + inner + b'\x88' + HOOKS + b'tR'
def state(entries): return b'\x80\x02' + G('collections', 'OrderedDict') + b')R(' + b''.join(S(k) + v for k, v in entries) + b'u.'
def write(name, pkl, storages, prefix='archive', extra=None):
    with zipfile.ZipFile(out + '/' + name, 'w', zipfile.ZIP_STORED) as z:
        z.writestr(prefix + '/data.pkl', pkl)
        for k, b in storages.items(): z.writestr(prefix + '/data/' + k, b)
        z.writestr(prefix + '/version', '3\n')
        for k, b in (extra or {}).items(): z.writestr(k, b)
f6 = struct.pack('<6f', 0, 1, 2, 3, 4, 5)
good = [
    ('w', tensor('FloatStorage', '0', 6, 0, (2, 3), (3, 1))),
    ('wt', tensor('FloatStorage', '0', 6, 0, (3, 2), (1, 3))),
    ('off', tensor('FloatStorage', '0', 6, 4, (2,), (1,))),
    ('p', param(tensor('DoubleStorage', '1', 2, 0, (2,), (1,)))),
    ('h', tensor('HalfStorage', '2', 2, 0, (2,), (1,))),
    ('m', tensor('BoolStorage', '3', 3, 0, (3,), (1,))),
    ('i', tensor('LongStorage', '4', 1, 0, (), ())),
    ('e', tensor('FloatStorage', '5', 0, 0, (0, 5), (5, 1))),
    ('col', tensor('FloatStorage', '0', 6, 1, (2, 1), (3, 7))),
    ('bf', tensor('BFloat16Storage', '6', 2, 0, (2,), (1,))),
    ('exp', tensor('FloatStorage', '0', 6, 2, (3, 2), (0, 1))),  # torch.tensor([2., 3.]).expand(3, 2)
]
storages = {'0': f6, '1': struct.pack('<2d', 1.5, -2.5), '2': struct.pack('<2H', 0x3c00, 0xc000),
            '3': bytes([1, 0, 1]), '4': struct.pack('<q', -7), '5': b'', '6': struct.pack('<2H', 0x3f80, 0xc040)}
write('good.pt', state(good), storages)
# Module.state_dict() pickles its _metadata attribute as a BUILD of the OrderedDict.
meta = (b'}(' + S('_metadata') + HOOKS + b'(' + S('') + b'}' + S('version') + I(1) + b'su' + b'u' + b'b.')
write('good_meta.pt', state(good[:1])[:-1] + meta, {'0': f6})
write('deflated.pt', state(good[:1]), {'0': f6})
with zipfile.ZipFile(out + '/deflated.pt', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('other_name/data.pkl', state(good[:1])); z.writestr('other_name/data/0', f6)
one = {'0': f6}
write('bad_global.pt', b'\x80\x02' + G('os', 'system') + S('touch /tmp/elm_torch_pwned') + b'\x85R.', {})
write('bad_missing_storage.pt', state([('w', tensor('FloatStorage', '9', 6, 0, (6,), (1,)))]), one)
write('bad_storage_size.pt', state([('w', tensor('FloatStorage', '0', 7, 0, (6,), (1,)))]), one)
write('bad_offset.pt', state([('w', tensor('FloatStorage', '0', 6, 5, (2,), (1,)))]), one)
write('bad_stride.pt', state([('w', tensor('FloatStorage', '0', 6, 0, (2, 3), (4, 1)))]), one)
write('bad_huge_expand.pt', state([('w', tensor('FloatStorage', '0', 6, 0, (1 << 29,), (0,)))]), one)
# A training checkpoint ({"model_state_dict": OrderedDict, "epoch": 3}) instead of a state dict.
write('bad_checkpoint.pt', b'\x80\x02}(' + S('model_state_dict') + state(good[:1])[2:-1] + S('epoch') + I(3) + b'u.', one)
write('bad_negative.pt', state([('w', tensor('FloatStorage', '0', 6, 0, (-1,), (1,)))]), one)
write('bad_rank.pt', state([('w', tensor('FloatStorage', '0', 6, 0, (6,), (1, 1)))]), one)
write('bad_root.pt', b'\x80\x02K\x01.', {})
write('bad_value.pt', state([('w', I(3))]), {})
write('bad_dup.pt', state([('w', good[0][1]), ('w', good[0][1])]), one)
write('bad_pid.pt', state([('w', tensor('', '', 0, 0, (6,), (1,), p=T([S('storage'), G('torch', 'FloatStorage'), S('0'), S('cpu')]) + b'Q'))]), one)
write('bad_byteorder.pt', state(good[:1]), one, extra={'archive/byteorder': 'big'})
write('bad_no_pickle.pt', b'', {}, prefix='a/b')
write('bad_two_pickles.pt', state(good[:1]), one, extra={'other/data.pkl': state(good[:1])})
write('bad_type_mix.pt', state([('a', tensor('FloatStorage', '0', 6, 0, (6,), (1,))),
                                 ('b', tensor('IntStorage', '0', 6, 0, (6,), (1,)))]), one)
open(out + '/bad_not_zip.pt', 'wb').write(b'PK\x03\x04 this is not a zip file at all' * 3)
)PY";

fs::path make_archives() {
    const auto dir = fs::temp_directory_path() / ("elm_torch_test_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "make.py") << make_archives_py;
    const std::string cmd = "python3 " + (dir / "make.py").string() + " " + dir.string();
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    return dir;
}

class torch_pt : public ::testing::Test {
protected:
    static void SetUpTestSuite() { dir_ = make_archives(); }
    static void TearDownTestSuite() { fs::remove_all(dir_); }
    static std::string file(const char* name) { return (dir_ / name).string(); }
    static fs::path dir_;
};
fs::path torch_pt::dir_;

TEST_F(torch_pt, synthetic_archive_all_layouts) {
    const auto f = elm::read_torch_state_dict(file("good.pt"));
    ASSERT_EQ(f.tensors.size(), 11u);
    EXPECT_EQ(f.tensors[0].name, "w");  // dict order kept
    EXPECT_EQ(f.at("w", {2, 3}).to<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
    EXPECT_EQ(f.at("wt", {3, 2}).to<float>(),
              (std::vector<float>{0, 3, 1, 4, 2, 5}));  // transposed view gathered
    EXPECT_EQ(f.at("off", {2}).to<float>(), (std::vector<float>{4, 5}));
    EXPECT_EQ(f.at("col", {2, 1}).to<float>(),
              (std::vector<float>{1, 4}));  // stride of a size-1 dim is irrelevant
    EXPECT_EQ(f.at("p", {2}).type, dtype::f64);
    EXPECT_EQ(f.at("p").to<double>(), (std::vector<double>{1.5, -2.5}));
    EXPECT_EQ(f.at("h").type, dtype::f16);
    EXPECT_EQ(f.at("h").to<float>(), (std::vector<float>{1.0f, -2.0f}));
    EXPECT_EQ(f.at("m").type, dtype::boolean);
    EXPECT_EQ(f.at("m").to<std::uint8_t>(), (std::vector<std::uint8_t>{1, 0, 1}));
    EXPECT_EQ(f.at("i", {}).to<std::int64_t>(), (std::vector<std::int64_t>{-7}));
    EXPECT_EQ(f.at("e", {0, 5}).numel(), 0);
    EXPECT_EQ(f.at("bf").type, dtype::bf16);  // bfloat16 weights: the upper halves of 1.0f and -3.0f
    EXPECT_EQ(f.at("bf").to<float>(), (std::vector<float>{1.0f, -3.0f}));
    // An expanded tensor (stride 0: every row the same elements), as torch.Tensor.expand saves it.
    EXPECT_EQ(f.at("exp", {3, 2}).to<float>(), (std::vector<float>{2, 3, 2, 3, 2, 3}));
    const auto meta = elm::read_torch_state_dict(file("good_meta.pt"));
    ASSERT_EQ(meta.tensors.size(), 1u);
    EXPECT_EQ(meta.at("w", {2, 3}).to<float>()[4], 4.0f);
    const auto d = elm::read_torch_state_dict(file("deflated.pt"));  // other prefix, compressed entries
    EXPECT_EQ(d.at("w", {2, 3}).to<float>()[5], 5.0f);
}

TEST_F(torch_pt, malformed_archives_throw_naming_the_problem) {
    const std::vector<std::pair<const char*, const char*>> cases = {
        {"bad_global.pt", "os.system"},
        {"bad_missing_storage.pt", "archive/data/9"},
        {"bad_storage_size.pt", "storage 0"},
        {"bad_offset.pt", "w"},
        {"bad_stride.pt", "w"},
        {"bad_huge_expand.pt", "2^28"},
        {"bad_checkpoint.pt", "checkpoint['model_state_dict']"},
        {"bad_negative.pt", "w"},
        {"bad_rank.pt", "w"},
        {"bad_root.pt", "state dict"},
        {"bad_value.pt", "w"},
        {"bad_dup.pt", "duplicate"},
        {"bad_pid.pt", "storage"},
        {"bad_byteorder.pt", "byteorder"},
        {"bad_no_pickle.pt", "data.pkl"},
        {"bad_two_pickles.pt", "data.pkl"},
        {"bad_type_mix.pt", "storage 0"},
        {"bad_not_zip.pt", "zip"},
    };
    for (const auto& [name, part] : cases) {
        try {
            elm::read_torch_state_dict(file(name));
            ADD_FAILURE() << name << ": no error";
        } catch (const elm::error& e) {
            EXPECT_NE(e.file().find(name), std::string::npos) << name << ": " << e.what();
            EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << name << ": " << e.what();
        }
    }
    EXPECT_FALSE(fs::exists("/tmp/elm_torch_pwned"));
    EXPECT_THROW(elm::read_torch_state_dict(file("missing.pt")), elm::file_not_found_error);
}

TEST(torch_pt_official, every_pretrained_state_dict) {
    int count = 0;
    for (const auto& dir : fs::directory_iterator(ELM_MODELS_DIR)) {
        const auto pt = dir.path() / "neuronio_best_model_state.pt";
        if (!fs::exists(pt)) continue;
        SCOPED_TRACE(pt.string());
        ++count;
        const auto f = elm::read_torch_state_dict(pt.string());
        const std::vector<std::string> names = {"_proto_w_s",
                                                "tau_s",
                                                "_proto_tau_m",
                                                "input_to_synapse_indices",
                                                "valid_indices_mask",
                                                "mlp.network.0.weight",
                                                "mlp.network.0.bias",
                                                "mlp.network.2.weight",
                                                "mlp.network.2.bias",
                                                "w_y.weight",
                                                "w_y.bias"};
        ASSERT_EQ(f.tensors.size(), names.size());
        for (std::size_t i = 0; i < names.size(); ++i) EXPECT_EQ(f.tensors[i].name, names[i]);
        EXPECT_EQ(f.at("_proto_w_s", {4500}).type, dtype::f32);
        EXPECT_EQ(f.at("tau_s", {4500}).type, dtype::f32);
        const auto m = f.at("valid_indices_mask", {4500}).to<std::uint8_t>();
        EXPECT_EQ(std::count(m.begin(), m.end(), 1), 4282);
        const auto idx = f.at("input_to_synapse_indices", {4500}).to<std::int64_t>();
        EXPECT_GE(*std::min_element(idx.begin(), idx.end()), 0);
        EXPECT_LT(*std::max_element(idx.begin(), idx.end()), 1278);
        const auto d_m = f.at("_proto_tau_m").shape.at(0);
        EXPECT_EQ(f.at("w_y.weight").shape, (std::vector<std::int64_t>{2, d_m}));
        EXPECT_EQ(f.at("mlp.network.2.bias").shape, (std::vector<std::int64_t>{d_m}));
        EXPECT_EQ(f.at("mlp.network.0.weight").shape.at(1), 45 + d_m);
        const auto tau = f.at("tau_s").to<float>();
        for (const float v : tau) ASSERT_TRUE(std::isfinite(v));
    }
    EXPECT_GE(count, 15);
}

TEST(torch_pt_official, truncated_and_flipped_archives_only_throw) {
    const auto bytes =
        elm::detail::read_file(std::string(ELM_MODELS_DIR) + "/num_memory_1/neuronio_best_model_state.pt");
    for (std::size_t n = 0; n < bytes.size(); n += 997) {
        const std::span<const std::byte> cut(bytes.data(), n);
        EXPECT_THROW(elm::detail::parse_torch_state_dict(cut, "cut.pt"), elm::error) << n;
    }
    std::mt19937_64 rng(7);
    int thrown = 0;
    for (int i = 0; i < 300; ++i) {
        auto b = bytes;
        for (int k = 0; k < 4; ++k) b[rng() % b.size()] = std::byte(rng() & 0xff);
        try {
            elm::detail::parse_torch_state_dict(b, "flip.pt");
        } catch (const elm::error&) {
            ++thrown;
        }
    }
    EXPECT_GT(thrown, 0);
}

TEST(model_file, official_model_loads_from_folder_and_pt) {
    const std::string dir = std::string(ELM_MODELS_DIR) + "/num_memory_1";
    const auto m = elm::load_model<float>(dir);
    const auto sd = elm::read_torch_state_dict(dir + "/neuronio_best_model_state.pt");
    EXPECT_EQ(m.config().num_memory, 1);
    EXPECT_EQ(m.config().version, elm::model_version::v1);
    for (const auto& p : m.layout()) {
        const auto expected = sd.at(p.name).to<float>();
        const auto got = m.parameter(p.name);
        ASSERT_EQ(got.size(), expected.size()) << p.name;
        for (std::size_t i = 0; i < got.size(); ++i)
            ASSERT_EQ(got[i], expected[i]) << p.name << "[" << i << "]";
    }
    const auto mask = sd.at("valid_indices_mask").to<float>();
    EXPECT_TRUE(std::equal(mask.begin(), mask.end(), m.synapse_mask().begin()));
    const auto via_pt = elm::load_model<double>(dir + "/neuronio_best_model_state.pt");
    EXPECT_EQ(via_pt.parameter("w_y.bias")[1], double(m.parameter("w_y.bias")[1]));

    // The same file named .pth (torch.save's other usual extension), alone and in a model folder.
    const auto copy = fs::temp_directory_path() / ("elm_pth_" + std::to_string(::getpid()));
    fs::create_directories(copy);
    fs::copy_file(dir + "/model_config.json", copy / "model_config.json");
    fs::copy_file(dir + "/neuronio_best_model_state.pt", copy / "model.pth");
    for (const auto& path : {copy.string(), (copy / "model.pth").string()})
        EXPECT_TRUE(std::ranges::equal(elm::load_model<float>(path).parameters(), m.parameters())) << path;
    fs::copy_file(dir + "/neuronio_best_model_state.pt", copy / "other.pt");  // two state dicts: which one?
    EXPECT_THROW(elm::load_model<float>(copy.string()), elm::error);
    // A plain safetensors state dict (safetensors.torch.save_file: no metadata) beside model_config.json.
    const auto plain = copy / "plain";
    fs::create_directories(plain);
    fs::copy_file(dir + "/model_config.json", plain / "model_config.json");
    auto plain_sd = elm::state_dict(m);
    plain_sd.metadata.clear();
    elm::write_safetensors((plain / "model.safetensors").string(), plain_sd);
    for (const auto& path : {plain.string(), (plain / "model.safetensors").string()})
        EXPECT_TRUE(std::ranges::equal(elm::load_model<float>(path).parameters(), m.parameters())) << path;
    fs::remove(plain / "model_config.json");  // without it: an error that says what is missing
    try {
        elm::load_model<float>((plain / "model.safetensors").string());
        ADD_FAILURE() << "a plain state dict without a config loaded";
    } catch (const elm::error& e) {
        EXPECT_NE(std::string(e.what()).find("model_config.json"), std::string::npos) << e.what();
    }
    fs::remove_all(copy);
}

TEST(model_file, save_load_round_trip_and_state_dict_metadata) {
    const auto dir = fs::temp_directory_path() / ("elm_model_file_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const auto m = elm::load_model<float>(std::string(ELM_MODELS_DIR) + "/num_memory_2");
    const auto path = (dir / "m.safetensors").string();
    elm::save_model(path, m);
    const auto f = elm::read_safetensors(path);
    EXPECT_EQ(f.metadata.at("format"), "elmneuron");
    EXPECT_EQ(f.metadata.at("model_version"), "v1");
    EXPECT_EQ(f.at("valid_indices_mask", {4500}).type, dtype::boolean);
    EXPECT_EQ(f.at("input_to_synapse_indices", {4500}).type, dtype::i64);
    EXPECT_EQ(f.at("w_y.weight", {2, 2}).type, dtype::f32);
    const auto back = elm::load_model<float>(path);
    EXPECT_TRUE(std::ranges::equal(back.parameters(), m.parameters()));
    EXPECT_TRUE(std::ranges::equal(back.synapse_input_index(), m.synapse_input_index()));
    EXPECT_EQ(elm::to_json(back.config()), elm::to_json(m.config()));

    const auto d = m.cast<double>();
    elm::save_model((dir / "d.safetensors").string(), d);
    EXPECT_EQ(elm::read_safetensors((dir / "d.safetensors").string()).at("tau_s").type, dtype::f64);
    EXPECT_THROW(elm::save_model((dir / "m.pt").string(), m), elm::error);
    EXPECT_THROW(elm::load_model<float>((dir / "nothing.safetensors").string()), elm::file_not_found_error);
    EXPECT_THROW(elm::load_model<float>(std::string(ELM_GOLDEN_DIR) + "/v1_vanilla_small.safetensors"),
                 elm::error);
    fs::remove_all(dir);
}

TEST(model_file, mismatched_state_dicts_name_the_tensor) {
    auto sd = elm::state_dict(elm::load_model<float>(std::string(ELM_MODELS_DIR) + "/num_memory_1"));
    sd.source = "sd";
    const auto config = elm::parse_model_config(sd.metadata.at("config"), "cfg");
    const auto expect_field = [&](const elm::tensor_file& f, const std::string& field) {
        try {
            elm::model_from_state_dict<float>(config, f);
            ADD_FAILURE() << "no error for " << field;
        } catch (const elm::error& e) {
            EXPECT_EQ(e.file(), "sd");
            EXPECT_NE(e.field().find(field), std::string::npos) << e.what();
        }
    };
    EXPECT_NO_THROW(elm::model_from_state_dict<float>(config, sd));
    auto missing = sd;
    missing.tensors.erase(missing.tensors.begin());
    expect_field(missing, "_proto_w_s");
    auto extra = sd;
    extra.tensors.push_back(elm::make_tensor<float>("surprise", {1}, std::vector<float>{1.0f}));
    expect_field(extra, "surprise");
    // Saved from torch.nn.DataParallel: every name prefixed "module.", said so.
    auto prefixed = sd;
    for (auto& t : prefixed.tensors) t.name = "module." + t.name;
    try {
        elm::model_from_state_dict<float>(config, prefixed);
        ADD_FAILURE() << "no error for module.-prefixed names";
    } catch (const elm::error& e) {
        EXPECT_NE(e.hint().find("DataParallel"), std::string::npos) << e.what();
    }
    auto shape = sd;
    for (auto& t : shape.tensors)
        if (t.name == "w_y.bias") t = elm::make_tensor<float>("w_y.bias", {3}, std::vector<float>{1, 2, 3});
    expect_field(shape, "w_y.bias");
    auto nan = sd;
    for (auto& t : nan.tensors)
        if (t.name == "w_y.bias")
            t = elm::make_tensor<float>("w_y.bias", {2}, std::vector<float>{1, std::nanf("")});
    expect_field(nan, "w_y.bias");
    auto ints = sd;
    for (auto& t : ints.tensors)
        if (t.name == "w_y.bias")
            t = elm::make_tensor<std::int64_t>("w_y.bias", {2}, std::vector<std::int64_t>{1, 2});
    expect_field(ints, "w_y.bias");
    auto route = sd;
    for (auto& t : route.tensors)
        if (t.name == "input_to_synapse_indices") {
            auto v = t.to<std::int64_t>();
            v[17] = 5000;
            t = elm::make_tensor<std::int64_t>(t.name, t.shape, v);
        }
    expect_field(route, "input_to_synapse_indices");
    auto bad_bool = sd;
    for (auto& t : bad_bool.tensors)
        if (t.name == "valid_indices_mask") t.data[3] = std::byte{2};  // BOOL bytes must be 0 or 1
    expect_field(bad_bool, "valid_indices_mask");
}

// A state dict saved in bfloat16 (model.to(torch.bfloat16)): loaded, each weight the float32 with the same
// upper 16 bits.
TEST(model_file, bfloat16_state_dicts_load_exactly) {
    const auto m = elm::load_model<float>(std::string(ELM_MODELS_DIR) + "/num_memory_2");
    auto sd = elm::state_dict(m);
    sd.source = "bf16";
    for (auto& t : sd.tensors) {
        if (t.type != dtype::f32) continue;
        const auto values = t.to<float>();
        t.type = dtype::bf16;
        t.data.resize(values.size() * 2);
        for (std::size_t i = 0; i < values.size(); ++i) {
            const auto upper = static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(values[i]) >> 16);
            std::memcpy(t.data.data() + 2 * i, &upper, 2);
        }
    }
    const auto back = elm::model_from_state_dict<float>(m.config(), sd);
    const auto a = m.parameters(), b = back.parameters();
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(b[i]), std::bit_cast<std::uint32_t>(a[i]) & 0xffff0000u) << i;
}

// The published constructor registers input_to_synapse_indices and valid_indices_mask even without
// routing, as nn.Parameter(None): empty tensors that every state dict it saves carries (golden/README.md:
// param.* is the whole state dict).
TEST(model_file, unrouted_state_dicts_carry_the_published_empty_routing_tensors) {
    elm::model_config c;
    c.num_input = 3;
    c.num_output = 2;
    c.num_memory = 4;
    const elm::model<float> m(c, 5);
    auto sd = elm::state_dict(m);
    sd.source = "sd";
    for (const char* name : {"input_to_synapse_indices", "valid_indices_mask"}) {
        const auto& t = sd.at(name, {0});  // written, empty, so that the published load_state_dict takes it
        EXPECT_EQ(t.numel(), 0);
    }
    const auto back = elm::model_from_state_dict<float>(c, sd);
    EXPECT_TRUE(std::ranges::equal(back.parameters(), m.parameters()));
    // As torch.save writes them: F32 [0] (the published default dtype), or any empty tensor.
    auto as_int = sd;
    for (auto& t : as_int.tensors)
        if (t.name == "input_to_synapse_indices") t = elm::make_tensor<std::int64_t>(t.name, {0}, {});
    EXPECT_NO_THROW(elm::model_from_state_dict<float>(c, as_int));
    auto without = sd;  // older files of ours, and state dicts with the placeholders dropped
    std::erase_if(without.tensors, [](const elm::tensor& t) { return t.numel() == 0; });
    EXPECT_NO_THROW(elm::model_from_state_dict<float>(c, without));
    auto filled = sd;  // a routed model's tensors under an unrouted config: an error naming the tensor
    for (auto& t : filled.tensors)
        if (t.name == "valid_indices_mask")
            t = elm::make_tensor<float>(t.name, {3}, std::vector<float>{1, 1, 1});
    try {
        elm::model_from_state_dict<float>(c, filled);
        ADD_FAILURE() << "a non-empty routing mask under routing none was accepted";
    } catch (const elm::error& e) {
        EXPECT_EQ(e.file(), "sd");
        EXPECT_EQ(e.field(), "valid_indices_mask");
    }
}

}  // namespace
