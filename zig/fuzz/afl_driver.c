/* AFL++ persistent-mode driver around one Zig harness (zig/afl_fuzz.zig): the harness runs many
 * inputs per process, from shared memory. Outside AFL++ it runs once on stdin, which replays a
 * saved crash: `zig-out/fuzz/<harness> < input`. */
#include <stddef.h>
#include <unistd.h>

/* Zig's coverage instrumentation also tracks stack depth through this (Zig's own fuzzer defines
 * it); AFL++ does not use it. */
__thread unsigned long __sancov_lowest_stack;

void qrx_fuzz_one(const unsigned char *bytes, size_t len);
void qrx_fuzz_finish(void);

__AFL_FUZZ_INIT();

int main(void) {
#ifdef __AFL_HAVE_MANUAL_CONTROL
    __AFL_INIT();
#endif
    unsigned char *bytes = __AFL_FUZZ_TESTCASE_BUF;
    while (__AFL_LOOP(100000)) {
        qrx_fuzz_one(bytes, (size_t)__AFL_FUZZ_TESTCASE_LEN);
    }
    /* AFL++ forks a new process every so many inputs: leave no scratch directory behind. */
    qrx_fuzz_finish();
    return 0;
}
