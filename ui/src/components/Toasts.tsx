import { hrefFor } from "../route";
import { dismissToast, toasts } from "../store";

export function Toasts() {
  return (
    <div class="toasts" role="region" aria-label="Notifications" aria-live="polite">
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
