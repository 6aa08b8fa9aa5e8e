import { render } from "preact";
import { App } from "./App";
import "./styles/app.css";

async function start(): Promise<void> {
  // The screenshot preview: a fake backend, only in the dev server, only outside Tauri,
  // only when asked for with `?mock`. Production builds drop this branch entirely.
  if (import.meta.env.DEV && !("__TAURI_INTERNALS__" in window) && new URLSearchParams(location.search).has("mock")) {
    const { installMockBackend } = await import("./mock");
    installMockBackend();
  }
  const root = document.getElementById("app");
  if (root) render(<App />, root);
}

void start();
