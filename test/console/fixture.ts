// The console tests' set-up, once: a test file's own database, fake vendors, pipeline and leash server with the
// console on it, and pages of this worker's shared browser signed in to it (browser.ts).
import { createRequire } from 'node:module';
import type { Browser, BrowserContext, BrowserContextOptions, Page, Request } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import type { Config } from '../../src/config/config.js';
import { createLogger } from '../../src/config/logger.js';
import type { Db } from '../../src/db/database.js';
import type { RouteHandler } from '../../src/http/kit.js';
import { createPipeline, type PipelineDeps } from '../../src/pipeline/run-tool.js';
import type { AuthThrottle } from '../../src/server/auth-throttle.js';
import { consoleRoutes } from '../../src/server/console/routes.js';
import { startHttpServer, type RunningHttp } from '../../src/server/http.js';
import { catalog } from '../../tools/index.js';
import { freshDatabase, type TestDatabase } from '../support/database.js';
import { applyTestPolicy, testConfig } from '../support/governance.js';
import { startVendors, type Vendors } from '../support/vendors.js';
import { sharedBrowser } from './browser.js';

type ConsoleWeb = ReturnType<typeof consoleRoutes>;

/** axe-core, put in a page as an init script (which the console's CSP does not apply to) for the a11y checks. */
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

export interface ConsoleSetup {
  /** LEASH_ADMIN_TOKEN of the server (the console's break-glass sign-in). */
  adminToken: string;
  /** Connections in the file's database pool. */
  poolMax: number;
  /** Policy documents applied before the server starts. */
  policies?: unknown[];
  /** The failed-authentication limiter of the server and the console (the config's when omitted). */
  throttle?: AuthThrottle;
  /** The routes the server serves besides /mcp, given the console's (default: the console's alone). */
  routes?: (web: ConsoleWeb, parts: { db: Db; deps: PipelineDeps; config: Config }) => RouteHandler[];
  /** Runs after the policies are applied and before the server starts (say, `leash operators add`). */
  prepare?: (parts: { tdb: TestDatabase; config: Config }) => Promise<void>;
}

export interface PageOptions {
  /** Viewport width; the height is a desktop's 800 px, or a phone's 844 px at 600 px and narrower. */
  width?: number;
  /** Puts axe-core in the page (`axe.run(...)` in page expressions). */
  axe?: boolean;
  /** Told of every request the page makes. */
  onRequest?: (request: Request) => void;
}

interface Parts {
  tdb: TestDatabase;
  vendors: Vendors;
  config: Config;
  deps: PipelineDeps;
  web: ConsoleWeb;
  http: RunningHttp;
  browser: Browser;
}

/** What a console test file works with; its parts exist from its first hook on. */
export class ConsoleServer {
  #parts: Parts | undefined;
  readonly #contexts = new Set<BrowserContext>();

  constructor(readonly setup: ConsoleSetup) {}

  get #started(): Parts {
    if (!this.#parts) throw new Error('the console server starts in beforeAll: use it in a test or a hook');
    return this.#parts;
  }
  get tdb() {
    return this.#started.tdb;
  }
  get vendors() {
    return this.#started.vendors;
  }
  get config() {
    return this.#started.config;
  }
  get deps() {
    return this.#started.deps;
  }
  get http() {
    return this.#started.http;
  }
  /** The server's base URL (http://127.0.0.1:port). */
  get origin() {
    return this.#started.http.url;
  }
  /** The worker's browser: contexts made on it directly must be closed by the test. */
  get browser() {
    return this.#started.browser;
  }

  async start(): Promise<void> {
    const s = this.setup;
    const tdb = await freshDatabase(s.poolMax);
    const parts: Partial<Parts> = { tdb };
    try {
      const [vendors, browser] = await Promise.all([startVendors(), sharedBrowser()]);
      Object.assign(parts, { vendors, browser });
      const config = testConfig({ ...vendors.env, LEASH_ADMIN_TOKEN: s.adminToken });
      const deps = createPipeline({
        db: tdb.db,
        config,
        catalog,
        sandbox: false,
        log: createLogger({ logLevel: 'silent' }),
      });
      Object.assign(parts, { config, deps });
      for (const doc of s.policies ?? []) await applyTestPolicy(tdb.db, catalog, doc);
      await s.prepare?.({ tdb, config });
      const web = consoleRoutes({ db: tdb.db, config, throttle: s.throttle });
      parts.web = web;
      const routes = s.routes ? s.routes(web, { db: tdb.db, deps, config }) : [web];
      const http = await startHttpServer(deps, {
        host: '127.0.0.1',
        port: 0,
        routes,
        ...(s.throttle ? { throttle: s.throttle } : {}),
      });
      this.#parts = { tdb, vendors, browser, config, deps, web, http };
    } catch (error) {
      await stop(parts);
      throw error;
    }
  }

  /** Closes what the file left open (its contexts; the browser stays for the worker's next file), then the rest. */
  async stop(): Promise<void> {
    await Promise.all([...this.#contexts].map((c) => c.close().catch(() => undefined)));
    this.#contexts.clear();
    const parts = this.#parts;
    this.#parts = undefined;
    if (parts) await stop(parts);
  }

  /** A new browser context (closed at the latest when the file ends). */
  async newContext(options: BrowserContextOptions = {}): Promise<BrowserContext> {
    const context = await this.browser.newContext(options);
    this.#contexts.add(context);
    context.once('close', () => this.#contexts.delete(context));
    return context;
  }

  /** A page in a new context, not signed in. */
  async newPage(o: PageOptions = {}): Promise<{ context: BrowserContext; page: Page }> {
    const width = o.width ?? 1280;
    const context = await this.newContext({ viewport: { width, height: width > 600 ? 800 : 844 } });
    if (o.onRequest) context.on('request', o.onRequest);
    if (o.axe) await context.addInitScript({ path: AXE });
    return { context, page: await context.newPage() };
  }

  /** Opens the console in `page` and submits `token` (the admin token unless given) on its sign-in form. */
  async signIn(page: Page, token = this.setup.adminToken): Promise<void> {
    await page.goto(`${this.origin}/console`);
    await page.fill('#token', token);
    await page.click('#signin button[type=submit]');
  }

  /** A page in a new context, signed in with `token` (the admin token unless given), its live view streaming. */
  async signedIn(o: PageOptions & { token?: string } = {}): Promise<{ context: BrowserContext; page: Page }> {
    const opened = await this.newPage(o);
    await this.signIn(opened.page, o.token);
    await opened.page.locator('#status[data-state="live"]').waitFor();
    return opened;
  }
}

async function stop(parts: Partial<Parts>): Promise<void> {
  parts.web?.close();
  await parts.deps?.settler.flush();
  await parts.http?.close();
  await parts.vendors?.close();
  await parts.tdb?.close();
}

/** A console server for this test file: started in beforeAll, stopped in afterAll. */
export function useConsoleServer(setup: ConsoleSetup): ConsoleServer {
  const server = new ConsoleServer(setup);
  beforeAll(() => server.start());
  afterAll(() => server.stop());
  return server;
}
