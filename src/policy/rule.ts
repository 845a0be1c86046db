// One policy rule, the model both file formats compile to, and its validation (§11.1): which
// parameters each action takes, which tokens each column takes, and the service/argument syntax.

import type { Origin } from "./errors.ts";
import { parseToken, type Column, type Token } from "./tokens.ts";

export type ActionKind = "allow" | "deny" | "ask";

export interface Rule {
  /** Position in the whole policy: first match wins, so every index must keep this order. */
  readonly order: number;
  /** null means "*". */
  readonly service: string | null;
  /** "+ARG" ("+" for no argument); null means "*". */
  readonly argument: string | null;
  readonly source: Token;
  readonly target: Token;
  readonly action: ActionKind;
  /** target= */
  readonly redirect: Token | null;
  /** default_target= (ask only) */
  readonly defaultTarget: Token | null;
  /** null means the target's default user. */
  readonly user: string | null;
  readonly notify: boolean;
  readonly autostart: boolean;
  readonly origin: Origin;
  /** The line as written (legacy lines in their legacy form), for explanations. */
  readonly text: string;
}

/** The fields of a rule line, already split on whitespace. */
export interface RuleFields {
  service: string;
  argument: string;
  source: string;
  target: string;
  action: string;
  params: string[];
}

const SERVICE_NAME = /^[A-Za-z0-9._-]+$/;
const ARGUMENT = /^\+[A-Za-z0-9+._-]*$/;

const PARAMS_OF: Record<ActionKind, ReadonlySet<string>> = {
  allow: new Set(["target", "user", "notify", "autostart"]),
  deny: new Set(["notify"]),
  ask: new Set(["target", "default_target", "user", "notify", "autostart"]),
};

function isAction(action: string): action is ActionKind {
  return action === "allow" || action === "deny" || action === "ask";
}

export function isServiceName(service: string): boolean {
  return SERVICE_NAME.test(service);
}

export function isArgument(argument: string): boolean {
  return ARGUMENT.test(argument);
}

/** Problems with a SERVICE ARGUMENT pair (rules and !include-service share them). */
export function serviceArgumentErrors(service: string, argument: string): string[] {
  const errors: string[] = [];
  if (service !== "*" && !isServiceName(service)) errors.push(`invalid service name '${service}'`);
  if (argument !== "*" && !isArgument(argument))
    errors.push(`invalid argument '${argument}' (expected * or +ARG)`);
  else if (service === "*" && argument !== "*")
    errors.push(`only * argument allowed for * service`);
  return errors;
}

function parseColumn(text: string, column: Column, label: string, errors: string[]): Token | null {
  const result = parseToken(text, column, label);
  if (result.ok) return result.token;
  errors.push(result.error);
  return null;
}

function parseBoolean(key: string, value: string, errors: string[]): boolean | null {
  if (value === "yes") return true;
  if (value === "no") return false;
  errors.push(`'${key}' is '${value}', but can only be 'yes' or 'no'`);
  return null;
}

const NO_PARAMS: ReadonlyMap<string, string> = new Map();

/** Splits PARAM=VALUE words into a map, reporting malformed and repeated ones. */
function parseParams(params: string[], errors: string[]): ReadonlyMap<string, string> {
  if (params.length === 0) return NO_PARAMS;
  const values = new Map<string, string>();
  for (const param of params) {
    const equals = param.indexOf("=");
    if (equals <= 0) {
      errors.push(`invalid parameter '${param}' (expected key=value)`);
      continue;
    }
    const key = param.slice(0, equals);
    if (values.has(key)) errors.push(`parameter '${key}' given twice`);
    else values.set(key, param.slice(equals + 1));
  }
  return values;
}

export type RuleResult = { ok: true; rule: Rule } | { ok: false; errors: string[] };

/** Validates `fields` and builds the rule, or lists every problem with it. */
export function buildRule(
  fields: RuleFields,
  order: number,
  origin: Origin,
  text: string,
): RuleResult {
  const errors = serviceArgumentErrors(fields.service, fields.argument);
  const source = parseColumn(fields.source, "source", "source", errors);
  const target = parseColumn(fields.target, "target", "target", errors);
  const action = fields.action;
  const params = parseParams(fields.params, errors);
  if (!isAction(action)) {
    errors.push(`invalid action '${action}' (expected allow, deny or ask)`);
    return { ok: false, errors };
  }

  for (const key of params.keys()) {
    if (!PARAMS_OF[action].has(key)) errors.push(`parameter '${key}' is not valid for ${action}`);
  }
  const redirectText = params.get("target");
  const defaultText = params.get("default_target");
  const redirect =
    redirectText === undefined ? null : parseColumn(redirectText, "redirect", "target=", errors);
  const defaultTarget =
    defaultText === undefined
      ? null
      : parseColumn(defaultText, "redirect", "default_target=", errors);
  const notifyText = params.get("notify");
  const autostartText = params.get("autostart");
  const notify =
    notifyText === undefined ? action === "deny" : parseBoolean("notify", notifyText, errors);
  const autostart =
    autostartText === undefined ? true : parseBoolean("autostart", autostartText, errors);
  if (action === "allow" && target?.kind === "default" && redirectText === undefined) {
    errors.push("allow with target @default must have target=");
  }

  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    rule: Object.freeze({
      order,
      service: fields.service === "*" ? null : fields.service,
      argument: fields.argument === "*" ? null : fields.argument,
      source: source!,
      target: target!,
      action,
      redirect,
      defaultTarget,
      // An empty user= means the default user, as upstream's `user or "DEFAULT"`.
      user: params.get("user") || null,
      notify: notify!,
      autostart: autostart!,
      origin,
      text,
    }),
  };
}
