// Browser tests of Gatehouse's pages: a real server on a random port against a fresh database,
// driven in Debian's headless Chromium. Run through scripts/e2e, which builds the server first.
//
//   E2E_BIN        the server binary (required)
//   E2E_DATABASE_URL     a PostgreSQL admin URL to test against a fresh PostgreSQL database
//                        instead of a SQLite file
//   E2E_SCREENSHOTS      a directory to save screenshots of the sign-in and user pages into
//   CHROMIUM             the browser (default /usr/bin/chromium)

import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const PASSWORD = 'correct horse battery staple 42';
const bin = process.env.E2E_BIN;
if (!bin) {
  console.error('E2E_BIN must name the gatehouse binary');
  process.exit(2);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function freshDatabase(dir) {
  const admin = process.env.E2E_DATABASE_URL;
  if (!admin) return { url: `sqlite://${join(dir, 'gatehouse.sqlite3')}`, drop() {} };
  const name = `gh_test_e2e_${process.pid}_${Date.now()}`;
  execFileSync('psql', [admin, '-qc', `create database ${name}`]);
  const base = admin.slice(0, admin.lastIndexOf('/'));
  return {
    url: `${base}/${name}`,
    drop() {
      execFileSync('psql', [admin, '-qc', `drop database if exists ${name} with (force)`]);
    },
  };
}

async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-e2e-'));
  const database = freshDatabase(dir);
  const port = await freePort();
  const env = {
    ...process.env,
    GATEHOUSE_DATA_DIR: dir,
    GATEHOUSE_DATABASE__URL: database.url,
    GATEHOUSE_SERVER__LISTEN: `127.0.0.1:${port}`,
    GATEHOUSE_SERVER__METRICS_LISTEN: `127.0.0.1:${await freePort()}`,
    GATEHOUSE_SERVER__SECURE_COOKIES: 'false',
    GATEHOUSE_LOG__FORMAT: 'json',
    GATEHOUSE_LOG__LEVEL: 'warn',
    GATEHOUSE_BOOTSTRAP_PASSWORD: PASSWORD,
    GATEHOUSE_SECRET_KEY: 'e2e-secret-key-that-is-long-enough-0123456789',
  };
  for (const [email, username, name] of [
    ['ada@example.com', 'ada', 'Ada Lovelace'],
    ['grace@example.com', 'grace', 'Grace Hopper'],
    ['alan@example.com', 'alan', 'Alan Turing'],
  ]) {
    execFileSync(bin, ['create-user', '--email', email, '--username', username, '--name', name], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  }
  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      const response = await fetch(`${base}/-/health/ready/`);
      if (response.ok) break;
    } catch {}
    if (i > 200) throw new Error('server did not become ready');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    base,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      database.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const tests = [];
const test = (name, body) => tests.push({ name, body });

// Watches a page for anything the Content-Security-Policy blocked or any script error.
function watch(page) {
  const problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(error.message));
  return problems;
}

async function signIn(page, base, email, password) {
  await page.goto(`${base}/`);
  await page.getByLabel('E-mail or username').fill(email);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('sign in through the pages, see the user page, sign out', async ({ browser, base, screenshots }) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = watch(page);
  const first = await page.goto(`${base}/`);
  assert.match(page.url(), /\/if\/flow\/default-authentication-flow\/\?next=%2Fif%2Fuser%2F$/);
  const headers = first.headers();
  assert.match(headers['content-security-policy'], /default-src 'none'/);
  assert.doesNotMatch(headers['content-security-policy'], /unsafe-inline/);
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.equal(headers['referrer-policy'], 'same-origin');
  assert.equal(await page.locator('script').count(), 0, 'pages carry no script');
  const identifier = page.getByLabel('E-mail or username');
  assert.equal(await identifier.getAttribute('autocomplete'), 'username');
  assert.equal(await identifier.evaluate((el) => el === document.activeElement), true, 'the first field has focus');
  if (screenshots) await page.screenshot({ path: join(screenshots, 'sign-in.png') });

  await identifier.fill('Ada@Example.com');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByText('Signing in as Ada@Example.com').waitFor();
  const password = page.getByLabel('Password');
  assert.equal(await password.getAttribute('autocomplete'), 'current-password');
  assert.equal(await password.getAttribute('type'), 'password');
  await password.fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();

  await page.waitForURL(`${base}/if/user/`);
  await page.getByRole('heading', { name: 'You are signed in' }).waitFor();
  assert.equal(await page.locator('[data-field=email]').textContent(), 'ada@example.com');
  assert.equal(await page.locator('[data-field=name]').textContent(), 'Ada Lovelace');
  assert.equal(await page.locator('.sessions li').count(), 1);
  assert.match(await page.locator('.sessions li.current').textContent(), /This device/);
  assert.match(await page.locator('.sessions li.current').textContent(), /Chrome/);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'gatehouse_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Lax', 'session cookie is HttpOnly and SameSite=Lax');
  assert.ok(!cookies.some((c) => c.name === 'gatehouse_flow'), 'the finished flow left no flow cookie');
  if (screenshots) await page.screenshot({ path: join(screenshots, 'user-page.png') });

  await page.getByRole('link', { name: 'Sign out' }).click();
  // The link only asks; the confirmation's POST signs out.
  await page.getByText('Sign out ada@example.com?').waitFor();
  await page.goto(`${base}/if/user/`);
  assert.equal(page.url(), `${base}/if/user/`, 'opening the sign-out page signed nobody out');
  await page.getByRole('link', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/if\/flow\/default-authentication-flow\//);
  await page.goto(`${base}/if/user/`);
  assert.match(page.url(), /\/if\/flow\/default-authentication-flow\/\?next=%2Fif%2Fuser%2F$/, 'signed out: the user page sends to sign-in');
  assert.deepEqual(problems, []);
  await context.close();
});

