import type { Text } from "../bindings/Text";

const ESCAPE = /(\\u\{[0-9A-F]{1,6}\})/;

/**
 * A string already made visible, as text nodes, with each `\u{...}` escape marked so it
 * stands out. Never HTML: the pieces are children, not markup.
 */
export function Escaped({ value }: { value: string }) {
  if (!value.includes("\\u{")) return <>{value}</>;
  const parts = value.split(ESCAPE);
  return (
    <>
      {parts.map((part, i) =>
        i % 2 === 1 ? (
          <mark key={i} class="escape" title="A hidden character, shown escaped">
            {part}
          </mark>
        ) : (
          part
        ),
      )}
    </>
  );
}

/**
 * A `Text` from the shell: only `.visible` (hidden characters already escaped as `\u{...}`),
 * never the raw form, never as HTML.
 */
export function VisibleText({ text, class: className }: { text: Text; class?: string }) {
  return (
    <span class={className}>
      <Escaped value={text.visible} />
    </span>
  );
}

/** The display warnings of one or more fields, shown prominently. */
export function TextWarnings({ fields }: { fields: { name: string; text: Text }[] }) {
  const flagged = fields.filter((f) => f.text.warnings.length > 0);
  if (flagged.length === 0) return null;
  return (
    <div class="text-warnings" role="alert">
      <strong>Look closely: this request contains misleading text</strong>
      <ul>
        {flagged.flatMap((f) =>
          f.text.warnings.map((w) => (
            <li key={`${f.name}:${w}`}>
              <span class="warning-field">{f.name}</span> {w}
            </li>
          )),
        )}
      </ul>
    </div>
  );
}

/** A marker next to a field that has warnings. */
export function WarningMark({ warnings }: { warnings: readonly string[] }) {
  if (warnings.length === 0) return null;
  const said = warnings.join("; ");
  return (
    <span class="warning-mark" title={said} aria-label={`Warning: ${said}`}>
      ⚠ check text
    </span>
  );
}
