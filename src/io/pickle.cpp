// Restricted unpickler: see pickle.hpp. Opcode semantics follow CPython's Lib/pickle.py (_Unpickler), with
// Python 3's mark handling (a non-mark opcode cannot pop items below the innermost MARK).

#include "io/pickle.hpp"

#include <bit>
#include <cstring>
#include <limits>

namespace elm::detail {

namespace {

constexpr pickle_ref no_ref = std::numeric_limits<pickle_ref>::max();

// What to do about a pickle of a protocol this reader does not take.
constexpr const char* resave_hint =
    "this reader takes pickle protocols 1-5, their in-band data (the published files are protocol 2): "
    "re-save with pickle.dump(obj, f, protocol=2)";

// Opcodes that exist but are deliberately unsupported, for readable error messages.
const char* opcode_name(std::uint8_t op) {
    switch (op) {
        case 'i':
            return "INST";
        case 'o':
            return "OBJ";
        case 0x82:
            return "EXT1";
        case 0x83:
            return "EXT2";
        case 0x84:
            return "EXT4";
        case 'p':
            return "PUT";
        case 'g':
            return "GET";
        case 'S':
            return "STRING";
        case 'V':
            return "UNICODE";
        case 'F':
            return "FLOAT";
        case 'L':
            return "LONG";
        case 'P':
            return "PERSID";
        case 0x8f:
            return "EMPTY_SET";
        case 0x90:
            return "ADDITEMS";
        case 0x91:
            return "FROZENSET";
        case 0x92:
            return "NEWOBJ_EX";
        case 0x97:
            return "NEXT_BUFFER";
        case 0x98:
            return "READONLY_BUFFER";
        default:
            return "unknown opcode";
    }
}

std::string hex_byte(std::uint8_t b) {
    const char* digits = "0123456789abcdef";
    std::string s = "0x";
    s += digits[b >> 4];
    s += digits[b & 15];
    return s;
}

class unpickler {
public:
    unpickler(std::span<const std::byte> input, std::string_view source, const unpickle_options& options)
        : opt_(options) {
        tree_.source = std::string(source);
        tree_.input = input;
    }

    pickle_tree run() {
        const std::size_t size = tree_.input.size();
        while (pos_ < size) {
            op_pos_ = pos_;
            const auto op = u8();
            if (step(op)) return std::move(tree_);
        }
        fail("end of data", "a STOP opcode", "truncated pickle (" + std::to_string(size) + " bytes)");
    }

private:
    [[noreturn]] void fail(std::string_view what, std::string expected, std::string got,
                           std::string hint = "") const {
        throw elm::error(tree_.source, std::string(what) + " at byte " + std::to_string(op_pos_),
                         std::move(expected), std::move(got), std::move(hint));
    }

    void need(std::uint64_t n) const {
        if (n > tree_.input.size() - pos_)
            fail("opcode argument", std::to_string(n) + " more bytes",
                 std::to_string(tree_.input.size() - pos_) + " bytes left (truncated)");
    }
    std::uint64_t le(std::size_t n) {
        need(n);
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i)
            v |= std::uint64_t(std::to_integer<std::uint8_t>(tree_.input[pos_ + i])) << (8 * i);
        pos_ += n;
        return v;
    }
    std::uint8_t u8() { return static_cast<std::uint8_t>(le(1)); }

    pickle_ref add(pickle_kind kind, std::uint64_t payload = 0, std::uint32_t count = 0,
                   std::uint8_t flags = 0) {
        if (tree_.nodes.size() >= no_ref) fail("pickle", "fewer than 2^32 objects", "more");
        tree_.nodes.push_back(pickle_node{kind, flags, count, payload});
        return static_cast<pickle_ref>(tree_.nodes.size() - 1);
    }
    pickle_ref add_children(pickle_kind kind, std::span<const pickle_ref> children, std::uint8_t flags = 0) {
        const auto offset = tree_.pool.size();
        tree_.pool.insert(tree_.pool.end(), children.begin(), children.end());
        return add(kind, offset, static_cast<std::uint32_t>(children.size()), flags);
    }
    pickle_ref add_container(pickle_kind kind, std::span<const pickle_ref> items) {
        tree_.containers.emplace_back(items.begin(), items.end());
        return add(kind, tree_.containers.size() - 1);
    }
    // A str/bytes node viewing the next n input bytes.
    pickle_ref add_text(pickle_kind kind, std::uint64_t n, std::uint8_t flags = 0) {
        need(n);
        if (n > std::numeric_limits<std::uint32_t>::max())
            fail("string length", "< 4 GiB", std::to_string(n));
        const auto r = add(kind, pos_, static_cast<std::uint32_t>(n), flags);
        pos_ += static_cast<std::size_t>(n);
        return r;
    }

