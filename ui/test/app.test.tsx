import { listen } from "@tauri-apps/api/event";
import { act, render, screen, waitFor } from "@testing-library/preact";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { UiEvent } from "../src/bindings/UiEvent";
import { App } from "../src/App";
import { EVENT_NAME } from "../src/ipc";
import { route } from "../src/route";
import { connections, firstRun, offeredPairingLink, pairedThisSession, settings, toasts } from "../src/store";
import { SettingsView } from "../src/views/SettingsView";
import { Pairing } from "../src/views/Pairing";
import { backend } from "./backend";
import { summary } from "./fixtures";

const GATEWAY = {
  fingerprint: "fp-1",
  name: "prod-gateway",
  url: "https://gw.example.com",
  approver: "alice@example.com",
  device_id: "dev-1",
  paired_at: 1,
  log_history_changed: null,
};
const SETTINGS = { notifications_paused_until: null, notifications_enabled: true, autostart: false, theme: "system" };
const LINK = "countersign://pair?gateway=https%3A%2F%2Fgw.example.com&code=abc&fp=f00d&exp=1767225600";

function shell(overrides: Record<string, (args: Record<string, unknown>) => unknown> = {}) {
  return backend({
    list_requests: () => [summary()],
    authenticator_info: () => ({ kind: "software", label: "softpasskey", development_mode: true }),
    get_settings: () => SETTINGS,
    set_settings: (args) => args.settings,
    list_gateways: () => [GATEWAY],
    hoop_list: () => [],
    passkey_list: () => [],
    pending_navigation: () => null,
    get_request: () => null,
    ...overrides,
  });
}

/** The handler the app registered for `countersign://event`. */
async function eventHandler(): Promise<(event: UiEvent) => void> {
  await waitFor(() => expect(vi.mocked(listen)).toHaveBeenCalled());
  const [name, handler] = vi.mocked(listen).mock.calls[0] ?? [];
  expect(name).toBe(EVENT_NAME);
  return (event) => {
    void act(() => (handler as (e: { payload: UiEvent }) => void)({ payload: event }));
  };
}

beforeEach(() => {
  route.value = { view: "inbox", tab: "pending" };
  toasts.value = [];
  connections.value = new Map();
  settings.value = null;
  offeredPairingLink.value = null;
  firstRun.value = false;
  pairedThisSession.value = false;
  delete document.documentElement.dataset.theme;
});

describe("the app shell", () => {
  it("shows the pending count, a connection indicator and the development mode label", async () => {
    shell();
    render(<App />);
    expect(await screen.findByLabelText("1 pending")).toBeInTheDocument();
    expect(screen.getByText("Development mode")).toBeInTheDocument();
    const emit = await eventHandler();
    emit({ type: "connection", gateway: "prod-gateway", up: false, error: "connection refused" });
    expect(screen.getByRole("status", { name: /Connection: Offline/ })).toBeInTheDocument();
    emit({ type: "connection", gateway: "prod-gateway", up: true, error: null });
    expect(screen.getByRole("status", { name: /Connection: Connected/ })).toBeInTheDocument();
  });

  it("raises toasts for refused decisions, rejected requests and refused links", async () => {
    shell();
    render(<App />);
    const emit = await eventHandler();
    emit({ type: "decision_refused", request_id: "req-1", code: "request_expired", message: "too late" });
    emit({ type: "request_rejected", reason: "bad signature" });
    emit({ type: "link_refused", message: "not a countersign link" });
    const region = screen.getByRole("region", { name: "Notifications" });
    expect(region).toHaveTextContent("request_expired: too late");
    expect(region).toHaveTextContent("bad signature");
    expect(region).toHaveTextContent("not a countersign link");
    expect(screen.getByRole("link", { name: "Open the request" })).toHaveAttribute("href", "#/request/req-1");
  });

  it("navigates on a navigate event and on pending_navigation at start", async () => {
    shell({ pending_navigation: () => "from-notification" });
    render(<App />);
    await waitFor(() => expect(location.hash).toBe("#/request/from-notification"));
    const emit = await eventHandler();
    emit({ type: "navigate", request_id: "req-9" });
    expect(location.hash).toBe("#/request/req-9");
  });

  it("opens pairing on first run", async () => {
    shell({ list_gateways: () => [] });
    render(<App />);
    expect(await screen.findByRole("heading", { name: "Welcome to Countersign" })).toBeInTheDocument();
  });

  it("leaves the welcome screen for the inbox when a pairing finishes outside the form", async () => {
    shell({ list_gateways: () => [] });
    render(<App />);
    expect(await screen.findByRole("heading", { name: "Welcome to Countersign" })).toBeInTheDocument();
    const emit = await eventHandler();
    emit({ type: "gateway_paired", gateway: "fp-1", name: "prod-gateway", approver: "alice@example.com" });
    await waitFor(() => expect(route.value).toEqual({ view: "inbox", tab: "pending" }));
    expect(screen.queryByRole("heading", { name: "Welcome to Countersign" })).not.toBeInTheDocument();
    expect(screen.getByRole("region", { name: "Notifications" })).toHaveTextContent("Paired with prod-gateway");
  });

  it("reloads the inbox when a request arrives without its row", async () => {
    const api = shell();
    render(<App />);
    const emit = await eventHandler();
    const before = api.calls("list_requests").length;
    emit({ type: "request_received", request_id: "req-2", summary: null });
    await waitFor(() => expect(api.calls("list_requests").length).toBeGreaterThan(before));
  });
});

