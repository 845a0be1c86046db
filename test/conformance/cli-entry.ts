// `qrx conformance` as the qrx front door runs it (the command module on a commander program), for
// the tests: qrx.ts wires the same addConformanceCommand.
import { Command } from "commander";
import { addConformanceCommand } from "../../src/cli/conformance-command.ts";

const program = new Command("qrx").enablePositionalOptions();
addConformanceCommand(program);
await program.parseAsync(process.argv);
