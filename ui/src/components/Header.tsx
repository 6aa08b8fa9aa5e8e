import { computed } from "@preact/signals";
import { hrefFor, route } from "../route";
import { authenticator, connections, pendingCount } from "../store";
import { visible } from "../text";

const connection = computed(() => {
  const all = [...connections.value.entries()];
  if (all.length === 0) return { tone: "unknown", text: "Connecting…", detail: "No gateway has reported yet." };
  const down = all.filter(([, c]) => !c.up);
  if (down.length === 0) {
    return { tone: "up", text: "Connected", detail: `${all.length} gateway${all.length === 1 ? "" : "s"} connected` };
  }
  const detail = down.map(([g, c]) => `${visible(g)}: ${c.error ?? "unreachable"}`).join("\n");
  return {
    tone: "down",
    text: down.length === all.length ? "Offline" : `${down.length} of ${all.length} offline`,
    detail,
  };
});

function NavLink({ href, label, current, children }: { href: string; label: string; current: boolean; children?: preact.ComponentChildren }) {
  return (
    <a href={href} class={current ? "nav-link nav-current" : "nav-link"} aria-current={current ? "page" : undefined}>
      {label}
      {children}
    </a>
  );
}

export function Header() {
  const r = route.value;
  const c = connection.value;
  const count = pendingCount.value;
  const inRequests = r.view === "inbox" || r.view === "request";
  return (
    <header class="app-header">
      <a class="brand" href={hrefFor({ view: "inbox", tab: "pending" })} aria-label="Countersign, pending requests">
        <span class="brand-mark" aria-hidden="true">◆</span> Countersign
      </a>
      <nav class="nav" aria-label="Main">
        <NavLink href={hrefFor({ view: "inbox", tab: "pending" })} label="Requests" current={inRequests}>
          {count > 0 && (
            <span class="count count-strong" aria-label={`${count} pending`}>
              {count > 9999 ? "9999+" : count}
            </span>
          )}
        </NavLink>
        <NavLink href={hrefFor({ view: "audit" })} label="Audit log" current={r.view === "audit"} />
        <NavLink href={hrefFor({ view: "settings" })} label="Settings" current={r.view === "settings" || r.view === "pair"} />
      </nav>
      <div class="header-end">
        {authenticator.value?.development_mode === true && (
          <span class="pill pill-dev" title="Development mode — software passkey, not a security key">
            Development mode
          </span>
        )}
        <span class={`connection connection-${c.tone}`} role="status" title={c.detail} aria-label={`Connection: ${c.text}. ${c.detail}`}>
          <span class="dot" aria-hidden="true" /> {c.text}
        </span>
      </div>
    </header>
  );
}
