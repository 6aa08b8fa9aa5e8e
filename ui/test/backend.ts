import { invoke } from "@tauri-apps/api/core";
import { vi } from "vitest";

export type Handler = (args: Record<string, unknown>) => unknown;

/**
 * Programs the mocked `invoke`: each command answers with its handler's value (a thrown value
 * or rejected promise becomes the rejection). Unknown commands reject like the shell would.
 */
export function backend(handlers: Record<string, Handler>) {
  const mock = vi.mocked(invoke);
  mock.mockImplementation(async (cmd: string, args?: unknown) => {
    const handler = handlers[cmd];
    // The shell rejects an unknown command with a bare string, as Tauri does.
    if (!handler) throw `command ${cmd} not found`;
    return await Promise.resolve(handler((args ?? {}) as Record<string, unknown>));
  });
  return {
    calls: (cmd: string) => mock.mock.calls.filter(([c]) => c === cmd).map(([, a]) => a as Record<string, unknown>),
  };
}

/** A promise the test settles by hand. */
export function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
