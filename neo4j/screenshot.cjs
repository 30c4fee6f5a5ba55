// Screenshot of Neo4j Browser showing one query's graph in neo4j/style.grass: the picture
// docs/images/neo4j-browser-voc.png in docs/graph-stores.md. Needs Chromium and
// playwright-core (npm install playwright-core) and a server holding the graph:
//   NODE_PATH=DIR/node_modules NEO4J_PASSWORD=... node neo4j/screenshot.cjs [OUT.png]
// Reads NEO4J_HTTP_PORT (7474), NEO4J_BOLT_PORT (7687), NEO4J_USER (neo4j), CHROMIUM
// (/usr/bin/chromium) and QUERY (default: the VOC hierarchy). The style is applied as a user
// would: style.grass dropped onto the Browser.
const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");

const env = process.env;
const http = env.NEO4J_HTTP_PORT || "7474";
const bolt = env.NEO4J_BOLT_PORT || "7687";
const user = env.NEO4J_USER || "neo4j";
const out = process.argv[2] || "docs/images/neo4j-browser-voc.png";
const query = env.QUERY || "MATCH p = (:Label {graph: 'voc'})-[:IS_A]->() RETURN p";
const grass = fs.readFileSync(path.join(__dirname, "style.grass"), "utf8");

// Zoom to fit spreads the graph under the Overview panel too: zoom out until it fits left of the
// panel, then drag the canvas (from its empty top-left corner) to move it there.
async function clearOfOverview(page) {
  const canvas = await page.locator("svg").filter({ has: page.locator(".node") }).first().boundingBox();
  const panel = await page.getByText("Overview", { exact: true }).boundingBox();
  const right = panel.x - 30;
  for (let i = 0; i < 4; i++) {
    const boxes = await page.locator("svg .node").evaluateAll((ns) => ns.map((n) => n.getBoundingClientRect()));
    const left = Math.min(...boxes.map((b) => b.left));
    const width = Math.max(...boxes.map((b) => b.right)) - left;
    if (width > right - canvas.x - 20) {
      await page.locator('button[aria-label="zoom-out"]').click();
      await page.waitForTimeout(800);
      continue;
    }
    const dx = canvas.x + (right - canvas.x - width) / 2 - left; // centre it in the free part
    await page.mouse.move(canvas.x + 4, canvas.y + 4);
    await page.mouse.down();
    await page.mouse.move(canvas.x + 4 + dx, canvas.y + 4, { steps: 10 });
    await page.mouse.up();
    await page.waitForTimeout(800);
    return;
  }
}

async function main() {
  if (!env.NEO4J_PASSWORD) throw new Error("set NEO4J_PASSWORD");
  const browser = await chromium.launch({ executablePath: env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`http://127.0.0.1:${http}/browser/?dbms=neo4j://${user}@127.0.0.1:${bolt}`);
    await page.locator('input[data-testid="password"]').fill(env.NEO4J_PASSWORD);
    await page.locator('button[data-testid="connect"]').click();
    const editor = page.locator(".monaco-editor").first();
    await editor.waitFor({ timeout: 30000 });
    await page.waitForTimeout(2000);
    // Drop style.grass onto the Browser, as a user drags the file in.
    const file = await page.evaluateHandle((text) => {
      const data = new DataTransfer();
      data.items.add(new File([text], "style.grass"));
      return data;
    }, grass);
    const styled = () => page.evaluate(() => (localStorage.getItem("neo4j.grass") || "").includes("DatasetLabel"));
    for (let i = 0; i < 5 && !(await styled()); i++) {
      for (const type of ["dragenter", "dragover", "drop"]) {
        await page.locator(".filedrop").dispatchEvent(type, { dataTransfer: file });
        await page.waitForTimeout(200);
      }
      await page.waitForTimeout(1000);
    }
    if (!(await styled())) throw new Error("the dropped style.grass was not applied");
    for (const command of [":clear", query]) {
      await editor.click();
      await page.keyboard.insertText(command); // one line: Monaco indents and closes brackets on typed newlines
      await page.keyboard.press("Control+Enter");
      await page.waitForTimeout(1000);
    }
    await page.waitForSelector("svg .node", { timeout: 30000 });
    await page.locator('button[title="Fullscreen"]').first().click();
    await page.waitForTimeout(5000); // the force layout settles
    await page.locator('button[aria-label="zoom-to-fit"]').click();
    await page.waitForTimeout(1000);
    await clearOfOverview(page);
    await page.screenshot({ path: out });
    console.log(`wrote ${out}`);
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  console.error(`neo4j/screenshot.cjs: ${err.message}`);
  process.exit(1);
});
