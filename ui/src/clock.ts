import { signal } from "@preact/signals";

/** Unix seconds, ticking once a second while the app runs. Countdowns read this signal. */
export const now = signal(Math.floor(Date.now() / 1000));

let ticker: ReturnType<typeof setInterval> | undefined;

export function startClock(): () => void {
  if (ticker === undefined) {
    ticker = setInterval(() => {
      now.value = Math.floor(Date.now() / 1000);
    }, 1000);
  }
  return () => {
    clearInterval(ticker);
    ticker = undefined;
  };
}

/** "4m 05s", "2h 10m", "12s"; "expired" at or past zero. */
export function formatRemaining(seconds: number): string {
  if (seconds <= 0) return "expired";
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

/** A local date and time for a Unix second, e.g. "2026-01-01 09:30:12". */
export function formatTime(unixSeconds: number): string {
  const t = new Date(unixSeconds * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ` +
    `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`
  );
}

/** "3m ago", "just now". */
export function formatAgo(unixSeconds: number, at: number): string {
  const s = at - unixSeconds;
  if (s < 10) return "just now";
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
