// Launches Chromium through playwright-core for the console tests (one per test worker, shared by the files it runs),
// and keeps screenshots. The browser is CHROMIUM_PATH, else the system's /usr/bin/chromium, else the one the
// @sparticuz/chromium package ships inside it (a devDependency, so `npm ci` is the whole set-up), unpacked once per
// run by the global set-up.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { inject } from 'vitest';

/** The system Chromium (`apt-get install -y chromium`), used when present. */
export const SYSTEM_CHROMIUM = '/usr/bin/chromium';

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

/** Starts headless Chromium, or fails saying why: a browser test that cannot run must not pass. */
export async function launchChromium(): Promise<Browser> {
  const found = inject('chromium');
  if ('error' in found) throw new Error(`the console's browser tests need Chromium: ${found.error}`);
  if (!existsSync(found.path)) throw new Error(`the console's browser tests need Chromium at ${found.path}`);
  return chromium.launch({
    executablePath: found.path,
    args: [...new Set([...found.args, ...ARGS])],
    timeout: 20_000,
  });
}

let shared: Promise<Browser> | undefined;

/**
 * This worker's browser, launched by the first file that asks and shared by the files the worker runs after it (the
 * suite does not isolate its files): each file works in browser contexts of its own and closes them.
 * playwright-core ends the browser when the worker exits; a browser that crashed is launched again.
 */
export async function sharedBrowser(): Promise<Browser> {
  const current = shared && (await shared.catch(() => undefined));
  if (current?.isConnected()) return current;
  shared = launchChromium();
  return shared;
}

/** Saves a screenshot of the viewport under test-artifacts/console/ (not committed). */
export async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });
}
