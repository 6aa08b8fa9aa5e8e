import { act, render, screen, waitFor } from "@testing-library/preact";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import type { DecisionView } from "../src/bindings/DecisionView";
import type { RequestDetail } from "../src/bindings/RequestDetail";
import { now } from "../src/clock";
import { DEVELOPMENT_LABEL } from "../src/components/AuthenticatorNote";
import { authenticator, changes } from "../src/store";
import { RequestView } from "../src/views/RequestView";
import { backend, deferred } from "./backend";
import { NOW, decision, detail, text } from "./fixtures";

const HIDDEN_WARNING = "contains control, bidirectional or invisible characters (shown as \\u{...})";

function showRequest(request: RequestDetail, handlers: Record<string, (args: Record<string, unknown>) => unknown> = {}) {
  const api = backend({ get_request: () => request, list_requests: () => [], ...handlers });
  const user = userEvent.setup();
  render(<RequestView id={request.summary.id} />);
  return { api, user };
}

beforeEach(() => {
  now.value = NOW;
  authenticator.value = { kind: "software", label: "softpasskey", development_mode: true };
});

describe("the decision screen", () => {
  it("shows each stage's progress, why this approver was asked and the constraints", async () => {
    const stage = (name: string, approvals: number) => ({
      name: text(name),
      group: text(name),
      approvers: [],
      approvals,
      min: 1,
      satisfied: approvals >= 1,
    });
    showRequest(
      detail(
        {
          approvers: [],
          votes: [{ approver: "bob@example.com", verdict: "approve", at: NOW - 30, stages: ["dba"] }],
          why_asked: [text("stage managers: the gateway sent it to you as a member of group managers")],
          policy_rule: text("peer_and_manager"),
          grant_seconds: 900,
          windows: [text("weekdays 08:00-18:00 Europe/Berlin")],
        },
        { approvals: 1, min_approvals: 2, stages: [stage("dba", 1), stage("managers", 0)] },
      ),
    );
    expect(await screen.findByText("dba 1/1 ✓ · managers 0/1")).toBeInTheDocument();
    expect(screen.getByRole("meter", { name: "Stage dba" })).toHaveAttribute("aria-valuenow", "1");
    expect(screen.getByRole("meter", { name: "Stage managers" })).toHaveAttribute("aria-valuenow", "0");
    expect(screen.getByText(/counts for dba/)).toBeInTheDocument();
    expect(screen.getByText("One person's approval counts for one stage only.", { exact: false })).toBeInTheDocument();
    expect(screen.getByRole("heading", { name: "Why you were asked" })).toBeInTheDocument();
    expect(screen.getByText(/member of group managers/)).toBeInTheDocument();
    expect(screen.getByText("15 min from approval, for the action to start")).toBeInTheDocument();
    expect(screen.getByText("weekdays 08:00-18:00 Europe/Berlin")).toBeInTheDocument();
  });

  it("shows who, what, why, when, how many and the digest", async () => {
    showRequest(
      detail(
        { votes: [{ approver: "bob@example.com", verdict: "approve", at: NOW - 30, stages: [] }] },
        { approvals: 1, min_approvals: 2, requester: text("deploy-bot") },
      ),
    );
    expect(await screen.findByRole("heading", { name: "Who" })).toBeInTheDocument();
    expect(screen.getAllByText("deploy-bot").length).toBeGreaterThan(0);
    expect(screen.getByRole("heading", { name: "What will run" })).toBeInTheDocument();
    expect(screen.getByLabelText("Exact detail of the action")).toHaveTextContent(
      "DELETE FROM sessions WHERE expires_at < now();",
    );
    expect(screen.getByText(/requester's own words: untrusted/)).toBeInTheDocument();
    expect(screen.getByText("Nightly cleanup, ticket OPS-1234")).toBeInTheDocument();
    expect(screen.getByText("4m 05s")).toBeInTheDocument();
    expect(screen.getByText(/1 of 2/)).toHaveTextContent("1 of 2");
    expect(screen.getByText(/approvals$/)).toBeInTheDocument();
    expect(screen.getByText("bob@example.com")).toBeInTheDocument();
    expect(screen.getByText("ca6eff9ef57081b7c4482928c1394529f452d62e125be8a89c70b2b196151a1b")).toBeInTheDocument();
    await act(() => {
      now.value = NOW + 5;
    });
    expect(screen.getByText("4m 00s")).toBeInTheDocument();
  });

  it("shows escaped hidden characters as they arrive, never interpreted, with the warnings", async () => {
    // The engine escapes U+202E; the UI shows the visible form only, even though raw has it.
    const request = detail({
      detail: {
        raw: "DROP TABLE users; -- \u202Ecod.txt",
        visible: "DROP TABLE users; -- \\u{202E}cod.txt",
        warnings: [HIDDEN_WARNING],
      },
      reason: { raw: "pаtch", visible: "pаtch", warnings: ["mixes Latin with other letters (possible look-alike characters)"] },
    });
    showRequest(request);
    const pre = await screen.findByLabelText("Exact detail of the action");
    expect(pre.textContent).toBe("DROP TABLE users; -- \\u{202E}cod.txt");
    expect(document.body.textContent).not.toContain("\u202E");
    expect(screen.getByText("\\u{202E}")).toHaveClass("escape");
    const warnings = screen.getByText("Look closely: this request contains misleading text").closest("div");
    expect(warnings).toHaveTextContent(`Detail ${HIDDEN_WARNING}`);
    expect(warnings).toHaveTextContent("Reason mixes Latin with other letters");
  });

  it("flags the approver's own request", async () => {
    showRequest(detail({ own_request: true }));
    expect(await screen.findByText(/This is your own request/)).toBeInTheDocument();
  });

  it("does not flag someone else's request", async () => {
    showRequest(detail());
    await screen.findByRole("heading", { name: "Who" });
    expect(screen.queryByText(/This is your own request/)).not.toBeInTheDocument();
  });

  it("requires the typed match code before approving", async () => {
    const { api, user } = showRequest(detail({}, { match_required: true }), { approve: () => decision() });
    await user.click(await screen.findByRole("button", { name: /Approve/ }));
    const input = screen.getByLabelText("Match code the requester sees");
    expect(input).toHaveFocus();
    expect(input.tagName).toBe("INPUT");
    await user.click(screen.getByRole("button", { name: "Confirm with your passkey" }));
    expect(screen.getByText("Type the 6-digit code the requester sees.")).toBeInTheDocument();
    await user.type(input, "12345");
    await user.click(screen.getByRole("button", { name: "Confirm with your passkey" }));
    expect(api.calls("approve")).toHaveLength(0);
    await user.type(input, "6");
    await user.click(screen.getByRole("button", { name: "Confirm with your passkey" }));
    await waitFor(() => expect(api.calls("approve")).toEqual([{ id: "req-1", matchCode: "123456" }]));
  });

  it("approves through the passkey prompt to the receipt", async () => {
    const ceremony = deferred<DecisionView>();
    const { api, user } = showRequest(detail(), { approve: () => ceremony.promise });
    await user.click(await screen.findByRole("button", { name: /Approve/ }));
    await user.click(screen.getByRole("button", { name: "Confirm with your passkey" }));

    const prompt = await screen.findByRole("alertdialog", { name: "Confirm with your passkey" });
    expect(prompt).toHaveTextContent(DEVELOPMENT_LABEL);
    expect(prompt).toHaveTextContent("Approving sql.exec on prod-db");
    expect(api.calls("approve")).toEqual([{ id: "req-1", matchCode: null }]);

    ceremony.resolve(decision());
    expect(await screen.findByText("✓ You approved this request")).toBeInTheDocument();
    expect(screen.queryByRole("alertdialog")).not.toBeInTheDocument();
    expect(screen.getByText("delivered")).toBeInTheDocument();
    const receipt = screen.getByLabelText("Receipt");
    expect(receipt).toHaveTextContent("Request stateapproved");
    expect(receipt).toHaveTextContent("Approvals2 of 2");
    expect(receipt).toHaveTextContent("Accepted at");
    expect(receipt).toHaveTextContent("9d1c0ffee0000000000000000000000000000000000000000000000000000abc");
  });

  it("tells a security-key user to touch the key", async () => {
    authenticator.value = { kind: "security-key", label: "YubiKey", development_mode: false };
    const ceremony = deferred<DecisionView>();
    const { user } = showRequest(detail(), { approve: () => ceremony.promise });
    await user.click(await screen.findByRole("button", { name: /Approve/ }));
    await user.click(screen.getByRole("button", { name: "Confirm with your passkey" }));
    const prompt = await screen.findByRole("alertdialog");
    expect(prompt).toHaveTextContent("Touch your security key");
    expect(prompt).not.toHaveTextContent(DEVELOPMENT_LABEL);
  });

  it("shows a failed approval with its code and message", async () => {
    const { user } = showRequest(detail({}, { match_required: true }), {
      approve: () => Promise.reject({ code: "wrong_match_code", message: "The match code is wrong." }),
    });
    await user.click(await screen.findByRole("button", { name: /Approve/ }));
    await user.type(screen.getByLabelText("Match code the requester sees"), "000000{Enter}");
    expect(await screen.findByText("wrong_match_code")).toBeInTheDocument();
    expect(screen.getByText("The match code is wrong.")).toBeInTheDocument();
    expect(screen.getByText("Approval failed")).toBeInTheDocument();
    expect(screen.getByText("Check the code the requester sees and try again.")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Back to the decision" }));
    await user.click(await screen.findByRole("button", { name: /Approve/ }));
    expect(screen.getByLabelText("Match code the requester sees")).toHaveValue("");
  });

  it("requires a reason to deny", async () => {
    const { api, user } = showRequest(detail(), { deny: () => decision({ verdict: "deny", receipt: null, delivery: "queued" }) });
    await user.click(await screen.findByRole("button", { name: /Deny/ }));
    await user.click(screen.getByRole("button", { name: "Deny request" }));
    expect(screen.getByText("A reason is required to deny.")).toBeInTheDocument();
    await user.type(screen.getByLabelText(/Reason for denying/), "   ");
    await user.click(screen.getByRole("button", { name: "Deny request" }));
    expect(api.calls("deny")).toHaveLength(0);
    await user.type(screen.getByLabelText(/Reason for denying/), "not during the freeze");
    await user.click(screen.getByRole("button", { name: "Deny request" }));
    await waitFor(() => expect(api.calls("deny")).toEqual([{ id: "req-1", reason: "not during the freeze" }]));
  });

  it("approves with the keyboard alone: a, the code, Enter", async () => {
    const { api, user } = showRequest(detail({}, { match_required: true }), { approve: () => decision() });
    await screen.findByRole("button", { name: /Approve/ });
    await user.keyboard("a");
    expect(screen.getByLabelText("Match code the requester sees")).toHaveFocus();
    await user.keyboard("482913{Enter}");
    await waitFor(() => expect(api.calls("approve")).toEqual([{ id: "req-1", matchCode: "482913" }]));
    expect(await screen.findByText("✓ You approved this request")).toBeInTheDocument();
  });

  it("cancels with Escape and denies with the keyboard alone: d, the reason, Enter", async () => {
    const { api, user } = showRequest(detail(), {
      deny: () => decision({ verdict: "deny", receipt: null, delivery: "queued" }),
    });
    await screen.findByRole("button", { name: /Approve/ });
    await user.keyboard("a");
    expect(screen.getByRole("button", { name: "Confirm with your passkey" })).toHaveFocus();
    await user.keyboard("{Escape}");
    expect(screen.queryByRole("button", { name: "Confirm with your passkey" })).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: /Approve/ })).toHaveFocus();
    await user.keyboard("d");
    expect(screen.getByLabelText(/Reason for denying/)).toHaveFocus();
    await user.keyboard("wrong ticket{Enter}");
    await waitFor(() => expect(api.calls("deny")).toEqual([{ id: "req-1", reason: "wrong ticket" }]));
    expect(api.calls("approve")).toHaveLength(0);
    expect(await screen.findByText("✕ You denied this request")).toBeInTheDocument();
  });

  it("says a decision is queued while the gateway is unreachable", async () => {
    const { user } = showRequest(detail(), {
      deny: () => decision({ verdict: "deny", receipt: null, delivery: "queued", last_error: "connection refused" }),
    });
    await user.click(await screen.findByRole("button", { name: /Deny/ }));
    await user.type(screen.getByLabelText(/Reason for denying/), "no{Enter}");
    expect(await screen.findByText("queued: gateway unreachable")).toBeInTheDocument();
    expect(screen.getByText("connection refused")).toBeInTheDocument();
  });

  it("shows a queued decision as delivered, with its receipt, once the gateway has it", async () => {
    const queued = decision({ verdict: "deny", receipt: null, delivery: "queued", last_error: "connection refused" });
    let current = detail();
    const { user } = showRequest(current, { get_request: () => current, deny: () => queued });
    await user.click(await screen.findByRole("button", { name: /Deny/ }));
    await user.type(screen.getByLabelText(/Reason for denying/), "no{Enter}");
    expect(await screen.findByText("queued: gateway unreachable")).toBeInTheDocument();
    // The engine delivered it when the gateway came back; its event reloads the request.
    current = detail({}, { state: "denied", decision: decision({ verdict: "deny", decision_id: queued.decision_id }) });
    await act(() => {
      changes.value++;
    });
    expect(await screen.findByText("delivered")).toBeInTheDocument();
    expect(screen.queryByText("queued: gateway unreachable")).not.toBeInTheDocument();
    expect(screen.getByLabelText("Receipt")).toBeInTheDocument();
  });

  it("shows a refused delivery with the gateway's reason, and offers the decision again while pending", async () => {
    const refused = decision({ delivery: "refused", last_error: "The match code is wrong.", receipt: null });
    showRequest(detail({}, { state: "pending", decision: refused }));
    expect(await screen.findByText(/The gateway refused your last decision \(The match code is wrong\.\)/)).toBeInTheDocument();
    expect(screen.getByRole("button", { name: /Approve/ })).toBeInTheDocument();
  });

  it("shows a refused delivery of a closed request as final", async () => {
    showRequest(detail({}, { state: "denied", decision: decision({ delivery: "refused", last_error: "request_closed", receipt: null }) }));
    expect(await screen.findByText("refused: request_closed")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Approve/ })).not.toBeInTheDocument();
  });

  it("reports an unexpected request in one confirmed step", async () => {
    const { api, user } = showRequest(detail(), {
      report_unexpected: () => decision({ verdict: "deny", receipt: null }),
    });
    await user.click(await screen.findByRole("button", { name: "I did not expect this" }));
    expect(api.calls("report_unexpected")).toHaveLength(0);
    const confirm = screen.getByRole("button", { name: "Deny and report" });
    expect(confirm).toHaveFocus();
    await user.keyboard("{Enter}");
    await waitFor(() => expect(api.calls("report_unexpected")).toEqual([{ id: "req-1" }]));
    expect(api.calls("deny")).toHaveLength(0);
  });

  it("offers no decision on a request that is no longer pending", async () => {
    showRequest(detail({}, { state: "expired" }));
    expect(await screen.findByText(/there is nothing/)).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Approve/ })).not.toBeInTheDocument();
  });

  it("labels every control", async () => {
    const { user } = showRequest(detail({}, { match_required: true }));
    await user.click(await screen.findByRole("button", { name: /Approve/ }));
    for (const input of document.querySelectorAll("input, textarea, select")) {
      const id = input.getAttribute("id");
      const labelled = input.getAttribute("aria-label") ?? (id ? document.querySelector(`label[for="${id}"]`) : null);
      expect(labelled, input.id).toBeTruthy();
    }
    for (const button of screen.getAllByRole("button")) expect(button).toHaveAccessibleName();
  });

  it("stops offering a decision once the countdown reaches expiry", async () => {
    showRequest(detail({}, { expires_at: NOW + 2 }));
    expect(await screen.findByRole("button", { name: /Approve/ })).toBeInTheDocument();
    await act(() => {
      now.value = NOW + 2;
    });
    expect(screen.queryByRole("button", { name: /Approve/ })).not.toBeInTheDocument();
    expect(screen.getByText(/there is nothing left to decide/)).toBeInTheDocument();
  });

  it("keeps the passkey prompt while a reload already shows the decision", async () => {
    const ceremony = deferred<DecisionView>();
    const { user } = showRequest(detail(), { approve: () => ceremony.promise });
    await user.click(await screen.findByRole("button", { name: /Approve/ }));
    await user.click(screen.getByRole("button", { name: "Confirm with your passkey" }));
    await screen.findByRole("alertdialog");
    const { changes } = await import("../src/store");
    backend({ get_request: () => detail({}, { decision: decision(), state: "approved" }) });
    await act(() => {
      changes.value++;
    });
    await waitFor(() => expect(screen.getByText("approved")).toBeInTheDocument());
    expect(screen.getByRole("alertdialog")).toBeInTheDocument();
    ceremony.resolve(decision());
    expect(await screen.findByText("✓ You approved this request")).toBeInTheDocument();
  });

  it("goes back to the list with Escape when no form is open", async () => {
    const { user } = showRequest(detail());
    await screen.findByRole("button", { name: /Approve/ });
    await user.keyboard("d");
    await user.keyboard("{Escape}");
    expect(location.hash).not.toBe("#/inbox");
    await user.keyboard("{Escape}");
    expect(location.hash).toBe("#/inbox");
  });

  it("shows a broken glass, offers no decision and acknowledges it once", async () => {
    const grant = { expires_at: NOW + 3600, used_at: null, revoked_at: null, revoked_by: null, acknowledged_at: null, acknowledged_by: null };
    const glass = (acknowledged: boolean) =>
      detail(
        { grant: acknowledged ? { ...grant, acknowledged_at: NOW, acknowledged_by: text("alice@example.com") } : grant },
        { mode: "break_glass", state: "approved", needs_acknowledgement: !acknowledged, requester: text("dana@example.com") },
      );
    let acked = 0;
    const { user } = showRequest(glass(false), {
      acknowledge: () => {
        acked++;
        backend({ get_request: () => glass(true), list_requests: () => [] });
        return glass(true);
      },
    });
    expect(await screen.findByRole("heading", { name: "Glass broken" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Approve/ })).toBeNull();
    await user.click(screen.getByRole("button", { name: "Acknowledge" }));
    await waitFor(() => expect(document.querySelector(".acknowledged")?.textContent).toContain("Acknowledged by alice@example.com"));
    expect(acked).toBe(1);
    expect(screen.queryByRole("button", { name: "Acknowledge" })).toBeNull();
  });

  it("revokes your own live approval with the passkey, and then offers nothing more", async () => {
    const grant = { expires_at: NOW + 600, used_at: null, revoked_at: null, revoked_by: null, acknowledged_at: null, acknowledged_by: null };
    const approved = (revoked: boolean) =>
      detail(
        { grant: revoked ? { ...grant, revoked_at: NOW, revoked_by: text("alice@example.com") } : grant },
        { state: "approved", decision: decision() },
      );
    const { api, user } = showRequest(approved(false), {
      revoke: () => {
        backend({ get_request: () => approved(true), list_requests: () => [] });
        return approved(true);
      },
    });
    await user.click(await screen.findByRole("button", { name: "Revoke my approval…" }));
    await user.type(screen.getByLabelText("Why (for the audit log)"), "wrong cluster");
    await user.click(screen.getByRole("button", { name: "Revoke with your passkey" }));
    await waitFor(() => expect(document.querySelector(".revoked")?.textContent).toContain("Revoked by alice@example.com"));
    expect(api.calls("revoke")).toEqual([{ id: "req-1", reason: "wrong cluster" }]);
    expect(screen.queryByRole("button", { name: "Revoke my approval…" })).toBeNull();
  });

  it("offers no revocation once the grant window has passed", async () => {
    const grant = { expires_at: NOW - 1, used_at: null, revoked_at: null, revoked_by: null, acknowledged_at: null, acknowledged_by: null };
    showRequest(detail({ grant }, { state: "approved", decision: decision() }));
    expect(await screen.findByRole("heading", { name: "The approval" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Revoke my approval…" })).toBeNull();
  });

  it("says when an integration used the grant, and offers no revocation after", async () => {
    const grant = { expires_at: NOW + 600, used_at: NOW - 5, revoked_at: null, revoked_by: null, acknowledged_at: null, acknowledged_by: null };
    showRequest(detail({ grant }, { state: "approved", decision: decision() }));
    expect(await screen.findByText(/the approval admits nothing more/)).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Revoke my approval…" })).toBeNull();
  });
});
