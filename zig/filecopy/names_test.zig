//! Every rule and example of spec filecopy.md §3.4 (names) and §3.5 (symlinks) as a case, in
//! the spirit of upstream's qrexec-lib/validator-test.c. Each table is run once with the
//! character rules on and once with `allow_all_names`, each case stating both outcomes, so a
//! structural rule that `allow_all_names` wrongly switched off shows up as a failure.
const std = @import("std");
const testing = std.testing;

const names = @import("names.zig");
const unicode_allowlist = @import("unicode_allowlist.zig");

const strict: names.Flags = .{};
const all_names: names.Flags = .{ .allow_all_names = true };

/// How a case ends: accepted, or refused with one of the two wire errors.
const Outcome = enum { ok, invalid_name, link_escapes };

fn outcomeOf(result: names.LinkError!void) Outcome {
    result catch |err| return switch (err) {
        error.InvalidName => .invalid_name,
        error.LinkEscapes => .link_escapes,
    };
    return .ok;
}

const PathCase = struct { name: []const u8, strict: Outcome, all_names: Outcome };

fn pathCase(name: []const u8, strict_outcome: Outcome, all_names_outcome: Outcome) PathCase {
    return .{ .name = name, .strict = strict_outcome, .all_names = all_names_outcome };
}

/// Accepted under both rule sets.
fn pathOk(name: []const u8) PathCase {
    return pathCase(name, .ok, .ok);
}

/// A path-structure violation: refused even with `allow_all_names`.
fn pathStructure(name: []const u8) PathCase {
    return pathCase(name, .invalid_name, .invalid_name);
}

/// A character-rule violation: refused by default, accepted with `allow_all_names`.
fn pathCharset(name: []const u8) PathCase {
    return pathCase(name, .invalid_name, .ok);
}

