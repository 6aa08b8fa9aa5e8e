import { render, screen, waitFor } from "@testing-library/preact";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { KeyDialog } from "../src/components/KeyDialog";
import { keyAsk } from "../src/store";
import { backend } from "./backend";

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
