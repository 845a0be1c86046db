//! Gathers every Zig test for `zig build test`.
test {
    _ = @import("handles.zig");
    _ = @import("sys.zig");
    _ = @import("vchan/layout.zig");
    _ = @import("vchan/shm_test.zig");
    _ = @import("vchan/socket_test.zig");
    _ = @import("vchan/shm.zig");
    _ = @import("vchan/dir_watch.zig");
    _ = @import("vchan/backend_common.zig");
    _ = @import("vchan/vchan.zig");
    _ = @import("pump/events.zig");
    _ = @import("pump/data.zig");
    _ = @import("pump/data_model_test.zig");
    _ = @import("pump/pump_test.zig");
    _ = @import("pump/spawn.zig");
    _ = @import("net_test.zig");
    _ = @import("exec.zig");
    _ = @import("signals_test.zig");
    _ = @import("filecopy/names_test.zig");
    _ = @import("filecopy/wire_test.zig");
    _ = @import("filecopy/pack_test.zig");
    _ = @import("filecopy/unpack_test.zig");
    _ = @import("client_host/front_end.zig");
    _ = @import("client_host/listener.zig");
    _ = @import("client_host/bun_cli.zig");
    _ = @import("client_host/local_program.zig");
    _ = @import("dom0_client/main.zig");
    _ = @import("path_join.zig");
    _ = @import("filecopy/cli/messages.zig");
    _ = @import("filecopy/cli/unpacker_args.zig");
    _ = @import("filecopy/cli/tree_check.zig");
    _ = @import("fuzz/replay_test.zig");
    _ = @import("abi_gen.zig");
}
