// The dashboard in a real browser: Debian's headless Chromium driven by playwright-core
// (pinned in tests/fixtures/package.json). Started by tests/it/dashboard_browser.rs while a
// release story runs; talks to it on stdin/stdout:
//   prints `WATCHING` once the build page shows the provisioning step waiting for it, and
//   waits for a line on stdin before going on; prints `RESULT <json>` at the end.
// Environment: BAKERY_URL, OPERATOR_TOKEN, JOB_ID, SHOTS (a folder for the screenshots),
// FIXTURES (tests/fixtures, where node_modules is).
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const require = createRequire(join(process.env.FIXTURES, "package.json"));
const { chromium } = require("playwright-core");

const url = process.env.BAKERY_URL;
const jobId = process.env.JOB_ID;
const shots = process.env.SHOTS;
const WAIT = 300_000;

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// A browser with a fresh profile (its own --user-data-dir): no cookie of another.
async function browser() {
  const dir = mkdtempSync(join(tmpdir(), "bakery-chromium-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
    viewport: { width: 1100, height: 760 },
    timeout: 60_000,
  });
  context.setDefaultTimeout(WAIT);
  const page = context.pages()[0] ?? (await context.newPage());
  return { context, page, dir };
}

async function close({ context, dir }) {
  await context.close();
  rmSync(dir, { recursive: true, force: true });
}

const stdinLines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdinLines.once("line", resolve));

const result = {};
const operator = await browser();
try {
  const page = operator.page;
  // Nobody signed in: the sign-in page. The operator signs in with the token.
  await page.goto(`${url}/dashboard`);
  result.unsignedUrl = page.url();
  await page.fill("#token", process.env.OPERATOR_TOKEN);
  await Promise.all([page.waitForURL(`${url}/dashboard`), page.click("form button[type=submit]")]);

  // The builds list while the release runs.
  const link = page.locator(`a[href="/dashboard/jobs/${jobId}"]`);
  await link.waitFor();
  result.listWhileRunning = await page.locator("main").innerText();
  await page.screenshot({ path: join(shots, "builds.png"), fullPage: true });

  // The build page; its live log gets the provisioning step's output.
  await link.click();
  await page.waitForURL(`${url}/dashboard/jobs/${jobId}`);
  result.stateOnOpen = await page.locator("#state").innerText();
  await page.waitForFunction(
    () => document.getElementById("log").textContent.includes("waiting for the browser"),
    null,
    { timeout: WAIT },
  );
  console.log("WATCHING");
  await nextLine();
  await page.waitForFunction(
    () => document.getElementById("log").textContent.includes("provisioned while the browser watched"),
    null,
    { timeout: WAIT },
  );
  result.liveLog = await page.locator("#log").innerText();
  await page.screenshot({ path: join(shots, "build-live.png"), fullPage: true });

  // The stream ends with the job and the page shows the finished build with its images.
  await page.waitForFunction(
    () => ["succeeded", "failed", "cancelled"].some((s) =>
      document.getElementById("state").textContent.startsWith(s)),
    null,
    { timeout: WAIT },
  );
  result.finalState = await page.locator("#state").innerText();
  result.finishedImages = await page.locator("table.images").allInnerTexts();
  result.finishedHasLiveScript = (await page.content()).includes("EventSource");
  await page.screenshot({ path: join(shots, "build.png"), fullPage: true });

  await page.goto(`${url}/dashboard/images`);
  result.imagesPage = await page.locator("main").innerText();
  await page.screenshot({ path: join(shots, "images.png"), fullPage: true });
  await page.goto(`${url}/dashboard/health`);
  await page.screenshot({ path: join(shots, "health.png"), fullPage: true });
} finally {
  await close(operator);
}

// A person without read access to the repository signs in with GitHub, in a browser of
// their own, and sees none of its builds.
const person = await browser();
try {
  const page = person.page;
  await page.goto(`${url}/dashboard/sign-in`);
  await Promise.all([
    page.waitForURL(`${url}/dashboard`),
    page.click("text=Sign in with GitHub"),
  ]);
  result.personList = await page.locator("body").innerText();
  result.personLinks = await page.locator("a[href^='/dashboard/jobs/']").count();
  await page.screenshot({ path: join(shots, "builds-person-without-access.png"), fullPage: true });
  const direct = await page.goto(`${url}/dashboard/jobs/${jobId}`);
  result.personJobStatus = direct.status();
  result.personJobBody = await page.content();
} finally {
  await close(person);
}

console.log(`RESULT ${JSON.stringify(result)}`);
stdinLines.close();