const path_cases = [_]PathCase{
    // Accepted names (§3.4).
    pathOk("a"),
    pathOk("a/b"),
    pathOk("a/b/c/d/e/f"),
    pathOk(".a"),
    pathOk("..a"),
    pathOk("a.."),
    pathOk("..."),
    pathOk(".../..."),
    pathOk("a/.b/..c"),
    pathOk("a b"),
    pathOk(" "),
    pathOk("~!@#$%^&*()_+-=[]{}\\|;:'\",<.>?`"),
    pathOk("é"), // U+00E9 Latin
    pathOk("日本"), // Han
    pathOk("Ωmega"), // Greek
    pathOk("Привет"), // Cyrillic
    pathOk("한국어"), // Hangul
    pathOk("ひらがな/カタカナ"), // Hiragana, Katakana
    pathOk("ㄅㄆ"), // Bopomofo
    pathOk("€£¥"), // currency symbols (Sc)
    pathOk("±×÷∑"), // math symbols (Sm)
    pathOk("«»—–‘’“”¡¿§"), // punctuation (Pi Pf Pd Po)
    pathOk("²½Ⅻ"), // other and letter numbers (No, Nl)

    // Path-structure rules (§3.4), always on.
    pathStructure(""),
    pathStructure("/"),
    pathStructure("/a"),
    pathStructure("//a"),
    pathStructure("a//b"),
    pathStructure("a/"),
    pathStructure("a/b/"),
    pathStructure("a//"),
    pathStructure("."),
    pathStructure(".."),
    pathStructure("./a"),
    pathStructure("a/."),
    pathStructure("a/./b"),
    pathStructure("../a"),
    pathStructure("a/.."),
    pathStructure("a/../b"),
    pathStructure("./"),
    pathStructure("../"),
    pathStructure("/."),
    // NUL never reaches a C validator inside a name; with `allow_all_names` it is the one
    // byte (besides `/`) that a component still may not hold.
    pathStructure("a\x00b"),
    pathStructure("\x00"),

    // Character rules (§3.4), skipped with `allow_all_names`.
    pathCharset("\x01"),
    pathCharset("a\tb"),
    pathCharset("a\nb"),
    pathCharset("\x1b[31m"),
    pathCharset("\x1f"),
    pathCharset("\x7f"), // DEL
    pathCharset("a\u{0080}"), // C1 control
    pathCharset("\u{009B}"), // C1 CSI
    pathCharset("a\u{00A0}b"), // no-break space
    pathCharset("\u{2000}"), // en quad
    pathCharset("\u{200A}"), // hair space
    pathCharset("\u{3000}"), // ideographic space
    pathCharset("\u{2028}"), // line separator
    pathCharset("\u{2029}"), // paragraph separator
    pathCharset("a\u{200D}b"), // zero width joiner
    pathCharset("\u{200B}"), // zero width space
    pathCharset("\u{200E}"), // left-to-right mark
    pathCharset("\u{202A}a"), // left-to-right embedding
    pathCharset("\u{202B}a"), // right-to-left embedding
    pathCharset("\u{202E}fdp.exe"), // right-to-left override
    pathCharset("\u{2066}"), // left-to-right isolate
    pathCharset("\u{FEFF}"), // byte order mark
    pathCharset("e\u{0301}"), // combining acute accent after a letter
    pathCharset("Z\u{0335}\u{0321}"), // "Zalgo"
    pathCharset("\u{1F600}"), // emoji (So)
    pathCharset("\u{26A0}"), // warning sign (So)
    pathCharset("\u{00A9}"), // copyright sign (So)
    pathCharset("\u{00B4}"), // acute accent (Sk)
    pathCharset("\u{05D0}"), // Hebrew alef
    pathCharset("\u{0627}"), // Arabic alef
    pathCharset("\u{0661}"), // Arabic-indic digit one (bidi AN)
    pathCharset("\u{FB1D}"), // Hebrew presentation form
    pathCharset("\u{E000}"), // private use
    pathCharset("\u{F0000}"), // supplementary private use
    pathCharset("\u{FFFE}"), // noncharacter
    pathCharset("\u{FDD0}"), // noncharacter
    pathCharset("\u{0378}"), // unassigned
    pathCharset("\u{12000}"), // cuneiform (limited use script)
    pathCharset("\u{0E01}"), // Thai: a script outside the list
    // Braille is on upstream's script list, but its patterns are other symbols (So), which
    // the category rule already refuses.
    pathCharset("\u{2801}\u{2803}"),
    pathCharset("\xC0\xAF"), // overlong `/`
    pathCharset("\xC1\xBF"), // overlong
    pathCharset("\xE0\x80\xAF"), // overlong
    pathCharset("\xF0\x80\x80\xAF"), // overlong
    pathCharset("\xED\xA0\x80"), // surrogate U+D800
    pathCharset("\xED\xBF\xBF"), // surrogate U+DFFF
    pathCharset("\xF4\x90\x80\x80"), // U+110000
    pathCharset("\xF5\x80\x80\x80"),
    pathCharset("\xFF"),
    pathCharset("\xC3"), // truncated `é`
    pathCharset("a\xC3"),
    pathCharset("\xC3/b"), // truncated before a slash
    pathCharset("\xE6\x97"), // truncated `日`
    pathCharset("\xA9"), // lone continuation byte
    pathCharset("\xC3\xA9\xA9"), // `é` and a stray continuation byte
    // A character violation inside an otherwise fine path.
    pathCharset("a/b\x01/c"),
    pathCharset("ok/\u{202E}"),
};

test "names: validatePath, every §3.4 rule with and without allow_all_names" {
    for (path_cases) |case| {
        const outcome_strict = outcomeOf(names.validatePath(case.name, strict));
        const outcome_all = outcomeOf(names.validatePath(case.name, all_names));
        if (outcome_strict != case.strict or outcome_all != case.all_names) {
            std.debug.print("name \"{}\": strict {s} (want {s}), " ++
                "allow_all_names {s} (want {s})\n", .{
                std.zig.fmtEscapes(case.name),
                @tagName(outcome_strict),
                @tagName(case.strict),
                @tagName(outcome_all),
                @tagName(case.all_names),
            });
            return error.TestUnexpectedResult;
        }
        // A name is never refused as an escaping link.
        try testing.expect(case.strict != .link_escapes);
    }
}