    std::size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
    void push(pickle_ref r) { stack_.push_back(r); }
    pickle_ref pop() {
        if (stack_.size() <= base()) fail("stack", "an object on the stack", "stack underflow");
        const auto r = stack_.back();
        stack_.pop_back();
        return r;
    }
    pickle_ref top() const {
        if (stack_.size() <= base()) fail("stack", "an object on the stack", "stack underflow");
        return stack_.back();
    }
    // Items pushed since the innermost MARK; the mark is removed (the items stay until the caller erases).
    std::size_t pop_mark() {
        if (marks_.empty()) fail("stack", "a MARK", "no MARK on the stack");
        const auto m = marks_.back();
        marks_.pop_back();
        return m;
    }
    std::span<const pickle_ref> since(std::size_t m) const { return {stack_.data() + m, stack_.size() - m}; }

    pickle_ref container_target(std::size_t m, pickle_kind kind, const char* opname) {
        if (m <= base() || m == 0)
            fail(opname, std::string("a ") + to_string(kind) + " below the MARK", "nothing");
        const auto target = stack_[m - 1];
        if (tree_.kind(target) != kind)
            fail(opname, std::string("a ") + to_string(kind) + " to add to", tree_.describe(target, 1));
        return target;
    }
    void add_pairs(pickle_ref dict, std::span<const pickle_ref> kv) {
        if (kv.size() % 2 != 0) fail("SETITEMS", "key/value pairs", std::to_string(kv.size()) + " items");
        auto& c = tree_.containers[tree_.node(dict).payload];
        c.insert(c.end(), kv.begin(), kv.end());
    }

    void check_global(pickle_ref module, pickle_ref name) {
        const auto m = tree_.as_string(module, "global module");
        const auto n = tree_.as_string(name, "global name");
        for (const auto& [am, an] : opt_.allowed_globals)
            if (am == m && an == n) return;
        std::string allowed;
        for (const auto& [am, an] : opt_.allowed_globals)
            allowed += (allowed.empty() ? "" : ", ") + am + "." + an;
        fail("pickle global", "one of: " + (allowed.empty() ? std::string("(none allowed)") : allowed),
             std::string(m) + "." + std::string(n));
    }
    std::size_t text_line(std::size_t max_len) {  // returns the start; pos_ moves past '\n'
        const auto start = pos_;
        while (true) {
            need(1);
            if (std::to_integer<char>(tree_.input[pos_]) == '\n') break;
            if (pos_ - start >= max_len)
                fail("text argument", "a line of at most " + std::to_string(max_len) + " bytes", "longer");
            ++pos_;
        }
        ++pos_;
        return start;
    }
    void memo_put(std::uint64_t index) {
        // Picklers number memo entries 0, 1, 2, ... and each BINPUT costs >= 2 bytes, so a real index is
        // below the current offset; this bounds the memo by the input size.
        if (index > pos_) fail("memo index", "at most " + std::to_string(pos_), std::to_string(index));
        if (index >= memo_.size()) memo_.resize(index + 1, no_ref);
        if (memo_[index] == no_ref) ++memo_len_;
        memo_[index] = top();
    }
    void memo_get(std::uint64_t index) {
        if (index >= memo_.size() || memo_[index] == no_ref)
            fail("memo index", "a stored memo entry", std::to_string(index));
        push(memo_[index]);
    }
    void push_int(std::int64_t v) { push(add(pickle_kind::integer, static_cast<std::uint64_t>(v))); }
    void push_long(std::uint64_t n) {  // LONG1/LONG4: n-byte little-endian two's complement
        need(n);
        std::uint64_t v = 0;
        const auto* p = tree_.input.data() + pos_;
        const bool negative = n > 0 && (std::to_integer<std::uint8_t>(p[n - 1]) & 0x80) != 0;
        for (std::uint64_t i = 0; i < n; ++i) {
            const auto b = std::to_integer<std::uint8_t>(p[i]);
            if (i < 8)
                v |= std::uint64_t(b) << (8 * i);
            else if (b != (negative ? 0xff : 0x00))
                fail("LONG", "an integer that fits in 64 bits", std::to_string(n) + " bytes");
        }
        if (n < 8 && negative) v |= ~std::uint64_t(0) << (8 * n);
        if (n >= 8 && (std::int64_t(v) < 0) != negative)
            fail("LONG", "an integer that fits in 64 bits", std::to_string(n) + " bytes");
        pos_ += static_cast<std::size_t>(n);
        push_int(static_cast<std::int64_t>(v));
    }
    void push_text_int() {  // protocol 0 INT: decimal line, "00"/"01" mean False/True
        const auto start = text_line(24);
        const std::string_view s(reinterpret_cast<const char*>(tree_.input.data()) + start, pos_ - 1 - start);
        if (s == "00" || s == "01") return push(add(pickle_kind::boolean, s == "01" ? 1 : 0));
        std::size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
        if (i == s.size()) fail("INT", "a decimal integer", std::string(s));
        std::uint64_t v = 0;
        for (; i < s.size(); ++i) {
            if (s[i] < '0' || s[i] > '9' || v > (std::uint64_t(1) << 62))
                fail("INT", "a decimal int64", std::string(s));
            v = v * 10 + std::uint64_t(s[i] - '0');
        }
        push_int(s[0] == '-' ? -static_cast<std::int64_t>(v) : static_cast<std::int64_t>(v));
    }

