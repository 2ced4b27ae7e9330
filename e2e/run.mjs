// Browser tests of Gatehouse's pages: a real server, on a port it binds itself, against a fresh
// database, driven in Debian's headless Chromium. Run through scripts/e2e, which builds the server
// first.
//
//   E2E_BIN        the server binary (required)
//   E2E_DATABASE_URL     a PostgreSQL admin URL to test against a fresh PostgreSQL database
//                        instead of a SQLite file
//   E2E_SCREENSHOTS      a directory to save the README's screenshots of the pages into
//   CHROMIUM             the browser (default /usr/bin/chromium)

import assert from 'node:assert/strict';
import { spawn, execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import * as OTPAuth from 'otpauth';
import * as oidc from 'openid-client';

const PASSWORD = 'correct horse battery staple 42';
const bin = process.env.E2E_BIN;
if (!bin) {
  console.error('E2E_BIN must name the gatehouse binary');
  process.exit(2);
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

// Reads the server's log (one JSON object a line on stdout) until the line that says it is ready
// and returns the address it bound. The lines go on being read, and dropped, afterwards, so the
// pipe never fills and stalls the server.
function readyAddress(child, exited) {
  const lines = createInterface({ input: child.stdout, crlfDelay: Infinity });
  const recent = [];
  const tail = () => (recent.length ? `; its last log lines:\n${recent.join('\n')}` : '');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not log "gatehouse is ready" within 30 s${tail()}`)), 30_000);
    exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`the server ${how} before it was ready${tail()}`));
    });
    lines.on('line', (line) => {
      recent.push(line);
      if (recent.length > 20) recent.shift();
      let event;
      try {
        event = JSON.parse(line);
      } catch {
        return;
      }
      const fields = event.fields ?? event;
      if (fields.message !== 'gatehouse is ready') return;
      clearTimeout(timer);
      if (typeof fields.addr === 'string' && /^127\.0\.0\.1:[1-9]\d*$/.test(fields.addr)) resolve(fields.addr);
      else reject(new Error(`the ready line has no usable address: ${line}`));
    });
  });
}

async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-e2e-'));
  const database = freshDatabase(dir);
  const env = {
    ...process.env,
    GATEHOUSE_DATA_DIR: dir,
    GATEHOUSE_DATABASE__URL: database.url,
    // Port 0: the server binds a free port itself and logs which.
    GATEHOUSE_SERVER__LISTEN: '127.0.0.1:0',
    GATEHOUSE_SERVER__METRICS_LISTEN: '127.0.0.1:0',
    GATEHOUSE_SERVER__SECURE_COOKIES: 'false',
    GATEHOUSE_LOG__FORMAT: 'json',
    // Info, so the ready line (and the address in it) gets through.
    GATEHOUSE_LOG__LEVEL: 'info',
    GATEHOUSE_BOOTSTRAP_PASSWORD: PASSWORD,
    GATEHOUSE_SECRET_KEY: 'e2e-secret-key-that-is-long-enough-0123456789',
  };
  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve(signal ? `was stopped by ${signal}` : `exited with status ${code}`));
    child.once('error', (error) => resolve(`could not be started (${error.message})`));
  });
  let cleaned = false;
  const cleanUp = () => {
    if (cleaned) return;
    cleaned = true;
    database.drop();
    rmSync(dir, { recursive: true, force: true });
  };
  // Whatever ends this script (a crash, a closed stdout) ends the server with it.
  process.once('exit', () => {
    child.kill('SIGKILL');
    cleanUp();
  });
  let addr;
  try {
    addr = await readyAddress(child, exited);
  } catch (error) {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      child.kill('SIGKILL');
      await exited;
    }
    cleanUp();
    throw error;
  }
  let accounts = 0;
  return {
    base: `http://${addr}`,
    // A new account of its own for a test: `account('Ada Lovelace')` is ada-<n>@example.com,
    // username ada-<n>, with the known password. Made by the command line against the running
    // server's database.
    async account(name) {
      const handle = `${name.split(' ')[0].toLowerCase()}-${++accounts}`;
      const email = `${handle}@example.com`;
      await promisify(execFile)(bin, ['create-user', '--email', email, '--username', handle, '--name', name], { env });
      return { email, username: handle, name };
    },
    // Runs a command of the binary against the running server's database; resolves to stdout.
    async cli(args) {
      const { stdout } = await promisify(execFile)(bin, args, { env });
      return stdout.trim();
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
      cleanUp();
    },
  };
}

const tests = [];
// A test gets `newPage(contextOptions)`, a page in a browser context of its own, and
// `account(name)`, a fresh account with the known password. Every page a test opens is watched,
// and the test fails if any of them logged an error.
const test = (name, body) => tests.push({ name, body });

// Watches a page for anything the Content-Security-Policy blocked, any script error and any
// part of a page that failed to load. A page's own status (a 403, a 404) is for its test to
// check: Chromium logs those as errors too, and they are let through.
function watch(page, problems) {
  const documents = new Set();
  page.on('response', (response) => {
    if (response.request().isNavigationRequest()) documents.add(response.url());
  });
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const { url } = message.location();
    if (message.text().startsWith('Failed to load resource:') && documents.has(url)) return;
    problems.push(`${page.url()}: ${message.text()}${url && url !== page.url() ? ` (${url})` : ''}`);
  });
  page.on('pageerror', (error) => problems.push(`${page.url()}: ${error.message}`));
}