const LinkCase = struct {
    name: []const u8,
    target: []const u8,
    strict: Outcome,
    all_names: Outcome,
};

fn link(name: []const u8, target: []const u8, outcome: Outcome) LinkCase {
    return .{ .name = name, .target = target, .strict = outcome, .all_names = outcome };
}

/// A target with a forbidden character: EILSEQ by default, fine with `allow_all_names`.
fn linkCharset(name: []const u8, target: []const u8) LinkCase {
    return .{ .name = name, .target = target, .strict = .invalid_name, .all_names = .ok };
}

const link_cases = [_]LinkCase{
    // The examples of §3.5.
    link("a/b", "c", .ok),
    link("a/b", "../x", .link_escapes),
    link("a/b/c", "../d", .ok),
    link("a/b/c", "../../d", .link_escapes),
    link("a/b/c", "..", .ok),
    // Depth: a link with `depth` components may climb `depth - 2` levels, at the start only.
    link("a/b/c", "../", .ok),
    link("a/b/c", "../..", .link_escapes),
    link("a/b/c/d", "../../e", .ok),
    link("a/b/c/d", "../../../e", .link_escapes),
    link("a/b/c/d/e", "../../../f/g", .ok),
    link("a/b", "..", .link_escapes),
    link("a/b", "c/../d", .link_escapes), // `..` after a normal component
    link("a/b/c", "d/..", .link_escapes),
    link("a/b/c/d", "../e/../f", .link_escapes),
    link("a/b/c", "x/../../y", .link_escapes),
    link("a/b", "c/d/e", .ok),
    link("a/b", "...", .ok),
    link("a/b", "..c", .ok),
    link("a/b", ".c", .ok),
    // Absolute targets.
    link("a/b", "/", .link_escapes),
    link("a/b", "/etc/passwd", .link_escapes),
    link("a/b/c/d", "/a", .link_escapes),
    link("a/b", "//a", .link_escapes),
    // Trailing `/` and non-canonical targets are allowed.
    link("a/b", "c/", .ok),
    link("a/b", "c//", .ok),
    link("a/b", "./busybox", .ok),
    link("a/b", "b//c", .ok),
    link("a/b", "c/./", .ok),
    link("a/b", ".", .ok),
    link("a/b", "./", .ok),
    link("a/b", "", .ok),
    link("a/b/c", "./../d", .ok), // `.` is not a normal component
    link("a/b/c", ".//../d", .ok),
    link("a/b/c", "./../../d", .link_escapes),
    // The link's own name: a top-level link is refused as ENOLINK whatever its target,
    // a name that fails §3.4 as EILSEQ.
    link("a", "b", .link_escapes),
    link("link", "", .link_escapes),
    link("a", "/b", .link_escapes),
    link("", "b", .invalid_name),
    link("/a/b", "c", .invalid_name),
    link("a//b", "c", .invalid_name),
    link("a/b/", "c", .invalid_name),
    link("a/./b", "c", .invalid_name),
    link("a/../b", "c", .invalid_name),
    link("./a", "c", .invalid_name),
    link("..", "c", .invalid_name),
    link("a/b\x00", "c", .invalid_name),
    .{ .name = "a/\u{202E}b", .target = "c", .strict = .invalid_name, .all_names = .ok },
    .{ .name = "\x01", .target = "c", .strict = .invalid_name, .all_names = .link_escapes },
    // Target charset: like names.
    link("a/b", "日本/é", .ok),
    linkCharset("a/b", "c\x01"),
    linkCharset("a/b", "\x7f"),
    linkCharset("a/b", "\u{202B}x"),
    linkCharset("a/b", "\u{1F600}"),
    linkCharset("a/b", "\u{05D0}"),
    linkCharset("a/b", "\xC3"),
    linkCharset("a/b", "\xED\xA0\x80"),
    linkCharset("a/b/c", "../\u{00A0}"),
    link("a/b", "c\x00", .invalid_name),
    // Errors come in the order of the bytes: a forbidden character before an escaping `..`
    // is EILSEQ, after it ENOLINK.
    .{ .name = "a/b", .target = "\x01/..", .strict = .invalid_name, .all_names = .link_escapes },
    link("a/b", "../\x01", .link_escapes),
    link("a/b", "/\x01", .link_escapes),
};

