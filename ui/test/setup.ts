import "@testing-library/jest-dom/vitest";
import { act, cleanup } from "@testing-library/preact";
import { afterEach, vi } from "vitest";

// The Tauri bridge is replaced in every test: `invoke` is a mock each test programs, and
// `listen` records the handler so a test can push UiEvents.
vi.mock("@tauri-apps/api/core", () => ({ invoke: vi.fn() }));
vi.mock("@tauri-apps/api/event", () => ({ listen: vi.fn(() => Promise.resolve(() => undefined)) }));

afterEach(async () => {
  // Preact 11 runs a removed component's effect cleanups after paint, on a timer. Inside `act`
  // they run before `act` returns, while the test's document still exists; otherwise the last
  // test of a file can leave them to fire after the environment is torn down.
  await act(() => {
    cleanup();
  });
  vi.clearAllMocks();
  location.hash = "";
});
