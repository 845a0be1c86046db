import { describe, expect, test } from "bun:test";
import {
  decodeReply,
  decodeRequest,
  encodeError,
  encodeRequest,
  encodeSuccess,
  QubesdError,
} from "../../src/admin/qubesd.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe("qubesd protocol (§7.6)", () => {
  test("requests are upstream's bytes: method+arg source (name|keyword) dest NUL payload", () => {
    expect(text(encodeRequest({ method: "admin.vm.Start", arg: "", dest: "work" }))).toBe(
      "admin.vm.Start+ dom0 name work\0",
    );
    expect(
      text(
        encodeRequest({
          method: "admin.vm.CreateDisposable",
          arg: "",
          dest: "default-dvm",
          payload: new TextEncoder().encode("uuid"),
        }),
      ),
    ).toBe("admin.vm.CreateDisposable+ dom0 name default-dvm\0uuid");
    // A destination with @ is a keyword, sent without the @.
    expect(
      text(encodeRequest({ method: "admin.vm.CreateDisposable", arg: "", dest: "@dispvm" })),
    ).toBe("admin.vm.CreateDisposable+ dom0 keyword dispvm\0");
  });

  test("requests decode back, keywords with their @", () => {
    const request = decodeRequest(
      encodeRequest({
        method: "admin.vm.Kill",
        arg: "x",
        dest: "@dispvm",
        payload: new Uint8Array([1, 0, 2]),
      }),
    );
    expect(request).toEqual({
      method: "admin.vm.Kill",
      arg: "x",
      source: "dom0",
      dest: "@dispvm",
      payload: new Uint8Array([1, 0, 2]),
    });
    expect(decodeRequest(new TextEncoder().encode("admin.vm.List dom0 name dom0\0"))).toMatchObject(
      { method: "admin.vm.List", arg: "" },
    );
  });

  test("malformed requests are ProtocolErrors", () => {
    const bad = (raw: string) => () => decodeRequest(new TextEncoder().encode(raw));
    expect(bad("admin.vm.List dom0 name dom0")).toThrow("no NUL-terminated header");
    expect(bad("admin.vm.List dom0 dom0\0")).toThrow("3 fields, expected 4");
    expect(bad("admin.vm.List dom0 label dom0\0")).toThrow("destination type 'label'");
  });

  test("replies: 0 NUL data, or 2 NUL type NUL traceback NUL message NUL", () => {
    expect(text(encodeSuccess("uuid:abc"))).toBe("0\0uuid:abc");
    expect(text(decodeReply(encodeSuccess("x")))).toBe("x");
    expect(text(encodeError("QubesVMNotFoundError", "no such domain: 'x'"))).toBe(
      "2\0QubesVMNotFoundError\0\0no such domain: 'x'\0",
    );
    let error: unknown;
    try {
      decodeReply(encodeError("QubesVMNotFoundError", "no such domain: 'x'"));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(QubesdError);
    expect(error).toMatchObject({ type: "QubesVMNotFoundError", message: "no such domain: 'x'" });
    expect(() => decodeReply(new Uint8Array(0))).toThrow("closed without a reply");
    expect(() => decodeReply(new TextEncoder().encode("1\0what"))).toThrow("malformed reply");
  });
});
