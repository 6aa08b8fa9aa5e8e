import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { visible } from "../src/text";

const root = resolve(__dirname, "..");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

const source = files(join(root, "src")).filter((f) => /\.(ts|tsx|css)$/.test(f));

describe("display safety", () => {
  it("never injects HTML", () => {
    for (const file of source) {
      const text = readFileSync(file, "utf8");
      expect(text, file).not.toMatch(/dangerouslySetInnerHTML|innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    }
  });

  it("never renders the raw form of a Text outside the mock backend", () => {
    for (const file of source.filter((f) => !f.endsWith("mock.ts") && !f.includes("bindings"))) {
      expect(readFileSync(file, "utf8"), file).not.toMatch(/\.raw\b/);
    }
  });

  it("loads nothing remote (CSP default-src 'self')", () => {
    for (const file of [...source, join(root, "index.html")]) {
      const text = readFileSync(file, "utf8");
      expect(text, file).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
      expect(text, file).not.toMatch(/@import|url\(\s*["']?(https?:)?\/\//);
    }
    expect(readFileSync(join(root, "index.html"), "utf8")).not.toMatch(/<style|style=|<script>(?!<)/);
  });

  it("makes hidden characters in plain strings visible like the engine does", () => {
    expect(visible("alice\u202E@example.com")).toBe("alice\\u{202E}@example.com");
    expect(visible("a\u200Bb\u0007c\nd")).toBe("a\\u{200B}b\\u{7}c\\u{A}d");
    expect(visible("tag\u{E0041}")).toBe("tag\\u{E0041}");
    expect(visible("plain ascii")).toBe("plain ascii");
  });
});
