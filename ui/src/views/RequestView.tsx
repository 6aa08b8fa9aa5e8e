import { Fragment } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import type { RequestDetail } from "../bindings/RequestDetail";
import type { StageView } from "../bindings/StageView";
import { Countdown } from "../components/Countdown";
import { RiskBadge } from "../components/RiskBadge";
import { Escaped, TextWarnings, VisibleText, WarningMark } from "../components/VisibleText";
import { formatTime, now } from "../clock";
import { ipc, toIpcFailure, type IpcFailure } from "../ipc";
import { hrefFor, navigate } from "../route";
import { progressText, stageSource } from "../stages";
import { changes, scheduleReload } from "../store";
import { visible } from "../text";
import { DecisionPanel } from "./DecisionPanel";
import { AfterTheFact, GrantPanel } from "./GrantPanel";
import { HoopReview, Origin } from "./HoopReview";

function Who({ request }: { request: RequestDetail }) {
  const s = request.summary;
  return (
    <section class="fact-block" aria-labelledby="who-title">
      <h2 id="who-title" class="section-title">Who</h2>
      <p class="who">
        <VisibleText text={s.requester} class="requester strong" /> <WarningMark warnings={s.requester.warnings} />
      </p>
      <p class="muted small">
        {s.kind === "hoop" ? (
          <>
            The session's user as hoop at <strong>{visible(s.gateway_name)}</strong> reports it: hoop authenticated them, and
            nobody signed it.
          </>
        ) : (
          <>
            Identity as authenticated by the gateway <strong>{visible(s.gateway_name)}</strong>, not a name the requester typed.
          </>
        )}
      </p>
      {request.own_request && (
        <p class="own-request" role="alert">
          This is your own request. Approving your own action defeats the point of a second pair of eyes.
        </p>
      )}
    </section>
  );
}

function What({ request }: { request: RequestDetail }) {
  const s = request.summary;
  return (
    <section class="fact-block" aria-labelledby="what-title">
      <h2 id="what-title" class="section-title">What will run</h2>
      <dl class="facts-list">
        <dt>Action</dt>
        <dd>
          <VisibleText text={s.action} class="mono" /> <WarningMark warnings={s.action.warnings} />
        </dd>
        <dt>Resource</dt>
        <dd>
          <VisibleText text={s.resource} class="mono" /> <WarningMark warnings={s.resource.warnings} />
        </dd>
        <dt>Summary</dt>
        <dd>
          <VisibleText text={s.summary} /> <WarningMark warnings={s.summary.warnings} />
        </dd>
      </dl>
      <div class="detail-head">
        <span class="label">Exact detail</span> <WarningMark warnings={request.detail.warnings} />
      </div>
      <pre class="detail" aria-label="Exact detail of the action" tabIndex={0}>
        <Escaped value={request.detail.visible} />
      </pre>
    </section>
  );
}

function Why({ request }: { request: RequestDetail }) {
  return (
    <section class="fact-block" aria-labelledby="why-title">
      <h2 id="why-title" class="section-title">Why</h2>
      <p class="muted small">In the requester's own words: untrusted, not checked by anyone.</p>
      <blockquote class="reason">
        {request.reason.visible === "" ? <span class="muted">(no reason given)</span> : <Escaped value={request.reason.visible} />}
      </blockquote>
    </section>
  );
}

function When({ request }: { request: RequestDetail }) {
  const s = request.summary;
  const notYet = request.not_before > now.value;
  return (
    <section class="fact-block" aria-labelledby="when-title">
      <h2 id="when-title" class="section-title">When</h2>
      <dl class="facts-list">
        <dt>Created</dt>
        <dd>{formatTime(s.created_at)}</dd>
        {notYet && (
          <>
            <dt>Valid from</dt>
            <dd>{formatTime(request.not_before)}</dd>
          </>
        )}
        <dt>Expires</dt>
        <dd>
          {s.expires_at === null ? (
            "never: a hoop review waits until it is decided"
          ) : (
            <>
              {formatTime(s.expires_at)} · <Countdown expiresAt={s.expires_at} />
            </>
          )}
        </dd>
      </dl>
    </section>
  );
}

