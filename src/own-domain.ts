// The domain a qrexec program runs in, for every role (agent, client-vm, daemon tools alike).

/** Our domain id: VCHAN_DOMAIN, as upstream's socket vchan reads it (default 0, dom0). */
export function ownDomain(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.VCHAN_DOMAIN ?? "0";
  const domain = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(domain)) {
    throw new Error(`VCHAN_DOMAIN must be a domain id (a non-negative integer), got '${text}'`);
  }
  return domain;
}
