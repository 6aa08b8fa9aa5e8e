import { useEffect, useMemo, useState } from "preact/hooks";
import type { RequestSummary } from "../bindings/RequestSummary";
import { Countdown } from "../components/Countdown";
import { RiskBadge } from "../components/RiskBadge";
import { VirtualList } from "../components/VirtualList";
import { VisibleText, WarningMark } from "../components/VisibleText";
import { formatTime } from "../clock";
import { ipc, toIpcFailure } from "../ipc";
import { hrefFor, navigate } from "../route";
import { changes, pending, pendingError, pendingLoaded } from "../store";
import { progressText } from "../stages";
import { visible } from "../text";

export const ROW_HEIGHT = 68;

type Tab = "pending" | "history";

function Quorum({ request }: { request: RequestSummary }) {
  if (request.stages.length > 1) {
    return (
      <span class="quorum" title="Approvals so far of those needed, per stage">
        {progressText(request.stages)}
      </span>
    );
  }
  return (
    <span class="quorum" title="Approvals so far of those needed">
      {request.approvals}/{request.min_approvals}
    </span>
  );
}

function rowWarnings(r: RequestSummary): string[] {
  return [...new Set([r.action, r.resource, r.summary, r.requester].flatMap((t) => t.warnings))];
}

function RequestRow({ request, tab }: { request: RequestSummary; tab: Tab }) {
  return (
    <div class="request-row">
      <div class="row-risk">
        <RiskBadge risk={request.risk} />
      </div>
      <div class="row-main">
        <div class="row-line">
          <VisibleText text={request.action} class="mono action" />
          <span class="muted">on</span>
          <VisibleText text={request.resource} class="mono resource" />
          <WarningMark warnings={rowWarnings(request)} />
          {request.match_required && <span class="chip" title="You will type the code the requester sees">match code</span>}
        </div>
        <div class="row-line row-sub">
          <VisibleText text={request.summary} class="summary" />
        </div>
      </div>
      <div class="row-who">
        <VisibleText text={request.requester} class="requester" />
        <span class="muted small">
          {request.kind === "hoop" && (
            <span class="chip chip-unsigned" title={`Unsigned: fetched from ${visible(request.unsigned_from ?? "")}; hoop signs nothing`}>
              hoop · unsigned
            </span>
          )}{" "}
          {visible(request.gateway_name)}
        </span>
      </div>
      <div class="row-when">
        {tab === "pending" && request.needs_acknowledgement ? (
          <span class="state state-approved" title="Approved at once by breaking glass; acknowledge it">
            glass broken · acknowledge
          </span>
        ) : tab === "pending" ? (
          <>
            {request.expires_at === null ? (
              <span class="muted small" title="hoop reviews do not expire">no expiry</span>
            ) : (
              <Countdown expiresAt={request.expires_at} />
            )}
            <Quorum request={request} />
          </>
        ) : (
          <>
            <span class={`state state-${request.state}`}>{request.state}</span>
            <span class="muted small">{formatTime(request.created_at)}</span>
          </>
        )}
      </div>
    </div>
  );
}

/** The most urgent first: the one that expires soonest; those that never expire (hoop
 * reviews) after them, the oldest first. */
function soonestFirst(rows: readonly RequestSummary[]): RequestSummary[] {
  const key = (r: RequestSummary) => r.expires_at ?? Number.MAX_SAFE_INTEGER;
  return [...rows].sort((a, b) => key(a) - key(b) || a.created_at - b.created_at);
}

/** The gateways the rows come from, by id, with their names: the filter's choices. */
function gatewaysOf(rows: readonly RequestSummary[]): [string, string][] {
  const names = new Map<string, string>();
  for (const r of rows) if (!names.has(r.gateway)) names.set(r.gateway, r.kind === "hoop" ? `${r.gateway_name} (hoop)` : r.gateway_name);
  return [...names].sort((a, b) => a[1].localeCompare(b[1]));
}

/** "All gateways", or the one chosen (with its name, for when it has nothing listed); kept
 * across tabs and visits while the app runs. */
const ALL = "";
let chosenGateway = ALL;
let chosenName = "";