describe("pairing", () => {
  it("only pre-fills a link from a deep link and pairs after confirmation", async () => {
    const api = shell({ pair: () => GATEWAY });
    offeredPairingLink.value = LINK;
    const user = userEvent.setup();
    render(<Pairing firstRun={false} />);
    expect(screen.getByLabelText("Pairing link")).toHaveValue(LINK);
    expect(screen.getByText(/A pairing link was opened from outside the app/)).toBeInTheDocument();
    expect(screen.getByText("https://gw.example.com")).toBeInTheDocument();
    expect(api.calls("pair")).toHaveLength(0);
    await user.click(screen.getByRole("button", { name: "Register a passkey" }));
    await waitFor(() => expect(api.calls("pair")).toEqual([{ link: LINK }]));
    await waitFor(() => expect(route.value).toEqual({ view: "inbox", tab: "pending" }));
    expect(offeredPairingLink.value).toBeNull();
  });

  it("keeps toasts in the page's flow on the pairing screen, so none covers the fingerprint", async () => {
    shell();
    route.value = { view: "pair" };
    offeredPairingLink.value = LINK;
    render(<App />);
    const emit = await eventHandler();
    emit({ type: "link_refused", message: "not a countersign link" });
    const region = await screen.findByRole("region", { name: "Notifications" });
    await waitFor(() => expect(region).toHaveTextContent("not a countersign link"));
    expect(region).toHaveClass("toasts-inline");
    expect(region.closest("main")).not.toBeNull();
    expect(screen.getByText("f00d")).toBeInTheDocument();
    await act(() => {
      route.value = { view: "inbox", tab: "pending" };
    });
    const floating = screen.getByRole("region", { name: "Notifications" });
    expect(floating).not.toHaveClass("toasts-inline");
    expect(floating.closest("main")).toBeNull();
  });

  it("refuses what is not a pairing link", async () => {
    const api = shell();
    const user = userEvent.setup();
    render(<Pairing firstRun />);
    await user.type(screen.getByLabelText("Pairing link"), "https://evil.example.com");
    await user.click(screen.getByRole("button", { name: "Register a passkey" }));
    expect(screen.getByText(/not a countersign:\/\/pair link/)).toBeInTheDocument();
    expect(api.calls("pair")).toHaveLength(0);
  });
});

describe("settings", () => {
  it("lists gateways and saves toggles and the theme", async () => {
    const api = shell();
    settings.value = SETTINGS;
    const user = userEvent.setup();
    render(<SettingsView />);
    expect(await screen.findByText("prod-gateway")).toBeInTheDocument();
    await user.click(screen.getByLabelText(/Start Countersign when I log in/));
    await waitFor(() => expect(api.calls("set_settings").at(-1)).toEqual({ settings: { ...SETTINGS, autostart: true } }));
    await user.click(screen.getByRole("radio", { name: "Dark" }));
    await waitFor(() => expect(document.documentElement.dataset.theme).toBe("dark"));
    await user.click(screen.getByRole("button", { name: "Pause for 1 hour" }));
    expect(await screen.findByText(/Paused until/)).toBeInTheDocument();
  });

  it("quits Countersign from Settings, and shows a failure other than the closing connection", async () => {
    const api = shell({ quit: () => null });
    settings.value = SETTINGS;
    const user = userEvent.setup();
    render(<SettingsView />);
    await user.click(await screen.findByRole("button", { name: "Quit Countersign" }));
    await waitFor(() => expect(api.calls("quit")).toHaveLength(1));
    expect(screen.queryByRole("alert")).toBeNull();

    shell({ quit: () => Promise.reject({ code: "io", message: "The disk is gone." }) });
    await user.click(screen.getByRole("button", { name: "Quit Countersign" }));
    expect(await screen.findByText(/The disk is gone/)).toBeInTheDocument();
  });
});
