// `qrx completion bash|zsh` and the set-up's hidden `qrx man-pages DIR`: both read the command
// tree of the program they are registered on, so they stay true as commands change.
import { type Command, InvalidArgumentError } from "commander";
import packageJson from "../../package.json" with { type: "json" };

export function addToolCommands(program: Command): void {
  program
    .command("completion")
    .description("print a shell completion script for qrx (bash or zsh)")
    .argument("<shell>", "bash or zsh", (text: string) => {
      if (text !== "bash" && text !== "zsh")
        throw new InvalidArgumentError(`"${text}" is not bash or zsh`);
      return text;
    })
    .addHelpText(
      "after",
      `
Examples:
  source <(qrx completion bash)                     # this bash session
  qrx completion bash > ~/.local/share/bash-completion/completions/qrx
  qrx completion zsh > "\${fpath[1]}/_qrx"           # then: autoload -U compinit && compinit
`,
    )
    .action(async (shell: "bash" | "zsh") => {
      const { bashCompletion, zshCompletion } = await import("./completion.ts");
      process.stdout.write(shell === "bash" ? bashCompletion(program) : zshCompletion(program));
    });

  program
    .command("man-pages", { hidden: true })
    .description("write man pages made from the help texts of qrx and its programs into DIR")
    .argument("<dir>", "directory for the .1 files (e.g. share/man/man1)")
    .action(async (dir: string) => {
      const { writeManPages } = await import("./man-pages.ts");
      const programs = Object.keys(packageJson.bin).filter((name) => name !== program.name());
      await writeManPages(program, dir, programs);
    });
}