test "names: validateSymlink, every §3.5 rule and example" {
    for (link_cases) |case| {
        const outcome_strict = outcomeOf(names.validateSymlink(case.name, case.target, strict));
        const outcome_all = outcomeOf(names.validateSymlink(case.name, case.target, all_names));
        if (outcome_strict != case.strict or outcome_all != case.all_names) {
            std.debug.print("link \"{}\" -> \"{}\": strict {s} (want {s}), " ++
                "allow_all_names {s} (want {s})\n", .{
                std.zig.fmtEscapes(case.name),
                std.zig.fmtEscapes(case.target),
                @tagName(outcome_strict),
                @tagName(case.strict),
                @tagName(outcome_all),
                @tagName(case.all_names),
            });
            return error.TestUnexpectedResult;
        }
    }
}

test "names: a symlink's name obeys validatePath" {
    // Pair assertion: every name case, as a link name with a harmless target, is refused as
    // EILSEQ exactly when validatePath refuses it (one-component names then are ENOLINK).
    for (path_cases) |case| {
        inline for (.{ strict, all_names }) |flags| {
            const path_outcome = outcomeOf(names.validatePath(case.name, flags));
            const nested = std.mem.indexOfScalar(u8, case.name, '/') != null;
            const link_outcome = outcomeOf(names.validateSymlink(case.name, "x", flags));
            const link_expected: Outcome = if (path_outcome != .ok) path_outcome else if (nested)
                .ok
            else
                .link_escapes;
            try testing.expectEqual(link_expected, link_outcome);
        }
    }
}

test "names: errno of each error" {
    try testing.expectEqual(@as(i32, 84), names.errnoOf(error.InvalidName));
    try testing.expectEqual(@as(i32, 67), names.errnoOf(error.LinkEscapes));
}

test "names: isSafeForDisplay" {
    const safe = [_][]const u8{
        "",
        "a",
        "a b",
        "a/b", // a whole path
        "/abs/path/",
        "..",
        "é",
        "日本",
        "Ωmega",
        "€",
        "~",
    };
    const unsafe = [_][]const u8{
        "\x00",
        "\x01",
        "a\nb",
        "\x1b]0;title\x07",
        "\x7f",
        "\u{0085}",
        "\u{00A0}",
        "\u{200D}",
        "\u{202A}",
        "\u{202B}",
        "e\u{0301}",
        "\u{1F600}",
        "\u{26A0}",
        "\u{05D0}",
        "\u{0627}",
        "\u{E000}",
        "\xC0\xAF",
        "\xED\xA0\x80",
        "\xF4\x90\x80\x80",
        "\xC3",
        "ok\xC3",
    };
    for (safe) |text| {
        if (!names.isSafeForDisplay(text)) {
            std.debug.print("\"{}\" should be safe\n", .{std.zig.fmtEscapes(text)});
            return error.TestUnexpectedResult;
        }
    }
    for (unsafe) |text| {
        if (names.isSafeForDisplay(text)) {
            std.debug.print("\"{}\" should be unsafe\n", .{std.zig.fmtEscapes(text)});
            return error.TestUnexpectedResult;
        }
    }
}

test "names: isSafeForDisplay agrees with the strict validatePath on single components" {
    for (path_cases) |case| {
        const single = case.name.len > 0 and
            std.mem.indexOfScalar(u8, case.name, '/') == null and
            !std.mem.eql(u8, case.name, ".") and !std.mem.eql(u8, case.name, "..");
        if (!single) continue;
        try testing.expectEqual(case.strict == .ok, names.isSafeForDisplay(case.name));
    }
}

