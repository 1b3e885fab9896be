// The dashboard in Debian's Chromium (headless, driven by playwright-core), as the people of
// a merchant use it. Run by tests/tests/e2e/dashboard.rs with the story in $STORY (JSON):
// {base, apiKey, owner:{email,password}, viewer:{...}, stranger:{...}, shots}.
//
// An owner signs in and watches the overview; a payment created through the API appears
// without a reload; its delivery (failing) is opened from the payment page; the owner presses
// Retry and sees the new attempt arrive live. A viewer whose socket opened late still sees
// the payment, and no Retry button; a user of another merchant never sees the payment.
// Every page fits a phone's and a laptop's width. Screenshots of every page go to `shots`.
import { chromium } from "playwright-core";

const story = JSON.parse(process.env.STORY);
const { base, apiKey, shots } = story;
const fail = (message) => {
  throw new Error(message);
};
const step = (message) => console.log(`- ${message}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});

async function signIn(who, prepare, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  if (prepare) await prepare(context);
  const page = await context.newPage();
  // Any script error or CSP refusal fails the story.
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A 404 the story asks for on purpose is logged as a failed load: not a problem.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`);
  });
  page.problems = problems;
  await page.goto(`${base}/dashboard/login`);
  await page.getByLabel("Email").fill(who.email);
  await page.getByLabel("Password").fill(who.password);
  await Promise.all([page.waitForURL(`${base}/dashboard`), page.getByRole("button", { name: "Sign in" }).click()]);
  return page;
}

async function live(page) {
  await page.waitForSelector('body[data-live-state="live"]', { timeout: 15000 });
}

// Marks the document: if the page reloads, the mark is gone.
async function mark(page) {
  await page.evaluate(() => {
    window.__notReloaded = true;
  });
}
async function stillMarked(page, what) {
  if (!(await page.evaluate(() => window.__notReloaded === true))) fail(`${what}: the page reloaded`);
}

