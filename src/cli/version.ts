// `qrx --version`: the package's version and the native library's ABI version, so a bug report
// names both halves. A missing or mismatched library is reported, not thrown: the version is
// what a user asks for when something is broken.
import packageJson from "../../package.json" with { type: "json" };

export async function versionText(): Promise<string> {
  const head = `qrx ${packageJson.version}`;
  try {
    const { ABI_VERSION } = await import("../constants.ts");
    const { nativeLibraryPath } = await import("../native.ts");
    return `${head}\nnative library: ${nativeLibraryPath()} (ABI version ${ABI_VERSION})`;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return `${head}\nnative library: unusable: ${reason}`;
  }
}
