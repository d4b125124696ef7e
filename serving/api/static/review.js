
"use strict";
(() => {
  const KEY_STORE = "brandforge.review.key";
  const m = location.pathname.match(/^(.*\/)review\/?$/);
  const BASE = m ? m[1] : "/";
  const $ = (sel) => document.querySelector(sel);
  const queue = $("#queue"), statusLine = $("#status"), errorLine = $("#error");
  const keyInput = $("#api-key"), countLine = $("#count");
  let total = 0;

  const say = (text) => { statusLine.textContent = text; };
  const fail = (text) => { errorLine.textContent = text; };
  const headers = () => ({ "Authorization": "Bearer " + keyInput.value.trim() });

  async function apiError(response) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      if (typeof body.detail === "string") detail = body.detail;
      else if (Array.isArray(body.detail)) detail = body.detail.map((d) => d.msg).join("; ");
    } catch (_) { /* not JSON: keep the status text */ }
    const hint = response.status === 401 ? " (check the API key)" : "";
    return `${response.status}: ${detail}${hint}`;
  }

  function showCount() {
    countLine.textContent = total === 1 ? "1 asset waiting" : `${total} assets waiting`;
    document.body.dataset.total = String(total);
  }

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function loadThumb(img, assetId) {
    try {
      const url = BASE + "v1/assets/" + encodeURIComponent(assetId);
      const r = await fetch(url, { headers: headers() });
      if (!r.ok) {
        img.alt = "image unavailable: " + (await apiError(r));
        img.dataset.state = "error";
        return;
      }
      img.src = URL.createObjectURL(await r.blob());
      await img.decode();  // "loaded" means drawable: naturalWidth is known
      img.dataset.state = "loaded";
    } catch (err) {
      img.alt = "image unavailable: " + err; img.dataset.state = "error";
    }
  }

  // A region rule names the tile it failed on, (x0, y0, x1, y1) in image pixels: outline it
  // over the thumbnail. The frame takes the image's own aspect ratio, so percentages of the
  // natural size land on the same pixels at any displayed size. Styles are set through the
  // CSSOM, which the page's Content-Security-Policy allows (style attributes it would refuse).
  function markRegions(frame, img, violations) {
    const w = img.naturalWidth, h = img.naturalHeight;
    if (img.dataset.state !== "loaded" || !w || !h) return;
    frame.style.aspectRatio = `${w} / ${h}`;
    for (const v of violations) {
      const box = Array.isArray(v.box) && v.box.length === 4 ? v.box.map(Number) : null;
      if (!box || !box.every(Number.isFinite)) continue;
      const [x0, y0, x1, y1] = [Math.max(0, box[0]), Math.max(0, box[1]),
        Math.min(w, box[2]), Math.min(h, box[3])];
      if (x1 <= x0 || y1 <= y0) continue;
      const mark = el("div", { class: "region", "data-role": "region",
        "data-rule": v.rule || "", title: `${v.rule || "rule"}: ${v.message || ""}` });
      Object.assign(mark.style, {
        left: `${100 * x0 / w}%`, top: `${100 * y0 / h}%`,
        width: `${100 * (x1 - x0) / w}%`, height: `${100 * (y1 - y0) / h}%`,
      });
      frame.append(mark);
    }
  }

  function card(item) {
    const c = el("article",
      { class: "card", "data-asset-id": item.asset_id, "data-brand": item.brand });
    const img = el("img", { alt: "asset " + item.asset_id, "data-role": "thumb" });
    const frame = el("div", { class: "frame" });
    frame.append(img);
    c.append(frame);
    const score = item.score === null || item.score === undefined
      ? "n/a" : Number(item.score).toFixed(2);
    const model = `${item.model.name} v${item.model.version} (${item.model.variant})`;
    c.append(el("div", { class: "meta", "data-role": "brand" },
      `${item.brand} · ${model} · ${item.format}`));
    c.append(el("p", { class: "prompt", "data-role": "prompt" }, item.prompt));
    c.append(el("div", { class: "meta", "data-role": "score" }, "compliance score " + score));
    const list = el("ul", { "data-role": "violations" });
    for (const v of item.violations || []) {
      const text = `${v.rule || "rule"}: ${v.message || ""}`;
      list.append(el("li", { "data-rule": v.rule || "" }, text));
    }
    if (!list.children.length) list.append(el("li", {}, "no violations recorded"));
    c.append(list);
    const row = el("div", { class: "decide" });
    const reason = el("input", { type: "text", "data-role": "reason", maxlength: "500",
      placeholder: "reason (required to reject)", "aria-label": "reason" });
    const approve = el("button", { type: "button", "data-action": "approve" }, "Approve");
    const reject = el("button", { type: "button", "data-action": "reject" }, "Reject");
    approve.addEventListener("click", () => decide(c, item, "approve", reason.value));
    reject.addEventListener("click", () => {
      if (!reason.value.trim()) {
        fail("Give a reason to reject " + item.asset_id + ".");
        reason.focus();
        return;
      }
      decide(c, item, "reject", reason.value);
    });
    row.append(reason, approve, reject);
    c.append(row);
    loadThumb(img, item.asset_id).then(() => markRegions(frame, img, item.violations || []));
    return c;
  }

  function removeCard(c) {
    const img = c.querySelector("img");
    if (img && img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    c.remove();
  }

  async function decide(c, item, decision, reason) {
    fail("");
    c.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      const r = await fetch(BASE + "v1/review/" + encodeURIComponent(item.asset_id), {
        method: "POST",
        headers: { ...headers(), "Content-Type": "application/json" },
        body: JSON.stringify({ decision, reason: reason.trim() || null }),
      });
      if (!r.ok) {
        fail(`Could not ${decision} ${item.asset_id}: ${await apiError(r)}`);
        if (r.status === 409 || r.status === 404) { removeCard(c); total -= 1; showCount(); }
        return;
      }
      const done = await r.json();
      removeCard(c);
      total -= 1;
      showCount();
      say(`${done.status === "approved" ? "Approved" : "Rejected"} ${item.asset_id} (${item.brand})`
        + (done.review_reason ? `: ${done.review_reason}` : "") + ".");
    } catch (err) {
      fail(`Could not ${decision} ${item.asset_id}: ${err}`);
    } finally {
      c.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  }

  async function load() {
    fail("");
    if (!keyInput.value.trim()) { fail("Enter an API key with the review role."); return; }
    sessionStorage.setItem(KEY_STORE, keyInput.value.trim());
    say("Loading…");
    document.body.dataset.state = "loading";
    try {
      const r = await fetch(BASE + "v1/review?limit=50&offset=0", { headers: headers() });
      if (!r.ok) { say(""); fail("Could not load the queue: " + (await apiError(r))); return; }
      const body = await r.json();
      queue.querySelectorAll(".card").forEach(removeCard);
      total = body.total;
      for (const item of body.items) queue.append(card(item));
      showCount();
      say(body.items.length < body.total
        ? `Showing the oldest ${body.items.length}; decide them, then reload for more.`
        : (body.total ? "" : "Nothing waits for review."));
    } catch (err) {
      say(""); fail("Could not load the queue: " + err);
    } finally {
      document.body.dataset.state = "ready";
    }
  }

  $("#key-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  $("#forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    keyInput.value = "";
    queue.querySelectorAll(".card").forEach(removeCard);
    total = 0;
    showCount();
    say("Key forgotten.");
  });
  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) { keyInput.value = saved; load(); }
})();
