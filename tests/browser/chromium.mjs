// Where the browser tests find Chromium (Debian's package, driven by playwright-core).
import { existsSync } from "node:fs";
import { copyFile, mkdir } from "node:fs/promises";
import { dirname } from "node:path";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
// Without the background-networking flags Chromium keeps dialling Google on a closed network.
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * A skip message when Chromium is missing, for a developer's machine; false when it is there.
 * `.ci/frontend` sets REQUIRE_CHROMIUM=1 (after installing it), so in CI a missing browser fails.
 */
export function chromiumMissing() {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.REQUIRE_CHROMIUM === "1") {
    throw new Error(`Chromium not found at ${CHROMIUM} and REQUIRE_CHROMIUM=1`);
  }
  return `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH): browser test skipped`;
}

/** Screenshot `page` to `path` (named in the test's output), and copy it to `keep` when set. */
export async function saveScreenshot(t, page, path, keep) {
  await page.screenshot({ path });
  t.diagnostic(`screenshot: ${path}`);
  if (keep) {
    await mkdir(dirname(keep), { recursive: true });
    await copyFile(path, keep);
  }
}
