// The dashboard in Debian's Firefox ESR, driven over WebDriver BiDi (which
// Firefox speaks natively; playwright-core drives only its own patched
// Firefox): the page logs in from the address fragment, shows the three
// masters and the slot map, and its live event stream connects. Run by
// tests/e2e.sh with the same E2E_* variables as run.mjs. Needs Node's
// WebSocket (node --experimental-websocket on Node 20).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

const URL = process.env.E2E_URL;
const TOKEN = process.env.E2E_TOKEN;
const FIREFOX = process.env.FIREFOX || 'firefox-esr';

const port = await new Promise((res) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => res(p));
  });
});
const profile = mkdtempSync(join(tmpdir(), 'slotkv-ff-'));
const ff = spawn(FIREFOX, ['--headless', '--no-remote', '--profile', profile, `--remote-debugging-port=${port}`, 'about:blank'], {
  stdio: ['ignore', 'ignore', 'pipe'],
  env: { ...process.env, MOZ_CRASHREPORTER_DISABLE: '1' },
});
let stderr = '';
ff.stderr.on('data', (d) => (stderr += d));
const stop = () => {
  ff.kill('SIGKILL');
  rmSync(profile, { recursive: true, force: true });
};

async function connect() {
  const end = Date.now() + 30000;
  while (Date.now() < end) {
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/session`);
      await new Promise((res, rej) => {
        ws.onopen = res;
        ws.onerror = rej;
      });
      return ws;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`Firefox's BiDi endpoint did not open: ${stderr.slice(-500)}`);
}

let failed = false;
try {
  const ws = await connect();
  let id = 0;
  const pending = new Map();
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  };
  const send = (method, params) =>
    new Promise((res, rej) => {
      const n = ++id;
      pending.set(n, (msg) => (msg.type === 'error' ? rej(new Error(`${method}: ${msg.error} ${msg.message}`)) : res(msg.result)));
      ws.send(JSON.stringify({ id: n, method, params }));
    });
  await send('session.new', { capabilities: {} });
  const { contexts } = await send('browsingContext.getTree', {});
  const context = contexts[0].context;
  await send('browsingContext.navigate', { context, url: `${URL}/#token=${encodeURIComponent(TOKEN)}`, wait: 'complete' });
  const evaluate = async (expression) =>
    (await send('script.evaluate', { expression, target: { context }, awaitPromise: true })).result?.value;
  const end = Date.now() + 30000;
  let state = '';
  while (Date.now() < end) {
    state = await evaluate(`JSON.stringify({
      masters: document.querySelector('[data-testid=masters]')?.textContent ?? null,
      replicas: document.querySelector('[data-testid=replicas]')?.textContent ?? null,
      ranges: document.querySelectorAll('[data-testid=slot-ranges] li').length,
      canvas: !!document.querySelector('[data-testid=slot-canvas]'),
      live: document.body.textContent.includes('events live'),
      tokenInUrl: location.href.includes('token='),
    })`);
    const s = JSON.parse(state);
    if (s.masters === '3' && s.replicas === '3' && s.ranges === 3 && s.canvas && s.live && !s.tokenInUrl) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const s = JSON.parse(state);
  if (!(s.masters === '3' && s.replicas === '3' && s.ranges === 3 && s.canvas && s.live && !s.tokenInUrl)) {
    throw new Error(`the page in Firefox did not come up as expected: ${state}`);
  }
  console.log(`ok    ${process.env.FIREFOX_VERSION ?? 'Firefox'}: logs in from the fragment, 3 masters, 3 replicas, the slot map, live events`);
  ws.close();
} catch (e) {
  failed = true;
  console.log(`FAIL  Firefox: ${e.stack || e}`);
} finally {
  stop();
}
process.exit(failed ? 1 : 0);
