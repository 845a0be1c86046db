// Domain tokens of the current policy format (§11.1) and which column accepts which kind.
// Aliases are folded at parse time (dom0 = @adminvm = uuid:0…0) so matching never re-reads text.

import { ADMIN_VM_NAME, ADMIN_VM_UUID } from "./domains.ts";

/**
 * "@dispvm:NAME": a new DisposableVM from template NAME, in rules, requests and responses alike.
 */
export const DISPVM_PREFIX = "@dispvm:";

export type TokenKind =
  | "wildcard" // *
  | "anyvm" // @anyvm
  | "adminvm" // dom0, @adminvm, uuid:00000000-…
  | "name" // a qube name
  | "uuid" // uuid:<uuid>, value without the prefix
  | "default" // @default
  | "type" // @type:T
  | "tag" // @tag:T
  | "dispvm" // @dispvm
  | "dispvm-template" // @dispvm:NAME (NAME may be uuid:<uuid>)
  | "dispvm-tag"; // @dispvm:@tag:T

/** One shape for every kind keeps the matchers' property accesses monomorphic. */
export interface Token {
  readonly kind: TokenKind;
  /** As written in the policy, for messages and explanations. */
  readonly text: string;
  /** The name, uuid, tag, type or template reference; "" for kinds without one. */
  readonly value: string;
}

/** The places a token can appear; `redirect` is the value of target= and default_target=. */
export type Column = "source" | "target" | "redirect";

const ACCEPTED: Record<Column, ReadonlySet<TokenKind>> = {
  source: new Set<TokenKind>([
    "wildcard",
    "anyvm",
    "adminvm",
    "name",
    "uuid",
    "type",
    "tag",
    "dispvm-template",
    "dispvm-tag",
  ]),
  target: new Set<TokenKind>([
    "wildcard",
    "anyvm",
    "adminvm",
    "name",
    "uuid",
    "default",
    "type",
    "tag",
    "dispvm",
    "dispvm-template",
    "dispvm-tag",
  ]),
  redirect: new Set<TokenKind>(["adminvm", "name", "uuid", "dispvm", "dispvm-template"]),
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const EXACT = new Map<string, TokenKind>([
  ["*", "wildcard"],
  ["@anyvm", "anyvm"],
  ["@adminvm", "adminvm"],
  [ADMIN_VM_NAME, "adminvm"],
  ["@default", "default"],
  ["@dispvm", "dispvm"],
]);

/** Longest first: "@dispvm:@tag:" must win over "@dispvm:". */
const PREFIXES: [string, TokenKind][] = [
  ["@dispvm:@tag:", "dispvm-tag"],
  ["@dispvm:", "dispvm-template"],
  ["@type:", "type"],
  ["@tag:", "tag"],
];

export type TokenResult = { ok: true; token: Token } | { ok: false; error: string };

function token(kind: TokenKind, text: string, value = ""): TokenResult {
  return { ok: true, token: Object.freeze({ kind, text, value }) };
}

function failure(error: string): TokenResult {
  return { ok: false, error };
}

/**
 * "uuid:<uuid>" → the uuid, lower-cased; null when `text` has no "uuid:" prefix; "" when malformed.
 */
export function uuidOf(text: string): string | null {
  if (!text.startsWith("uuid:")) return null;
  const uuid = text.slice("uuid:".length).toLowerCase();
  return UUID.test(uuid) ? uuid : "";
}

function lex(text: string): TokenResult {
  const exact = EXACT.get(text);
  if (exact !== undefined) return token(exact, text);
  const uuid = uuidOf(text);
  if (uuid === "") return failure(`invalid uuid in '${text}'`);
  if (uuid !== null)
    return uuid === ADMIN_VM_UUID ? token("adminvm", text) : token("uuid", text, uuid);
  if (!text.startsWith("@")) return token("name", text, text);
  for (const [prefix, kind] of PREFIXES) {
    if (!text.startsWith(prefix)) continue;
    const value = text.slice(prefix.length);
    if (value === "") return failure(`invalid token '${text}': empty value after '${prefix}'`);
    // "@dispvm:@foo" is neither a template name nor a longer prefix we know.
    if (value.startsWith("@")) continue;
    if (kind === "dispvm-template" && uuidOf(value) === "")
      return failure(`invalid uuid in '${text}'`);
    return token(kind, text, value);
  }
  return failure(`invalid token '${text}'`);
}

/**
 * Policies repeat the same few hundred tokens thousands of times; tokens are immutable, so one
 * parse per distinct text serves them all. Bounded so odd inputs cannot grow it without limit.
 */
const lexed = new Map<string, TokenResult>();
const LEXED_MAX = 65536;

function lexOnce(text: string): TokenResult {
  let result = lexed.get(text);
  if (result === undefined) {
    if (lexed.size >= LEXED_MAX) lexed.clear();
    result = lex(text);
    lexed.set(text, result);
  }
  return result;
}

/**
 * Parses `text` as a token of `column`; `label` names the column in messages ("source", "target=",
 * ...).
 */
export function parseToken(text: string, column: Column, label: string = column): TokenResult {
  // Only a parameter can be empty (`target=`); upstream's parser refuses it, so do we.
  if (text === "") return failure(`${label} is empty: it must name a domain or a keyword`);
  const result = lexOnce(text);
  if (!result.ok) return result;
  if (!ACCEPTED[column].has(result.token.kind))
    return failure(`'${text}' is not allowed as ${label}`);
  return result;
}
