import type { HoopFacts } from "../bindings/HoopFacts";
import type { RequestDetail } from "../bindings/RequestDetail";
import { Escaped, WarningMark } from "../components/VisibleText";
import { visible } from "../text";

/** What vouches for what the screen shows: the gateway's signature, or, for a hoop review,
 * nothing but the TLS connection it was fetched over. */
export function Origin({ request }: { request: RequestDetail }) {
  const s = request.summary;
  if (s.kind !== "countersign" || request.hoop !== null) {
    // Anything not a Countersign gateway's request is unsigned, whatever else it carries.
    const provenance = request.hoop?.provenance ?? `unsigned: fetched from ${s.unsigned_from ?? "an unsigned source"}`;
    return (
      <p class="origin origin-unsigned" role="note">
        <strong>⚠ {visible(provenance)}</strong>
        <span class="origin-what">hoop signs nothing: this is what hoop sent, and Countersign vouches only for your own decision.</span>
      </p>
    );
  }
  return (
    <p class="origin origin-signed" role="note">
      <strong>✓ Signed</strong>
      <span class="origin-what">
        by the gateway <strong>{visible(s.gateway_name)}</strong>, whose key this device paired with; checked on arrival.
      </span>
    </p>
  );
}

function duration(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

function statusWord(status: string): string {
  return status === "REJECTED" ? "rejected" : status.toLowerCase();
}

/** A hoop review's own facts: its groups against hoop's minimum, a jit review's access, and
 * hoop's own risk analysis. */
export function HoopReview({ request, hoop }: { request: RequestDetail; hoop: HoopFacts }) {
  const s = request.summary;
  return (
    <section class="fact-block" aria-labelledby="hoop-title">
      <h2 id="hoop-title" class="section-title">hoop review</h2>
      <dl class="facts-list">
        <dt>Status in hoop</dt>
        <dd>{statusWord(hoop.status)}</dd>
        <dt>Type</dt>
        <dd>
          {hoop.review_type === "jit" ? "just-in-time access" : "one-time command"}
          {hoop.access_seconds !== null && <> · access for {duration(hoop.access_seconds)} once approved</>}
        </dd>
        {hoop.rule !== null && (
          <>
            <dt>hoop rule</dt>
            <dd>
              {hoop.rule.visible} <WarningMark warnings={hoop.rule.warnings} />
            </dd>
          </>
        )}
        {hoop.rejection_reason !== null && (
          <>
            <dt>Rejected because</dt>
            <dd>
              <Escaped value={hoop.rejection_reason.visible} /> <WarningMark warnings={hoop.rejection_reason.warnings} />
            </dd>
          </>
        )}
      </dl>
      <p class="quorum-text">
        <strong>
          {s.approvals} of {s.min_approvals}
        </strong>{" "}
        required group {s.min_approvals === 1 ? "approval" : "approvals"} so far; one rejection rejects it.
      </p>
      <ul class="hoop-groups">
        {hoop.groups.map((g) => (
          <li key={g.group.visible}>
            <span class={`vote vote-${g.status === "APPROVED" ? "approve" : g.status === "REJECTED" ? "deny" : "waiting"}`}>
              {statusWord(g.status)}
            </span>{" "}
            {g.group.visible} <WarningMark warnings={g.group.warnings} />
            {g.reviewed_by !== null && (
              <span class="muted small">
                {" "}
                · by {g.reviewed_by.visible} <WarningMark warnings={g.reviewed_by.warnings} />
              </span>
            )}
          </li>
        ))}
      </ul>
      {hoop.analysis !== null && (
        <div class="hoop-analysis">
          <h3 class="label">hoop's risk analysis</h3>
          <p>
            <strong>{hoop.analysis.risk_level.visible}</strong>: {hoop.analysis.title.visible}{" "}
            <WarningMark warnings={[...hoop.analysis.risk_level.warnings, ...hoop.analysis.title.warnings]} />
          </p>
          <p class="muted small">
            <Escaped value={hoop.analysis.explanation.visible} /> <WarningMark warnings={hoop.analysis.explanation.warnings} />
          </p>
        </div>
      )}
    </section>
  );
}