    bool step(std::uint8_t op);

    const unpickle_options& opt_;
    pickle_tree tree_;
    std::size_t pos_ = 0, op_pos_ = 0;
    std::vector<pickle_ref> stack_;
    std::vector<std::size_t> marks_;
    std::vector<pickle_ref> memo_;
    std::size_t memo_len_ = 0;
};

// Returns true at STOP.
bool unpickler::step(std::uint8_t op) {
    switch (op) {
        case 0x80: {  // PROTO
            const auto v = u8();
            if (v > 5) fail("PROTO", "protocol 0-5", std::to_string(v));
            return false;
        }
        case 0x95: {  // FRAME: framing is only a read-ahead hint
            const auto n = le(8);
            need(n);
            return false;
        }
        case '.': {  // STOP
            if (!marks_.empty() || stack_.size() != 1)
                fail("STOP", "exactly one object on the stack",
                     std::to_string(stack_.size()) + " objects, " + std::to_string(marks_.size()) + " marks");
            tree_.root = stack_.back();
            return true;
        }
        case '(':
            marks_.push_back(stack_.size());
            return false;  // MARK
        case '0':          // POP (pops a mark when nothing is above it, as CPython does)
            if (stack_.size() > base())
                stack_.pop_back();
            else
                stack_.resize(pop_mark());
            return false;
        case '1':
            stack_.resize(pop_mark());
            return false;  // POP_MARK
        case '2':
            push(top());
            return false;  // DUP
        case 'N':
            push(add(pickle_kind::none));
            return false;
        case 0x88:
            push(add(pickle_kind::boolean, 1));
            return false;  // NEWTRUE
        case 0x89:
            push(add(pickle_kind::boolean, 0));
            return false;  // NEWFALSE
        case 'I':
            push_text_int();
            return false;
        case 'J':
            push_int(static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4))));
            return false;  // BININT
        case 'K':
            push_int(static_cast<std::int64_t>(le(1)));
            return false;  // BININT1
        case 'M':
            push_int(static_cast<std::int64_t>(le(2)));
            return false;  // BININT2
        case 0x8a:
            push_long(le(1));
            return false;  // LONG1
        case 0x8b: {       // LONG4
            const auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4)));
            if (n < 0) fail("LONG4", "a non-negative length", std::to_string(n));
            push_long(static_cast<std::uint64_t>(n));
            return false;
        }
        case 'G': {  // BINFLOAT: big-endian IEEE double
            need(8);
            std::uint64_t bits = 0;
            for (int i = 0; i < 8; ++i)
                bits = (bits << 8) | std::to_integer<std::uint8_t>(tree_.input[pos_ + std::size_t(i)]);
            pos_ += 8;
            push(add(pickle_kind::floating, bits));
            return false;
        }
        case 'X':
            push(add_text(pickle_kind::string, le(4)));
            return false;  // BINUNICODE
        case 0x8c:
            push(add_text(pickle_kind::string, le(1)));
            return false;  // SHORT_BINUNICODE
        case 0x8d:
            push(add_text(pickle_kind::string, le(8)));
            return false;  // BINUNICODE8
        case 'T': {        // BINSTRING (signed length)
            const auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4)));
            if (n < 0) fail("BINSTRING", "a non-negative length", std::to_string(n));
            push(add_text(pickle_kind::string, static_cast<std::uint64_t>(n), flag_latin1));
            return false;
        }
        case 'U':
            push(add_text(pickle_kind::string, le(1), flag_latin1));
            return false;  // SHORT_BINSTRING
        case 'B':
            push(add_text(pickle_kind::bytes, le(4)));
            return false;  // BINBYTES
        case 'C':
            push(add_text(pickle_kind::bytes, le(1)));
            return false;  // SHORT_BINBYTES
        case 0x8e:
            push(add_text(pickle_kind::bytes, le(8)));
            return false;  // BINBYTES8
        case 0x96:         // BYTEARRAY8 (protocol 5: a writable buffer in-band, e.g. a numpy array's data)
            push(add_text(pickle_kind::bytes, le(8)));
            return false;
        case ')':
            push(add_children(pickle_kind::tuple, {}));
            return false;  // EMPTY_TUPLE
        case 't': {        // TUPLE
            const auto m = pop_mark();
            const auto r = add_children(pickle_kind::tuple, since(m));
            stack_.resize(m);
            push(r);
            return false;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
            const std::size_t n = std::size_t(op - 0x84);
            if (stack_.size() < base() + n)
                fail("TUPLE" + std::to_string(n), std::to_string(n) + " objects", "stack underflow");
            const auto r = add_children(pickle_kind::tuple, since(stack_.size() - n));
            stack_.resize(stack_.size() - n);
            push(r);
            return false;
        }
        case ']':
            push(add_container(pickle_kind::list, {}));
            return false;  // EMPTY_LIST
        case '}':
            push(add_container(pickle_kind::dict, {}));
            return false;  // EMPTY_DICT
        case 'l':
        case 'd': {  // LIST, DICT
            const auto m = pop_mark();
            const auto items = since(m);
            if (op == 'd' && items.size() % 2 != 0)
                fail("DICT", "key/value pairs", std::to_string(items.size()) + " items");
            const auto r = add_container(op == 'l' ? pickle_kind::list : pickle_kind::dict, items);
            stack_.resize(m);
            push(r);
            return false;
        }
        case 'a': {  // APPEND
            const auto v = pop();
            const auto list = container_target(stack_.size(), pickle_kind::list, "APPEND");
            tree_.containers[tree_.node(list).payload].push_back(v);
            return false;
        }
        case 'e': {  // APPENDS
            const auto m = pop_mark();
            const auto list = container_target(m, pickle_kind::list, "APPENDS");
            auto& c = tree_.containers[tree_.node(list).payload];
            const auto items = since(m);
            c.insert(c.end(), items.begin(), items.end());
            stack_.resize(m);
            return false;
        }
        case 's': {  // SETITEM
            const auto v = pop();
            const auto k = pop();
            const pickle_ref kv[2] = {k, v};
            add_pairs(container_target(stack_.size(), pickle_kind::dict, "SETITEM"), kv);
            return false;
        }
        case 'u': {  // SETITEMS
            const auto m = pop_mark();
            add_pairs(container_target(m, pickle_kind::dict, "SETITEMS"), since(m));
            stack_.resize(m);
            return false;
        }
        case 'c': {  // GLOBAL "module\nname\n"
            const auto ms = text_line(256);
            const auto module = add(pickle_kind::string, ms, static_cast<std::uint32_t>(pos_ - 1 - ms));
            const auto ns = text_line(256);
            const auto name = add(pickle_kind::string, ns, static_cast<std::uint32_t>(pos_ - 1 - ns));
            check_global(module, name);
            const pickle_ref c[2] = {module, name};
            push(add_children(pickle_kind::global, c));
            return false;
        }
        case 0x93: {  // STACK_GLOBAL
            const auto name = pop();
            const auto module = pop();
            check_global(module, name);
            const pickle_ref c[2] = {module, name};
            push(add_children(pickle_kind::global, c));
            return false;
        }
        case 'R':
        case 0x81: {  // REDUCE, NEWOBJ: recorded, never called
            const auto args = pop();
            const auto callable = pop();
            if (tree_.kind(args) != pickle_kind::tuple)
                fail(op == 'R' ? "REDUCE" : "NEWOBJ", "an argument tuple", tree_.describe(args, 1));
            if (opt_.ordered_dict_as_dict && op == 'R' && tree_.node(args).count == 0 &&
                tree_.is_global(callable, "collections", "OrderedDict")) {
                push(add_container(pickle_kind::dict, {}));
                return false;
            }
            const pickle_ref c[2] = {callable, args};
            push(add_children(pickle_kind::reduce, c, op == 'R' ? 0 : flag_newobj));
            return false;
        }
        case 'b': {  // BUILD: the object node becomes build(copy of object, state), so memo references see it
            const auto state = pop();
            const auto obj = top();
            const auto copy = add(tree_.node(obj).kind, tree_.node(obj).payload, tree_.node(obj).count,
                                  tree_.node(obj).flags);
            const pickle_ref c[2] = {copy, state};
            const auto offset = tree_.pool.size();
            tree_.pool.insert(tree_.pool.end(), c, c + 2);
            tree_.nodes[obj] = pickle_node{pickle_kind::build, 0, 2, offset};
            return false;
        }
        case 'Q': {  // BINPERSID
            const pickle_ref c[1] = {pop()};
            push(add_children(pickle_kind::persistent_id, c));
            return false;
        }
        case 'q':
            memo_put(le(1));
            return false;  // BINPUT
        case 'r':
            memo_put(le(4));
            return false;  // LONG_BINPUT
        case 0x94:
            memo_put(memo_len_);
            return false;  // MEMOIZE
        case 'h':
            memo_get(le(1));
            return false;  // BINGET
        case 'j':
            memo_get(le(4));
            return false;  // LONG_BINGET
        default: {
            const std::string_view text_protocol = "ipgSVFLP";  // opcodes of protocol 0 (text) only
            fail("pickle opcode", "a supported opcode", hex_byte(op) + " (" + opcode_name(op) + ")",
                 text_protocol.find(static_cast<char>(op)) != std::string_view::npos
                     ? std::string(resave_hint) + " (this looks like protocol 0, text)"
                 : op == 0x97 || op == 0x98
                     ? std::string(resave_hint) +
                           " (out-of-band buffers, pickle.dump(..., buffer_callback=...), "
                           "are not in the file)"
                     : "");
        }
    }
}

}  // namespace

