import { useEffect, useRef, useState } from "preact/hooks";
import type { KeyAsk } from "../bindings/KeyAsk";
import { ipc, toIpcFailure } from "../ipc";
import { keyAsk, showToast } from "../store";

/** Sends an answer to the key; a failure (nothing was waiting any more) is shown, not thrown. */
function answer(a: Parameters<typeof ipc.keyAnswer>[0]): void {
  keyAsk.value = null;
  ipc.keyAnswer(a).catch((e: unknown) => {
    const f = toIpcFailure(e);
    showToast({ tone: "warning", title: "The security key did not take the answer", message: f.message });
  });
}

/** "Touch your security key", the PIN dialog, the new-PIN form and "plug in the next key",
 * as the running ceremony asks for them, each with Cancel. The PIN field is masked, never
 * kept: it is cleared the moment it is sent. */
export function KeyDialog({ ask }: { ask: KeyAsk | null }) {
  if (ask === null) {
    return (
      <>
        <p>Touch your security key when it blinks. Enter its PIN if it asks for one.</p>
        <CancelButton />
      </>
    );
  }
  switch (ask.kind) {
    case "insert":
      return (
        <>
          <p class="key-ask">Insert your security key.</p>
          <CancelButton />
        </>
      );
    case "touch":
      return (
        <>
          <p class="key-ask" role="status">
            {ask.among > 1 ? "Touch the security key you want to use." : "Touch your security key."}
          </p>
          <CancelButton />
        </>
      );
    case "pin":
      return <PinForm retries={ask.retries} again={ask.again} />;
    case "new_pin":
      return <NewPinForm minLength={ask.min_length} />;
    case "next_key":
      return (
        <>
          <p class="key-ask">
            Your registered key confirmed it is you. Now unplug it, plug in the new key, and continue.
          </p>
          <div class="decision-buttons">
            <button type="button" class="button button-primary" onClick={() => answer({ answer: "continue" })}>
              Continue
            </button>
            <CancelButton inline />
          </div>
        </>
      );
  }
}

function CancelButton({ inline = false }: { inline?: boolean }) {
  const button = (
    <button type="button" class="button" onClick={() => answer({ answer: "cancel" })}>
      Cancel
    </button>
  );
  return inline ? button : <div class="decision-buttons">{button}</div>;
}

function PinForm({ retries, again }: { retries: number | null; again: boolean }) {
  const [pin, setPin] = useState("");
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), [again, retries]);
  function submit(e: Event) {
    e.preventDefault();
    if (pin === "") return;
    const sent = pin;
    setPin("");
    if (input.current !== null) input.current.value = "";
    answer({ answer: "pin", pin: sent });
  }
  return (
    <form class="decision-form key-pin" onSubmit={submit} aria-label="Security key PIN">
      {again && (
        <p class="field-error" role="alert">
          Wrong PIN.
        </p>
      )}
      <div class="field">
        <label for="key-pin">Security key PIN</label>
        <input
          ref={input}
          id="key-pin"
          class="input mono"
          type="password"
          autoComplete="off"
          spellcheck={false}
          value={pin}
          onInput={(e) => setPin(e.currentTarget.value)}
        />
        {retries !== null && (
          <span class={retries <= 3 ? "field-error small" : "muted small"}>
            {retries === 1 ? "1 try left before the key blocks its PIN." : `${retries} tries left.`}
          </span>
        )}
      </div>
      <div class="decision-buttons">
        <button type="submit" class="button button-primary" disabled={pin === ""}>
          Unlock
        </button>
        <CancelButton inline />
      </div>
    </form>
  );
}

function NewPinForm({ minLength }: { minLength: number }) {
  const [first, setFirst] = useState("");
  const [second, setSecond] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  function submit(e: Event) {
    e.preventDefault();
    if (Array.from(first).length < minLength) {
      setProblem(`The PIN needs at least ${minLength} characters.`);
      return;
    }
    if (first !== second) {
      setProblem("The two entries differ.");
      setSecond("");
      return;
    }
    const sent = first;
    setFirst("");
    setSecond("");
    answer({ answer: "pin", pin: sent });
  }
  return (
    <form class="decision-form key-pin" onSubmit={submit} aria-label="New security key PIN">
      <p>This key has no PIN yet. Choose one; the key asks for it from now on.</p>
      <div class="field">
        <label for="new-pin">New PIN</label>
        <input id="new-pin" class="input mono" type="password" autoComplete="off" value={first} onInput={(e) => setFirst(e.currentTarget.value)} />
      </div>
      <div class="field">
        <label for="new-pin-again">The same PIN again</label>
        <input id="new-pin-again" class="input mono" type="password" autoComplete="off" value={second} onInput={(e) => setSecond(e.currentTarget.value)} />
      </div>
      {problem !== null && (
        <p class="field-error" role="alert">
          {problem}
        </p>
      )}
      <div class="decision-buttons">
        <button type="submit" class="button button-primary">
          Set PIN
        </button>
        <CancelButton inline />
      </div>
    </form>
  );
}
