// Fails fast, with the fix, when the native library was not built.
import { existsSync } from "node:fs";
import { nativeLibraryPathForTests } from "./helpers/paths.ts";

if (!existsSync(nativeLibraryPathForTests())) {
  throw new Error(
    `${nativeLibraryPathForTests()} is missing: run ` +
      `\`npm run setup\` (or \`npm test\`, which builds it)`,
  );
}