test "names: code points at the edges of the character rules" {
    const Case = struct { code_point: u21, allowed: bool };
    const cases = [_]Case{
        .{ .code_point = 0x00, .allowed = false },
        .{ .code_point = 0x1F, .allowed = false },
        .{ .code_point = 0x20, .allowed = true },
        .{ .code_point = 0x7E, .allowed = true },
        .{ .code_point = 0x7F, .allowed = false },
        .{ .code_point = 0x80, .allowed = false },
        .{ .code_point = 0x9F, .allowed = false },
        .{ .code_point = 0xA0, .allowed = false },
        .{ .code_point = 0xE9, .allowed = true },
        .{ .code_point = 0x0301, .allowed = false },
        .{ .code_point = 0x03A9, .allowed = true },
        .{ .code_point = 0x0416, .allowed = true },
        .{ .code_point = 0x4E00, .allowed = true },
        .{ .code_point = 0xAC00, .allowed = true },
        .{ .code_point = 0x20000, .allowed = true }, // CJK extension B
        .{ .code_point = 0x1D400, .allowed = true }, // mathematical bold A (Common, L)
        .{ .code_point = 0x10FFFF, .allowed = false },
    };
    for (cases) |case| {
        try testing.expectEqual(case.allowed, names.isCodePointAllowed(case.code_point));
    }
}

test "names: the binary search agrees with a linear scan of the table" {
    const ranges = &unicode_allowlist.ranges;
    // Every range's ends and their outside neighbours, which is where a search goes wrong.
    for (ranges) |range| {
        for ([_]u21{ range[0] - 1, range[0], range[1], range[1] + 1 }) |code_point| {
            if (code_point < 0x80) continue;
            try testing.expectEqual(
                linearAllowed(code_point),
                names.isCodePointAllowed(code_point),
            );
        }
    }
    // And a sample of the whole code space.
    var code_point: u21 = 0x80;
    while (code_point <= 0x10FFFF) : (code_point += 97) {
        try testing.expectEqual(linearAllowed(code_point), names.isCodePointAllowed(code_point));
    }
}

fn linearAllowed(code_point: u21) bool {
    for (unicode_allowlist.ranges) |range| {
        if (range[0] <= code_point and code_point <= range[1]) return true;
    }
    return false;
}

test "names: decodeUtf8 round-trips every scalar value" {
    var buffer: [4]u8 = undefined;
    var code_point: u21 = 0;
    while (code_point <= 0x10FFFF) : (code_point += 1) {
        if (code_point >= 0xD800 and code_point <= 0xDFFF) continue;
        const length = try std.unicode.utf8Encode(code_point, &buffer);
        const decoded = names.decodeUtf8(
            buffer[0..length],
        ) orelse return error.TestUnexpectedResult;
        try testing.expectEqual(code_point, decoded.code_point);
        try testing.expectEqual(length, decoded.length);
        // Every proper prefix of a multi-byte sequence is truncated.
        var prefix: usize = 1;
        while (prefix < length) : (prefix += 1) {
            try testing.expect(names.decodeUtf8(buffer[0..prefix]) == null);
        }
    }
}

test "names: decodeUtf8 refuses each ill-formed kind of sequence" {
    const refused = [_][]const u8{
        "\x80", // a continuation byte first
        "\xC0\x80", "\xC1\xBF", // overlong two-byte forms
        "\xE0\x80\x80", "\xF0\x8F\xBF\xBF", // overlong three- and four-byte forms
        "\xED\xA0\x80", "\xED\xBF\xBF", // surrogates
        "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF", // above U+10FFFF, bad leads
        "\xE2\x82", "\xC3", // truncated
        "\xE2\x28\xA1", // a non-continuation inside
    };
    for (refused) |bytes| try testing.expect(names.decodeUtf8(bytes) == null);
    try testing.expectEqual(@as(u21, 0x20AC), names.decodeUtf8("\xE2\x82\xAC").?.code_point);
    try testing.expectEqual(@as(u21, 0x10FFFF), names.decodeUtf8("\xF4\x8F\xBF\xBF").?.code_point);
}
