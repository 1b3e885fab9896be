// The hosted checkout in Debian's Chromium (headless, driven by playwright-core), as a
// customer on a phone uses it: load the page, read the amount, see the QR code, open it in a
// second tab too, pay in the first, land on the merchant's return_url. Run by tests/tests/e2e/checkout.rs:
//   node checkout.mjs CHECKOUT_URL RETURN_URL_PREFIX EXPECTED_AMOUNT SCREENSHOT_DIR
// Screenshots of each step are kept in SCREENSHOT_DIR (CI artefacts).
import { chromium, devices } from "playwright-core";

const [checkoutUrl, returnPrefix, expectedAmount, shots] = process.argv.slice(2);
const fail = (message) => {
  console.error(message);
  process.exit(1);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  // A phone: its viewport, touch and user agent.
  const context = await browser.newContext({ ...devices["Pixel 7"] });
  const page = await context.newPage();
  const response = await page.goto(checkoutUrl);
  if (response?.status() !== 200) fail(`checkout answered ${response?.status()}`);
  await page.screenshot({ path: `${shots}/1-checkout-mobile.png`, fullPage: true });

  const amount = (await page.locator("#amount").innerText()).trim();
  if (amount !== expectedAmount) fail(`amount shows ${JSON.stringify(amount)}, not ${expectedAmount}`);
  // Fits the phone: no horizontal scrolling.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) fail(`the page is ${overflow}px wider than the phone`);
  // Accessible: a language, a main landmark, a live status, a labelled QR code, buttons by name.
  if ((await page.getAttribute("html", "lang")) !== "en") fail("no lang attribute");
  if ((await page.locator("main").count()) !== 1) fail("no main landmark");
  if ((await page.getByRole("status").count()) !== 1) fail("no live status region");
  const qr = page.getByRole("img", { name: "QR code of this checkout page" });
  if (!(await qr.isVisible())) fail("no QR code");
  const pay = page.getByRole("button", { name: `Pay ${expectedAmount}` });
  const box = await pay.boundingBox();
  if (!box || box.height < 44) fail(`the Pay button is ${box?.height}px high, under 44px`);
  // Reachable by keyboard: Tab lands on the Pay button first.
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.textContent ?? "");
  if (!focused.startsWith("Pay")) fail(`Tab focused ${JSON.stringify(focused)}, not Pay`);

  // A desktop view too, for the screenshot of the QR code a customer scans.
  const desktop = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await desktop.goto(checkoutUrl);
  await desktop.screenshot({ path: `${shots}/2-checkout-desktop.png`, fullPage: true });
  await desktop.close();

  // The same checkout opened again in a second tab of this browser: the first tab still pays.
  const secondTab = await context.newPage();
  if ((await secondTab.goto(checkoutUrl))?.status() !== 200) fail("the second tab did not open");
  await secondTab.close();

  await Promise.all([page.waitForURL((url) => url.href.startsWith(returnPrefix)), pay.tap()]);
  const landed = new URL(page.url());
  if (landed.searchParams.get("status") !== "succeeded") fail(`landed on ${landed} without status=succeeded`);
  await page.screenshot({ path: `${shots}/3-returned.png`, fullPage: true });
  console.log(`paid and returned to ${landed}`);
} finally {
  await browser.close();
}
