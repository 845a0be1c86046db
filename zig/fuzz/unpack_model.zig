//! A plain reading of a file-copy stream for the `unpack` harness: entries in order until the
//! end marker or the first thing that cannot be read, each name mapped to its first entry.
//! It checks nothing about names: it only says what the stream asked for.
const std = @import("std");
const wire = @import("../filecopy/wire.zig");

pub const Entry = struct { kind: wire.Kind, payload: []const u8 };

pub const Model = struct {
    entries: std.StringHashMap(Entry),
    /// The stream up to and including the end marker (or all of it, without one).
    consumed: []const u8,
    complete: bool,

    pub fn read(stream: []const u8) Model {
        var model = Model{
            .entries = std.StringHashMap(Entry).init(std.heap.c_allocator),
            .consumed = stream,
            .complete = false,
        };
        var at: usize = 0;
        while (stream.len - at >= wire.header_bytes) {
            const header = wire.FileHeader.decode(stream[at..][0..wire.header_bytes]);
            at += wire.header_bytes;
            if (header.namelen == 0) {
                model.complete = true;
                model.consumed = stream[0..at];
                return model;
            }
            if (header.namelen > stream.len - at) break;
            const raw_name = stream[at..][0..header.namelen];
            const name = raw_name[0 .. std.mem.indexOfScalar(u8, raw_name, 0) orelse raw_name.len];
            at += header.namelen;
            const kind = wire.kind_of(header.mode);
            const payload_len: u64 = if (kind == .directory) 0 else header.filelen;
            if (payload_len > stream.len - at) break;
            const payload = stream[at..][0..@intCast(payload_len)];
            at += @intCast(payload_len);
            const nul = std.mem.indexOfScalar(u8, payload, 0) orelse payload.len;
            const cut = if (kind == .symlink) payload[0..nul] else payload;
            // The first entry of a name is the one on disk: a later one fails or merges into it.
            const slot = model.entries.getOrPut(name) catch @panic("out of memory");
            if (!slot.found_existing) slot.value_ptr.* = .{ .kind = kind, .payload = cut };
        }
        return model;
    }

    pub fn deinit(self: *Model) void {
        self.entries.deinit();
    }

    pub fn get(self: *const Model, name: []const u8) ?Entry {
        return self.entries.get(name);
    }

    pub fn count(self: *const Model) u32 {
        return self.entries.count();
    }
};