test('a wrong password shows the error next to the field', async ({ browser, base }) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, base, 'grace@example.com', 'not the password');
  const error = page.locator('#password-error');
  await error.waitFor();
  assert.equal((await error.textContent()).trim(), 'Invalid password.');
  const field = page.getByLabel('Password');
  assert.equal(await field.getAttribute('aria-invalid'), 'true');
  assert.equal(await field.getAttribute('aria-describedby'), 'password-error');
  assert.equal(await field.inputValue(), '', 'the wrong password is not echoed back');
  // The right password still works afterwards.
  await field.fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/if/user/`);
  await context.close();
});

test('an unknown account fails at the same point with the same message', async ({ browser, base }) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, base, 'nobody@example.com', PASSWORD);
  await page.locator('#password-error').waitFor();
  assert.equal((await page.locator('#password-error').textContent()).trim(), 'Invalid password.');
  await context.close();
});

test('sign in and out with the keyboard only', async ({ browser, base }) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  // Autofocus lands a frame after the page loads: wait for it, then type where it put us.
  const focused = (id) => page.waitForFunction((id) => document.activeElement?.id === id, id);
  await page.goto(`${base}/`);
  await focused('uid_field');
  await page.keyboard.type('alan@example.com');
  await page.keyboard.press('Enter');
  await page.getByText('Signing in as alan@example.com').waitFor();
  await focused('password');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/if/user/`);
  // Tab through the page to the sign-out link and follow it.
  for (let i = 0; i < 10; i++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement?.textContent?.trim());
    if (focused === 'Sign out' && (await page.evaluate(() => document.activeElement?.tagName)) === 'A') break;
  }
  await page.keyboard.press('Enter');
  // The confirmation's button has the focus: Enter signs out.
  await page.getByText('Sign out alan@example.com?').waitFor();
  await page.waitForFunction(() => document.activeElement?.tagName === 'BUTTON');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/if\/flow\/default-authentication-flow\//);
  await context.close();
});

test('ending another session from the user page signs that browser out', async ({ browser, base }) => {
  const phone = await browser.newContext({ userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1' });
  const laptop = await browser.newContext();
  const phonePage = await phone.newPage();
  const laptopPage = await laptop.newPage();
  await signIn(phonePage, base, 'ada@example.com', PASSWORD);
  await phonePage.waitForURL(`${base}/if/user/`);
  await signIn(laptopPage, base, 'ada@example.com', PASSWORD);
  await laptopPage.waitForURL(`${base}/if/user/`);
  assert.equal(await laptopPage.locator('.sessions li').count(), 2);
  await laptopPage.getByRole('button', { name: 'Sign out everywhere else' }).click();
  await laptopPage.waitForURL(`${base}/if/user/`);
  assert.equal(await laptopPage.locator('.sessions li').count(), 1);
  await phonePage.goto(`${base}/if/user/`);
  assert.match(phonePage.url(), /default-authentication-flow/);
  await phone.close();
  await laptop.close();
});

test('a forged form is refused and an unknown flow is a 404 page', async ({ browser, base }) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/`);
  await page.locator('input[name=csrf]').evaluate((el) => (el.value = 'forged'));
  await page.getByLabel('E-mail or username').fill('ada@example.com');
  const [response] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.getByRole('button', { name: 'Continue' }).click()]);
  assert.equal(response.status(), 403);
  await page.getByRole('heading', { name: 'Form expired' }).waitFor();
  const missing = await page.goto(`${base}/if/flow/no-such-flow/`);
  assert.equal(missing.status(), 404);
  await page.getByRole('heading', { name: 'Not found' }).waitFor();
  await context.close();
});

const server = await startServer();
const screenshots = process.env.E2E_SCREENSHOTS;
if (screenshots) mkdirSync(screenshots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
let failed = 0;
try {
  for (const { name, body } of tests) {
    const started = Date.now();
    try {
      await body({ browser, base: server.base, screenshots });
      console.log(`ok   ${name} (${Date.now() - started} ms)`);
    } catch (error) {
      failed++;
      console.log(`FAIL ${name}\n${error.stack}`);
    }
  }
} finally {
  await browser.close();
  await server.stop();
}
console.log(`${tests.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