const char* to_string(pickle_kind k) {
    switch (k) {
        case pickle_kind::none:
            return "None";
        case pickle_kind::boolean:
            return "bool";
        case pickle_kind::integer:
            return "int";
        case pickle_kind::floating:
            return "float";
        case pickle_kind::string:
            return "str";
        case pickle_kind::bytes:
            return "bytes";
        case pickle_kind::tuple:
            return "tuple";
        case pickle_kind::list:
            return "list";
        case pickle_kind::dict:
            return "dict";
        case pickle_kind::global:
            return "global";
        case pickle_kind::reduce:
            return "reduce";
        case pickle_kind::build:
            return "build";
        case pickle_kind::persistent_id:
            return "persistent_id";
    }
    return "?";
}

pickle_tree unpickle(std::span<const std::byte> input, std::string_view source,
                     const unpickle_options& options) {
    return unpickler(input, source, options).run();
}

std::span<const pickle_ref> pickle_tree::children(pickle_ref r) const {
    const auto& n = nodes[r];
    if (n.kind == pickle_kind::list || n.kind == pickle_kind::dict) return containers[n.payload];
    if (n.kind == pickle_kind::tuple || n.kind == pickle_kind::global || n.kind == pickle_kind::reduce ||
        n.kind == pickle_kind::build || n.kind == pickle_kind::persistent_id)
        return {pool.data() + n.payload, n.count};
    return {};
}