async function api(method, path, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await r.json();
  if (r.status >= 300) fail(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

try {
  const owner = await signIn(story.owner);
  await live(owner);
  step("the owner is signed in and the overview is live");
  await mark(owner);

  // The viewer's overview is drawn, but its socket is held back until after the payment
  // below: a page must still catch up with what changed before its socket was greeted.
  let letTheSocketThrough;
  const held = new Promise((resolve) => (letTheSocketThrough = resolve));
  const viewer = await signIn(story.viewer, (context) =>
    context.routeWebSocket(/\/dashboard\/stream$/, async (ws) => {
      await held;
      ws.connectToServer();
    }),
  );
  await mark(viewer);

  const payment = await api("POST", "/v1/payments", {
    amount: 4321,
    currency: "eur",
    provider: "simulated",
    description: "Order #2001",
  });
  const row = owner.locator(`tr[data-payment="${payment.id}"]`);
  await row.waitFor({ timeout: 15000 });
  await stillMarked(owner, "the new payment");
  if (!(await row.innerText()).includes("€43.21")) fail("the new row does not show €43.21");
  step(`payment ${payment.id} appeared on the overview without a reload`);
  await owner.screenshot({ path: `${shots}/1-overview.png`, fullPage: true });

  // A keyboard user on that row's link keeps their place when the next payment redraws it.
  const link = row.getByRole("link");
  await link.focus();
  const before = Number((await owner.getAttribute("body", "data-live-updates")) ?? 0);
  const next = await api("POST", "/v1/payments", { amount: 1200, currency: "eur", provider: "simulated" });
  await owner.locator(`tr[data-payment="${next.id}"]`).waitFor({ timeout: 15000 });
  if (!(Number(await owner.getAttribute("body", "data-live-updates")) > before)) fail("no live update came");
  const onto = await owner.evaluate(() => document.activeElement?.getAttribute("href"));
  if (onto !== `/dashboard/payments/${payment.id}`) fail(`the focus moved to ${onto} when the page updated`);
  step("the keyboard focus stayed on its link through a live update");

  if ((await viewer.getAttribute("body", "data-live-state")) === "live") fail("the viewer's socket was not held");
  letTheSocketThrough();
  await live(viewer);
  await viewer.locator(`tr[data-payment="${payment.id}"]`).waitFor({ timeout: 15000 });
  await stillMarked(viewer, "the late socket's page");
  step("a page whose socket opened after the payment still caught up with it");

  await Promise.all([owner.waitForURL(`${base}/dashboard/payments/${payment.id}`), row.getByRole("link").click()]);
  await live(owner);
  await mark(owner);
  // Every attempt fails: the delivery ends failed, shown live on the payment page.
  const delivery = owner.locator("tr[data-delivery]");
  await owner.locator("tr[data-delivery] td:nth-child(3)", { hasText: "failed" }).waitFor({ timeout: 20000 });
  await stillMarked(owner, "the failing delivery");
  const deliveryId = await delivery.first().getAttribute("data-delivery");
  step(`its delivery ${deliveryId} failed, shown live on the payment page`);
  await owner.screenshot({ path: `${shots}/2-payment.png`, fullPage: true });

  await Promise.all([
    owner.waitForURL(`${base}/dashboard/deliveries/${deliveryId}`),
    delivery.first().getByRole("link").first().click(),
  ]);
  await live(owner);
  const attemptsBefore = await owner.locator("tr[data-attempt]").count();
  if (attemptsBefore < 1) fail("the delivery page lists no attempt");
  await owner.screenshot({ path: `${shots}/3-delivery-failed.png`, fullPage: true });

  await Promise.all([
    owner.waitForURL((url) => url.pathname === `/dashboard/deliveries/${deliveryId}` && url.search === ""),
    owner.getByRole("button", { name: `Retry delivery ${deliveryId}` }).click(),
  ]);
  await owner.locator("p[role=status]").waitFor({ timeout: 5000 });
  await live(owner);
  await mark(owner);
  step("the owner pressed Retry");
  // The endpoint answers slowly now: the attempt arrives after the page is shown.
  await owner.locator("#delivery-status", { hasText: "succeeded" }).waitFor({ timeout: 20000 });
  await stillMarked(owner, "the new attempt");
  const attemptsAfter = await owner.locator("tr[data-attempt]").count();
  if (attemptsAfter !== attemptsBefore + 1) fail(`${attemptsBefore} attempts before, ${attemptsAfter} after`);
  const updates = Number(await owner.getAttribute("body", "data-live-updates"));
  if (!(updates >= 1)) fail("the page was not updated live");
  step(`the new attempt arrived live (${attemptsAfter} attempts)`);
  await owner.screenshot({ path: `${shots}/4-delivery-retried.png`, fullPage: true });

  // A few more payments, so the overview's figures and chart have something to show.
  const made = [];
  for (const [amount, currency, outcome] of [
    [12500, "eur", "succeeded"],
    [5000, "xaf", "succeeded"],
    [1999, "usd", "failed"],
  ]) {
    const p = await api("POST", "/v1/payments", { amount, currency, provider: "simulated" });
    await api("POST", `/v1/sandbox/payments/${p.id}/complete`, { outcome });
    made.push(p);
  }

  // A refund from a phone: typed in euros, with a reason, confirmed, told by a flash.
  await owner.setViewportSize({ width: 390, height: 844 });
  const refunded = made[0];
  await owner.goto(`${base}/dashboard/payments/${refunded.id}`);
  await owner.getByLabel("Refund amount (EUR)").fill("25.00");
  await owner.getByLabel("Reason").selectOption("requested_by_customer");
  await owner.getByRole("button", { name: "Refund…" }).click();
  await owner.getByRole("heading", { name: "Refund €25.00?" }).waitFor({ timeout: 5000 });
  if (!(await owner.content()).includes("requested by the customer")) fail("the confirmation does not say the reason");
  await Promise.all([
    owner.waitForURL(`${base}/dashboard/payments/${refunded.id}`),
    owner.getByRole("button", { name: "Refund €25.00" }).click(),
  ]);
  await owner.getByText(/Refund of €25\.00 recorded/).waitFor({ timeout: 5000 });
  await owner.locator(`li[data-refund] .reason`, { hasText: "requested by the customer" }).waitFor({ timeout: 5000 });
  const after = await api("GET", `/v1/payments/${refunded.id}/refunds`);
  if (after.data[0]?.amount !== 2500 || after.data[0]?.reason !== "requested_by_customer")
    fail(`the API holds ${JSON.stringify(after.data[0])}`);
  step("a refund of €25.00 with its reason was made from a phone");
  // Any run of days on the overview, chosen with the date fields.
  const today = new Date().toISOString().slice(0, 10);
  await owner.goto(`${base}/dashboard`);
  await owner.getByLabel("From (UTC)").fill(today);
  await Promise.all([
    owner.waitForURL((url) => url.searchParams.get("from") === today),
    owner.getByRole("button", { name: "Show days" }).click(),
  ]);
  await owner.getByRole("heading", { name: `${today} (UTC)` }).waitFor({ timeout: 5000 });
  if ((await owner.locator(`rect[data-hour="${today}"]`).count()) < 1) fail("today's bar is missing from the chosen days");
  step("the overview shows the days chosen");
  await owner.setViewportSize({ width: 1280, height: 900 });
  for (const [path, shot] of [
    ["/dashboard/payments", "5-payments.png"],
    ["/dashboard/webhooks", "6-webhooks.png"],
    ["/dashboard/logs", "7-logs.png"],
    ["/dashboard/keys", "8-keys.png"],
    ["/dashboard", "9-overview-after.png"],
  ]) {
    const r = await owner.goto(`${base}${path}`);
    if (r?.status() !== 200) fail(`${path} answered ${r?.status()}`);
    await owner.screenshot({ path: `${shots}/${shot}`, fullPage: true });
  }
  if (owner.problems.length) fail(owner.problems.join("\n"));

  // Every page fits its screen, from a 390 px phone to a 1366 px laptop: nothing scrolls
  // sideways (tables stack or wrap), the design system's stylesheet applies, and the strict
  // CSP allows no inline style.
  const pages = [
    ["overview", "/dashboard"],
    // A year of days, by day: 366 bars in the same chart.
    ["overview-year", `/dashboard?from=${new Date(Date.now() - 365 * 86400e3).toISOString().slice(0, 10)}`],
    ["payments", "/dashboard/payments"],
    ["payment", `/dashboard/payments/${payment.id}`],
    ["delivery", `/dashboard/deliveries/${deliveryId}`],
    ["webhooks", "/dashboard/webhooks"],
    ["logs", "/dashboard/logs"],
    ["keys", "/dashboard/keys"],
    ["reconciliation", "/dashboard/reconciliation"],
    ["balance", "/dashboard/balance"],
    ["usage", "/dashboard/usage"],
  ];
  for (const [width, height] of [
    [390, 844],
    [1366, 768],
  ]) {
    await owner.setViewportSize({ width, height });
    for (const [name, path] of pages) {
      const r = await owner.goto(`${base}${path}`);
      if (r?.status() !== 200) fail(`${path} answered ${r?.status()}`);
      const csp = r.headers()["content-security-policy"] ?? "";
      if (!csp.includes("style-src 'self'") || csp.includes("unsafe-inline")) fail(`${path}: CSP ${csp}`);
      // Measured with every disclosure open (event payloads, the headers each attempt sent).
      const { wide, canvas } = await owner.evaluate(() => ({
        opened: document.querySelectorAll("details").forEach((d) => (d.open = true)),
        wide: document.documentElement.scrollWidth - window.innerWidth,
        canvas: getComputedStyle(document.body).backgroundColor,
      }));
      if (wide > 0) fail(`${name} is ${wide} px wider than a ${width} px screen`);
      if (canvas !== "rgb(244, 245, 247)") fail(`${name}: the stylesheet did not apply (${canvas})`);
      if (width < 600) await owner.screenshot({ path: `${shots}/phone-${name}.png`, fullPage: true });
    }
    step(`every page fits a ${width} px screen`);
  }
  await owner.setViewportSize({ width: 1280, height: 900 });
  if (owner.problems.length) fail(owner.problems.join("\n"));

  await viewer.goto(`${base}/dashboard/deliveries/${deliveryId}`);
  if ((await viewer.getByRole("button", { name: /Retry/ }).count()) !== 0) fail("a viewer sees a Retry button");
  await viewer.goto(`${base}/dashboard/payments/${payment.id}`);
  if ((await viewer.getByRole("button", { name: /Retry|Cancel|Refund/ }).count()) !== 0)
    fail("a viewer sees an action button");
  await viewer.screenshot({ path: `${shots}/10-viewer.png`, fullPage: true });
  step("the viewer sees the payment and no button");

  // Someone in Tokyo reads times in Tokyo's zone: relative while recent, in full on hover.
  const traveller = await signIn(story.owner, null, { timezoneId: "Asia/Tokyo", locale: "en-US" });
  await traveller.goto(`${base}/dashboard/payments`);
  const first = traveller.locator("tr[data-payment] time").first();
  await traveller.locator("time[data-local]").first().waitFor({ timeout: 5000 });
  const [said, hover] = [await first.innerText(), await first.getAttribute("title")];
  if (!/ago|now/.test(said)) fail(`a payment made a minute ago reads "${said}"`);
  if (!hover?.includes("GMT+9")) fail(`its full time is not in Tokyo's zone: "${hover}"`);
  step(`times are the reader's: "${said}", "${hover}" on hover`);
  if (traveller.problems.length) fail(traveller.problems.join("\n"));

  const stranger = await signIn(story.stranger);
  await live(stranger);
  await mark(stranger);
  // A change of the first merchant while the stranger watches: nothing of it shows.
  await api("POST", `/v1/payments/${payment.id}/cancel`);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await stillMarked(stranger, "the stranger's overview");
  if ((await stranger.content()).includes(payment.id)) fail("another merchant's user sees the payment");
  const theirs = await stranger.goto(`${base}/dashboard/payments/${payment.id}`);
  if (theirs?.status() !== 404) fail(`another merchant's user got ${theirs?.status()} for the payment`);
  await stranger.goto(`${base}/dashboard`);
  await stranger.screenshot({ path: `${shots}/11-other-merchant.png`, fullPage: true });
  step("another merchant's user never sees it");
  if (stranger.problems.length) fail(stranger.problems.join("\n"));
  console.log("the dashboard story passed");
} catch (e) {
  console.error(e.stack ?? String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
