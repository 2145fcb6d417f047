// The admin page (/admin) in headless Chromium against a real switchboard with
// an API key: a wrong key is refused, the right one signs in (kept in
// sessionStorage, nothing in the URL); the page shows a room that two test
// clients join, updates when one leaves, and a kick from the page (confirmed)
// disconnects the user with 4403.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, openTestPage, startServer } from './harness.mjs';

const KEY = 'admin-e2e-key-0123456789';
let server;
let browser;

before(async () => {
  server = await startServer(['--api-key', KEY]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A test client (the e2e page's SignalingClient, no media) in `room` as `userId`. */
async function member(room, userId) {
  const page = await openTestPage(browser, server);
  await page.evaluate((config) => window.sb.start(config), { url: server.wsUrl, userId, room, media: false });
  return page;
}

/** The user ids the admin page lists for `room`. */
function listed(admin, room) {
  return admin.evaluate(
    (r) => [...document.querySelectorAll(`table[data-room="${r}"] tbody tr`)].map((tr) => tr.dataset.user),
    room,
  );
}

describe('admin page in Chromium', { timeout: 120000 }, () => {
  test('sign in, watch a room live, kick a member (4403)', async () => {
    const room = `admin-${process.pid}`;
    const admin = await browser.context.newPage();
    admin.on('pageerror', (e) => console.log(`[admin error] ${e.message}`));
    await admin.goto(`${server.httpOrigin}/admin`);
    await admin.getByLabel('API key').fill('not-the-key-0123456789');
    await admin.getByRole('button', { name: 'Sign in' }).click();
    await admin.getByText('the server refused this key').waitFor();
    await admin.getByLabel('API key').fill(KEY);
    await admin.getByRole('button', { name: 'Sign in' }).click();
    await admin.locator('#dashboard').waitFor();
    assert.ok(!admin.url().includes(KEY), 'the key is not in the URL');
    assert.equal(await admin.evaluate(() => sessionStorage.getItem('switchboard:api-key')), KEY);

    const ada = await member(room, 'ada');
    const bob = await member(room, 'bob');
    await admin.waitForFunction(
      (r) => document.querySelectorAll(`table[data-room="${r}"] tbody tr`).length === 2,
      room,
      { timeout: 15000 },
    );
    assert.deepEqual(await listed(admin, room), ['ada', 'bob']);
    assert.equal(await admin.locator('#connections').textContent(), '2');

    // One leaves: the page follows.
    await bob.evaluate(() => window.sb.client.close());
    await admin.waitForFunction(
      (r) => document.querySelectorAll(`table[data-room="${r}"] tbody tr`).length === 1,
      room,
      { timeout: 15000 },
    );
    assert.deepEqual(await listed(admin, room), ['ada']);

    // A kick from the page, after its confirmation, closes ada's connection with 4403.
    let asked = '';
    admin.once('dialog', (d) => {
      asked = d.message();
      void d.accept();
    });
    await admin.locator(`table[data-room="${room}"] tr[data-user="ada"] button.kick`).click();
    await ada.waitForFunction(() => window.sb.events.some((e) => e.type === 'closed'), null, { timeout: 15000 });
    const closed = await ada.evaluate(() => window.sb.events.find((e) => e.type === 'closed'));
    assert.equal(closed.code, 4403);
    assert.match(asked, /Kick ada/);
    await admin.waitForFunction((r) => !document.querySelector(`table[data-room="${r}"]`), room, { timeout: 15000 });
    // Reloaded, the tab stays signed in (sessionStorage); signing out forgets the key.
    await admin.reload();
    await admin.locator('#dashboard').waitFor();
    await admin.getByRole('button', { name: 'Sign out' }).click();
    assert.equal(await admin.evaluate(() => sessionStorage.getItem('switchboard:api-key')), null);
    for (const p of [admin, ada, bob]) await p.close();
  });
});
