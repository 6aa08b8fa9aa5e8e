import { act, render, screen, within } from "@testing-library/preact";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { RequestSummary } from "../src/bindings/RequestSummary";
import { now } from "../src/clock";
import { VirtualList } from "../src/components/VirtualList";
import { pending, pendingLoaded } from "../src/store";
import { Inbox } from "../src/views/Inbox";
import { backend } from "./backend";
import { NOW, summary, text } from "./fixtures";

function many(count: number): RequestSummary[] {
  return Array.from({ length: count }, (_, i) =>
    summary({ id: `r-${i}`, summary: text(`Request ${i}`), expires_at: NOW + 600 + i }),
  );
}

beforeEach(() => {
  now.value = NOW;
  pending.value = [];
  pendingLoaded.value = true;
});

describe("inbox", () => {
  it("shows each pending request with risk, requester, action, resource, summary and a live countdown", async () => {
    pending.value = [
      summary({ id: "a", risk: "critical", requester: text("ci-deploy"), expires_at: NOW + 245 }),
      summary({ id: "b", risk: "low", action: text("deploy"), resource: text("checkout@prod"), summary: text("Release v2"), requester: text("dana@example.com"), expires_at: NOW + 3600 }),
    ];
    render(<Inbox tab="pending" />);

    const rows = screen.getAllByRole("option");
    expect(rows).toHaveLength(2);
    const first = within(rows[0] as HTMLElement);
    expect(first.getByText("critical")).toHaveClass("risk", "risk-critical");
    expect(first.getByText("ci-deploy")).toBeInTheDocument();
    expect(first.getByText("sql.exec")).toBeInTheDocument();
    expect(first.getByText("prod-db")).toBeInTheDocument();
    expect(first.getByText("Delete expired sessions")).toBeInTheDocument();
    expect(first.getByText("4m 05s")).toBeInTheDocument();

    const second = within(rows[1] as HTMLElement);
    expect(second.getByText("low")).toHaveClass("risk-low");
    expect(second.getByText("checkout@prod")).toBeInTheDocument();
    expect(second.getByText("dana@example.com")).toBeInTheDocument();

    await act(() => {
      now.value = NOW + 1;
    });
    expect(first.getByText("4m 04s")).toBeInTheDocument();
    await act(() => {
      now.value = NOW + 245;
    });
    expect(first.getByText("expired")).toBeInTheDocument();
  });

  it("lists the request that expires soonest first", () => {
    pending.value = [summary({ id: "late", summary: text("late"), expires_at: NOW + 900 }), summary({ id: "soon", summary: text("soon"), expires_at: NOW + 30 })];
    render(<Inbox tab="pending" />);
    const rows = screen.getAllByRole("option");
    expect(rows[0]).toHaveTextContent("soon");
  });

  it("renders only the visible rows of 10,000 pending requests", () => {
    pending.value = many(10_000);
    render(<Inbox tab="pending" />);
    const rows = screen.getAllByRole("option");
    expect(rows.length).toBeGreaterThan(5);
    expect(rows.length).toBeLessThanOrEqual(50);
    expect(screen.getByRole("listbox")).toHaveAttribute("aria-label", "Pending requests");
    expect(rows[0]).toHaveAttribute("aria-setsize", "10000");
  });

  it("moves through a long list with the keyboard and opens the active row with Enter", async () => {
    pending.value = many(10_000);
    render(<Inbox tab="pending" />);
    const list = screen.getByRole("listbox");
    list.focus();
    await act(() => {
      list.dispatchEvent(new KeyboardEvent("keydown", { key: "End", bubbles: true }));
    });
    expect(list).toHaveAttribute("aria-activedescendant", "row-r-9999");
    expect(screen.getAllByRole("option").length).toBeLessThanOrEqual(50);
    expect(screen.getByText("Request 9999")).toBeInTheDocument();
    await act(() => {
      list.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    });
    expect(location.hash).toBe("#/request/r-9999");
  });

  it("updates countdowns without re-rendering the rows", async () => {
    const renderRow = vi.fn((r: RequestSummary) => <span>{r.id}</span>);
    render(<VirtualList items={many(100)} rowHeight={68} itemKey={(r) => r.id} label="x" onOpen={() => undefined} renderRow={renderRow} />);
    const before = renderRow.mock.calls.length;
    await act(() => {
      now.value = NOW + 1;
    });
    expect(renderRow.mock.calls.length).toBe(before);
  });

  it("shows the history tab from list_requests('all'), without pending requests", async () => {
    const api = backend({
      list_requests: () => [
        summary({ id: "p", state: "pending", summary: text("still pending") }),
        summary({ id: "d", state: "denied", summary: text("was denied") }),
      ],
    });
    render(<Inbox tab="history" />);
    expect(await screen.findByText("was denied")).toBeInTheDocument();
    expect(screen.queryByText("still pending")).not.toBeInTheDocument();
    expect(api.calls("list_requests")).toEqual([{ kind: "all" }]);
  });

  it("says so when nothing is pending", () => {
    render(<Inbox tab="pending" />);
    expect(screen.getByText("Nothing waiting for you")).toBeInTheDocument();
  });
});