function GatewayFilter({ rows, value, onChange }: { rows: readonly RequestSummary[]; value: string; onChange: (v: string) => void }) {
  const choices = gatewaysOf(rows);
  // A filter is only worth showing when there is something to choose between.
  if (choices.length < 2 && value === ALL) return null;
  const all: [string, string][] = [[ALL, "All gateways"], ...choices];
  if (value !== ALL && !choices.some(([id]) => id === value)) all.push([value, chosenName]);
  return (
    <div class="segmented gateway-filter" role="radiogroup" aria-label="Filter by gateway">
      {all.map(([id, name]) => (
        <label key={id} class={value === id ? "segment segment-on" : "segment"}>
          <input
            type="radio"
            name="gateway-filter"
            value={id}
            checked={value === id}
            onChange={() => {
              if (id !== ALL) chosenName = name;
              onChange(id);
            }}
          />
          {visible(name)}
        </label>
      ))}
    </div>
  );
}

function useHistory(active: boolean) {
  const [rows, setRows] = useState<RequestSummary[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const version = changes.value;
  useEffect(() => {
    if (!active) return;
    let live = true;
    ipc
      .listRequests("all")
      .then((all) => {
        if (live) {
          setRows(all.filter((r) => r.state !== "pending").sort((a, b) => b.created_at - a.created_at));
          setError(null);
        }
      })
      .catch((e: unknown) => {
        if (live) setError(toIpcFailure(e).message);
      });
    return () => {
      live = false;
    };
  }, [active, version]);
  return { rows, error };
}

export function Inbox({ tab }: { tab: Tab }) {
  const history = useHistory(tab === "history");
  const pendingRows = useMemo(() => soonestFirst(pending.value), [pending.value]);
  const [gateway, setGatewayState] = useState(chosenGateway);
  const setGateway = (v: string) => {
    chosenGateway = v;
    setGatewayState(v);
  };
  const allRows = tab === "pending" ? (pendingLoaded.value ? pendingRows : null) : history.rows;
  // Memoised: the list keeps its scroll and focus only while its rows stay the same array.
  const rows = useMemo(
    () => (allRows === null || gateway === ALL ? allRows : allRows.filter((r) => r.gateway === gateway)),
    [allRows, gateway],
  );
  const error = tab === "pending" ? pendingError.value : history.error;

  return (
    <section class="inbox" aria-labelledby="inbox-title">
      <div class="view-head">
        <h1 id="inbox-title">Requests</h1>
        <nav class="tabs" aria-label="Inbox">
          <a
            href={hrefFor({ view: "inbox", tab: "pending" })}
            class={tab === "pending" ? "tab tab-active" : "tab"}
            aria-current={tab === "pending" ? "page" : undefined}
          >
            Pending <span class="count">{pending.value.length}</span>
          </a>
          <a
            href={hrefFor({ view: "inbox", tab: "history" })}
            class={tab === "history" ? "tab tab-active" : "tab"}
            aria-current={tab === "history" ? "page" : undefined}
          >
            History
          </a>
        </nav>
        {allRows !== null && <GatewayFilter rows={allRows} value={gateway} onChange={setGateway} />}
      </div>
      {error !== null && (
        <div class="notice notice-error" role="alert">
          Could not load requests: {error}
        </div>
      )}
      {rows === null ? (
        <p class="muted pad">Loading…</p>
      ) : rows.length === 0 ? (
        <div class="empty">
          <p class="empty-title">
            {gateway !== ALL && allRows !== null && allRows.length > 0
              ? "Nothing from this gateway"
              : tab === "pending"
                ? "Nothing waiting for you"
                : "No decided or expired requests yet"}
          </p>
          <p class="muted">
            {tab === "pending"
              ? "New requests appear here the moment a gateway sends them."
              : "Requests you approved, denied or let expire are kept here."}
          </p>
        </div>
      ) : (
        <>
          <div class="list-head" aria-hidden="true">
            <span>Risk</span>
            <span>Action · resource · summary</span>
            <span>Requester</span>
            <span class="align-end">{tab === "pending" ? "Expires" : "State"}</span>
          </div>
          <VirtualList
            items={rows}
            rowHeight={ROW_HEIGHT}
            itemKey={(r) => r.id}
            label={tab === "pending" ? "Pending requests" : "Request history"}
            onOpen={(r) => navigate({ view: "request", id: r.id })}
            renderRow={(r) => <RequestRow request={r} tab={tab} />}
          />
          <p class="hint muted small">
            ↑ ↓ to move, Enter to open · {rows.length} {rows.length === 1 ? "request" : "requests"}
          </p>
        </>
      )}
    </section>
  );
}
