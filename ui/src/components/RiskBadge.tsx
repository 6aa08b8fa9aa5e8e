const RISKS = ["low", "medium", "high", "critical"] as const;
type Risk = (typeof RISKS)[number];

function isRisk(value: string): value is Risk {
  return (RISKS as readonly string[]).includes(value);
}

/** Colour and text: the word is always there, colour only reinforces it. */
export function RiskBadge({ risk }: { risk: string }) {
  const known = isRisk(risk) ? risk : "unknown";
  return (
    <span class={`risk risk-${known}`} title={`Risk: ${risk}`}>
      {known === "unknown" ? risk || "unknown" : known}
    </span>
  );
}
