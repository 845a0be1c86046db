// Where a lab keeps everything: one state directory, so two labs in two directories never meet.
//
//   D/lab.json            the definition the lab was brought up with, resolved
//   D/admin.pid           the admin service (it owns every other process)
//   D/admin.sock          its API: qubesd's protocol (§7.6) plus qrx.lab.* calls
//   D/policy.sock         the policy daemon
//   D/run/                qrexec-daemon sockets (qrexec.<id>, qrexec.<name>, qrexec.uuid:<uuid>)
//   D/vchan/              vchan rendezvous (shm and socket transports)
//   D/asks/               policy questions waiting for an answer (ask = "tty")
//   D/cache/              Bun's transpiler cache for the lab's processes
//   D/logs/               admin.log, policy.log, <domain>.agent.log, <domain>.daemon.log
//   D/domains/<name>/     home/, rpc/, rpc-config/, qrexec-agent.sock, calls.json
//   D/domains/dom0/       home/, rpc/, rpc-config/, policy.d/

import { join } from "../posix-path.ts";
import { CLIENT_HOST_SOCKET_SUFFIX } from "../protocol/constants.ts";

export class LabLayout {
  constructor(readonly dir: string) {}

  get configFile(): string {
    return join(this.dir, "lab.json");
  }
  get pidFile(): string {
    return join(this.dir, "admin.pid");
  }
  get adminSocket(): string {
    return join(this.dir, "admin.sock");
  }
  get policySocket(): string {
    return join(this.dir, "policy.sock");
  }
  /** The registry's GetSystemInfo, kept current for the policy daemon (system-info-publisher). */
  get systemInfoFile(): string {
    return join(this.dir, "system-info.json");
  }
  get socketDir(): string {
    return join(this.dir, "run");
  }
  get vchanDir(): string {
    return join(this.dir, "vchan");
  }
  /** The ask queue: questions of `ask` rules waiting for someone to answer (ask = "tty"). */
  get asksDir(): string {
    return join(this.dir, "asks");
  }
  get logDir(): string {
    return join(this.dir, "logs");
  }
  /** Bun's transpiler cache for the lab's processes (their HOME is a domain's home). */
  get bunCacheDir(): string {
    return join(this.dir, "cache");
  }
  get domainsDir(): string {
    return join(this.dir, "domains");
  }
  domainDir(name: string): string {
    return join(this.domainsDir, name);
  }
  home(name: string): string {
    return join(this.domainDir(name), "home");
  }
  rpcDir(name: string): string {
    return join(this.domainDir(name), "rpc");
  }
  rpcConfigDir(name: string): string {
    return join(this.domainDir(name), "rpc-config");
  }
  agentSocket(name: string): string {
    return join(this.domainDir(name), "qrexec-agent.sock");
  }
  /** Where the agent of `name` takes qrexec-client-vm front ends' calls (its client host). */
  clientHostSocket(name: string): string {
    return this.agentSocket(name) + CLIENT_HOST_SOCKET_SUFFIX;
  }
  /** The agent of `name` keeps its running calls here (qrexec-agent --status-file). */
  callStatusFile(name: string): string {
    return join(this.domainDir(name), "calls-running.json");
  }
  /** The daemon of `name` keeps its call count here (qrexec-daemon --stats-file). */
  statsFile(name: string): string {
    return join(this.domainDir(name), "calls.json");
  }
  get policyDir(): string {
    return join(this.domainDir("dom0"), "policy.d");
  }
  /** `admin`, `policy`, or `<domain>.agent` / `<domain>.daemon`. */
  log(name: string): string {
    return join(this.logDir, `${name}.log`);
  }
}
