// Screenshots of every view, light and dark, against the dev server with the mock backend:
//   npx vite &   npm i --no-save puppeteer-core@24   node scripts/screenshots.mjs [name-filter]
// Writes ui/screenshots/ (ignored by git). Needs Chromium (apt-get install chromium).
import { mkdirSync } from "node:fs";
import puppeteer from "puppeteer-core";
const base = process.env.BASE ?? "http://127.0.0.1:5173/";
const out = process.env.OUT ?? "screenshots";
mkdirSync(out, { recursive: true });
const only = process.argv[2];
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--hide-scrollbars"],
  defaultViewport: { width: 1100, height: 760 },
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const errors = [];
async function shot(name, scheme, url, act) {
  if (only && !name.includes(only)) return;
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") errors.push(`${name}: ${m.text()}`); });
  page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
  await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: scheme }]);
  await page.goto(base + url, { waitUntil: "networkidle0" });
  await sleep(700);
  if (act) await act(page);
  await page.screenshot({ path: `${out}/${name}-${scheme}.png` });
  await page.close();
}
for (const scheme of ["light", "dark"]) {
  await shot("inbox", scheme, "?mock#/inbox");
  await shot("history", scheme, "?mock#/history");
  await shot("detail", scheme, "?mock#/request/7d0f3c2a-5b1e-4c8a-9f3d-2e6b8a1c4d59");
  await shot("quorum", scheme, "?mock#/request/5a8d2e1f-9c3b-4f7a-b6e5-0d1c2b3a4f5e");
  await shot("approveform", scheme, "?mock#/request/7d0f3c2a-5b1e-4c8a-9f3d-2e6b8a1c4d59", async (p) => {
    await p.keyboard.press("a");
    await sleep(200);
    await p.keyboard.type("482913");
  });
  await shot("passkey", scheme, "?mock&hold#/request/7d0f3c2a-5b1e-4c8a-9f3d-2e6b8a1c4d59", async (p) => {
    await p.keyboard.press("a");
    await sleep(200);
    await p.keyboard.type("482913");
    await p.keyboard.press("Enter");
    await sleep(400);
  });
  await shot("receipt", scheme, "?mock#/request/5a8d2e1f-9c3b-4f7a-b6e5-0d1c2b3a4f5e", async (p) => {
    await p.keyboard.press("a");
    await sleep(200);
    await p.keyboard.press("Enter");
    await sleep(3000);
  });
  await shot("queued", scheme, "?mock#/request/c41e9b77-2f0a-4d8e-a1b3-5e6f7a8b9c0d", async (p) => {
    await p.keyboard.press("d");
    await sleep(200);
    await p.keyboard.type("Not during the freeze");
    await p.keyboard.press("Enter");
    await sleep(1200);
  });
  await shot("own", scheme, "?mock#/request/e2b7c9d1-6a4f-4e3b-8c2d-1f0e9a8b7c6d");
  await shot("audit", scheme, "?mock&broken#/audit", async (p) => {
    await p.click("button.button");
    await sleep(900);
  });
  await shot("settings", scheme, "?mock#/settings");
  await shot("pair", scheme, "?mock&unpaired#/inbox");
  await shot("many", scheme, "?mock=10000#/inbox", async (p) => {
    await p.focus(".vlist");
    for (let i = 0; i < 30; i++) await p.keyboard.press("PageDown");
    await sleep(300);
  });
}
await browser.close();
console.log(errors.join("\n") || "no console errors");