// What has the keyboard focus, for messages: `input#password`, `body`.
function describeFocus(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    return el ? `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}` : 'nothing';
  });
}

// Whether the focus is, or within a moment comes to be, on an element with one of these ids.
// (Autofocus lands a frame after the page loads.)
function focusComesTo(page, ids) {
  return page.waitForFunction((ids) => ids.includes(document.activeElement?.id), ids, { timeout: 2_000 }).then(
    () => true,
    () => false,
  );
}

async function signIn(page, base, email, password) {
  await page.goto(`${base}/`);
  await page.getByLabel('E-mail or username').fill(email);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('sign in through the pages, see the user page, sign out', async ({ base, screenshots, newPage, account }) => {
  const ada = await account('Ada Lovelace');
  const page = await newPage();
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

  // Typed with capitals: e-mail addresses match whatever their case.
  const typed = `A${ada.email.slice(1).replace('@example.com', '@Example.com')}`;
  await identifier.fill(typed);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByText(`Signing in as ${typed}`).waitFor();
  const password = page.getByLabel('Password');
  assert.equal(await password.getAttribute('autocomplete'), 'current-password');
  assert.equal(await password.getAttribute('type'), 'password');
  await password.fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();

  await page.waitForURL(`${base}/if/user/`);
  await page.getByRole('heading', { name: 'You are signed in' }).waitFor();
  assert.equal(await page.locator('[data-field=email]').textContent(), ada.email);
  assert.equal(await page.locator('[data-field=name]').textContent(), ada.name);
  assert.equal(await page.locator('.sessions li').count(), 1);
  assert.match(await page.locator('.sessions li.current').textContent(), /This device/);
  assert.match(await page.locator('.sessions li.current').textContent(), /Chrome/);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'gatehouse_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Lax', 'session cookie is HttpOnly and SameSite=Lax');
  assert.ok(!cookies.some((c) => c.name === 'gatehouse_flow'), 'the finished flow left no flow cookie');
  if (screenshots) await page.screenshot({ path: join(screenshots, 'user-page.png') });

  await page.getByRole('link', { name: 'Sign out' }).click();
  // The link only asks; the confirmation's POST signs out.
  await page.getByText(`Sign out ${ada.email}?`).waitFor();
  await page.goto(`${base}/if/user/`);
  assert.equal(page.url(), `${base}/if/user/`, 'opening the sign-out page signed nobody out');
  await page.getByRole('link', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/if\/flow\/default-authentication-flow\//);
  await page.goto(`${base}/if/user/`);
  assert.match(page.url(), /\/if\/flow\/default-authentication-flow\/\?next=%2Fif%2Fuser%2F$/, 'signed out: the user page sends to sign-in');
});

test('a wrong password shows the error next to the field', async ({ base, newPage, account }) => {
  const grace = await account('Grace Hopper');
  const page = await newPage();
  await signIn(page, base, grace.email, 'not the password');
  const error = page.locator('#password-error');
  await error.waitFor();
  assert.equal((await error.textContent()).trim(), 'Invalid password.');
  const field = page.getByLabel('Password');
  assert.equal(await field.getAttribute('aria-invalid'), 'true');
  assert.equal(await field.getAttribute('aria-describedby'), 'password-error');
  assert.equal(await field.inputValue(), '', 'the wrong password is not echoed back');
  // The focus goes back to the problem: the password field, or the error message linked to it.
  assert.ok(
    await focusComesTo(page, ['password', 'password-error']),
    `after a wrong password the focus is on the password field or its error, not on ${await describeFocus(page)}`,
  );
  // The right password still works afterwards.
  await field.fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/if/user/`);
});

test('an unknown account fails at the same point with the same message', async ({ base, newPage }) => {
  const page = await newPage();
  await signIn(page, base, 'nobody@example.com', PASSWORD);
  await page.locator('#password-error').waitFor();
  assert.equal((await page.locator('#password-error').textContent()).trim(), 'Invalid password.');
});

test('sign in and out with the keyboard only', async ({ base, newPage, account }) => {
  const alan = await account('Alan Turing');
  const page = await newPage();
  // Autofocus lands a frame after the page loads: wait for it, then type where it put us.
  const focused = (id) => page.waitForFunction((id) => document.activeElement?.id === id, id);
  await page.goto(`${base}/`);
  await focused('uid_field');
  await page.keyboard.type(alan.email);
  await page.keyboard.press('Enter');
  await page.getByText(`Signing in as ${alan.email}`).waitFor();
  await focused('password');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/if/user/`);
  // Tab through the page to the sign-out link and follow it.
  let reached = false;
  for (let i = 0; i < 10 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.tagName === 'A' && document.activeElement.textContent.trim() === 'Sign out');
  }
  assert.ok(reached, `ten presses of Tab reach the "Sign out" link (the focus ended on ${await describeFocus(page)})`);
  await page.keyboard.press('Enter');
  // The confirmation's button has the focus: Enter signs out.
  await page.getByText(`Sign out ${alan.email}?`).waitFor();
  await page.waitForFunction(() => document.activeElement?.tagName === 'BUTTON');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/if\/flow\/default-authentication-flow\//);
});

