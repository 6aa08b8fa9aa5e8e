import "@testing-library/jest-dom/vitest";
import { cleanup } from "@testing-library/preact";
import { afterEach, vi } from "vitest";

// The Tauri bridge is replaced in every test: `invoke` is a mock each test programs, and
// `listen` records the handler so a test can push UiEvents.
vi.mock("@tauri-apps/api/core", () => ({ invoke: vi.fn() }));
vi.mock("@tauri-apps/api/event", () => ({ listen: vi.fn(() => Promise.resolve(() => undefined)) }));

afterEach(() => {
  cleanup();
  vi.clearAllMocks();
  location.hash = "";
});
