// Launches the Debian `chromium` package through playwright-core for the console tests, and keeps screenshots.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Where the system Chromium lives (`apt-get install -y chromium`); CHROMIUM_PATH overrides it. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Screenshots land here (git-ignored); CI keeps the folder as an artifact. */
export const ARTIFACTS = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'test-artifacts',
  'console',
);

// Without the background-networking flags Chromium calls Google at start; the console must make no such call.
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
];

/** Starts headless Chromium, or fails with how to install it: a browser test that cannot run must not pass. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH))
    throw new Error(
      `the console's browser tests need Chromium at ${CHROMIUM_PATH}, which is missing. Install it with ` +
        '`sudo apt-get update && sudo apt-get install -y chromium` (Debian/Ubuntu; .ci/run does this), ' +
        'or point CHROMIUM_PATH at a Chromium or Chrome binary.',
    );
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: ARGS, timeout: 20_000 });
}

/** Saves a screenshot of the viewport under test-artifacts/console/ (not committed). */
export async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });
}
