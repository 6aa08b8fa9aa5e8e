import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { invoke } from "@tauri-apps/api/core";
import { describe, expect, it, vi } from "vitest";
import { IpcFailure, ipc, toIpcFailure } from "../src/ipc";

/** The `COMMANDS` list of the Rust IPC crate, read as text. */
function rustCommands(): string[] {
  const path = resolve(__dirname, "../../crates/ipc/src/lib.rs");
  const source = readFileSync(path, "utf8");
  const block = /pub const COMMANDS: &\[&str\] = &\[([\s\S]*?)\];/.exec(source);
  expect(block, "COMMANDS not found in crates/ipc/src/lib.rs").not.toBeNull();
  return [...(block?.[1] ?? "").matchAll(/"([a-z_]+)"/g)].map((m) => m[1] ?? "");
}

/** Calls every wrapper once and records which command each one invoked. */
async function invokedCommands(): Promise<string[]> {
  const seen: string[] = [];
  vi.mocked(invoke).mockImplementation((cmd: string) => {
    seen.push(cmd);
    return Promise.resolve(null);
  });
  const settings = { notifications_paused_until: null, notifications_enabled: true, autostart: false, theme: "system" };
  const calls: Record<keyof typeof ipc, () => Promise<unknown>> = {
    listRequests: () => ipc.listRequests("pending"),
    getRequest: () => ipc.getRequest("r"),
    approve: () => ipc.approve("r", null),
    deny: () => ipc.deny("r", "no"),
    reportUnexpected: () => ipc.reportUnexpected("r"),
    acknowledge: () => ipc.acknowledge("r"),
    revoke: () => ipc.revoke("r", "why"),
    pair: () => ipc.pair("countersign://pair?x"),
    listGateways: () => ipc.listGateways(),
    authenticatorInfo: () => ipc.authenticatorInfo(),
    auditList: () => ipc.auditList(null, 10),
    auditVerify: () => ipc.auditVerify(),
    auditExport: () => ipc.auditExport(),
    getSettings: () => ipc.getSettings(),
    setSettings: () => ipc.setSettings(settings),
    pendingNavigation: () => ipc.pendingNavigation(),
    quit: () => ipc.quit(),
    keyAnswer: () => ipc.keyAnswer({ answer: "cancel" }),
    keySetPin: () => ipc.keySetPin(),
    passkeyList: () => ipc.passkeyList("gw"),
    passkeyAdd: () => ipc.passkeyAdd("gw"),
    passkeyRemove: () => ipc.passkeyRemove("gw", "cred"),
    hoopList: () => ipc.hoopList(),
    hoopConnect: () => ipc.hoopConnect("https://hoop.example.com", "hpk"),
    hoopDisconnect: () => ipc.hoopDisconnect("h1"),
  };
  for (const call of Object.values(calls)) await call();
  return seen;
}

describe("ipc wrappers", () => {
  it("cover exactly the COMMANDS of crates/ipc/src/lib.rs, one wrapper each", async () => {
    const commands = rustCommands();
    expect(commands.length).toBeGreaterThan(10);
    const invoked = await invokedCommands();
    expect([...invoked].sort()).toEqual([...commands].sort());
    expect(Object.keys(ipc)).toHaveLength(commands.length);
  });

  it("pass arguments camelCase as Tauri expects", async () => {
    vi.mocked(invoke).mockResolvedValue(null);
    await ipc.approve("req-1", "482913");
    await ipc.auditList("deny", 50);
    await ipc.listRequests("all");
    expect(vi.mocked(invoke).mock.calls).toEqual([
      ["approve", { id: "req-1", matchCode: "482913" }],
      ["audit_list", { query: "deny", limit: 50 }],
      ["list_requests", { kind: "all" }],
    ]);
  });

  it("normalise every rejection to an IpcError", async () => {
    vi.mocked(invoke).mockRejectedValueOnce({ code: "wrong_match_code", message: "The match code is wrong." });
    const failure = await ipc.approve("r", "000000").catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(IpcFailure);
    expect(failure).toMatchObject({ code: "wrong_match_code", message: "The match code is wrong." });

    vi.mocked(invoke).mockRejectedValueOnce("command approve not allowed");
    await expect(ipc.approve("r", null)).rejects.toMatchObject({ code: "ipc", message: "command approve not allowed" });

    expect(toIpcFailure(new TypeError("boom"))).toMatchObject({ code: "ipc", message: "boom" });
    expect(toIpcFailure(undefined).code).toBe("ipc");
    // A code the UI does not know (a mismatched shell) is "unknown", its spelling kept in the text.
    expect(toIpcFailure({ code: "from_the_future", message: "Later." })).toMatchObject({
      code: "unknown",
      message: "from_the_future: Later.",
    });
  });
});
