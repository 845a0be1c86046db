import { describe, expect, test } from "bun:test";
import { ConstantId, expectedConstants } from "../src/constants.ts";
import { nativeConstant } from "../src/native.ts";

describe("constants shared by Zig and TypeScript", () => {
  for (const [name, id] of Object.entries(ConstantId)) {
    test(`${name} (id ${id}) agrees`, () => {
      expect(nativeConstant(id)).toBe(expectedConstants[name as keyof typeof ConstantId]);
    });
  }

  test("an unknown constant id is an error, not a value", () => {
    expect(() => nativeConstant(9999)).toThrow();
  });
});
