// A program on a terminal of its own, for what a user sees at a prompt: `script` gives it a pty
// whose input is what the test writes and whose output (echo included) the test reads.

import { waitFor } from "./system.ts";

export class PtySession {
  readonly #child: ReturnType<typeof Bun.spawn<"pipe", "pipe", "pipe">>;
  #output = "";
  readonly exited: Promise<number>;

  constructor(command: string, env: Record<string, string>) {
    const child = Bun.spawn(["script", "-qfec", command, "/dev/null"], {
      env,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    this.#child = child;
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stdout) {
        this.#output += decoder.decode(chunk, { stream: true });
      }
    })();
    this.exited = Promise.all([reading, child.exited]).then(([, code]) => code);
  }

  /** Everything the terminal showed so far, with the pty's \r\n as \n. */
  get output(): string {
    return this.#output.replaceAll("\r\n", "\n");
  }

  async waitFor(text: string, timeoutMs = 20_000): Promise<void> {
    const seen = () => this.output.includes(text);
    await waitFor(seen, `'${text}' on the terminal`, timeoutMs).catch((error) => {
      throw new Error(`${(error as Error).message}; it shows:\n${this.output}`);
    });
  }

  /** Typed at the terminal. */
  type(text: string): void {
    this.#child.stdin.write(text);
    this.#child.stdin.flush();
  }

  /** Ends the session early (a failed test): script's child goes with its terminal. */
  kill(): void {
    this.#child.kill("SIGKILL");
  }

  /** Closes the input (after the program is done with it) and waits for the exit status. */
  async finish(): Promise<number> {
    const code = await this.#child.exited;
    this.#child.stdin.end();
    return this.exited.then(() => code);
  }
}
