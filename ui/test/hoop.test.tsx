import { render, screen, waitFor, within } from "@testing-library/preact";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import type { HoopConnectionView } from "../src/bindings/HoopConnectionView";
import type { RequestDetail } from "../src/bindings/RequestDetail";
import type { RequestSummary } from "../src/bindings/RequestSummary";
import { now } from "../src/clock";
import { authenticator, connections, handleUiEvent, pending, pendingLoaded } from "../src/store";
import { HoopGateways } from "../src/views/HoopSettings";
import { Inbox } from "../src/views/Inbox";
import { RequestView } from "../src/views/RequestView";
import { backend } from "./backend";
import { NOW, decision, detail, summary, text } from "./fixtures";

const URL = "https://hoop.example.com/";

function hoopRow(overrides: Partial<RequestSummary> = {}): RequestSummary {
  return summary({
    id: "rev-1",
    kind: "hoop",
    unsigned_from: URL,
    gateway: "hoop-1",
    gateway_name: "hoop.example.com",
    action: text("hoop.exec"),
    resource: text("pgprod (postgres)"),
    risk: "unrated",
    summary: text("UPDATE accounts SET balance = 0;"),
    requester: text("bob@example.com"),
    expires_at: null,
    approvals: 0,
    min_approvals: 1,
    stages: [],
    ...overrides,
  });
}

function hoopDetail(overrides: Partial<RequestDetail> = {}, row: Partial<RequestSummary> = {}): RequestDetail {
  return {
    ...detail({
      detail: text("UPDATE accounts SET balance = 0;"),
      reason: text("ticket: OPS-7"),
      approvers: [],
      why_asked: [text("you can review for group sre")],
      policy_rule: null,
      hoop: {
        url: URL,
        provenance: `unsigned: fetched over TLS from ${URL}`,
        status: "PENDING",
        review_type: "jit",
        access_seconds: 1800,
        groups: [
          { group: text("sre"), status: "PENDING", reviewed_by: null },
          { group: text("dba"), status: "APPROVED", reviewed_by: text("carol@example.com") },
        ],
        analysis: { risk_level: text("high"), title: text("Destructive write"), explanation: text("Sets every balance to zero.") },
        rule: null,
        rejection_reason: null,
      },
      ...overrides,
    }),
    summary: hoopRow(row),
  };
}

const CONNECTION: HoopConnectionView = {
  id: "hoop-1",
  name: "hoop.example.com",
  url: URL,
  user_email: "alice@example.com",
  user_name: "Alice",
  role: "standard",
  token_kept_in: "the Secret Service",
  connected_at: NOW - 3600,
  unreachable_since: null,
  error: null,
};

/** The inbox's rows. */
function listed(): HTMLElement[] {
  return screen.getAllByRole("option");
}

beforeEach(() => {
  now.value = NOW;
  pending.value = [];
  pendingLoaded.value = true;
  authenticator.value = { kind: "software", label: "softpasskey", development_mode: true };
});

describe("hoop reviews in the one inbox", () => {
  it("labels a hoop row unsigned, with no expiry, after the requests that expire", () => {
    pending.value = [hoopRow(), summary({ id: "cs-1", expires_at: NOW + 600 })];
    render(<Inbox tab="pending" />);
    const rows = listed();
    expect(rows).toHaveLength(2);
    expect(rows[0]).toHaveTextContent("prod-gateway");
    const hoop = within(rows[1] as HTMLElement);
    expect(hoop.getByText("hoop · unsigned")).toHaveAttribute("title", `Unsigned: fetched from ${URL}; hoop signs nothing`);
    expect(hoop.getByText("no expiry")).toBeInTheDocument();
    expect(hoop.getByText("unrated")).toBeInTheDocument();
  });

  it("filters by gateway", async () => {
    pending.value = [hoopRow(), summary({ id: "cs-1" })];
    const user = userEvent.setup();
    render(<Inbox tab="pending" />);
    const filter = screen.getByRole("radiogroup", { name: "Filter by gateway" });
    expect(within(filter).getAllByRole("radio").map((o) => o.parentElement?.textContent)).toEqual(["All gateways", "hoop.example.com (hoop)", "prod-gateway"]);
    await user.click(within(filter).getByLabelText("hoop.example.com (hoop)"));
    expect(listed()).toHaveLength(1);
    expect(screen.getByText("hoop.exec")).toBeInTheDocument();
    expect(screen.queryByText("sql.exec")).toBeNull();
    await user.click(within(filter).getByLabelText("All gateways"));
    expect(screen.getByText("sql.exec")).toBeInTheDocument();
  });

  it("shows no filter when every row comes from one gateway", () => {
    pending.value = [summary({ id: "a" }), summary({ id: "b" })];
    render(<Inbox tab="pending" />);
    expect(screen.queryByRole("radiogroup", { name: "Filter by gateway" })).toBeNull();
  });
});

