// Dashboard figures in Debian's chromium (tests/bench/dashboard.sh runs
// it against a real `controlplane up`): the built bundle's gzipped size,
// the first load with a cold cache, and the longest main-thread task while
// events stream in at a given rate. Prints one JSON object.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { spawn } from 'node:child_process';
import { launch } from './browser.mjs';

const URL = process.env.E2E_URL;
const TOKEN = process.env.E2E_TOKEN;
const DB = process.env.E2E_DB;
const DIST = process.env.DIST;
const RATE = Number(process.env.RATE || 50);
const SECONDS = Number(process.env.SECONDS_UNDER_LOAD || 30);
const LOADS = Number(process.env.LOADS || 7);

function files(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}
const bundle = files(DIST).map((p) => ({ p, raw: statSync(p).size, gz: gzipSync(readFileSync(p), { level: 9 }).length }));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const browser = await launch();

// First load: a fresh context each time (empty cache and storage), the
// token in the address as `controlplane up` prints it, until the page
// shows the masters' count.
const loads = [];
for (let i = 0; i < LOADS; i++) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const t0 = Date.now();
  await page.goto(`${URL}/#token=${encodeURIComponent(TOKEN)}`);
  await page.waitForFunction(() => document.querySelector('[data-testid=masters]')?.textContent === '3', null, { timeout: 20000 });
  const shown = Date.now() - t0;
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    return { dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, transfer: n.transferSize };
  });
  loads.push({ shown, ...nav });
  await ctx.close();
}

// Under load: the events page (the busiest view) and the cluster page,
// long tasks recorded by the browser itself.
async function underLoad(hash) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  await page.goto(`${URL}/#token=${encodeURIComponent(TOKEN)}`);
  await page.getByTestId('masters').waitFor({ timeout: 20000 });
  await page.evaluate((h) => (location.hash = h), hash);
  await page.evaluate(() => {
    window.__long = [];
    new PerformanceObserver((l) => window.__long.push(...l.getEntries().map((e) => e.duration))).observe({ type: 'longtask', buffered: false });
  });
  const before = await page.evaluate(() => document.querySelectorAll('li[data-kind=bench_event]').length);
  const feed = spawn('python3', [new globalThis.URL('../../tests/bench/event_feed.py', import.meta.url).pathname, DB, 'local', String(RATE), String(SECONDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let sent = '';
  feed.stdout.on('data', (d) => (sent += d));
  await new Promise((r) => feed.on('exit', r));
  await page.waitForTimeout(2500);
  const r = await page.evaluate(() => ({ long: window.__long, rows: document.querySelectorAll('li[data-kind=bench_event]').length }));
  await ctx.close();
  return { view: hash, sent: Number(sent), rowsShown: r.rows - before, longTasks: r.long.length, longestTaskMs: r.long.length ? Math.max(...r.long) : 0 };
}
const load = [await underLoad('#/events'), await underLoad('#/')];
await browser.close();

console.log(
  JSON.stringify(
    {
      bundle: { files: bundle.map((b) => ({ file: b.p.slice(DIST.length + 1), raw: b.raw, gz: b.gz })), gzTotal: bundle.reduce((a, b) => a + b.gz, 0) },
      firstLoad: { runs: loads, medianShownMs: median(loads.map((l) => l.shown)), maxShownMs: Math.max(...loads.map((l) => l.shown)), medianLoadEventMs: median(loads.map((l) => l.load)) },
      underLoad: { rate: RATE, seconds: SECONDS, views: load },
    },
    null,
    2,
  ),
);
