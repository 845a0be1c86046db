//! The words of the native file-copy programs, as src/filecopy/messages.ts has them: glibc's
//! strerror for the codes a copy meets, gui-fatal.c's format (spec §4.3) and what the sender
//! says about a receiver's error code (§2.6). test/filecopy/native-programs.test.ts holds the
//! programs' output against the Bun ones'.
const std = @import("std");
const linux = std.os.linux;

const Known = struct { code: i32, text: []const u8 };

const known = [_]Known{
    .{ .code = 1, .text = "Operation not permitted" },
    .{ .code = 2, .text = "No such file or directory" },
    .{ .code = 5, .text = "Input/output error" },
    .{ .code = 9, .text = "Bad file descriptor" },
    .{ .code = 12, .text = "Cannot allocate memory" },
    .{ .code = 13, .text = "Permission denied" },
    .{ .code = 17, .text = "File exists" },
    .{ .code = 18, .text = "Invalid cross-device link" },
    .{ .code = 20, .text = "Not a directory" },
    .{ .code = 21, .text = "Is a directory" },
    .{ .code = 22, .text = "Invalid argument" },
    .{ .code = 24, .text = "Too many open files" },
    .{ .code = 27, .text = "File too large" },
    .{ .code = 28, .text = "No space left on device" },
    .{ .code = 30, .text = "Read-only file system" },
    .{ .code = 32, .text = "Broken pipe" },
    .{ .code = 36, .text = "File name too long" },
    .{ .code = 39, .text = "Directory not empty" },
    .{ .code = 40, .text = "Too many levels of symbolic links" },
    .{ .code = 67, .text = "Link has been severed" },
    .{ .code = 71, .text = "Protocol error" },
    .{ .code = 74, .text = "Bad message" },
    .{ .code = 84, .text = "Invalid or incomplete multibyte or wide character" },
    .{ .code = 95, .text = "Operation not supported" },
    .{ .code = 121, .text = "Remote I/O error" },
    .{ .code = 122, .text = "Disk quota exceeded" },
};

/// `code` read as a C int, as upstream passes it.
pub fn strerror(buffer: []u8, code: u32) []const u8 {
    const signed: i32 = @bitCast(code);
    if (signed == 0) return "Success";
    for (known) |entry| if (entry.code == signed) return entry.text;
    return std.fmt.bufPrint(buffer, "Unknown error {d}", .{signed}) catch "Unknown error";
}

/// `<program>: Fatal error: <message> (error type: <strerror>)` on fd 2.
pub fn write_fatal(program: []const u8, message: []const u8, code: u32) void {
    var number: [32]u8 = undefined;
    const parts = [_][]const u8{
        program, ": Fatal error: ", message, " (error type: ", strerror(&number, code), ")\n",
    };
    for (parts) |part| write_stderr(part);
}

pub fn write_stderr(text: []const u8) void {
    var done: usize = 0;
    while (done < text.len) {
        const rc = linux.write(2, text[done..].ptr, text.len - done);
        switch (linux.E.init(rc)) {
            .SUCCESS => done += rc,
            .INTR => {},
            else => return,
        }
    }
}

const not_overwriting = "not overwriting existing file. Clean QubesIncoming dir, and retry copy";

/// pack.c's wait_for_result words for a receiver's `code`; `last_name` arrives sanitized.
pub fn remote_error(buffer: []u8, code: u32, last_name: ?[]const u8) []const u8 {
    var number: [32]u8 = undefined;
    const separator: []const u8 = if (last_name != null) "; Last file: " else "";
    const last = last_name orelse "";
    const text = strerror(&number, code);
    const what = switch (code) {
        17 => not_overwriting,
        22 => "Corrupted data from packer",
        else => "",
    };
    const result = if (what.len > 0)
        std.fmt.bufPrint(buffer, "File copy: {s}{s}{s}", .{ what, separator, last })
    else
        std.fmt.bufPrint(buffer, "File copy: \"{s}{s}{s}\"", .{ text, separator, last });
    return result catch buffer[0..];
}

test "messages: strerror and the sender's words" {
    var buffer: [512]u8 = undefined;
    try std.testing.expectEqualStrings("Success", strerror(&buffer, 0));
    try std.testing.expectEqualStrings("Broken pipe", strerror(&buffer, 32));
    const minus_84: u32 = @bitCast(@as(i32, -84));
    try std.testing.expectEqualStrings("Unknown error -84", strerror(&buffer, minus_84));
    try std.testing.expectEqualStrings("Unknown error 31415926", strerror(&buffer, 31415926));
    try std.testing.expectEqualStrings(
        "File copy: " ++ not_overwriting ++ "; Last file: a/b",
        remote_error(&buffer, 17, "a/b"),
    );
    const corrupted = remote_error(&buffer, 22, null);
    try std.testing.expectEqualStrings("File copy: Corrupted data from packer", corrupted);
    const denied = remote_error(&buffer, 13, null);
    try std.testing.expectEqualStrings("File copy: \"Permission denied\"", denied);
}
