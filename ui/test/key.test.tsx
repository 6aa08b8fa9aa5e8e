import { act, render, screen, waitFor } from "@testing-library/preact";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { PasskeyView } from "../src/bindings/PasskeyView";
import { GatewayPasskeys, SetPin } from "../src/components/KeyActions";
import { KeyDialog } from "../src/components/KeyDialog";
import { keyAsk } from "../src/store";
import { backend, deferred } from "./backend";

describe("the security key dialog", () => {
  it("asks the PIN masked, shows the tries left, sends it once and clears it", async () => {
    const shell = backend({ key_answer: () => null });
    keyAsk.value = { kind: "pin", retries: 7, again: true };
    render(<KeyDialog ask={keyAsk.value} />);
    expect(screen.getByRole("alert").textContent).toContain("Wrong PIN");
    expect(screen.getByText("7 tries left.")).toBeTruthy();
    const field = screen.getByLabelText<HTMLInputElement>("Security key PIN", { selector: "input" });
    expect(field.type).toBe("password");
    await userEvent.type(field, "1234");
    await userEvent.click(screen.getByRole("button", { name: "Unlock" }));
    await waitFor(() => expect(shell.calls("key_answer")).toEqual([{ answer: { answer: "pin", pin: "1234" } }]));
    expect(field.value).toBe("");
    expect(keyAsk.value).toBeNull();
  });

  it("cancels a wait for a touch", async () => {
    const shell = backend({ key_answer: () => null });
    render(<KeyDialog ask={{ kind: "touch", among: 1 }} />);
    expect(screen.getByRole("status").textContent).toBe("Touch your security key.");
    await userEvent.click(screen.getByRole("button", { name: "Cancel" }));
    await waitFor(() => expect(shell.calls("key_answer")).toEqual([{ answer: { answer: "cancel" } }]));
  });

  it("takes a new PIN only when both entries match and are long enough", async () => {
    const shell = backend({ key_answer: () => null });
    render(<KeyDialog ask={{ kind: "new_pin", min_length: 4 }} />);
    await userEvent.type(screen.getByLabelText("New PIN"), "12");
    await userEvent.click(screen.getByRole("button", { name: "Set PIN" }));
    expect(screen.getByRole("alert").textContent).toContain("at least 4");
    await userEvent.type(screen.getByLabelText("New PIN"), "34");
    await userEvent.type(screen.getByLabelText("The same PIN again"), "1235");
    await userEvent.click(screen.getByRole("button", { name: "Set PIN" }));
    expect(screen.getByRole("alert").textContent).toContain("differ");
    await userEvent.type(screen.getByLabelText("The same PIN again"), "1234");
    await userEvent.click(screen.getByRole("button", { name: "Set PIN" }));
    await waitFor(() => expect(shell.calls("key_answer")).toEqual([{ answer: { answer: "pin", pin: "1234" } }]));
  });
});

const KEY = (n: number, extra: Partial<PasskeyView> = {}): PasskeyView => ({
  cred_id: `credential-number-${n}-abcdef`,
  aaguid: null,
  this_device: n === 1,
  created_at: 1_700_000_000,
  last_used_at: null,
  ...extra,
});

describe("the passkeys of a gateway (Settings)", () => {
  it("adds a backup key: the key's questions while it runs, then the new list", async () => {
    const added = deferred<PasskeyView[]>();
    const shell = backend({
      passkey_list: () => [KEY(1)],
      passkey_add: () => added.promise,
      key_answer: () => null,
    });
    render(<GatewayPasskeys gateway="f00d" canAdd />);
    await screen.findByText("credenti…abcdef");
    expect(screen.getByText(/Your only passkey here/)).toBeTruthy();
    const remove = screen.getByRole<HTMLButtonElement>("button", { name: "Remove…" });
    expect(remove.disabled).toBe(true);
    await userEvent.click(screen.getByRole("button", { name: "Add a backup key…" }));
    expect(shell.calls("passkey_add")).toEqual([{ gateway: "f00d" }]);
    await act(() => {
      keyAsk.value = { kind: "next_key" };
    });
    await userEvent.click(await screen.findByRole("button", { name: "Continue" }));
    await waitFor(() => expect(shell.calls("key_answer")).toEqual([{ answer: { answer: "continue" } }]));
    await act(async () => {
      added.resolve([KEY(1), KEY(2)]);
      await added.promise;
    });
    await waitFor(() => expect(screen.getAllByText("credenti…abcdef")).toHaveLength(2));
    expect(screen.queryByText(/Your only passkey here/)).toBeNull();
  });

  it("removes a passkey only after a second click, and shows the gateway's refusal", async () => {
    const shell = backend({
      passkey_list: () => [KEY(1), KEY(2, { cred_id: "second" })],
      passkey_remove: () => Promise.reject({ code: "last_passkey", message: "The gateway keeps the last passkey." }),
    });
    render(<GatewayPasskeys gateway="f00d" canAdd={false} />);
    await screen.findByText("second");
    expect(screen.queryByRole("button", { name: "Add a backup key…" })).toBeNull();
    const buttons = screen.getAllByRole("button", { name: "Remove…" });
    await userEvent.click(buttons[1] as HTMLElement);
    expect(shell.calls("passkey_remove")).toEqual([]);
    await userEvent.click(screen.getByRole("button", { name: "Remove it" }));
    await waitFor(() => expect(shell.calls("passkey_remove")).toEqual([{ gateway: "f00d", credId: "second" }]));
    expect((await screen.findByRole("alert")).textContent).toContain("last_passkey");
  });

  it("sets a PIN: the new-PIN form from the key, then says it is done", async () => {
    const set = deferred<null>();
    const shell = backend({ key_set_pin: () => set.promise, key_answer: () => null });
    render(<SetPin />);
    await userEvent.click(screen.getByRole("button", { name: "Set a PIN on the key…" }));
    await act(() => {
      keyAsk.value = { kind: "new_pin", min_length: 4 };
    });
    await userEvent.type(await screen.findByLabelText("New PIN"), "2468");
    await userEvent.type(screen.getByLabelText("The same PIN again"), "2468");
    await userEvent.click(screen.getByRole("button", { name: "Set PIN" }));
    await waitFor(() => expect(shell.calls("key_answer")).toEqual([{ answer: { answer: "pin", pin: "2468" } }]));
    await act(async () => {
      set.resolve(null);
      await set.promise;
    });
    expect((await screen.findByRole("status")).textContent).toContain("The key has a PIN now");
  });
});
