// Whether a rule's SOURCE and TARGET tokens match a request (§11.1's token table). These run for
// every candidate rule, so they only compare strings and read facts resolved in the context.

import type { MatchContext } from "./request.ts";
import { domainByReference } from "./request.ts";
import type { Rule } from "./rule.ts";
import type { Token } from "./tokens.ts";

export function sourceMatches(token: Token, context: MatchContext): boolean {
  switch (token.kind) {
    case "wildcard":
      return true;
    case "anyvm":
      return !context.sourceIsAdmin;
    case "adminvm":
      return context.sourceIsAdmin;
    case "name":
      return token.value === context.source;
    case "uuid":
      return token.value === context.sourceDomain.uuid;
    case "type":
      return token.value === context.sourceDomain.type;
    case "tag":
      return context.sourceDomain.tags.has(token.value);
    default:
      // @dispvm:NAME and @dispvm:@tag:T parse as sources but never equal a domain name (§11.1).
      return false;
  }
}

/** The template `@dispvm:NAME`/`@dispvm:uuid:U` names, if that domain exists. */
function templateName(reference: string, context: MatchContext): string | undefined {
  return reference.startsWith("uuid:")
    ? domainByReference(reference, context.facts)?.name
    : reference;
}

export function targetMatches(token: Token, context: MatchContext): boolean {
  const target = context.target;
  switch (token.kind) {
    case "wildcard":
      return true;
    case "anyvm":
      // Also the keywords @default, @dispvm and @dispvm:X; never the admin VM.
      return target !== "@adminvm";
    case "adminvm":
      return target === "@adminvm";
    case "name":
      return token.value === target;
    case "uuid":
      return context.targetDomain !== undefined && token.value === context.targetDomain.uuid;
    case "default":
      return target === "@default";
    case "type":
      // dom0 too, however the caller spelled it (targetDomain is dom0's facts for @adminvm).
      return context.targetDomain !== undefined && token.value === context.targetDomain.type;
    case "tag":
      return context.targetDomain !== undefined && context.targetDomain.tags.has(token.value);
    case "dispvm":
      return target === "@dispvm";
    case "dispvm-template":
      // Also an intended @dispvm whose source's default template is NAME.
      return (
        context.intendedTemplate !== null &&
        context.intendedTemplate === templateName(token.value, context)
      );
    case "dispvm-tag": {
      if (context.intendedTemplate === null) return false;
      const template = context.facts.get(context.intendedTemplate);
      return (
        template !== undefined && template.templateForDispvms && template.tags.has(token.value)
      );
    }
  }
}

/** Which column made a rule miss, for explanations; null when it matches. */
export type Mismatch = "service" | "argument" | "source" | "target" | null;

export function ruleMismatch(rule: Rule, context: MatchContext): Mismatch {
  if (rule.service !== null && rule.service !== context.service) return "service";
  if (rule.argument !== null && rule.argument !== context.argument) return "argument";
  if (!sourceMatches(rule.source, context)) return "source";
  if (!targetMatches(rule.target, context)) return "target";
  return null;
}
