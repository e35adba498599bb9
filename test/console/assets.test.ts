// Covers how the console's browser code is found and served: the server finds the build from each place it runs
// (the CLI bundle, tsc's output, the TS sources) or says to build; the pages link the script, stylesheet and icon
// under content-hashed names, each answered byte for byte with a year-long immutable cache and the console's strict
// CSP; the page holds no inline script; no other name under /console/assets/ answers. Needs `npm run build`.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { loadConsoleAssets } from '../../src/server/console/assets.js';
import { consoleRoutes } from '../../src/server/console/routes.js';
import { testConfig } from '../support/governance.js';

const TOKEN = 'assets-admin-token-0123456789abcdef';
const root = new URL('../../', import.meta.url);
const built = (name: string) => readFileSync(new URL(`dist/bundle/console/${name}`, root));
// Pages and assets never touch the database; a test that did would fail loudly here.
const NO_DB = new Proxy({}, { get: () => assert.fail('the database was used') }) as Db;

let server: Server;
let web: ReturnType<typeof consoleRoutes>;
let origin = '';

beforeAll(async () => {
  web = consoleRoutes({ db: NO_DB, config: testConfig({ LEASH_ADMIN_TOKEN: TOKEN }) });
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', origin);
    // The routes tested here never call the body readers (sign-in reads its small form from the request).
    void web(
      req,
      res,
      url,
      () => Promise.resolve(undefined),
      () => Promise.resolve(Buffer.alloc(0)),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  // Listening on a TCP port: address() is an AddressInfo.
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  web?.close();
  await new Promise((resolve) => server?.close(resolve));
});

async function consolePage(): Promise<string> {
  const signIn = await fetch(`${origin}/console/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: TOKEN }),
  });
  expect(signIn.status).toBe(303);
  const cookie = (signIn.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const page = await fetch(`${origin}/console`, { headers: { cookie } });
  expect(page.status).toBe(200);
  return page.text();
}

const linked = (html: string, pattern: RegExp) => {
  const url = pattern.exec(html)?.[1];
  expect(url, html).toBeDefined();
  return url ?? '';
};

describe('the console’s built assets', () => {
  it.each([
    ['script', /<script src="([^"]+)" defer><\/script>/, 'console.js', 'text/javascript; charset=utf-8'],
    ['stylesheet', /<link rel="stylesheet" href="([^"]+)">/, 'console.css', 'text/css; charset=utf-8'],
    ['icon', /<link rel="icon" href="([^"]+)"/, 'favicon.svg', 'image/svg+xml'],
  ])('serves the %s under its hash, immutable, with the console’s CSP', async (_, pattern, file, type) => {
    const url = linked(await consolePage(), pattern);
    expect(url).toMatch(/^\/console\/assets\/[a-z]+\.[0-9a-f]{12}\.[a-z]+$/);
    const r = await fetch(`${origin}${url}`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe(type);
    expect(r.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(r.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(Buffer.from(await r.arrayBuffer()).equals(built(file))).toBe(true);
  });

  it('links the stylesheet from the sign-in page too, and puts no script inline on either page', async () => {
    const signIn = await (await fetch(`${origin}/console`)).text();
    expect(linked(signIn, /<link rel="stylesheet" href="([^"]+)">/)).toMatch(/console\.[0-9a-f]{12}\.css$/);
    expect(signIn).not.toContain('<script');
    const page = await consolePage();
    expect(page.match(/<script\b[^>]*>/g)).toEqual([
      expect.stringMatching(/^<script src="\/console\/assets\//),
    ]);
    expect(page).not.toMatch(/ on[a-z]+=/);
  });

  it.each(['/console/assets/console.js', '/console/assets/console.000000000000.js', '/console/assets/'])(
    'answers 404 for %s, a name it did not build',
    async (path) => {
      expect((await fetch(`${origin}${path}`)).status).toBe(404);
    },
  );

  it('keeps the page itself uncached', async () => {
    expect((await fetch(`${origin}/console`)).headers.get('cache-control')).toBe('no-store');
  });
});

describe('finding the build', () => {
  it.each(['dist/bundle/main.js', 'dist/src/server/console/assets.js', 'src/server/console/assets.ts'])(
    'finds the script, stylesheet and icon from %s',
    (place) => {
      const found = loadConsoleAssets(new URL(place, root).href);
      if ('error' in found) throw new Error(found.error);
      expect(Object.values(found.urls)).toEqual([
        expect.stringMatching(/^\/console\/assets\/console\.[0-9a-f]{12}\.js$/),
        expect.stringMatching(/^\/console\/assets\/console\.[0-9a-f]{12}\.css$/),
        expect.stringMatching(/^\/console\/assets\/favicon\.[0-9a-f]{12}\.svg$/),
      ]);
      expect(found.files.get(found.urls.script)?.body.equals(built('console.js'))).toBe(true);
    },
  );

  it('says to run the build when no place has it', () => {
    const found = loadConsoleAssets('file:///nonexistent/a/b/c/d.js');
    expect('error' in found && found.error).toContain('npm run build');
  });
});
