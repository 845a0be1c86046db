// Turns the daemon's request (§7.4) into what rules are matched against (§11.1): the argument
// split off the service, the intended target normalized (aliases folded, unknown names become
// @default), a relayed source checked and substituted. Facts are looked up once, here.

import type { DecisionRequest } from "./decision.ts";
import { ADMIN_VM_NAME, ADMIN_VM_UUID, type Domain, type DomainFacts } from "./domains.ts";
import { isArgument, isServiceName } from "./rule.ts";
import { DISPVM_PREFIX, uuidOf } from "./tokens.ts";

/** The daemon's request; the same shape as src/protocol/policy-response.ts's PolicyRequest. */
export interface PolicyQuery {
  source: string;
  /** TRIGGER4's relay field ("" or null: not relayed). */
  requestedSource?: string | null;
  intendedTarget: string;
  serviceAndArg: string;
}

/** Everything matching needs, resolved once per request. */
export interface MatchContext {
  readonly facts: DomainFacts;
  readonly request: DecisionRequest;
  readonly service: string;
  readonly argument: string;
  readonly source: string;
  readonly sourceDomain: Domain;
  readonly sourceIsAdmin: boolean;
  /** Normalized intended target (see DecisionRequest). */
  readonly target: string;
  /** The intended target's domain when it is a plain name or dom0 (in any spelling). */
  readonly targetDomain: Domain | undefined;
  /** The template an intended @dispvm / @dispvm:T stands for, else null. */
  readonly intendedTemplate: string | null;
}

export type NormalizedQuery =
  { ok: true; context: MatchContext } | { ok: false; request: DecisionRequest; reason: string };

const DISPVM = "@dispvm";

/** A stand-in when the facts do not list the admin VM: dom0 always exists. */
const ADMIN_DOMAIN: Domain = Object.freeze({
  name: ADMIN_VM_NAME,
  type: "AdminVM",
  tags: new Set<string>(),
  defaultDispvm: null,
  templateForDispvms: false,
  running: true,
  uuid: ADMIN_VM_UUID,
  internal: false,
  relayvm: null,
  transportRpc: null,
});

export function isAdminAlias(name: string): boolean {
  return name === ADMIN_VM_NAME || name === "@adminvm" || uuidOf(name) === ADMIN_VM_UUID;
}

/** A domain by name or "uuid:<uuid>". */
export function domainByReference(reference: string, facts: DomainFacts): Domain | undefined {
  const uuid = uuidOf(reference);
  return uuid === null ? facts.get(reference) : uuid === "" ? undefined : facts.getByUuid(uuid);
}

function sourceDomainOf(name: string, facts: DomainFacts): Domain | undefined {
  if (isAdminAlias(name)) return facts.get(ADMIN_VM_NAME) ?? ADMIN_DOMAIN;
  return domainByReference(name, facts);
}

/**
 * The intended target's domain. An intended dom0 is the keyword @adminvm whatever the caller
 * wrote, and @type:/@tag: rules must still see dom0's facts: upstream skips them when the caller
 * writes @adminvm, so a deny written for dom0 could be dodged by spelling (spec §11.1 note).
 */
function targetDomainOf(target: string, facts: DomainFacts): Domain | undefined {
  if (target === "@adminvm") return facts.get(ADMIN_VM_NAME) ?? ADMIN_DOMAIN;
  return target.startsWith("@") ? undefined : facts.get(target);
}

/**
 * The normalized intended target, or a reason to deny (§11.1, "as the caller's intended target").
 */
export function normalizeIntendedTarget(
  target: string,
  facts: DomainFacts,
): { ok: true; target: string } | { ok: false; reason: string } {
  if (target === "" || target === "@default") return { ok: true, target: "@default" };
  if (isAdminAlias(target)) return { ok: true, target: "@adminvm" };
  if (target === DISPVM) return { ok: true, target };
  if (target.startsWith(DISPVM_PREFIX)) {
    const template = domainByReference(target.slice(DISPVM_PREFIX.length), facts);
    if (template === undefined || !template.templateForDispvms) {
      return {
        ok: false,
        reason: `${target.slice(DISPVM_PREFIX.length)} is not a DisposableVM template`,
      };
    }
    return { ok: true, target: DISPVM_PREFIX + template.name };
  }
  if (target.startsWith("@") || target === "*")
    return { ok: false, reason: `invalid intended target '${target}'` };
  const domain = domainByReference(target, facts);
  if (domain === undefined) return { ok: true, target: "@default" };
  return { ok: true, target: domain.type === "AdminVM" ? "@adminvm" : domain.name };
}

function rawRequest(query: PolicyQuery, service: string, argument: string): DecisionRequest {
  return {
    service,
    argument,
    source: query.source,
    caller: query.source,
    intendedTarget: query.intendedTarget,
    writtenTarget: query.intendedTarget,
    policySource: null,
  };
}

export function normalizeQuery(query: PolicyQuery, facts: DomainFacts): NormalizedQuery {
  const plus = query.serviceAndArg.indexOf("+");
  const service = plus === -1 ? query.serviceAndArg : query.serviceAndArg.slice(0, plus);
  const argument = plus === -1 ? "+" : query.serviceAndArg.slice(plus);
  const deny = (reason: string): NormalizedQuery => ({
    ok: false,
    request: rawRequest(query, service, argument),
    reason,
  });
  if (!isServiceName(service) || !isArgument(argument))
    return deny(`invalid service '${query.serviceAndArg}'`);

  const caller = sourceDomainOf(query.source, facts);
  if (caller === undefined) return deny(`unknown source '${query.source}'`);
  let sourceDomain = caller;
  let policySource: string | null = null;
  const relayed = query.requestedSource ?? "";
  if (relayed !== "") {
    const remote = facts.get(relayed);
    if (remote === undefined || remote.type !== "RemoteVM" || remote.relayvm !== caller.name) {
      return deny(`requested source '${relayed}' is not a RemoteVM relayed by ${caller.name}`);
    }
    sourceDomain = remote;
    policySource = remote.name;
  }

  const intended = normalizeIntendedTarget(query.intendedTarget, facts);
  if (!intended.ok) return deny(intended.reason);
  const target = intended.target;
  const targetDomain = targetDomainOf(target, facts);
  const intendedTemplate =
    target === DISPVM
      ? sourceDomain.defaultDispvm
      : target.startsWith(DISPVM_PREFIX)
        ? target.slice(DISPVM_PREFIX.length)
        : null;
  const sourceIsAdmin = sourceDomain.type === "AdminVM";
  const request: DecisionRequest = {
    service,
    argument,
    source: sourceIsAdmin ? ADMIN_VM_NAME : sourceDomain.name,
    caller: caller.name,
    intendedTarget: target,
    writtenTarget: query.intendedTarget,
    policySource,
  };
  return {
    ok: true,
    context: {
      facts,
      request,
      service,
      argument,
      source: request.source,
      sourceDomain,
      sourceIsAdmin,
      target,
      targetDomain,
      intendedTemplate,
    },
  };
}
