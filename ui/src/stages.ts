/**
 * Stages of approval as the app shows them: "dba 1/1 ✓ · managers 0/1".
 */
import type { StageProgressView } from "./bindings/StageProgressView";
import type { StageView } from "./bindings/StageView";
import { visible } from "./text";

/** One stage's progress: "dba 1/1 ✓" (`name` already made visible). */
function part(name: string, approvals: number, min: number, satisfied: boolean): string {
  return `${name} ${Math.min(approvals, min)}/${min}${satisfied ? " ✓" : ""}`;
}

/** One line of progress for every stage, in the request's order. */
export function progressText(stages: readonly StageView[]): string {
  return stages.map((s) => part(s.name.visible, s.approvals, s.min, s.satisfied)).join(" · ");
}

/** Each stage's progress as a status or a receipt reported it, one part per stage ("dba 1/1 ✓"),
 * the stage names made visible. */
export function progressParts(stages: readonly StageProgressView[]): string[] {
  return stages.map((s) => part(visible(s.name), s.approvals, s.min, s.satisfied));
}

/** `stages` with the progress a status reported: one entry per stage, in the same order. */
export function withProgress(stages: readonly StageView[], progress: readonly StageProgressView[]): StageView[] {
  return stages.map((s, i) => {
    const p = progress[i];
    return p === undefined ? s : { ...s, approvals: p.approvals, min: p.min, satisfied: p.satisfied };
  });
}

/** Who a stage takes approvals from, for people to read. */
export function stageSource(s: StageView): string {
  if (s.group !== null) return `group ${s.group.visible}`;
  return s.approvers.join(", ");
}
