// What every TypeScript fuzz harness is: an input generator (fast-check), a property that throws
// when violated, and a JSON form of its inputs so that a failing one can be kept in the corpus
// (test/fuzz/corpus/<name>/*.json) and replayed by `bun test`.

import type { Arbitrary } from "fast-check";

export interface Harness<T> {
  name: string;
  arbitrary: Arbitrary<T>;
  property: (input: T) => void;
  toJson: (input: T) => unknown;
  fromJson: (json: unknown) => T;
}

/** JSON conversion for an input object whose `fields` are Uint8Arrays (kept as hex). */
export function bytesInput<T extends object>(
  fields: string[],
): Pick<Harness<T>, "toJson" | "fromJson"> {
  return {
    toJson: (input) => {
      const out: Record<string, unknown> = { ...(input as Record<string, unknown>) };
      for (const field of fields)
        out[field] = Buffer.from(out[field] as Uint8Array).toString("hex");
      return out;
    },
    fromJson: (json) => {
      const out = { ...(json as Record<string, unknown>) };
      for (const field of fields)
        out[field] = new Uint8Array(Buffer.from(out[field] as string, "hex"));
      return out as T;
    },
  };
}

/** For inputs that are plain JSON already. */
export const jsonInput = {
  toJson: (input: unknown) => input,
  fromJson: (json: unknown) => json as never,
};
