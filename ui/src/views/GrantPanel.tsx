import { useState } from "preact/hooks";
import type { GrantView } from "../bindings/GrantView";
import type { RequestDetail } from "../bindings/RequestDetail";
import { VisibleText } from "../components/VisibleText";
import { formatTime, now } from "../clock";
import { ipc, toIpcFailure, type IpcFailure } from "../ipc";

/** Whether the approval still lets the action start: not revoked, not used, inside its window. */
export function grantLive(g: GrantView, at: number): boolean {
  return g.revoked_at === null && g.used_at === null && (g.expires_at === null || at < g.expires_at);
}

function GrantLine({ grant }: { grant: GrantView }) {
  return (
    <p class="muted small">
      {grant.expires_at === null ? (
        "The approval lasts until it is used."
      ) : (
        <>
          The approval lets the action start until <span class="nowrap">{formatTime(grant.expires_at)}</span>.
        </>
      )}
      {grant.used_at !== null && (
        <>
          {" "}
          <strong>
            Used at <span class="nowrap">{formatTime(grant.used_at)}</span>: the action started, and the approval admits nothing more.
          </strong>
        </>
      )}
      {grant.revoked_at !== null && grant.revoked_by !== null && (
        <>
          {" "}
          <strong class="revoked">
            Revoked by <VisibleText text={grant.revoked_by} /> at <span class="nowrap">{formatTime(grant.revoked_at)}</span>.
          </strong>
        </>
      )}
    </p>
  );
}

/** An approved request's grant, and revoking your own approval while it is live. */
export function GrantPanel({ request, onDone }: { request: RequestDetail; onDone: () => void }) {
  const s = request.summary;
  const g = request.grant;
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<IpcFailure | null>(null);
  if (g === null) return null;
  const mine = s.decision !== null && s.decision.verdict === "approve" && s.decision.delivery === "delivered";
  const revocable = mine && grantLive(g, now.value);
  const revoke = () => {
    setBusy(true);
    setError(null);
    ipc
      .revoke(s.id, reason)
      .then(() => {
        setOpen(false);
        onDone();
      })
      .catch((e: unknown) => setError(toIpcFailure(e)))
      .finally(() => setBusy(false));
  };
  return (
    <section class="fact-block" aria-labelledby="grant-title">
      <h2 id="grant-title" class="section-title">The approval</h2>
      <GrantLine grant={g} />
      {revocable && !open && (
        <button type="button" class="button" onClick={() => setOpen(true)}>
          Revoke my approval…
        </button>
      )}
      {revocable && open && (
        <div class="revoke-form">
          <label for="revoke-reason">Why (for the audit log)</label>
          <input id="revoke-reason" type="text" value={reason} maxLength={2048} onInput={(e) => setReason(e.currentTarget.value)} />
          <div class="actions">
            <button type="button" class="button button-danger" disabled={busy} onClick={revoke}>
              {busy ? "Waiting for your passkey…" : "Revoke with your passkey"}
            </button>
            <button type="button" class="button" disabled={busy} onClick={() => setOpen(false)}>
              Cancel
            </button>
          </div>
        </div>
      )}
      {error !== null && (
        <div class="notice notice-error" role="alert">
          <code class="error-code">{error.code}</code> {error.message}
        </div>
      )}
    </section>
  );
}

/** A request approved without asking you: break-glass (or the policy). You are told after the
 * fact, and one acknowledgement, anyone's, stops it asking for attention everywhere. */
export function AfterTheFact({ request, onDone }: { request: RequestDetail; onDone: () => void }) {
  const s = request.summary;
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<IpcFailure | null>(null);
  const acknowledge = () => {
    setBusy(true);
    setError(null);
    ipc
      .acknowledge(s.id)
      .then(onDone)
      .catch((e: unknown) => setError(toIpcFailure(e)))
      .finally(() => setBusy(false));
  };
  const g = request.grant;
  const glass = s.mode === "break_glass";
  return (
    <section class="fact-block after-the-fact" aria-labelledby="glass-title">
      <h2 id="glass-title" class="section-title">{glass ? "Glass broken" : "Approved by the policy"}</h2>
      <p>
        {glass ? (
          <>
            <VisibleText text={s.requester} class="strong" /> broke glass: the gateway approved this at once, with the reason shown,
            and tells you after the fact.
          </>
        ) : (
          "The gateway's policy approved this by itself; you are told after the fact."
        )}
      </p>
      {g !== null && <GrantLine grant={g} />}
      {s.needs_acknowledgement ? (
        <button type="button" class="button button-primary" disabled={busy} onClick={acknowledge}>
          {busy ? "Acknowledging…" : "Acknowledge"}
        </button>
      ) : (
        g?.acknowledged_by != null &&
        g.acknowledged_at !== null && (
          <p class="acknowledged">
            ✓ Acknowledged by <VisibleText text={g.acknowledged_by} /> at {formatTime(g.acknowledged_at)}
          </p>
        )
      )}
      {error !== null && (
        <div class="notice notice-error" role="alert">
          <code class="error-code">{error.code}</code> {error.message}
        </div>
      )}
    </section>
  );
}

