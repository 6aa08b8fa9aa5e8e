import { now, formatRemaining } from "../clock";

/**
 * Time left until `expiresAt`. Reads the `now` signal itself, so each tick re-renders only
 * this element, never the list or screen around it.
 */
export function Countdown({ expiresAt, label }: { expiresAt: number; label?: string }) {
  const left = expiresAt - now.value;
  const tone = left <= 0 ? "expired" : left < 60 ? "urgent" : left < 300 ? "soon" : "calm";
  return (
    <span
      class={`countdown countdown-${tone}`}
      aria-label={`${label ?? "Expires in"} ${formatRemaining(left)}`}
      data-countdown
    >
      {left <= 0 ? "expired" : formatRemaining(left)}
    </span>
  );
}