function StageLine({ stage }: { stage: StageView }) {
  const share = stage.min > 0 ? Math.min(1, stage.approvals / stage.min) : 0;
  return (
    <li class="stage">
      <div class="stage-head">
        <strong>{stage.name.visible}</strong>{" "}
        <span>
          {Math.min(stage.approvals, stage.min)} of {stage.min}
        </span>
        {stage.satisfied && <span class="stage-done" aria-label="satisfied"> ✓</span>}{" "}
        <span class="muted small">from {stageSource(stage)}</span>
      </div>
      <div class="meter" role="meter" aria-valuemin={0} aria-valuemax={stage.min} aria-valuenow={stage.approvals} aria-label={`Stage ${stage.name.visible}`}>
        <div class="meter-fill" style={{ width: `${share * 100}%` }} />
      </div>
    </li>
  );
}

/** Who a request approved without asking was told of: its stages, which nobody had to meet. */
function WhoIsTold({ request }: { request: RequestDetail }) {
  return (
    <section class="fact-block" aria-labelledby="told-title">
      <h2 id="told-title" class="section-title">Who is told</h2>
      <ul class="stages">
        {request.summary.stages.map((st) => (
          <li key={st.name.visible} class="stage">
            <strong>{st.name.visible}</strong>{" "}
            <span class="muted small">{st.group !== null ? <>everyone in group {st.group.visible}</> : st.approvers.map((a) => visible(a)).join(", ")}</span>
          </li>
        ))}
      </ul>
      <p class="muted small">Nobody had to approve it; one acknowledgement, anyone's, is enough.</p>
    </section>
  );
}

function HowMany({ request }: { request: RequestDetail }) {
  const s = request.summary;
  if (s.mode !== "ask") return <WhoIsTold request={request} />;
  const voted = new Set(request.votes.map((v) => v.approver));
  const waiting = request.approvers.filter((a) => !voted.has(a));
  const staged = s.stages.length > 1 || s.stages.some((st) => st.group !== null);
  const share = s.min_approvals > 0 ? Math.min(1, s.approvals / s.min_approvals) : 0;
  return (
    <section class="fact-block" aria-labelledby="quorum-title">
      <h2 id="quorum-title" class="section-title">How many</h2>
      {staged ? (
        <>
          <p class="quorum-text">
            <strong>{progressText(s.stages)}</strong>
          </p>
          <ul class="stages">
            {s.stages.map((st) => (
              <StageLine key={st.name.visible} stage={st} />
            ))}
          </ul>
          {s.stages.length > 1 && (
            <p class="muted small">
              Every stage must be met.{" "}
              {request.distinct_people ? "One person's approval counts for one stage only." : "One person's approval may count for several stages."}
            </p>
          )}
        </>
      ) : (
        <>
          <p class="quorum-text">
            <strong>
              {s.approvals} of {s.min_approvals}
            </strong>{" "}
            approvals
          </p>
          <div class="meter" role="meter" aria-valuemin={0} aria-valuemax={s.min_approvals} aria-valuenow={s.approvals} aria-label="Quorum progress">
            <div class="meter-fill" style={{ width: `${share * 100}%` }} />
          </div>
        </>
      )}
      <ul class="votes">
        {request.votes.map((v) => (
          <li key={`${v.approver}-${v.at}`}>
            <span class={`vote vote-${v.verdict}`}>{v.verdict === "approve" ? "approved" : "denied"}</span>{" "}
            {visible(v.approver)} <span class="muted small">{formatTime(v.at)}</span>
            {staged && v.stages.length > 0 && <span class="muted small"> · counts for {v.stages.map((n) => visible(n)).join(", ")}</span>}
          </li>
        ))}
        {waiting.map((a) => (
          <li key={a} class="muted">
            <span class="vote vote-waiting">waiting</span> {visible(a)}
          </li>
        ))}
      </ul>
    </section>
  );
}

