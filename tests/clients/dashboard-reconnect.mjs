// The dashboard's socket dropped and back, in Debian's Chromium: the gateway closes a page's
// socket when the access token it was opened with expires (a few seconds in this test); the
// page renews the session from its refresh token, reconnects, and still shows a new payment
// without a reload. Run by tests/tests/e2e/dashboard.rs with $STORY = {base, apiKey, owner}.
import { chromium } from "playwright-core";

const { base, apiKey, owner } = JSON.parse(process.env.STORY);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const accessCookie = async (context) =>
  (await context.cookies(`${base}/dashboard`)).find((c) => c.name === "payrail_access")?.value;
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/dashboard/login`);
  await page.getByLabel("Email").fill(owner.email);
  await page.getByLabel("Password").fill(owner.password);
  await Promise.all([page.waitForURL(`${base}/dashboard`), page.getByRole("button", { name: "Sign in" }).click()]);
  await page.waitForSelector('body[data-live-state="live"]');
  await page.evaluate(() => {
    window.__notReloaded = true;
  });
  const first = await accessCookie(context);
  // The server ends the socket with its token; the page says so, then is live again.
  await page.waitForSelector('body[data-live-state="reconnecting"]', { timeout: 20000 });
  console.log("- the socket was closed: reconnecting");
  await page.waitForSelector('body[data-live-state="live"]', { timeout: 20000 });
  const renewed = await accessCookie(context);
  if (!renewed || renewed === first) throw new Error("the session was not renewed before reconnecting");
  console.log("- renewed the session and reconnected");
  const r = await fetch(`${base}/v1/payments`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ amount: 777, currency: "usd", provider: "simulated" }),
  });
  const payment = await r.json();
  await page.locator(`tr[data-payment="${payment.id}"]`).waitFor({ timeout: 15000 });
  if (!(await page.evaluate(() => window.__notReloaded === true))) throw new Error("the page reloaded");
  console.log(`- ${payment.id} appeared live after the reconnection`);
  console.log("the reconnection story passed");
} catch (e) {
  console.error(e.stack ?? String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
