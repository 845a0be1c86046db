// The host's side of the shm vchan rendezvous under isolation: what Xen's xenstore permissions
// do. Every domain has its own rendezvous directory (D/vchan/ID, mounted as D/vchan inside it;
// dom0's processes use D/vchan/0 directly), where only it and the host can create files. A vchan
// server there names itself and its one client: shmvchan.SERVER.CLIENT.PORT.sock. The broker
// watches each directory and hard-links a socket into its client's directory only when SERVER is
// the domain whose directory it appeared in; when the server removes it (single use), the link
// goes too. So a domain cannot offer a vchan as another domain, and sees only the sockets offered
// to it: a vchan of another pair is not there to connect to.

import {
  type FSWatcher,
  linkSync,
  lstatSync,
  readdirSync,
  renameSync,
  rmSync,
  watch,
} from "node:fs";
import { join } from "node:path";

const NAME = /^shmvchan\.(\d+)\.(\d+)\.(\d+)\.sock$/;
/** The server's own staging name (zig/vchan/shm.zig binds there, then renames). */
const STAGING = /^shmvchan\..*\.sock~$/;
/** Our link under construction in a client's directory. */
const LINK_PREFIX = ".broker.";
/**
 * Bun's fs.watch merges or drops events for a name that changes again before it reports (a
 * socket renamed into place and unlinked within a millisecond gives one event), so an event
 * only says "look at this directory", and every directory is looked at this often as well.
 */
const SWEEP_MS = 50;

interface Link {
  /** The server socket's inode: the client-side link is removed only if it is still this one. */
  ino: number;
  target: string;
}

export class VchanBroker {
  readonly #watchers = new Map<number, FSWatcher>();
  readonly #dirs = new Map<number, string>();
  /** Server-side path -> its link in the client's directory. */
  readonly #links = new Map<string, Link>();
  readonly #names = new Map<number, string>();
  #sweeper: Timer | null = null;

  constructor(readonly log: (message: string) => void) {}

  /** Starts brokering `dir` as domain `id`'s directory (it exists and is empty). */
  add(id: number, dir: string, name: string): void {
    this.remove(id);
    this.#dirs.set(id, dir);
    this.#names.set(id, name);
    const watcher = watch(dir, () => this.#rescan(id));
    watcher.on("error", (error) => this.log(`vchan broker: watching ${dir}: ${error.message}`));
    this.#watchers.set(id, watcher);
    // Offers made to this domain before it was here (a server may be quicker than our watch).
    for (const other of this.#dirs.keys()) this.#rescan(other);
    this.#sweeper ??= setInterval(() => {
      for (const other of this.#dirs.keys()) this.#rescan(other);
    }, SWEEP_MS);
    this.#sweeper.unref();
  }

  /** Stops brokering domain `id`; links it had handed out are removed. */
  remove(id: number): void {
    this.#watchers.get(id)?.close();
    this.#watchers.delete(id);
    const dir = this.#dirs.get(id);
    this.#dirs.delete(id);
    this.#names.delete(id);
    if (this.#dirs.size === 0 && this.#sweeper) clearInterval(this.#sweeper);
    if (this.#dirs.size === 0) this.#sweeper = null;
    if (dir === undefined) return;
    for (const [source, link] of this.#links) {
      if (!source.startsWith(`${dir}/`) && !link.target.startsWith(`${dir}/`)) continue;
      this.#unlinkIfSame(link);
      this.#links.delete(source);
    }
  }

  close(): void {
    for (const id of [...this.#watchers.keys()]) this.remove(id);
  }

  /** Hands out what domain `owner` offers, and takes back links whose offer is gone. */
  #rescan(owner: number): void {
    const dir = this.#dirs.get(owner);
    if (dir === undefined) return;
    let files: string[];
    try {
      files = readdirSync(dir);
    } catch {
      return;
    }
    for (const file of files) this.#reconcile(owner, dir, file);
    for (const [source, link] of this.#links) {
      if (!source.startsWith(`${dir}/`) || files.includes(source.slice(dir.length + 1))) continue;
      this.#links.delete(source);
      this.#unlinkIfSame(link);
    }
  }

  #reconcile(owner: number, dir: string, file: string): void {
    if (STAGING.test(file) || file.startsWith(LINK_PREFIX)) return;
    const match = NAME.exec(file);
    if (match === null) return;
    const source = join(dir, file);
    const ownerName = this.#names.get(owner) ?? `domain ${owner}`;
    const [server, client] = [Number(match[1]), Number(match[2])];
    // A link we made into this directory (its server is the peer), or the domain's own
    // forgery of one: either way only this domain can reach it.
    if (client === owner && server !== owner) return;
    if (server !== owner) {
      const why = `${ownerName} is domain ${owner}, not ${server}`;
      this.log(`vchan broker: refused ${file} in ${ownerName}'s directory: ${why}`);
      rmSync(source, { force: true });
      return;
    }
    this.#offer(source, file, client, ownerName);
  }

  #offer(source: string, file: string, client: number, ownerName: string): void {
    let ino: number;
    let nlink: number;
    try {
      const stat = lstatSync(source);
      if (!stat.isSocket()) {
        this.log(`vchan broker: removed ${file} from ${ownerName}'s directory: not a socket`);
        return rmSync(source, { force: true });
      }
      ino = stat.ino;
      nlink = stat.nlink;
    } catch {
      // Gone: the server accepted its client (or gave up); its link goes with it.
      const link = this.#links.get(source);
      this.#links.delete(source);
      if (link) this.#unlinkIfSame(link);
      return;
    }
    const known = this.#links.get(source);
    if (known?.ino === ino) return;
    if (nlink !== 1) {
      // A hard link to a socket it was handed (a vchan offered to it) is not its own offer.
      this.log(
        `vchan broker: refused ${file} in ${ownerName}'s directory: not a socket of its own`,
      );
      return rmSync(source, { force: true });
    }
    const clientDir = this.#dirs.get(client);
    if (clientDir === undefined) return; // no such domain running: nobody to connect
    const target = join(clientDir, file);
    const staging = join(clientDir, `${LINK_PREFIX}${file}`);
    try {
      rmSync(staging, { force: true });
      // link() does not follow symlinks: whatever the name holds now is what gets checked.
      linkSync(source, staging);
      const linked = lstatSync(staging);
      if (!linked.isSocket() || linked.ino !== ino) {
        rmSync(staging, { force: true });
        return;
      }
      renameSync(staging, target);
      this.#links.set(source, { ino, target });
    } catch (error) {
      rmSync(staging, { force: true });
      // The server may have been quicker (accepted and unlinked): nothing to hand out then.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        this.log(`vchan broker: ${file}: ${(error as Error).message}`);
      }
    }
  }

  #unlinkIfSame(link: Link): void {
    try {
      if (lstatSync(link.target).ino === link.ino) rmSync(link.target, { force: true });
    } catch {
      // Already gone: nothing to unlink.
    }
  }
}