function WhyYou({ request }: { request: RequestDetail }) {
  const rows: [string, string][] = [];
  const told = request.summary.mode !== "ask";
  if (request.why_asked.length > 0) rows.push([told ? "Told because" : "Why you", request.why_asked.map((w) => w.visible).join("; ")]);
  if (request.policy_rule !== null) rows.push(["Policy rule", request.policy_rule.visible]);
  if (request.grant_seconds !== null) rows.push(["Approval lasts", `${formatDuration(request.grant_seconds)} from approval, for the action to start`]);
  if (request.windows.length > 0) rows.push(["Allowed", request.windows.map((w) => w.visible).join("; ")]);
  if (rows.length === 0) return null;
  return (
    <section class="fact-block" aria-labelledby="why-you-title">
      <h2 id="why-you-title" class="section-title">{told ? "Why you were told" : "Why you were asked"}</h2>
      <dl class="facts-list">
        {rows.map(([k, v]) => (
          <Fragment key={k}>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </Fragment>
        ))}
      </dl>
    </section>
  );
}

function formatDuration(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

export function RequestView({ id }: { id: string }) {
  const [request, setRequest] = useState<RequestDetail | null>(null);
  const [error, setError] = useState<IpcFailure | null>(null);
  const [reloads, setReloads] = useState(0);
  const version = changes.value;

  useEffect(() => {
    let live = true;
    ipc
      .getRequest(id)
      .then((r) => {
        if (live) {
          setRequest(r);
          setError(null);
        }
      })
      .catch((e: unknown) => {
        if (live) setError(toIpcFailure(e));
      });
    return () => {
      live = false;
    };
  }, [id, version, reloads]);

  // Escape, when no decision form is open, goes back to the list.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Escape" || e.defaultPrevented) return;
      if (document.querySelector(".decision-form, .overlay")) return;
      navigate({ view: "inbox", tab: "pending" });
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);

  const onDecided = useCallback(() => {
    setReloads((n) => n + 1);
    scheduleReload();
  }, []);

  if (error !== null && request === null) {
    return (
      <section class="request-view">
        <a class="back" href={hrefFor({ view: "inbox", tab: "pending" })}>
          ← Requests
        </a>
        <div class="notice notice-error" role="alert">
          <code class="error-code">{error.code}</code> {error.message}
        </div>
      </section>
    );
  }
  if (request === null || request.summary.id !== id) return <p class="muted pad">Loading request…</p>;

  const s = request.summary;
  return (
    <article class="request-view" aria-labelledby="request-title">
      <header class="request-head">
        <a class="back" href={hrefFor({ view: "inbox", tab: "pending" })}>
          ← Requests
        </a>
        <div class="request-title-line">
          <RiskBadge risk={s.risk} />
          <h1 id="request-title">
            <VisibleText text={s.action} class="mono" /> <span class="muted">on</span>{" "}
            <VisibleText text={s.resource} class="mono" />
          </h1>
          <span class={`state state-${s.state}`}>{s.state}</span>
          {request.grant?.revoked_at != null && <span class="state state-denied">revoked</span>}
        </div>
      </header>
      <Origin request={request} />
      <TextWarnings
        fields={[
          { name: "Requester", text: s.requester },
          { name: "Action", text: s.action },
          { name: "Resource", text: s.resource },
          { name: "Summary", text: s.summary },
          { name: "Detail", text: request.detail },
          { name: "Reason", text: request.reason },
          ...(request.hoop?.analysis != null
            ? [
                { name: "hoop's analysis", text: request.hoop.analysis.title },
                { name: "hoop's explanation", text: request.hoop.analysis.explanation },
              ]
            : []),
        ]}
      />
      <div class="decision-grid">
        <div class="decision-main">
          <Who request={request} />
          <What request={request} />
          <Why request={request} />
        </div>
        <aside class="decision-side">
          {s.mode === "ask" ? (
            <DecisionPanel key={s.id} request={request} onDecided={onDecided} />
          ) : (
            <AfterTheFact key={s.id} request={request} onDone={onDecided} />
          )}
          {s.mode === "ask" && request.grant !== null && <GrantPanel key={`grant-${s.id}`} request={request} onDone={onDecided} />}
          <When request={request} />
          {request.hoop !== null ? <HoopReview request={request} hoop={request.hoop} /> : <HowMany request={request} />}
          <WhyYou request={request} />
          <section class="fact-block" aria-labelledby="digest-title">
            <h2 id="digest-title" class="section-title">{request.hoop !== null ? "Script SHA-256" : "Request digest"}</h2>
            <p class="mono digest">{request.digest}</p>
            {request.hoop !== null && <p class="muted small">Your signed decision names this digest of the script shown above.</p>}
          </section>
        </aside>
      </div>
    </article>
  );
}
