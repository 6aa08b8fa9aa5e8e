import { signal } from "@preact/signals";

export type Route =
  | { view: "inbox"; tab: "pending" | "history" }
  | { view: "request"; id: string }
  | { view: "audit" }
  | { view: "settings" }
  | { view: "pair" };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#\/?/, "");
  const [head, ...rest] = path.split("/");
  switch (head) {
    case "request": {
      const id = decodeURIComponent(rest.join("/"));
      return id ? { view: "request", id } : { view: "inbox", tab: "pending" };
    }
    case "history":
      return { view: "inbox", tab: "history" };
    case "audit":
      return { view: "audit" };
    case "settings":
      return { view: "settings" };
    case "pair":
      return { view: "pair" };
    default:
      return { view: "inbox", tab: "pending" };
  }
}

export function hrefFor(route: Route): string {
  switch (route.view) {
    case "request":
      return `#/request/${encodeURIComponent(route.id)}`;
    case "inbox":
      return route.tab === "history" ? "#/history" : "#/inbox";
    default:
      return `#/${route.view}`;
  }
}

export const route = signal<Route>(parseRoute(location.hash));

export function navigate(to: Route): void {
  const href = hrefFor(to);
  if (location.hash !== href) location.hash = href;
  route.value = to;
}

export function followHash(): () => void {
  const onHash = () => {
    route.value = parseRoute(location.hash);
  };
  window.addEventListener("hashchange", onHash);
  return () => window.removeEventListener("hashchange", onHash);
}