test('ending another session from the user page signs that browser out', async ({ base, newPage, account }) => {
  const ada = await account('Ada Lovelace');
  const phonePage = await newPage({ userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1' });
  const laptopPage = await newPage();
  await signIn(phonePage, base, ada.email, PASSWORD);
  await phonePage.waitForURL(`${base}/if/user/`);
  await signIn(laptopPage, base, ada.email, PASSWORD);
  await laptopPage.waitForURL(`${base}/if/user/`);
  assert.equal(await laptopPage.locator('.sessions li').count(), 2);
  await laptopPage.getByRole('button', { name: 'Sign out everywhere else' }).click();
  await laptopPage.waitForURL(`${base}/if/user/`);
  assert.equal(await laptopPage.locator('.sessions li').count(), 1);
  await phonePage.goto(`${base}/if/user/`);
  assert.match(phonePage.url(), /default-authentication-flow/);
});

test('a forged form is refused and an unknown flow is a 404 page', async ({ base, newPage, account }) => {
  const ada = await account('Ada Lovelace');
  const page = await newPage();
  await page.goto(`${base}/`);
  await page.locator('input[name=csrf]').evaluate((el) => (el.value = 'forged'));
  await page.getByLabel('E-mail or username').fill(ada.email);
  const [response] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.getByRole('button', { name: 'Continue' }).click()]);
  assert.equal(response.status(), 403);
  await page.getByRole('heading', { name: 'Form expired' }).waitFor();
  const missing = await page.goto(`${base}/if/flow/no-such-flow/`);
  assert.equal(missing.status(), 404);
  await page.getByRole('heading', { name: 'Not found' }).waitFor();
});

