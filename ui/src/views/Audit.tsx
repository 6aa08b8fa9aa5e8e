import { useEffect, useState } from "preact/hooks";
import type { AuditEntryView } from "../bindings/AuditEntryView";
import type { AuditVerifyView } from "../bindings/AuditVerifyView";
import { Spinner } from "../components/Spinner";
import { formatTime } from "../clock";
import { ipc, toIpcFailure, type IpcFailure } from "../ipc";
import { hrefFor } from "../route";
import { changes } from "../store";
import { visible } from "../text";

export const AUDIT_LIMIT = 500;

function VerifyOutcome({ result }: { result: AuditVerifyView }) {
  if (result.ok) {
    return (
      <div class="notice notice-ok" role="status">
        <strong>Chain intact.</strong> {result.entries} {result.entries === 1 ? "entry" : "entries"} verified
        {result.head !== null && (
          <>
            {" "}
            · head <span class="mono digest">{result.head}</span>
          </>
        )}
      </div>
    );
  }
  return (
    <div class="notice notice-error" role="alert">
      <strong>The audit chain is broken.</strong> {result.problem ?? "No detail given."}
      <span class="muted small block">{result.entries} entries checked. Keep this log: it is evidence.</span>
    </div>
  );
}

function AuditRow({ entry }: { entry: AuditEntryView }) {
  return (
    <li class="audit-entry">
      <div class="audit-meta">
        <span class="mono seq">#{entry.seq}</span>
        <span class="muted">{formatTime(entry.at)}</span>
        <span class="chip">{entry.kind}</span>
        {entry.request_id !== null && (
          <a class="mono small" href={hrefFor({ view: "request", id: entry.request_id })}>
            {visible(entry.request_id)}
          </a>
        )}
      </div>
      <pre class="audit-detail">{entry.detail}</pre>
    </li>
  );
}

export function Audit() {
  const [query, setQuery] = useState("");
  const [entries, setEntries] = useState<AuditEntryView[] | null>(null);
  const [error, setError] = useState<IpcFailure | null>(null);
  const [verify, setVerify] = useState<AuditVerifyView | "running" | null>(null);
  const [exported, setExported] = useState<string | null>(null);
  const [exporting, setExporting] = useState(false);
  const [actionError, setActionError] = useState<IpcFailure | null>(null);
  const version = changes.value;

  useEffect(() => {
    let live = true;
    const q = query.trim();
    const timer = setTimeout(() => {
      ipc
        .auditList(q === "" ? null : q, AUDIT_LIMIT)
        .then((list) => {
          if (live) {
            setEntries(list);
            setError(null);
          }
        })
        .catch((e: unknown) => {
          if (live) setError(toIpcFailure(e));
        });
    }, 200);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [query, version]);

  const runVerify = async () => {
    setVerify("running");
    setActionError(null);
    try {
      setVerify(await ipc.auditVerify());
    } catch (e) {
      setVerify(null);
      setActionError(toIpcFailure(e));
    }
  };

  const runExport = async () => {
    setExporting(true);
    setExported(null);
    setActionError(null);
    try {
      setExported(await ipc.auditExport());
    } catch (e) {
      setActionError(toIpcFailure(e));
    } finally {
      setExporting(false);
    }
  };

  return (
    <section class="audit" aria-labelledby="audit-title">
      <div class="view-head">
        <h1 id="audit-title">Audit log</h1>
        <div class="toolbar">
          <button type="button" class="button" onClick={() => void runVerify()} disabled={verify === "running"}>
            {verify === "running" ? <Spinner label="Verifying" /> : null} Verify chain
          </button>
          <button type="button" class="button" onClick={() => void runExport()} disabled={exporting}>
            Export
          </button>
        </div>
      </div>
      <p class="muted small">
        Every request seen and every decision made, hash-chained: an edit, deletion or reordering is found by
        Verify.
      </p>
      {verify !== null && verify !== "running" && <VerifyOutcome result={verify} />}
      {exported !== null && (
        <div class="notice notice-ok" role="status">
          Exported to <span class="mono">{visible(exported)}</span>
        </div>
      )}
      {actionError !== null && (
        <div class="notice notice-error" role="alert">
          <code class="error-code">{actionError.code}</code> {actionError.message}
        </div>
      )}
      <div class="field search">
        <label for="audit-search">Search</label>
        <input
          id="audit-search"
          type="search"
          class="input"
          placeholder="kind, request id or detail"
          value={query}
          onInput={(e) => setQuery(e.currentTarget.value)}
        />
      </div>
      {error !== null && (
        <div class="notice notice-error" role="alert">
          <code class="error-code">{error.code}</code> {error.message}
        </div>
      )}
      {entries === null ? (
        <p class="muted pad">Loading…</p>
      ) : entries.length === 0 ? (
        <p class="muted pad">{query.trim() === "" ? "The audit log is empty." : "No entry matches."}</p>
      ) : (
        <>
          <ol class="audit-list" aria-label="Audit entries">
            {entries.map((e) => (
              <AuditRow key={e.seq} entry={e} />
            ))}
          </ol>
          {entries.length >= AUDIT_LIMIT && (
            <p class="muted small">Showing the first {AUDIT_LIMIT} entries; narrow the search to see others.</p>
          )}
        </>
      )}
    </section>
  );
}
