// End-to-end tests of the dashboard in a real browser against a real
// control plane and real datanodes (tests/e2e.sh starts them and sets
// E2E_URL, E2E_TOKEN, E2E_VIEWER, E2E_OUT). Each test saves a screenshot
// under E2E_OUT; any failure exits non-zero.
import { mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { launch, axeViolations } from './browser.mjs';

const URL = must('E2E_URL');
const TOKEN = must('E2E_TOKEN');
const VIEWER = must('E2E_VIEWER');
const OUT = must('E2E_OUT');
const DB = must('E2E_DB');
const SPARE = must('E2E_SPARE');
mkdirSync(OUT, { recursive: true });

function must(k) {
  const v = process.env[k];
  if (!v) {
    console.error(`e2e: ${k} is not set (run tests/e2e.sh)`);
    process.exit(2);
  }
  return v;
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function noSeriousA11y(page, where) {
  const v = await axeViolations(page);
  check(v.length === 0, `axe-core on ${where}:\n  ${v.join('\n  ')}`);
}

/** The colour the main slot map shows for a slot. */
function pixel(page, slot) {
  return page.evaluate((s) => {
    const c = document.querySelector('[data-testid=slot-canvas]');
    const g = c.getContext('2d');
    const cell = c.width / 128;
    const d = g.getImageData((s % 128) * cell + cell / 2, Math.floor(s / 128) * cell + cell / 2, 1, 1).data;
    return `${d[0]},${d[1]},${d[2]}`;
  }, slot);
}

/** A GET of the API from inside the page, with the page's own token. */
function pageApi(page, path) {
  return page.evaluate(async (p) => {
    const r = await fetch(`/api/v1${p}`, { headers: { Authorization: `Bearer ${localStorage.getItem('slotkv.token')}` } });
    return r.json();
  }, path);
}

async function waitFor(what, fn, ms = 30000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

async function loggedIn(browser, token) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && !/40[13]|Failed to load resource/.test(m.text()) && errors.push(m.text()));
  await page.goto(`${URL}/#token=${encodeURIComponent(token)}`);
  await page.getByTestId('masters').waitFor({ timeout: 20000 });
  return { ctx, page, errors };
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('loads with a token: three masters, three replicas, a full slot map', async (browser) => {
  const { ctx, page, errors } = await loggedIn(browser, TOKEN);
  try {
    await waitFor('3 masters and 3 replicas', async () => (await page.getByTestId('masters').textContent()) === '3' && (await page.getByTestId('replicas').textContent()) === '3');
    check(!page.url().includes('token='), `the token stays in the address: ${page.url()}`);
    const ranges = await page.getByTestId('slot-ranges').locator('li').allTextContents();
    check(ranges.length === 3 && !ranges.some((r) => r.includes('unassigned')), `slot ranges: ${ranges}`);
    const total = ranges.map((r) => Number(/\(([\d,]+)\)/.exec(r)[1].replace(/,/g, ''))).reduce((a, b) => a + b, 0);
    check(total === 16384, `the map covers ${total} slots`);
    check((await page.locator('tr[data-role=master]').count()) === 3, 'three master rows');
    check((await page.locator('tr[data-role=replica]').count()) === 3, 'three replica rows');
    // Hover: the slot, its owner and its key count (asked of the owner).
    const canvas = page.getByTestId('slot-canvas');
    const box = await canvas.boundingBox();
    await page.mouse.move(box.x + 2, box.y + 2);
    const tip = page.getByTestId('slot-tip');
    await waitFor('the slot tooltip with a key count', async () => /slot 0[\s\S]*127\.0\.0\.1:\d+[\s\S]*keys: \d+/.test((await tip.textContent()) ?? ''), 10000);
    // Clicking a master highlights its slots: the other two masters' dim.
    const probes = [0, 8000, 16383];
    const before = await Promise.all(probes.map((p) => pixel(page, p)));
    const first = page.locator('.legend .owner').first();
    await first.click();
    check((await first.getAttribute('aria-pressed')) === 'true', 'the master is not marked selected');
    await waitFor('two of three regions to dim', async () => {
      const after = await Promise.all(probes.map((p) => pixel(page, p)));
      return after.filter((p, i) => p !== before[i]).length === 2;
    });
    await first.click();
    await noSeriousA11y(page, 'the cluster page');
    // A reload keeps the login (the token is remembered).
    await page.reload();
    await page.getByTestId('masters').waitFor({ timeout: 20000 });
    check(errors.length === 0, `page errors: ${errors}`);
  } finally {
    await page.screenshot({ path: `${OUT}/load.png`, fullPage: true });
    await ctx.close();
  }
});

test('a reshard started from the page shows progress to 100% and the map changes colour', async (browser) => {
  const { ctx, page, errors } = await loggedIn(browser, TOKEN);
  try {
    await page.getByRole('button', { name: 'Reshard…' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('spinbutton', { name: 'Number of slots' }).fill('200');
    const dry = page.waitForResponse((r) => r.url().endsWith('/reshard') && r.request().method() === 'POST');
    await dialog.getByRole('button', { name: 'Preview plan' }).click();
    const plan = (await (await dry).json()).plan;
    await dialog.getByTestId('plan').waitFor();
    check((await dialog.getByTestId('plan').textContent()).includes('200 slots will move'), 'the plan says 200 slots');
    await noSeriousA11y(page, 'the reshard dialog');
    await page.screenshot({ path: `${OUT}/reshard-plan.png`, fullPage: true });
    const slot = plan.moves[0].slots[0][0];
    const before = await pixel(page, slot);
    await dialog.getByRole('button', { name: 'Confirm reshard' }).click();
    await page.waitForURL(/#\/jobs\/job-/);
    await page.locator('[data-testid=job-page][data-status=succeeded]').waitFor({ timeout: 120000 });
    check((await page.getByTestId('job-progress').getAttribute('value')) === '100', 'progress is 100%');
    await noSeriousA11y(page, 'the job page');
    await page.screenshot({ path: `${OUT}/reshard-job.png`, fullPage: true });
    await page.getByRole('link', { name: 'Cluster' }).click();
    await page.getByTestId('slot-canvas').waitFor();
    const after = await waitFor('the moved slot to change colour', async () => {
      const p = await pixel(page, slot);
      return p !== before ? p : null;
    });
    await page.getByRole('link', { name: 'Jobs' }).click();
    await page.getByTestId('jobs').waitFor();
    await noSeriousA11y(page, 'the jobs page');
    check(errors.length === 0, `page errors: ${errors}`);
    console.log(`  slot ${slot}: ${before} → ${after}`);
  } finally {
    await page.screenshot({ path: `${OUT}/reshard.png`, fullPage: true });
    await ctx.close();
  }
});

test('a failover started from the page swaps the roles and the event arrives without a reload', async (browser) => {
  const { ctx, page, errors } = await loggedIn(browser, TOKEN);
  try {
    await page.evaluate(() => (window.__sameDocument = true));
    const row = page.locator('tr[data-role=replica]').first();
    const id = await row.getAttribute('data-node');
    const oldMaster = (await pageApi(page, '/clusters/local/topology')).nodes.find((n) => n.id === id).master;
    await row.getByRole('button', { name: /^Failover/ }).click();
    const dialog = page.getByRole('dialog');
    check((await dialog.textContent()).includes('TAKEOVER'.toLowerCase()), 'the modes are explained');
    await noSeriousA11y(page, 'the failover dialog');
    await dialog.getByRole('button', { name: 'Confirm default failover' }).click();
    await page.waitForURL(/#\/jobs\/job-/);
    await page.locator('[data-testid=job-page][data-status=succeeded]').waitFor({ timeout: 120000 });
    await page.getByRole('link', { name: 'Cluster' }).click();
    await page.locator(`tr[data-node="${id}"][data-role=master]`).waitFor({ timeout: 30000 });
    await page.locator(`tr[data-node="${oldMaster}"][data-role=replica]`).waitFor({ timeout: 30000 });
    await page.screenshot({ path: `${OUT}/failover-nodes.png`, fullPage: true });
    await page.getByRole('link', { name: 'Events' }).click();
    await page.locator('li[data-kind=failover]').first().waitFor({ timeout: 30000 });
    check(await page.evaluate(() => window.__sameDocument === true), 'the page was reloaded');
    await noSeriousA11y(page, 'the events page');
    check(errors.length === 0, `page errors: ${errors}`);
  } finally {
    await page.screenshot({ path: `${OUT}/failover-events.png`, fullPage: true });
    await ctx.close();
  }
});

test('a viewer token sees everything and cannot start anything', async (browser) => {
  const { ctx, page } = await loggedIn(browser, VIEWER);
  try {
    await waitFor('the nodes', async () => (await page.locator('tr[data-role]').count()) === 6);
    const buttons = page.locator('.toolbar button, table.nodes button');
    const n = await buttons.count();
    check(n >= 3 + 6, `action buttons: ${n}`);
    for (let i = 0; i < n; i++) {
      const b = buttons.nth(i);
      check(await b.isDisabled(), `${await b.textContent()} is enabled for a viewer`);
      check(/admin token/.test((await b.getAttribute('title')) ?? ''), `${await b.textContent()} gives no reason`);
    }
    check((await page.locator('.who').textContent()).includes('viewer'), 'the role is shown');
  } finally {
    await page.screenshot({ path: `${OUT}/viewer.png`, fullPage: true });
    await ctx.close();
  }
});

test('a wrong token gets a clear message', async (browser) => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  try {
    await page.goto(`${URL}/`);
    await noSeriousA11y(page, 'the login page');
    await page.getByLabel('API token').fill('skv_not_a_token');
    await page.getByRole('button', { name: 'Log in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor({ timeout: 10000 });
    check(/not valid/.test(await alert.textContent()), `message: ${await alert.textContent()}`);
    check((await page.getByTestId('masters').count()) === 0, 'the dashboard showed anyway');
    // A wrong token in the address is refused the same way.
    await page.goto(`${URL}/#token=skv_wrong_again`);
    await page.getByRole('alert').waitFor({ timeout: 10000 });
    await noSeriousA11y(page, 'the login page with an error');
  } finally {
    await page.screenshot({ path: `${OUT}/wrong-token.png`, fullPage: true });
    await ctx.close();
  }
});

test('on a narrow laptop screen nothing spills sideways', async (browser) => {
  const ctx = await browser.newContext({ viewport: { width: 1024, height: 640 } });
  const page = await ctx.newPage();
  try {
    await page.goto(`${URL}/#token=${encodeURIComponent(TOKEN)}`);
    await page.getByTestId('masters').waitFor({ timeout: 20000 });
    for (const tab of ['Cluster', 'Jobs', 'Events']) {
      await page.getByRole('link', { name: tab }).click();
      await page.waitForTimeout(300);
      const [sw, w] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      check(sw <= w, `${tab}: the page is ${sw}px wide in a ${w}px window`);
    }
  } finally {
    await page.screenshot({ path: `${OUT}/narrow.png`, fullPage: true });
    await ctx.close();
  }
});

test('a refused action shows the API\'s message and starts nothing', async (browser) => {
  const { ctx, page } = await loggedIn(browser, TOKEN);
  try {
    const jobs = (await pageApi(page, '/jobs')).jobs.length;
    await page.getByRole('button', { name: 'Add node…' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('textbox', { name: /Address/ }).fill('not-an-address');
    await dialog.getByRole('button', { name: 'Add node' }).click();
    const err = dialog.getByTestId('action-error');
    await err.waitFor({ timeout: 10000 });
    check(/invalid_address/.test(await err.textContent()), `message: ${await err.textContent()}`);
    await noSeriousA11y(page, 'a refused action');
    const after = (await pageApi(page, '/jobs')).jobs.length;
    check(after === jobs, `a job was started (${jobs} → ${after})`);
  } finally {
    await page.screenshot({ path: `${OUT}/refused.png`, fullPage: true });
    await ctx.close();
  }
});

test('the event history scrolls back page by page, filtered by kind', async (browser) => {
  // 250 events recorded before the page opens: history, not live.
  const feed = new globalThis.URL('../../tests/bench/event_feed.py', import.meta.url).pathname;
  const r = spawnSync('python3', [feed, DB, 'local', '2000', '20', '250'], { encoding: 'utf8' });
  check(r.status === 0 && r.stdout.trim() === '250', `event_feed: ${r.stderr || r.stdout}`);
  const { ctx, page } = await loggedIn(browser, TOKEN);
  try {
    await page.getByRole('link', { name: 'Events' }).click();
    await page.getByLabel('Kind').fill('bench_event');
    await page.getByLabel('Kind').blur();
    const rows = page.locator('li[data-kind=bench_event]');
    const end = page.getByText('The beginning of the history.');
    const others = page.locator('li[data-kind]:not([data-kind=bench_event])');
    await waitFor('every page of the history, and no other kind', async () => {
      await page.mouse.wheel(0, 20000);
      return (await end.count()) > 0 && (await rows.count()) >= 250 && (await others.count()) === 0;
    }, 60000).catch(async (e) => {
      throw new Error(`${e.message}; other kinds: ${(await others.allTextContents()).slice(0, 3).join(' | ')}`);
    });
    check((await rows.count()) === 250, `rows: ${await rows.count()}`);
  } finally {
    await page.screenshot({ path: `${OUT}/events-history.png` });
    await ctx.close();
  }
});

test('a burst of live events is kept whole: none missing between live and history', async (browser) => {
  const { ctx, page } = await loggedIn(browser, TOKEN);
  try {
    await page.getByRole('link', { name: 'Events' }).click();
    await page.getByLabel('Kind').fill('bench_event');
    await page.getByLabel('Kind').blur();
    const rows = page.locator('li[data-kind=bench_event]');
    await waitFor('the history so far', async () => (await rows.count()) > 0);
    // 700 events at 1000/s: more than the app's live tail holds.
    const feed = new globalThis.URL('../../tests/bench/event_feed.py', import.meta.url).pathname;
    const r = spawnSync('python3', [feed, DB, 'local', '1000', '20', '700'], { encoding: 'utf8' });
    check(r.status === 0 && r.stdout.trim() === '700', `event_feed: ${r.stderr || r.stdout}`);
    const total = 250 + 700;
    const end = page.getByText('The beginning of the history.');
    await waitFor(`all ${total} events`, async () => {
      await page.mouse.wheel(0, 50000);
      return (await end.count()) > 0 && (await rows.count()) >= total;
    }, 60000).catch(async (e) => {
      const ids = await rows.evaluateAll((els) => els.map((el) => Number(el.getAttribute('data-id'))));
      const gaps = ids.filter((id, i) => i > 0 && ids[i - 1] - id > 1).map((id) => `${id}..`);
      throw new Error(`${e.message}; rows: ${ids.length}, first ${ids[0]}, last ${ids[ids.length - 1]}, gaps below: ${gaps.slice(0, 5).join(' ')}`);
    });
    const ids = await rows.evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-id'))));
    check(ids.length === total && new Set(ids).size === total, `rows: ${ids.length}, distinct ${new Set(ids).size}`);
    check(ids.every((id, i) => i === 0 || ids[i - 1] > id), 'newest first');
  } finally {
    await page.screenshot({ path: `${OUT}/events-burst.png` });
    await ctx.close();
  }
});

test('a filter typed while events stream keeps its text and then applies', async (browser) => {
  const { ctx, page } = await loggedIn(browser, TOKEN);
  try {
    await page.getByRole('link', { name: 'Events' }).click();
    const box = page.getByLabel('Kind');
    await box.fill('bench_event');
    // New events of another kind redraw the list while the box has focus.
    const first = () => page.locator('li[data-kind]').first().getAttribute('data-id');
    const before = await first();
    const feed = new globalThis.URL('../../tests/bench/event_feed.py', import.meta.url).pathname;
    const r = spawnSync('python3', [feed, DB, 'local', '1000', '20', '3', 'typing_event'], { encoding: 'utf8' });
    check(r.status === 0 && r.stdout.trim() === '3', `event_feed: ${r.stderr || r.stdout}`);
    await waitFor('the list redrawn with the new events', async () => (await first()) !== before);
    check((await box.inputValue()) === 'bench_event', `the box lost its text: "${await box.inputValue()}"`);
    await box.blur();
    const others = page.locator('li[data-kind]:not([data-kind=bench_event])');
    const end = page.getByText('The beginning of the history.');
    await waitFor('only the typed kind listed', async () => (await others.count()) === 0 && ((await page.locator('li[data-kind=bench_event]').count()) > 0 || (await end.count()) > 0));
  } finally {
    await page.screenshot({ path: `${OUT}/events-typing.png` });
    await ctx.close();
  }
});

test('add a master, rebalance onto it, then drain and remove it, all from the page', async (browser) => {
  const { ctx, page } = await loggedIn(browser, TOKEN);
  const succeeded = async (what) => {
    await page.waitForURL(/#\/jobs\/job-/);
    await page.locator('[data-testid=job-page][data-status=succeeded]').waitFor({ timeout: 120000 }).catch(async (e) => {
      throw new Error(`${what}: ${(await page.getByTestId('job-page').textContent()) ?? e}`);
    });
  };
  try {
    await page.getByRole('button', { name: 'Add node…' }).click();
    let dialog = page.getByRole('dialog');
    await dialog.getByRole('textbox', { name: /Address/ }).fill(SPARE);
    await dialog.getByRole('button', { name: 'Add node' }).click();
    await succeeded('add node');
    await page.getByRole('link', { name: 'Cluster' }).click();
    const row = page.locator('tr[data-role=master]', { hasText: SPARE });
    await row.waitFor({ timeout: 30000 });
    // Rebalance: the plan gives the empty master its share.
    await page.getByRole('button', { name: 'Rebalance…' }).click();
    dialog = page.getByRole('dialog');
    await dialog.getByTestId('plan').waitFor({ timeout: 20000 });
    check(/4096 slots will move/.test(await dialog.getByTestId('plan').textContent()), `plan: ${await dialog.getByTestId('plan').textContent()}`);
    await dialog.getByRole('button', { name: 'Confirm rebalance' }).click();
    await succeeded('rebalance');
    await page.getByRole('link', { name: 'Cluster' }).click();
    await waitFor('the new master to hold 4096 slots', async () => /4,096/.test((await row.textContent()) ?? ''));
    // Remove it: its slots go back first (drain is offered and ticked).
    await row.getByRole('button', { name: /^Remove/ }).click();
    dialog = page.getByRole('dialog');
    check(await dialog.getByRole('checkbox').isChecked(), 'drain is not offered for a master with slots');
    await dialog.getByRole('button', { name: 'Confirm removal' }).click();
    await succeeded('remove node');
    await page.getByRole('link', { name: 'Cluster' }).click();
    await waitFor('the node to leave', async () => (await page.locator('tr[data-node]', { hasText: SPARE }).count()) === 0, 30000);
    await waitFor('three masters again', async () => (await page.getByTestId('masters').textContent()) === '3');
  } finally {
    await page.screenshot({ path: `${OUT}/add-rebalance-remove.png`, fullPage: true });
    await ctx.close();
  }
});

test('a slot in migration is marked on the map with its direction', async (browser) => {
  const { ctx, page } = await loggedIn(browser, TOKEN);
  const cli = (port, ...args) => spawnSync('redis-cli', ['-p', port, ...args], { encoding: 'utf8' }).stdout.trim();
  let owner, target;
  try {
    const nodes = (await pageApi(page, '/clusters/local/topology')).nodes.filter((n) => n.role === 'master');
    owner = nodes.find((n) => n.slots.some(([a, b]) => a <= 100 && 100 <= b));
    target = nodes.find((n) => n !== owner);
    const port = (n) => n.address.split(':').pop();
    // Sampled before the slot opens: the page may redraw at any moment
    // after the SETSLOTs (its 1 s refresh, or an event).
    const before = await pixel(page, 100);
    check(cli(port(target), 'CLUSTER', 'SETSLOT', '100', 'IMPORTING', owner.id) === 'OK', 'IMPORTING');
    check(cli(port(owner), 'CLUSTER', 'SETSLOT', '100', 'MIGRATING', target.id) === 'OK', 'MIGRATING');
    const line = `slot 100: ${owner.address} → ${target.address}`;
    await waitFor('the open slot on the map', async () =>
      /in migration: \d/.test(await page.locator('.legend').textContent()) && (await page.getByTestId('slot-ranges').textContent()).includes(line),
    ).catch(async (e) => {
      throw new Error(`${e.message}; legend: ${await page.locator('.legend').textContent()}; text: ${await page.getByTestId('slot-ranges').textContent()}`);
    });
    // The canvas is drawn by an effect that runs after the text has been
    // rendered (Preact defers effects past the next frame), so wait for it.
    await waitFor('the slot to look different', async () => (await pixel(page, 100)) !== before, 5000).catch(() => {
      throw new Error('the slot looks the same');
    });
    await page.screenshot({ path: `${OUT}/migration.png`, fullPage: true });
  } finally {
    if (owner && target) {
      for (const n of [owner, target]) cli(n.address.split(':').pop(), 'CLUSTER', 'SETSLOT', '100', 'STABLE');
    }
    await ctx.close();
  }
});

test('a job cancelled from its page stops at a safe point with no slot left open', async (browser) => {
  const { ctx, page } = await loggedIn(browser, TOKEN);
  page.on('dialog', (d) => d.accept());
  try {
    // The test before this one opened and closed slot 100; until the
    // observer has seen it closed, a plan is refused (open_slots).
    await waitFor('no open slot before the reshard', async () => /Slots open0/.test(await page.getByTestId('overview').textContent()), 30000);
    await page.getByRole('button', { name: 'Reshard…' }).click();
    const dialog = page.getByRole('dialog');
    // Slot by slot (legacy), so the job runs long enough to be stopped.
    await dialog.getByRole('spinbutton', { name: 'Number of slots' }).fill('4000');
    await dialog.getByRole('combobox', { name: 'Method' }).selectOption('legacy');
    await dialog.getByRole('button', { name: 'Preview plan' }).click();
    await waitFor('the plan', async () => {
      if (await dialog.getByTestId('action-error').isVisible()) {
        throw new Error(`refused: ${await dialog.getByTestId('action-error').textContent()}`);
      }
      return dialog.getByTestId('plan').isVisible();
    });
    await dialog.getByRole('button', { name: 'Confirm reshard' }).click();
    await page.waitForURL(/#\/jobs\/job-/);
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await page.locator('[data-testid=job-page][data-status=cancelled]').waitFor({ timeout: 60000 });
    // What the job shows moved is what its cancelled step says it did.
    const pageText = await page.getByTestId('job-page').textContent();
    const did = /after (\d+) slots of this step/.exec(pageText);
    check(did && pageText.includes(`${did[1]} slots,`), `job page: ${pageText}`);
    await page.screenshot({ path: `${OUT}/cancel-job.png`, fullPage: true });
    await page.getByRole('link', { name: 'Cluster' }).click();
    await waitFor('no open slot and every slot covered', async () => {
      const t = await page.getByTestId('overview').textContent();
      return /Slots open0/.test(t) && /16,384 \/ 16,384/.test(t);
    });
  } finally {
    await page.screenshot({ path: `${OUT}/cancel.png`, fullPage: true });
    await ctx.close();
  }
});

// Last: it stops a node.
test('a node that is down is unmistakable', async (browser) => {
  const { ctx, page } = await loggedIn(browser, TOKEN);
  try {
    const row = page.locator('tr[data-role=replica]').last();
    const id = await row.getAttribute('data-node');
    const addr = (await row.locator('.addr').textContent()).trim();
    const port = addr.split(':').pop();
    const r = spawnSync('redis-cli', ['-p', port, 'SHUTDOWN', 'NOSAVE'], { encoding: 'utf8' });
    check(r.status !== null, `redis-cli: ${r.error}`);
    const down = page.locator(`tr.down[data-node="${id}"]`);
    await down.waitFor({ timeout: 30000 });
    check((await down.textContent()).includes('DOWN'), 'the row says DOWN');
  } finally {
    await page.screenshot({ path: `${OUT}/node-down.png`, fullPage: true });
    await ctx.close();
  }
});

const only = process.env.E2E_ONLY;
const browser = await launch();
let failed = 0;
for (const t of tests) {
  if (only && !t.name.includes(only)) continue;
  const start = Date.now();
  try {
    await t.fn(browser);
    console.log(`ok    ${t.name} (${Date.now() - start} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL  ${t.name}\n  ${String(e.stack || e).split('\n').join('\n  ')}`);
  }
}
await browser.close();
console.log(failed ? `e2e: ${failed} failed; screenshots in ${OUT}` : `e2e: all passed; screenshots in ${OUT}`);
process.exit(failed ? 1 : 0);