describe("a hoop review's decision screen", () => {
  it("says it is unsigned, shows the groups, the access and hoop's analysis, and offers no report", async () => {
    backend({ get_request: () => hoopDetail(), list_requests: () => [] });
    render(<RequestView id="rev-1" />);
    const origin = await screen.findByRole("note");
    expect(origin).toHaveTextContent(/⚠ unsigned: fetched over TLS from https:\/\/hoop\.example\.com\/\s*hoop signs nothing/);
    expect(screen.queryByText("✓ Signed")).toBeNull();
    expect(screen.getByText(/access for 30 min once approved/)).toBeInTheDocument();
    expect(screen.getByText("Destructive write", { exact: false })).toBeInTheDocument();
    expect(screen.getByText("carol@example.com", { exact: false })).toBeInTheDocument();
    expect(screen.getByText(/never: a hoop review waits/)).toBeInTheDocument();
    expect(screen.getByText("Script SHA-256")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: /Approve/ })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "I did not expect this" })).toBeNull();
  });

  it("rejects with a reason through the passkey, and shows that hoop gives no receipt", async () => {
    const rejected = decision({ verdict: "deny", receipt: null });
    const api = backend({ get_request: () => hoopDetail(), list_requests: () => [], deny: () => rejected });
    const user = userEvent.setup();
    render(<RequestView id="rev-1" />);
    await user.click(await screen.findByRole("button", { name: /Deny/ }));
    await user.type(screen.getByLabelText(/Reason for rejecting/), "not in production");
    await user.click(screen.getByRole("button", { name: "Reject with your passkey" }));
    await waitFor(() => expect(api.calls("deny")).toEqual([{ id: "rev-1", reason: "not in production" }]));
    expect(await screen.findByText(/hoop gives no receipt/)).toBeInTheDocument();
  });

  it("shows a decision hoop saw decided elsewhere as not sent", async () => {
    const superseded = decision({ delivery: "superseded", receipt: null });
    backend({ get_request: () => hoopDetail({}, { state: "denied", decision: superseded }), list_requests: () => [] });
    render(<RequestView id="rev-1" />);
    expect(await screen.findByText("not sent: the review was decided elsewhere meanwhile")).toBeInTheDocument();
  });

  it("says a Countersign request is signed by its gateway", async () => {
    backend({ get_request: () => detail(), list_requests: () => [] });
    render(<RequestView id="req-1" />);
    expect(await screen.findByRole("note")).toHaveTextContent(/✓ Signed\s*by the gateway prod-gateway/);
  });
});

describe("connecting a hoop gateway in Settings", () => {
  it("sends the address and token, clears the token, and lists the connection", async () => {
    let connected: HoopConnectionView[] = [];
    const api = backend({
      hoop_list: () => connected,
      hoop_connect: () => {
        connected = [CONNECTION];
        return CONNECTION;
      },
    });
    const user = userEvent.setup();
    render(<HoopGateways />);
    await user.click(await screen.findByRole("button", { name: "Connect a hoop gateway" }));
    await user.type(screen.getByLabelText("hoop gateway address"), "https://hoop.example.com");
    await user.type(screen.getByLabelText("API key or access token"), "hpk_secret");
    await user.click(screen.getByRole("button", { name: "Connect" }));
    await waitFor(() => expect(api.calls("hoop_connect")).toEqual([{ url: "https://hoop.example.com", token: "hpk_secret" }]));
    expect(await screen.findByText("reachable")).toBeInTheDocument();
    expect(screen.getByText(/alice@example\.com/)).toBeInTheDocument();
    expect(screen.queryByDisplayValue("hpk_secret")).toBeNull();
  });

  it("shows hoop's refusal with its code, and keeps nothing of the token", async () => {
    backend({ hoop_list: () => [], hoop_connect: () => Promise.reject({ code: "hoop_unauthorized", message: "hoop refused the token (401)." }) });
    const user = userEvent.setup();
    render(<HoopGateways />);
    await user.click(await screen.findByRole("button", { name: "Connect a hoop gateway" }));
    await user.type(screen.getByLabelText("hoop gateway address"), "https://hoop.example.com");
    await user.type(screen.getByLabelText("API key or access token"), "hpk_wrong");
    await user.click(screen.getByRole("button", { name: "Connect" }));
    expect(await screen.findByText("hoop_unauthorized")).toBeInTheDocument();
    expect(screen.getByLabelText("API key or access token")).toHaveValue("");
    expect(screen.getByLabelText("hoop gateway address")).toHaveValue("https://hoop.example.com");
  });

  it("shows an unreachable connection's state, and disconnects after a confirmation", async () => {
    const down = { ...CONNECTION, unreachable_since: NOW - 120, error: "connection refused" };
    const api = backend({ hoop_list: () => [down], hoop_disconnect: () => [] });
    const user = userEvent.setup();
    render(<HoopGateways />);
    expect(await screen.findByText(/unreachable since/)).toBeInTheDocument();
    expect(screen.getByText("connection refused")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Disconnect…" }));
    await user.click(screen.getByRole("button", { name: "Disconnect" }));
    await waitFor(() => expect(api.calls("hoop_disconnect")).toEqual([{ id: "hoop-1" }]));
    await waitFor(() => expect(screen.queryByText(/alice@example\.com/)).toBeNull());
  });
});

describe("a disconnected hoop gateway", () => {
  it("leaves the connection count", () => {
    connections.value = new Map([
      ["fp-1", { up: true, error: null }],
      ["hoop-1", { up: false, error: "connection refused" }],
    ]);
    handleUiEvent({ type: "connection_removed", gateway: "hoop-1" });
    expect([...connections.value.keys()]).toEqual(["fp-1"]);
  });
});