void pickle_tree::fail(std::string_view what, std::string expected, std::string got) const {
    throw elm::error(source, std::string(what), std::move(expected), std::move(got));
}

namespace {
void expect_kind(const pickle_tree& t, pickle_ref r, pickle_kind k, std::string_view what) {
    if (t.kind(r) != k) t.fail(what, std::string("a ") + to_string(k), t.describe(r, 1));
}
}  // namespace

bool pickle_tree::as_bool(pickle_ref r, std::string_view what) const {
    expect_kind(*this, r, pickle_kind::boolean, what);
    return nodes[r].payload != 0;
}

std::int64_t pickle_tree::as_int(pickle_ref r, std::string_view what) const {
    expect_kind(*this, r, pickle_kind::integer, what);
    return static_cast<std::int64_t>(nodes[r].payload);
}

double pickle_tree::as_float(pickle_ref r, std::string_view what) const {
    if (kind(r) == pickle_kind::integer)
        return static_cast<double>(static_cast<std::int64_t>(nodes[r].payload));
    expect_kind(*this, r, pickle_kind::floating, what);
    return std::bit_cast<double>(nodes[r].payload);
}

std::string_view pickle_tree::as_string(pickle_ref r, std::string_view what) const {
    expect_kind(*this, r, pickle_kind::string, what);
    return {reinterpret_cast<const char*>(input.data()) + nodes[r].payload, nodes[r].count};
}

