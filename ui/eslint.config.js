// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

/** Raw HTML injection is never allowed: every string is untrusted until shown as text. */
const noRawHtml = [
  "error",
  { selector: "JSXAttribute[name.name='dangerouslySetInnerHTML']", message: "No raw HTML: render Text.visible as a text node." },
  { selector: "MemberExpression[property.name=/^(innerHTML|outerHTML)$/]", message: "No raw HTML: use textContent." },
  { selector: "CallExpression[callee.property.name='insertAdjacentHTML']", message: "No raw HTML." },
  { selector: "CallExpression[callee.property.name=/^(write|writeln)$/][callee.object.name='document']", message: "No document.write." },
  { selector: "CallExpression[callee.name='eval']", message: "No eval." },
];

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "coverage/", "src/bindings/"] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      globals: { ...globals.browser },
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "no-restricted-syntax": noRawHtml,
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
      "@typescript-eslint/no-confusing-void-expression": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "no-implied-eval": "error",
    },
  },
  { files: ["**/*.js", "**/*.mjs"], ...tseslint.configs.disableTypeChecked },
  {
    files: ["test/**", "scripts/**", "vite.config.ts", "eslint.config.js"],
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
    rules: {
      // The shell rejects with a plain IpcError object, not an Error: tests do the same.
      "@typescript-eslint/only-throw-error": "off",
      "@typescript-eslint/prefer-promise-reject-errors": "off",
    },
  },
);
