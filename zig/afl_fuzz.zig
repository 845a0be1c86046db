//! Root of one coverage-guided fuzz target (`zig build fuzz`): the harness named by the build
//! option `harness`, exported for zig/fuzz/afl_driver.c, which AFL++'s compiler links around it.
//! It sits in zig/ so that the harnesses can import the parsers beside them.
const options = @import("fuzz_options");
const harnesses = @import("fuzz/harnesses.zig");

const harness = harnesses.get(options.harness);

export fn qrx_fuzz_one(bytes: [*]const u8, len: usize) void {
    harness.run(bytes[0..len]);
}

export fn qrx_fuzz_finish() void {
    if (harness.finish) |finish| finish();
}