std::span<const std::byte> pickle_tree::as_bytes(pickle_ref r, std::string_view what) const {
    // Python 2 str is a byte string: accept it wherever bytes are expected (numpy raw buffers).
    if (!(kind(r) == pickle_kind::string && (nodes[r].flags & flag_latin1) != 0))
        expect_kind(*this, r, pickle_kind::bytes, what);
    return input.subspan(nodes[r].payload, nodes[r].count);
}

std::span<const pickle_ref> pickle_tree::as_tuple(pickle_ref r, std::string_view what) const {
    expect_kind(*this, r, pickle_kind::tuple, what);
    return children(r);
}

std::span<const pickle_ref> pickle_tree::as_list(pickle_ref r, std::string_view what) const {
    expect_kind(*this, r, pickle_kind::list, what);
    return children(r);
}

pickle_global pickle_tree::as_global(pickle_ref r, std::string_view what) const {
    expect_kind(*this, r, pickle_kind::global, what);
    const auto c = children(r);
    return {as_string(c[0], what), as_string(c[1], what)};
}

bool pickle_tree::is_global(pickle_ref r, std::string_view module, std::string_view name) const {
    if (kind(r) != pickle_kind::global) return false;
    const auto g = as_global(r, "global");
    return g.module == module && g.name == name;
}

std::size_t pickle_tree::dict_size(pickle_ref dict, std::string_view what) const {
    expect_kind(*this, dict, pickle_kind::dict, what);
    return children(dict).size() / 2;
}

std::pair<pickle_ref, pickle_ref> pickle_tree::dict_item(pickle_ref dict, std::size_t i) const {
    const auto c = children(dict);
    return {c[2 * i], c[2 * i + 1]};
}

bool pickle_tree::dict_find(pickle_ref dict, std::string_view key, pickle_ref& value,
                            std::string_view what) const {
    const auto n = dict_size(dict, what);
    for (std::size_t i = 0; i < n; ++i) {
        const auto [k, v] = dict_item(dict, i);
        if (kind(k) == pickle_kind::string && as_string(k, what) == key) {
            value = v;
            return true;
        }
    }
    return false;
}

pickle_ref pickle_tree::dict_at(pickle_ref dict, std::string_view key, std::string_view what) const {
    pickle_ref v = 0;
    if (!dict_find(dict, key, v, what)) fail(what, "a key '" + std::string(key) + "'", "no such key");
    return v;
}

std::string pickle_tree::describe(pickle_ref r, int depth) const {
    const auto& n = nodes[r];
    switch (n.kind) {
        case pickle_kind::none:
            return "None";
        case pickle_kind::boolean:
            return n.payload ? "True" : "False";
        case pickle_kind::integer:
            return std::to_string(static_cast<std::int64_t>(n.payload));
        case pickle_kind::floating:
            return std::to_string(std::bit_cast<double>(n.payload));
        case pickle_kind::string:
        case pickle_kind::bytes: {
            std::string s(n.kind == pickle_kind::bytes ? "b'" : "'");
            for (std::uint32_t i = 0; i < n.count && i < 40; ++i) {
                const auto c = std::to_integer<unsigned char>(input[n.payload + i]);
                s += (c >= 32 && c < 127) ? static_cast<char>(c) : '?';
            }
            return s + (n.count > 40 ? "...'" : "'");
        }
        case pickle_kind::global: {
            const auto g = as_global(r, "global");
            return std::string(g.module) + "." + std::string(g.name);
        }
        default:
            break;
    }
    std::string s = to_string(n.kind);
    const auto c = children(r);
    if (depth <= 0) return s + "(" + std::to_string(c.size()) + " items)";
    s += "(";
    for (std::size_t i = 0; i < c.size() && i < 6; ++i) s += (i ? ", " : "") + describe(c[i], depth - 1);
    return s + (c.size() > 6 ? ", ...)" : ")");
}

}  // namespace elm::detail
