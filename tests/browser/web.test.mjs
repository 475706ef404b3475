// Browser test of the web page at GET /: a real `maskmaker serve` with the default model pack, driven by
// Debian's Chromium through playwright-core.  Run from the repository root:  node --test tests/browser/
//   MASKMAKER_BIN      the binary (default build/maskmaker)
//   MASKMAKER_SHARED   the shared folder with data/samples (default ../shared beside the repository)
//   MASKMAKER_TEST_OUT where screenshots, downloads and the server log go (default out/browser)
//   CHROMIUM           the browser (default /usr/bin/chromium)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const bin = path.resolve(root, process.env.MASKMAKER_BIN || 'build/maskmaker');
const shared = path.resolve(root, process.env.MASKMAKER_SHARED || '../shared');
const outDir = path.resolve(root, process.env.MASKMAKER_TEST_OUT || 'out/browser');
const browserPath = process.env.CHROMIUM || '/usr/bin/chromium';
const busJpg = path.join(shared, 'data', 'samples', 'bus.jpg');
const BAD_URL = 'http://127.0.0.1:9/x.jpg';

let server = null;      // the maskmaker child process
let serverExited = null;
let base = '';
let context = null;     // persistent Chromium context (fresh user-data-dir)
let page = null;
let userDataDir = '';
const outside = [];   // requests the page made to anywhere but the server
const cspViolations = [];  // what the page's Content-Security-Policy blocked (console errors)

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitReady(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (serverExited) throw new Error(`maskmaker exited early (${serverExited}); see ${path.join(outDir, 'server.log')}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      last = `HTTP ${res.status} ${await res.text()}`;
      if (res.status === 200) return;
    } catch (e) {
      last = String(e && e.message);
    }
    await sleep(250);
  }
  throw new Error(`server not ready after ${timeoutMs} ms: ${last}`);
}

function pngHeader(buf) {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(buf.length > 33, 'PNG too short');
  assert.deepEqual(buf.subarray(0, 8), signature, 'PNG signature');
  assert.equal(buf.toString('latin1', 12, 16), 'IHDR', 'first chunk is IHDR');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20), bitDepth: buf[24], colourType: buf[25] };
}

before(async () => {
  fs.mkdirSync(outDir, { recursive: true });
  assert.ok(fs.existsSync(bin), `no maskmaker binary at ${bin} (set MASKMAKER_BIN)`);
  assert.ok(fs.existsSync(busJpg), `no sample image at ${busJpg} (set MASKMAKER_SHARED)`);
  assert.ok(fs.existsSync(browserPath), `no Chromium at ${browserPath} (apt-get install chromium, or set CHROMIUM)`);

  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const log = fs.openSync(path.join(outDir, 'server.log'), 'w');
  server = spawn(bin, ['serve', '--host', '127.0.0.1', '--port', String(port)], {
    cwd: root,
    stdio: ['ignore', log, log],
    env: { ...process.env, MASKMAKER_KEYS_DB: '' },
  });
  server.on('exit', (code, signal) => { serverExited = signal ? `signal ${signal}` : `code ${code}`; });
  await waitReady(`${base}/readyz`, 180_000);

  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'maskmaker-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: browserPath,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1400, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  page = context.pages()[0] || await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
  // Nothing may come from outside the server (but the image URL a test types in, which the preview shows).
  page.on('request', (req) => {
    const u = req.url();
    if (!u.startsWith(base) && !u.startsWith('blob:') && !u.startsWith('data:') && u !== BAD_URL) outside.push(u);
  });
});

after(async () => {
  if (context) await context.close().catch(() => {});
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  if (server && !serverExited) {
    server.kill('SIGTERM');
    for (let i = 0; i < 100 && !serverExited; i++) await sleep(100);
    if (!serverExited) server.kill('SIGKILL');
  }
});

test('the page loads from the server alone, with labelled controls', { timeout: 60_000 }, async () => {
  const res = await page.goto(`${base}/`);
  assert.equal(res.status(), 200);
  assert.match(await page.title(), /maskmaker/);
  // Every control is reachable by its label (what a screen reader announces).
  for (const label of ['Choose an image file', '…or an image URL', 'Prompt: what to find', 'Confidence threshold',
    'Overlap (IoU) threshold', 'Grow mask (pixels)', 'Invert mask', 'API key']) {
    assert.equal(await page.getByLabel(label, { exact: true }).count(), 1, `one control labelled "${label}"`);
  }
  // Slider values are shown, and change with the keyboard.
  const conf = page.getByLabel('Confidence threshold', { exact: true });
  assert.equal(await page.locator('#confidence_thresh-value').textContent(), '0.50');
  await conf.focus();
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.locator('#confidence_thresh-value').textContent(), '0.51');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.locator('#confidence_thresh-value').textContent(), '0.50');
  // The status line is a live region.
  assert.equal(await page.locator('#status').getAttribute('aria-live'), 'polite');
});

test('an image can be dropped or pasted onto the page', { timeout: 30_000 }, async () => {
  const jpg = fs.readFileSync(path.join(shared, 'data', 'samples', 'tiny_8x8_exif_gps.jpg')).toString('base64');
  const send = (kind, name) => page.evaluate(([b64, kind, name]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, { type: 'image/jpeg' }));
    const ev = kind === 'paste'
      ? new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true })
      : new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true });
    document.getElementById('drop-zone').dispatchEvent(ev);
    return ev.defaultPrevented;
  }, [jpg, kind, name]);
  assert.equal(await send('drop', 'dropped.jpg'), true);
  await page.waitForFunction(() => /^dropped\.jpg/.test(document.getElementById('source-label').textContent));
  assert.equal(await send('paste', 'image.png'), true);
  await page.waitForFunction(() => /^pasted-image\.jpg/.test(document.getElementById('source-label').textContent));
  await page.getByRole('button', { name: 'Remove image' }).click();
  assert.equal(await page.locator('#source').isVisible(), false);
});

test('upload bus.jpg, prompt "bus": annotated image, mask, detections, PNG download', { timeout: 180_000 }, async () => {
  await page.getByLabel('Choose an image file', { exact: true }).setInputFiles(busJpg);
  await page.getByLabel('Prompt: what to find', { exact: true }).fill('bus');
  await page.getByRole('button', { name: 'Make mask' }).click();

  await page.locator('#output').waitFor({ state: 'visible', timeout: 150_000 });
  await page.waitForFunction(() => {
    const a = document.getElementById('annotated');
    const m = document.getElementById('mask');
    return a.complete && a.naturalWidth > 0 && m.complete && m.naturalWidth > 0;
  }, null, { timeout: 30_000 });
  const sizes = await page.evaluate(() => ['annotated', 'mask', 'overlay-image'].map((id) => {
    const img = document.getElementById(id);
    return [img.naturalWidth, img.naturalHeight, img.getBoundingClientRect().width > 50];
  }));
  assert.deepEqual(sizes, [[810, 1080, true], [810, 1080, true], [810, 1080, true]], 'images shown at the input size');

  const status = await page.locator('#status').textContent();
  assert.match(status, /Found \d+ instance/);
  const summary = await page.locator('#summary').textContent();
  assert.match(summary, /810 × 1080 px/);
  assert.match(summary, /\d+ (ms|s) in total/);

  const phrases = await page.locator('#detections tbody th').allTextContents();
  assert.ok(phrases.includes('bus'), `detections list shows a bus: ${JSON.stringify(phrases)}`);
  const score = Number(await page.locator('#detections tbody tr', { hasText: 'bus' }).first().locator('td.num').textContent());
  assert.ok(score >= 0.5 && score <= 1, `bus score ${score}`);

  // Overlay opacity follows its slider.
  const opacity = page.getByLabel('Mask opacity', { exact: true });
  await opacity.fill('0.8');
  assert.equal(await page.locator('#overlay-mask').evaluate((el) => el.style.opacity), '0.8');
  assert.equal(await page.locator('#opacity-value').textContent(), '80 %');

  // Download the mask: a grayscale PNG of the input's size.
  const [maskDownload] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Download mask (PNG)' }).click(),
  ]);
  assert.equal(maskDownload.suggestedFilename(), 'bus-mask.png');
  const maskPath = path.join(outDir, 'bus-mask.png');
  await maskDownload.saveAs(maskPath);
  const png = pngHeader(fs.readFileSync(maskPath));
  assert.deepEqual(png, { width: 810, height: 1080, bitDepth: 8, colourType: 0 });

  // The crop for inpainting (default 1024 px on the longer side, sides multiples of 64), next to the mask.
  assert.match(await page.locator('#crop-info').textContent(), /^(1024 × \d+|\d+ × 1024) px, from the box /);
  const [cropDownload] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Download crop mask (PNG)' }).click(),
  ]);
  assert.equal(cropDownload.suggestedFilename(), 'bus-crop-mask.png');
  const cropPath = path.join(outDir, 'bus-crop-mask.png');
  await cropDownload.saveAs(cropPath);
  const cropPng = pngHeader(fs.readFileSync(cropPath));
  assert.equal(Math.max(cropPng.width, cropPng.height), 1024);
  assert.equal(cropPng.width % 64 + cropPng.height % 64, 0);
  assert.equal(cropPng.colourType, 0);
  assert.ok(await page.getByRole('link', { name: 'Download crop (PNG)' }).isVisible());

  // And the annotated image (JPEG for a JPEG input).
  const [annotatedDownload] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Download annotated image' }).click(),
  ]);
  assert.equal(annotatedDownload.suggestedFilename(), 'bus-annotated.jpg');
  const annotatedPath = path.join(outDir, 'bus-annotated.jpg');
  await annotatedDownload.saveAs(annotatedPath);
  const jpg = fs.readFileSync(annotatedPath);
  assert.deepEqual([...jpg.subarray(0, 3)], [0xff, 0xd8, 0xff], 'JPEG signature');

  await page.screenshot({ path: path.join(outDir, 'result.png'), fullPage: true });
});

test('a refused image URL shows the API\'s own message beside the URL field', { timeout: 60_000 }, async () => {
  // What the API itself says about this URL.
  const direct = await fetch(`${base}/v1/masks`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'bus', image: BAD_URL }),
  });
  assert.equal(direct.status, 400);
  const { error } = await direct.json();
  assert.ok(error && error.length > 0);

  const url = page.getByLabel('…or an image URL', { exact: true });
  await url.fill(BAD_URL);
  await url.press('Tab');
  await page.getByRole('button', { name: 'Make mask' }).click();

  const box = page.locator('#url-error');
  await box.waitFor({ state: 'visible', timeout: 30_000 });
  assert.equal(await box.textContent(), error);
  assert.equal(await url.getAttribute('aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), 'url', 'focus moves to the field');
  assert.match(await page.locator('#status').textContent(), /HTTP 400/);
  assert.equal(await page.locator('#run-error').isVisible(), false);
  assert.equal(await page.getByRole('button', { name: 'Make mask' }).isEnabled(), true);

  // Editing the field clears its error.
  await url.fill('');
  assert.equal(await box.isVisible(), false);
  await url.fill(BAD_URL);
  await url.press('Tab');
  await page.getByRole('button', { name: 'Make mask' }).click();
  await box.waitFor({ state: 'visible', timeout: 30_000 });

  await page.screenshot({ path: path.join(outDir, 'page.png'), fullPage: true });
});

test('a slow request shows progress and can be cancelled', { timeout: 60_000 }, async () => {
  // Hold the request in the browser for a while so it is slow whatever the machine.
  let release;
  const held = new Promise((r) => { release = r; });
  await page.route('**/v1/masks', async (route) => {
    await held;
    await route.continue().catch(() => {});
  });
  await page.getByLabel('Choose an image file', { exact: true }).setInputFiles(busJpg);
  await page.getByRole('button', { name: 'Make mask' }).click();
  await page.locator('#progress').waitFor({ state: 'visible' });
  const cancel = page.getByRole('button', { name: 'Cancel' });
  assert.equal(await cancel.isEnabled(), true);
  assert.equal(await page.getByRole('button', { name: 'Make mask' }).isEnabled(), false);
  await cancel.click();
  await page.waitForFunction(() => /Cancelled/.test(document.getElementById('status').textContent));
  assert.equal(await page.locator('#progress').isVisible(), false);
  assert.equal(await page.getByRole('button', { name: 'Make mask' }).isEnabled(), true);
  release();
  await page.unroute('**/v1/masks');
});

test('an API key is kept in localStorage and a 401 is shown beside the key field', { timeout: 60_000 }, async () => {
  // This server has no keys, so answer one request as a keyed server would (same body shape as the API).
  await page.route('**/v1/masks', (route) => route.fulfill({
    status: 401, contentType: 'application/json', body: JSON.stringify({ error: 'unknown API key' }),
  }), { times: 1 });
  const key = page.getByLabel('API key', { exact: true });
  await key.fill('mm_test_key');
  await page.reload();
  assert.equal(await page.getByLabel('API key', { exact: true }).inputValue(), 'mm_test_key', 'key survives a reload');
  await page.getByLabel('Choose an image file', { exact: true }).setInputFiles(busJpg);
  await page.getByLabel('Prompt: what to find', { exact: true }).fill('bus');
  const [request] = await Promise.all([
    page.waitForRequest('**/v1/masks'),
    page.getByLabel('Prompt: what to find', { exact: true }).press('Enter'),   // keyboard submit
  ]);
  assert.equal(request.headers()['x-api-key'], 'mm_test_key');
  const box = page.locator('#api_key-error');
  await box.waitFor({ state: 'visible' });
  assert.equal(await box.textContent(), 'unknown API key');
  await page.getByRole('button', { name: 'Forget' }).click();
  assert.equal(await page.evaluate(() => localStorage.getItem('maskmaker.apiKey')), null);
});

test('the page fetched nothing from outside the server', () => {
  assert.deepEqual(outside, []);
});

test('the page works under its Content-Security-Policy: the header is sent and nothing was blocked', async () => {
  const res = await fetch(`${base}/`);
  const csp = res.headers.get('content-security-policy') || '';
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(res.headers.get('x-frame-options'), 'DENY');
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  assert.deepEqual(cspViolations, []);
});
