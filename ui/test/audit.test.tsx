import { render, screen, waitFor } from "@testing-library/preact";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { AuditEntryView } from "../src/bindings/AuditEntryView";
import { Audit } from "../src/views/Audit";
import { backend } from "./backend";
import { NOW } from "./fixtures";

const ENTRIES: AuditEntryView[] = [
  { seq: 2, at: NOW, kind: "decision_signed", request_id: "req-1", detail: '{\n  "verdict": "deny"\n}', hash: "bb" },
  { seq: 1, at: NOW - 10, kind: "request_received", request_id: "req-1", detail: '{\n  "action": "sql.exec"\n}', hash: "aa" },
];

describe("audit log", () => {
  it("lists entries with seq, kind, request id and detail in monospace", async () => {
    backend({ audit_list: () => ENTRIES });
    render(<Audit />);
    expect(await screen.findByText("#2")).toBeInTheDocument();
    expect(screen.getByText("decision_signed")).toBeInTheDocument();
    expect(screen.getAllByRole("link", { name: "req-1" })[0]).toHaveAttribute("href", "#/request/req-1");
    const pre = screen.getByText(/"verdict": "deny"/);
    expect(pre.tagName).toBe("PRE");
  });

  it("passes the search query to audit_list", async () => {
    const api = backend({ audit_list: (args) => (args.query === "deny" ? ENTRIES.slice(0, 1) : ENTRIES) });
    const user = userEvent.setup();
    render(<Audit />);
    await screen.findByText("#1");
    await user.type(screen.getByLabelText("Search"), "deny");
    await waitFor(() => expect(screen.queryByText("#1")).not.toBeInTheDocument());
    expect(api.calls("audit_list").at(0)).toEqual({ query: null, limit: 500 });
    expect(api.calls("audit_list").at(-1)).toEqual({ query: "deny", limit: 500 });
  });

  it("shows a verified chain with its entries and head", async () => {
    backend({ audit_list: () => ENTRIES, audit_verify: () => ({ ok: true, entries: 2, head: "beefcafe", problem: null }) });
    const user = userEvent.setup();
    render(<Audit />);
    await user.click(screen.getByRole("button", { name: /Verify chain/ }));
    expect(await screen.findByText("Chain intact.")).toBeInTheDocument();
    expect(screen.getByText("beefcafe")).toBeInTheDocument();
    expect(screen.getByRole("status")).toHaveTextContent("2 entries verified");
  });

  it("names the first bad entry when verification fails", async () => {
    backend({
      audit_list: () => ENTRIES,
      audit_verify: () => ({ ok: false, entries: 7, head: null, problem: "entry 4: previous hash does not match entry 3" }),
    });
    const user = userEvent.setup();
    render(<Audit />);
    await user.click(screen.getByRole("button", { name: /Verify chain/ }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("The audit chain is broken.");
    expect(alert).toHaveTextContent("entry 4: previous hash does not match entry 3");
  });

  it("shows where the export was written", async () => {
    backend({ audit_list: () => [], audit_export: () => "/home/alice/audit.jsonl" });
    const user = userEvent.setup();
    render(<Audit />);
    await user.click(screen.getByRole("button", { name: "Export" }));
    expect(await screen.findByText("/home/alice/audit.jsonl")).toBeInTheDocument();
  });
});
