import { useEffect } from "preact/hooks";
import { Header } from "./components/Header";
import { Toasts } from "./components/Toasts";
import { startClock } from "./clock";
import { ipc, onUiEvent } from "./ipc";
import { followHash, navigate, route } from "./route";
import { applyTheme, authenticator, firstRun, handleUiEvent, pairedThisSession, reloadPending, settings } from "./store";
import { Audit } from "./views/Audit";
import { Inbox } from "./views/Inbox";
import { Pairing } from "./views/Pairing";
import { RequestView } from "./views/RequestView";
import { SettingsView } from "./views/SettingsView";

/** Everything that happens once at start: subscriptions first, then the initial loads. */
export async function boot(): Promise<() => void> {
  const stops = [startClock(), followHash()];
  try {
    stops.push(await onUiEvent(handleUiEvent));
  } catch {
    // Without the event channel the app still works; views reload on navigation.
  }
  const loads = [
    reloadPending(),
    ipc.authenticatorInfo().then((a) => {
      authenticator.value = a;
    }),
    ipc.getSettings().then((s) => {
      settings.value = s;
      applyTheme(s.theme);
    }),
    ipc.listGateways().then((gateways) => {
      // A pairing that committed after this list was read has already told the page.
      firstRun.value = gateways.length === 0 && !pairedThisSession.value;
      const view = route.value.view;
      if (firstRun.value && (view === "inbox" || view === "request")) navigate({ view: "pair" });
    }),
    ipc.pendingNavigation().then((id) => {
      if (id !== null) navigate({ view: "request", id });
    }),
  ];
  await Promise.allSettled(loads);
  return () => stops.forEach((stop) => stop());
}

function Page() {
  const r = route.value;
  switch (r.view) {
    case "inbox":
      return <Inbox tab={r.tab} />;
    case "request":
      return <RequestView id={r.id} />;
    case "audit":
      return <Audit />;
    case "settings":
      return <SettingsView />;
    case "pair":
      return <Pairing firstRun={firstRun.value} />;
  }
}

export function App() {
  useEffect(() => {
    let stop: (() => void) | undefined;
    let live = true;
    void boot().then((s) => {
      if (live) stop = s;
      else s();
    });
    return () => {
      live = false;
      stop?.();
    };
  }, []);

  // A new page starts with focus at its top, so keyboard users do not stay on a stale link.
  useEffect(() => {
    const active = document.activeElement;
    if (active === null || active === document.body || active.closest(".app-header")) {
      document.getElementById("main")?.focus({ preventScroll: true });
    }
  }, [route.value]);

  return (
    <>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <Header />
      <main id="main" class="page" tabIndex={-1}>
        {/* Pairing shows a key fingerprint to compare: nothing may float over it. */}
        {route.value.view === "pair" && <Toasts inline />}
        <Page />
      </main>
      {route.value.view !== "pair" && <Toasts />}
    </>
  );
}
