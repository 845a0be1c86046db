// Fails fast, with the fix, when the native library is missing or stale: loading src/native.ts
// opens it, checks its ABI version and says to run `npm run setup` otherwise.
import "../src/native.ts";
