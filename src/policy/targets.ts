// Turning tokens into concrete targets: a redirect (target=/default_target=) into one target, and
// any TARGET token into every target it stands for (ask's choices, §11.1 collect_targets_for_ask).
// Results use the normalized intended-target forms: names, "@adminvm", "@dispvm", "@dispvm:T".

import type { DomainFacts } from "./domains.ts";
import { domainByReference } from "./request.ts";
import { DISPVM_PREFIX, type Token } from "./tokens.ts";

/** The target a redirect names, or null if it names no domain the facts know. */
export function redirectTarget(token: Token, facts: DomainFacts): string | null {
  switch (token.kind) {
    case "adminvm":
      return "@adminvm";
    case "dispvm":
      return "@dispvm";
    case "name":
    case "uuid": {
      const domain = domainByReference(
        token.kind === "uuid" ? `uuid:${token.value}` : token.value,
        facts,
      );
      if (domain === undefined) return token.kind === "name" ? token.value : null;
      return domain.type === "AdminVM" ? "@adminvm" : domain.name;
    }
    case "dispvm-template": {
      const template = domainByReference(token.value, facts);
      return DISPVM_PREFIX + (template?.name ?? token.value);
    }
    default:
      return null; // not a redirect kind; the parser never lets one through
  }
}

/** Every target `token` stands for, as upstream's expand(). */
export function expandTarget(
  token: Token,
  facts: DomainFacts,
  into: (target: string) => void,
): void {
  switch (token.kind) {
    case "wildcard":
    case "anyvm":
      for (const domain of facts.all()) {
        if (domain.type !== "AdminVM") into(domain.name);
        else if (token.kind === "wildcard") into("@adminvm");
        if (domain.templateForDispvms) into(DISPVM_PREFIX + domain.name);
      }
      into("@dispvm");
      return;
    case "adminvm":
      into("@adminvm");
      return;
    case "name":
    case "uuid": {
      const domain = domainByReference(
        token.kind === "uuid" ? `uuid:${token.value}` : token.value,
        facts,
      );
      if (domain !== undefined) into(domain.type === "AdminVM" ? "@adminvm" : domain.name);
      return;
    }
    case "default":
      return;
    case "type":
    case "tag":
      for (const domain of facts.all()) {
        if (token.kind === "type" ? domain.type !== token.value : !domain.tags.has(token.value))
          continue;
        into(domain.type === "AdminVM" ? "@adminvm" : domain.name);
      }
      return;
    case "dispvm":
      into("@dispvm");
      return;
    case "dispvm-template": {
      const template = domainByReference(token.value, facts);
      if (template?.templateForDispvms) into(DISPVM_PREFIX + template.name);
      return;
    }
    case "dispvm-tag":
      for (const domain of facts.all()) {
        if (domain.templateForDispvms && domain.tags.has(token.value))
          into(DISPVM_PREFIX + domain.name);
      }
      return;
  }
}
