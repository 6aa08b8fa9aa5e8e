import { hrefFor } from "../route";
import { dismissToast, toasts } from "../store";

/**
 * The toasts. Floating in a corner by default; `inline` puts them in the page's flow above the
 * view instead, for screens where nothing may cover what the person checks (the pairing
 * confirmation's key fingerprint).
 */
export function Toasts({ inline = false }: { inline?: boolean }) {
  return (
    <div
      class={inline ? "toasts toasts-inline" : "toasts"}
      role="region"
      aria-label="Notifications"
      aria-live="polite"
    >
      {toasts.value.map((t) => (
        <div key={t.id} class={`toast toast-${t.tone}`} role={t.tone === "error" ? "alert" : "status"}>
          <div class="toast-body">
            <strong>{t.title}</strong>
            <span>{t.message}</span>
            {t.requestId !== undefined && (
              <a href={hrefFor({ view: "request", id: t.requestId })} onClick={() => dismissToast(t.id)}>
                Open the request
              </a>
            )}
          </div>
          <button type="button" class="toast-close" aria-label="Dismiss" onClick={() => dismissToast(t.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