test('repeated wrong passwords are throttled with a plain message by the form, even the right one', async ({ base, newPage, account }) => {
  const grace = await account('Grace Hopper');
  const page = await newPage();
  const field = page.getByLabel('Password');
  const error = page.locator('#password-error');
  const throttled = /^Too many failed attempts\. Try again in (\d+) seconds?\.$/;
  // Answers the password page with `password` and returns the message by the field (none when
  // the answer ended the run: enough wrong answers in one run end it). Starts a new run when the
  // page is not at the password.
  const answer = async (password) => {
    if (!(await field.count())) {
      if (!(await page.getByLabel('E-mail or username').count())) await page.goto(`${base}/`);
      await page.getByLabel('E-mail or username').fill(grace.email);
      await page.getByRole('button', { name: 'Continue' }).click();
      await field.waitFor();
    }
    await field.fill(password);
    const [response] = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign in' }).click()]);
    assert.ok(response.status() < 500, `the answer's page is no server error (${response.status()} at ${page.url()})`);
    return (await error.count()) ? (await error.textContent()).trim() : null;
  };

  // Five failures are free; then each failure doubles the wait. Go on until the wait leaves
  // time for the checks below, waiting out the short ones (an answer while throttled is no
  // failure and does not lengthen it).
  let message;
  for (let attempt = 1; ; attempt++) {
    assert.ok(attempt <= 20, `no throttling after ${attempt - 1} wrong passwords (the last message: ${message})`);
    message = await answer('not the password');
    const seconds = message?.match(throttled)?.[1];
    if (seconds === undefined) {
      assert.ok(message === null || message === 'Invalid password.', `an unexpected message: ${message}`);
      continue;
    }
    if (Number(seconds) >= 4) break;
    await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
  }
  // The message is in plain words by the field, in the form, and linked to the field.
  assert.ok(await page.locator('form #password-error').isVisible(), 'the message shows in the form');
  assert.equal(await field.getAttribute('aria-invalid'), 'true');
  assert.equal(await field.getAttribute('aria-describedby'), 'password-error');
  assert.equal(await page.locator('[role=alert]').count(), 0, 'no second, general message');
  assert.ok(
    await focusComesTo(page, ['password', 'password-error']),
    `after a throttled answer the focus is on the password field or its error, not on ${await describeFocus(page)}`,
  );

  // The right password, while throttled, is refused the same way and signs nobody in. (In a
  // run of its own: enough wrong answers in one run end the run, whatever they were.)
  await page.getByRole('link', { name: 'Not you? Start again' }).click();
  await page.getByLabel('E-mail or username').waitFor();
  const refused = await answer(PASSWORD);
  assert.match(refused ?? '', throttled, `the right password while throttled gets the throttling message (got ${refused ?? `none, at ${page.url()}`})`);
  assert.match(page.url(), /\/if\/flow\/default-authentication-flow\//);
  assert.ok(!(await page.context().cookies()).some((c) => c.name === 'gatehouse_session'), 'no session cookie while throttled');
  await page.goto(`${base}/if/user/`);
  assert.match(page.url(), /default-authentication-flow/, 'the user page still sends to sign-in');
});

// A local HTTP server playing an SMS webhook: it keeps every message it is sent.
async function startSmsProvider() {
  const messages = [];
  const provider = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      messages.push({ authorization: request.headers.authorization, payload: JSON.parse(body) });
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise((resolve) => provider.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${provider.address().port}/sms`,
    messages,
    close: () => new Promise((resolve) => provider.close(resolve)),
  };
}

/** An API caller with a fresh superuser key, for tests that set up stages and flows. */
async function adminApi(base, cli, who) {
  await cli(['create-superuser', '--email', `${who}@example.com`, '--if-missing']);
  const key = await cli(['token', 'create', '--user', `${who}@example.com`, '--identifier', `e2e-${who}`, '--expires-in', 'hours=1']);
  return async (method, path, body) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body && JSON.stringify(body),
    });
    const answer = await response.json();
    assert.ok(response.ok, `${method} ${path}: ${response.status} ${JSON.stringify(answer)}`);
    return answer;
  };
}

test('a relying party using openid-client signs a person in through the pages with code, PKCE and consent, then out', async ({ base, newPage, account, cli }) => {
  const api = await adminApi(base, cli, 'sso-admin');
  const consent = await api('GET', '/api/v3/flows/instances/default-provider-authorization-explicit-consent/');
  // The consent is remembered, so the second visit goes straight through.
  const consentStages = await api('GET', '/api/v3/stages/consent/?name=default-provider-authorization-consent');
  await api('PATCH', `/api/v3/stages/consent/${consentStages.results[0].pk}/`, { mode: 'permanent' });
  const signOut = await api('GET', '/api/v3/flows/instances/default-invalidation-flow/');
  // The relying party: a small web application of this test's own, a public client.
  const relyingParty = createServer();
  await new Promise((resolve) => relyingParty.listen(0, '127.0.0.1', resolve));
  const home = `http://127.0.0.1:${relyingParty.address().port}`;
  try {
    const provider = await api('POST', '/api/v3/providers/oauth2/', {
      name: 'e2e relying party', client_type: 'public', client_id: 'e2e-relying-party',
      authorization_flow: consent.pk, invalidation_flow: signOut.pk,
      redirect_uris: [
        { matching_mode: 'strict', url: `${home}/callback` },
        { matching_mode: 'strict', url: `${home}/signed-out`, redirect_uri_type: 'logout' },
      ],
    });
    await api('POST', '/api/v3/core/applications/', { name: 'E2E relying party', slug: 'e2e-rp', provider: provider.pk });
    // Plain HTTP is this test's loopback only; openid-client insists on HTTPS otherwise.
    const config = await oidc.discovery(new URL(`${base}/application/o/e2e-rp/`), 'e2e-relying-party', undefined, oidc.None(), {
      execute: [oidc.allowInsecureRequests],
    });
    const pending = {};
    const verified = [];
    relyingParty.on('request', async (request, response) => {
      const url = new URL(request.url, home);
      try {
        if (url.pathname === '/login') {
          pending.verifier = oidc.randomPKCECodeVerifier();
          pending.state = oidc.randomState();
          pending.nonce = oidc.randomNonce();
          const to = oidc.buildAuthorizationUrl(config, {
            redirect_uri: `${home}/callback`, scope: 'openid email profile', state: pending.state, nonce: pending.nonce,
            code_challenge: await oidc.calculatePKCECodeChallenge(pending.verifier), code_challenge_method: 'S256',
          });
          response.writeHead(302, { location: to.href }).end();
        } else if (url.pathname === '/callback') {
          // openid-client checks the state, the issuer in the answer, the ID token's signature
          // against the key set, its audience, nonce and times.
          const tokens = await oidc.authorizationCodeGrant(config, url, {
            pkceCodeVerifier: pending.verifier, expectedState: pending.state, expectedNonce: pending.nonce, idTokenExpected: true,
          });
          const claims = tokens.claims();
          const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
          verified.push({ claims, info, idToken: tokens.id_token });
          response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(`<!doctype html><title>RP</title><link rel="icon" href="data:,"><h1>Signed in as <span id="who">${info.email}</span></h1>`);
        } else if (url.pathname === '/logout') {
          const to = oidc.buildEndSessionUrl(config, {
            id_token_hint: verified.at(-1).idToken, post_logout_redirect_uri: `${home}/signed-out`, state: 'see-you',
          });
          response.writeHead(302, { location: to.href }).end();
        } else if (url.pathname === '/signed-out') {
          response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
            .end(`<!doctype html><title>RP</title><link rel="icon" href="data:,"><h1 id="bye">Signed out (${url.searchParams.get('state')})</h1>`);
        } else {
          response.writeHead(404).end();
        }
      } catch (error) {
        response.writeHead(500, { 'content-type': 'text/plain' }).end(`relying party: ${error.message}`);
      }
    });

    const ada = await account('Ada Lovelace');
    const page = await newPage();
    await page.goto(`${home}/login`);
    // Not signed in: Gatehouse's own sign-in page, then the consent page, then back to the
    // application.
    assert.match(page.url(), /\/if\/flow\/default-authentication-flow\/\?next=%2Fapplication%2Fo%2Fauthorize%2F/);
    await page.getByLabel('E-mail or username').fill(ada.email);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('E2E relying party asks for the following permissions:').waitFor();
    await page.getByText('General Profile Information').waitFor();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(new RegExp(`^${home}/callback\\?`));
    assert.equal(await page.locator('#who').textContent(), ada.email, await page.content());
    assert.equal(verified.length, 1);
    assert.equal(verified[0].claims.aud, 'e2e-relying-party');
    assert.equal(verified[0].claims.iss, `${base}/application/o/e2e-rp/`);
    assert.equal(verified[0].info.preferred_username, ada.username);

    // Signed in and consented already: the next visit goes through without a page of Gatehouse's.
    await page.goto(`${home}/login`);
    await page.waitForURL(new RegExp(`^${home}/callback\\?`));
    assert.equal(verified.length, 2);
    assert.equal(verified[1].claims.sub, verified[0].claims.sub, 'the same person has the same subject');

    // The consent is on the person's page, where revoking it makes the application ask again.
    await page.goto(`${base}/if/user/`);
    await page.getByRole('button', { name: 'Revoke consent for E2E relying party' }).click();
    await page.getByText('You have not allowed any application').waitFor();
    await page.goto(`${home}/login`);
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(new RegExp(`^${home}/callback\\?`));
    assert.equal(verified.length, 3);

    // Signing out from the application ends the Gatehouse session too, after asking.
    await page.goto(`${home}/logout`);
    await page.getByText(`Sign out ${ada.email}?`).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${home}/signed-out?state=see-you`);
    assert.equal(await page.locator('#bye').textContent(), 'Signed out (see-you)');
    await page.goto(`${home}/login`);
    assert.match(page.url(), /\/if\/flow\/default-authentication-flow\//, 'signed out of Gatehouse as well');
  } finally {
    await new Promise((resolve) => relyingParty.close(resolve));
  }
});

test('set up a phone on its flow page, then sign in with a code sent to it', async ({ base, screenshots, newPage, account, cli }) => {
  const provider = await startSmsProvider();
  try {
    const api = await adminApi(base, cli, 'sms-admin');
    const setup = await api('POST', '/api/v3/stages/authenticator/sms/', {
      name: 'e2e-phone-setup', provider: 'generic', account_sid: provider.url, from_number: 'Gatehouse', auth: 'e2e-webhook-token', auth_type: 'bearer',
    });
    const flow = await api('POST', '/api/v3/flows/instances/', {
      name: 'Set up a phone', slug: 'e2e-phone-setup', title: 'Set up a phone', designation: 'stage_configuration', authentication: 'require_authenticated',
    });
    await api('POST', '/api/v3/flows/bindings/', { target: flow.pk, stage: setup.pk, order: 0 });
    // The default sign-in flow's validation stage asks people with a phone for a code.
    const ada = await account('Ada Lovelace');
    const page = await newPage();
    await signIn(page, base, ada.email, PASSWORD);
    await page.waitForURL(`${base}/if/user/`);
    await page.goto(`${base}/if/flow/e2e-phone-setup/`);
    const number = page.getByLabel('Phone number');
    assert.equal(await number.getAttribute('autocomplete'), 'tel');
    await number.fill('0446681800');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByText('Enter the phone number in international format').waitFor();
    await page.getByLabel('Phone number').fill('+41 44 668 18 00');
    if (screenshots) await page.screenshot({ path: join(screenshots, 'phone-setup.png') });
    await page.getByRole('button', { name: 'Continue' }).click();
    const code = page.getByLabel('Code');
    await code.waitFor();
    assert.equal(await code.getAttribute('autocomplete'), 'one-time-code');
    assert.equal(provider.messages.length, 1);
    assert.equal(provider.messages[0].authorization, 'Bearer e2e-webhook-token');
    assert.equal(provider.messages[0].payload.To, '+41446681800');
    await code.fill(provider.messages[0].payload.Body);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(`${base}/if/user/`);

    // A new browser: after the password, a code goes to the phone, and only the code signs in.
    const later = await newPage();
    await signIn(later, base, ada.email, PASSWORD);
    await later.getByText('We will send a code to your phone by text message.').waitFor();
    assert.equal(provider.messages.length, 1, 'no code is sent before the person asks for one');
    await later.getByRole('button', { name: 'Send code' }).click();
    await later.getByLabel('Code').waitFor();
    assert.equal(provider.messages.length, 2);
    const sent = provider.messages[1].payload.Body;
    await later.getByLabel('Code').fill(sent === '000000' ? '111111' : '000000');
    await later.getByRole('button', { name: 'Verify' }).click();
    await later.getByText('Code does not match.').waitFor();
    if (screenshots) await later.screenshot({ path: join(screenshots, 'sms-code.png') });
    const cookies = await later.context().cookies();
    assert.ok(!cookies.some((c) => c.name === 'gatehouse_session'), 'a wrong code signed nobody in');
    await later.getByLabel('Code').fill(sent);
    await later.getByRole('button', { name: 'Verify' }).click();
    await later.waitForURL(`${base}/if/user/`);
    await later.getByRole('heading', { name: 'You are signed in' }).waitFor();
  } finally {
    await provider.close();
  }
});

test('set up an authenticator app and recovery codes from the user page, then sign in with each', async ({ base, screenshots, newPage, account }) => {
  // The default flows: the user page links to setting up an app (and recovery codes), and the
  // sign-in's validation stage asks for a code of those who have one.
  const grace = await account('Grace Hopper');
  const page = await newPage();
  await signIn(page, base, grace.email, PASSWORD);
  await page.waitForURL(`${base}/if/user/`);
  await page.getByText('No authenticator is set up').waitFor();
  await page.getByRole('link', { name: 'Set up: Authenticator app' }).click();
  await page.waitForURL(`${base}/if/flow/default-authenticator-setup/`);
  await page.getByRole('img', { name: 'Scan with your authenticator app' }).waitFor();
  const key = (await page.locator('ul.listing code').first().textContent()).replace(/\s/g, '');
  const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(key), algorithm: 'SHA1', digits: 6, period: 30 });
  if (screenshots) await page.screenshot({ path: join(screenshots, 'totp-setup.png') });
  const code = page.getByLabel('Code');
  assert.equal(await code.getAttribute('autocomplete'), 'one-time-code');
  assert.equal(await code.getAttribute('inputmode'), 'numeric');
  await code.fill(totp.generate() === '000000' ? '111111' : '000000');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByText('Code does not match.').waitFor();
  await page.getByLabel('Code').fill(totp.generate());
  await page.getByRole('button', { name: 'Continue' }).click();

  // The recovery codes, shown once.
  await page.getByText('These are your recovery codes.').waitFor();
  const recovery = await page.locator('ul.listing code').allTextContents();
  assert.equal(recovery.length, 10);
  if (screenshots) await page.screenshot({ path: join(screenshots, 'recovery-codes.png') });
  await page.getByRole('button', { name: 'I have saved these codes' }).click();
  await page.waitForURL(`${base}/if/user/`);
  await page.getByText('Authenticator app · added').waitFor();
  await page.getByText('Recovery codes · added').waitFor();
  await page.getByLabel('New name for TOTP Device').fill('Phone app');
  await page.getByRole('button', { name: 'Rename' }).first().click();
  await page.waitForURL(`${base}/if/user/`);
  await page.getByLabel('New name for Phone app').waitFor();
  if (screenshots) await page.screenshot({ path: join(screenshots, 'user-authenticators.png'), fullPage: true });

  // A new browser: after the password, the app's code signs in (the next step's: setting up took this one).
  const later = await newPage();
  await signIn(later, base, grace.email, PASSWORD);
  await later.getByText('Enter the code from your authenticator app, or one of your recovery codes.').waitFor();
  if (screenshots) await later.screenshot({ path: join(screenshots, 'totp-code.png') });
  await later.getByLabel('Code').fill(totp.generate({ timestamp: Date.now() + 30_000 }));
  await later.getByRole('button', { name: 'Verify' }).click();
  await later.waitForURL(`${base}/if/user/`);

  // Another: a recovery code, typed in capitals with a dash, signs in once; then she removes the codes.
  const lost = await newPage();
  await signIn(lost, base, grace.email, PASSWORD);
  await lost.getByLabel('Code').fill(`${recovery[0].slice(0, 6).toUpperCase()}-${recovery[0].slice(6)}`);
  await lost.getByRole('button', { name: 'Verify' }).click();
  await lost.waitForURL(`${base}/if/user/`);
  await lost.getByRole('button', { name: 'Remove Static Token (Recovery codes)' }).click();
  await lost.waitForURL(`${base}/if/user/`);
  assert.equal(await lost.getByText('Recovery codes · added').count(), 0, 'the codes are gone');
  await lost.getByText('Authenticator app · added').waitFor();
});

const server = await startServer();
const screenshots = process.env.E2E_SCREENSHOTS;
if (screenshots) mkdirSync(screenshots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
const suiteStarted = Date.now();
let failed = 0;
try {
  for (const { name, body } of tests) {
    const started = Date.now();
    const contexts = [];
    const problems = [];
    const watched = new WeakSet();
    const watchOnce = (page) => {
      if (watched.has(page)) return;
      watched.add(page);
      watch(page, problems);
    };
    const newPage = async (options) => {
      const context = await browser.newContext(options);
      contexts.push(context);
      context.on('page', watchOnce);
      const page = await context.newPage();
      watchOnce(page);
      return page;
    };
    try {
      await body({ base: server.base, screenshots, newPage, account: server.account, cli: server.cli });
      assert.deepEqual(problems, [], 'no page logged an error');
      console.log(`ok   ${name} (${Date.now() - started} ms)`);
    } catch (error) {
      failed++;
      console.log(`FAIL ${name}\n${error.stack}`);
      if (problems.length) console.log(`pages logged:\n${problems.join('\n')}`);
    } finally {
      for (const context of contexts) await context.close();
    }
  }
} finally {
  await browser.close();
  await server.stop();
}
console.log(`${tests.length - failed} passed, ${failed} failed (${((Date.now() - suiteStarted) / 1000).toFixed(1)} s)`);
process.exit(failed ? 1 : 0);
