// The dashboard's page behaviour: a day's details, the forget preview and confirm, job progress, verification.
// Every text from the device is put into the page with textContent (never as HTML). What a preview or a
// day's utterance list showed is dropped from the page and from memory as soon as a forget is confirmed
// (and on Cancel); nothing is kept in localStorage, sessionStorage or cookies.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, root) => (root || document).querySelector(sel);
  let pending = null;  // the selector the shown preview is for, with what it matched (what Confirm forgets)

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  async function request(method, url, body) {
    const init = {method, credentials: "same-origin", cache: "no-store", headers: {}};
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = csrf;
      init.body = JSON.stringify(body || {});
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      throw new Error("the dashboard server does not answer (was it stopped?)");
    }
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json") ? await response.json() : {error: (await response.text()).trim()};
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    return data;
  }

  function showError(message) {
    const box = $("#error");
    box.textContent = message;
    box.hidden = !message;
  }

  function section(id, title) {
    const node = $(id);
    node.replaceChildren(el("h2", {text: title}));
    node.hidden = false;
    return node;
  }

  function facts(pairs) {
    const dl = el("dl", {class: "facts"});
    for (const [k, v] of pairs) {
      if (v === undefined) continue;
      dl.append(el("div", {}, el("dt", {text: k}), el("dd", {text: v === null ? "—" : String(v)})));
    }
    return dl;
  }

  function table(headers, rows, cls) {
    const t = el("table", cls ? {class: cls} : {});
    t.append(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {text: h})))));
    const body = el("tbody");
    for (const r of rows) body.append(el("tr", {}, ...r.map((c) => el("td", {}, c === null ? "—" : c))));
    t.append(body);
    return t;
  }

  // -- a day ------------------------------------------------------------------------------------
  // A click on the calendar also fills the form: the day, or one end of the range when a range is chosen.
  function pickDay(day) {
    const f = form.elements;
    if (kind() === "range") {
      if (!f.from.value || f.to.value) { f.from.value = day; f.to.value = ""; }
      else if (day < f.from.value) { f.to.value = f.from.value; f.from.value = day; }
      else f.to.value = day;
    } else if (kind() === "day") {
      f.date.value = day;
    }
  }

  async function showDay(day) {
    showError("");
    pickDay(day);
    for (const b of document.querySelectorAll(".cell.selected")) b.classList.remove("selected");
    const cell = document.querySelector(`.cell[data-day="${day}"]`);
    if (cell) cell.classList.add("selected");
    let d;
    try {
      d = await request("GET", `/api/day/${day}`);
    } catch (e) {
      return showError(e.message);
    }
    const box = section("#day", day);
    box.append(el("p", {class: "state-line", text: d.summary}));
    for (const row of document.querySelectorAll("#receipts-table tr.highlight")) row.classList.remove("highlight");
    if (d.receipt) {
      box.append(el("p", {id: "day-receipt"}, `${d.forgotten} utterance${d.forgotten === 1 ? "" : "s"} forgotten by receipt `,
                    el("code", {text: d.receipt}), " (highlighted in the receipts table)"));
      const row = document.querySelector(`#receipts-table tr[data-receipt="${d.receipt}"]`);
      if (row) row.classList.add("highlight");
    }
    if (d.intents.length) {
      box.append(table(["intent", "utterances"], d.intents.map((i) => [i.intent, String(i.count)]), "intents"));
    }
    const actions = el("p", {class: "actions"});
    if (d.count) {
      const forgetDay = el("button", {type: "button", id: "forget-day", text: "Forget this day…"});
      forgetDay.addEventListener("click", () => { setForm("day", {date: day}); preview(); });
      const show = el("button", {type: "button", id: "show-utterances", class: "secondary",
                                 text: `Show its ${d.count} utterances`});
      show.addEventListener("click", () => showUtterances(day, box, show));
      actions.append(forgetDay, " ", show);
    }
    box.append(actions);
  }

  async function showUtterances(day, box, button) {
    let d;
    try {
      d = await request("GET", `/api/day/${day}/utterances`);
    } catch (e) {
      return showError(e.message);
    }
    button.remove();
    const list = el("ul", {class: "utterances", id: "utterance-list"});
    for (const u of d.utterances) {
      const box_ = el("input", {type: "checkbox", value: u.id, "aria-label": `select utterance ${u.id}`});
      list.append(el("li", {}, el("label", {}, box_, " ", el("span", {class: "text", text: u.text}),
                                  " ", el("span", {class: "hint", text: `${u.intent} · ${u.local} ${u.tz}`}))));
    }
    const forgetSome = el("button", {type: "button", id: "forget-selected", text: "Forget the ticked utterances…"});
    forgetSome.addEventListener("click", () => {
      const ids = [...list.querySelectorAll("input:checked")].map((i) => i.value);
      if (!ids.length) return showError("tick at least one utterance first");
      setForm("ids", {ids: ids.join(" ")});
      preview();
    });
    box.append(list, el("p", {}, forgetSome));
  }

  // -- the forget form and its preview --------------------------------------------------------------
  const form = $("#forget-form");

  function kind() {
    return form.querySelector('input[name="kind"]:checked').value;
  }

  function showFields() {
    for (const p of form.querySelectorAll(".field[data-kind]")) p.hidden = p.dataset.kind !== kind();
  }

  function setForm(k, values) {
    form.querySelector(`input[name="kind"][value="${k}"]`).checked = true;
    for (const [name, v] of Object.entries(values)) form.elements[name].value = v;
    showFields();
  }

  function selectorOf() {
    const k = kind(), f = form.elements;
    const sel = {kind: k, mode: f.mode.value};
    if (k === "day") sel.date = f.date.value;
    if (k === "range") { sel.from = f.from.value; sel.to = f.to.value; }
    if (k === "contains") sel.contains = f.contains.value;
    if (k === "ids") sel.ids = f.ids.value;
    return sel;
  }

  async function preview() {
    showError("");
    const sel = selectorOf();
    let plan;
    try {
      plan = await request("POST", "/api/preview", sel);
    } catch (e) {
      $("#preview").hidden = true;
      pending = null;
      return showError(e.message);
    }
    pending = {...sel, expect: {utterances: plan.utterances, days: plan.days}};  // confirm exactly this
    const box = section("#preview", "Preview: nothing has changed yet");
    box.append(facts([
      ["utterances", plan.utterances],
      ["days", Object.keys(plan.days).length],
      ["method", `${plan.method}${plan.requested_mode !== plan.method ? ` (${plan.requested_mode} chose it)` : ""}`],
      ["guarantee", plan.exact ? "exact: the model becomes that of a device that never saw the data"
                               : "approximate now; an exact pass stays pending until the next charge"],
      ["trained days touched", plan.trained_days.length],
      ["days that read them", plan.readers.length],
      ["days an exact pass replays", plan.exact_replay_days],
      ["repair budget (steps)", plan.repair_steps],
      ["expected time", plan.expected.seconds === null ? `unknown (${plan.expected.basis})`
                                                       : `about ${plan.expected.seconds} s (${plan.expected.basis})`],
    ]));
    box.append(table(["day", "utterances forgotten"], Object.entries(plan.days).map(([d, n]) => [d, String(n)]),
                     "plan-days"));
    if (plan.matched) {
      box.append(el("h3", {text: `What it matched (${plan.matched.length})`}));
      const list = el("ul", {class: "utterances matched"});
      for (const m of plan.matched) {
        list.append(el("li", {}, el("span", {class: "text", text: m.text}), " ",
                       el("span", {class: "hint", text: `${m.day} · ${m.id}`})));
      }
      box.append(list);
    }
    const confirm = el("button", {type: "button", id: "confirm-forget", class: "danger",
                                  text: `Forget ${plan.utterances} utterance${plan.utterances === 1 ? "" : "s"}`});
    const cancel = el("button", {type: "button", class: "secondary", id: "cancel-forget", text: "Cancel"});
    confirm.addEventListener("click", () => start("/api/forget", pending));
    cancel.addEventListener("click", dropPrivate);
    box.append(el("p", {class: "actions"}, confirm, " ", cancel));
  }

  // Forget what the page showed of the data: the preview, the day's utterances, the form's phrase and ids.
  function dropPrivate() {
    pending = null;
    for (const id of ["#preview", "#day"]) { $(id).replaceChildren(); $(id).hidden = true; }
    form.elements.contains.value = "";
    form.elements.ids.value = "";
  }

  // -- jobs ----------------------------------------------------------------------------------------
  function busyButtons(on) {
    for (const b of document.querySelectorAll("button")) b.disabled = on;
  }

  async function start(url, body) {
    showError("");
    let job;
    try {
      job = await request("POST", url, body);
    } catch (e) {
      return showError(e.message);
    }
    if (job.kind === "forget") dropPrivate();
    follow(job.id);
  }

  function follow(id) {
    busyButtons(true);
    const tick = async () => {
      let job;
      try {
        job = await request("GET", `/api/jobs/${id}`);
      } catch (e) {
        busyButtons(false);
        return showError(e.message);
      }
      showProgress(job);
      if (job.state === "running") { setTimeout(tick, 300); return; }
      busyButtons(false);
      if (job.state === "failed") return showError(job.error);
      if (job.kind === "verify") showVerification(job.result);
      else if (job.result) showReceipt(job.result);
      await refresh();
    };
    tick();
  }

  function showProgress(job) {
    const names = {forget: "Forgetting", maintain: "Running the exact pass", verify: "Verifying"};
    const box = section("#progress", job.state === "running" ? `${names[job.kind]}…`
                        : job.state === "done" ? `${names[job.kind]}: done` : `${names[job.kind]}: failed`);
    box.dataset.state = job.state;
    const bar = el("progress", {id: "progress-bar"});
    if (job.total) { bar.max = job.total; bar.value = Math.min(job.done, job.total); }
    if (job.state !== "running") { bar.max = 1; bar.value = 1; }
    const what = job.total ? `${job.done} of ${job.total} days replayed · ` : job.done ? `${job.done} days replayed · ` : "";
    box.append(bar, el("p", {class: "hint", text: `${what}${job.elapsed_s} s`}));
  }

  function describe(sel) {
    if (!sel.from) return sel.kind === "contains" ? "a phrase" : sel.count ? `${sel.count} utterance id(s)` : sel.kind;
    return sel.from === sel.to ? `the day ${sel.from}` : `the days ${sel.from} – ${sel.to}`;
  }

  function showReceipt(r) {
    const box = section("#receipt", r.type === "exact_pass" ? "Receipt: exact pass" : "Receipt: forgotten");
    box.dataset.receipt = r.id;
    box.append(facts([
      ["receipt", r.id], ["time (UTC)", r.time_utc], ["method", r.method || r.tier],
      ["what", r.selector ? describe(r.selector) : undefined],
      ["utterances", r.utterances], ["days", r.days ? Object.keys(r.days).join(", ") : undefined],
      ["state after", r.state], ["exact pass pending from", r.pending_exact_from],
      ["model before", r.version_before], ["model after", r.version_after], ["export", r.export_version],
      ["time taken", r.timings_s ? `${r.timings_s.total} s` : undefined],
    ]));
  }

  function fmt(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number") return String(Math.round(v * 10000) / 10000);
    return String(v);
  }

  function showVerification(s) {
    const box = section("#verification", `Verification: ${s.passed ? "passed" : "failed"}` +
                        (s.stored ? " (as stored in the receipt; plots only when run here)" : ""));
    box.dataset.passed = String(s.passed);
    box.append(facts([
      ["receipt", s.receipt], ["kind", s.kind], ["method", s.tier], ["state", s.state],
      ["model equals the oracle", s.version ? fmt(s.version.equal) : undefined],
      ["forgotten utterances attacked", s.counts ? s.counts.forgotten : undefined],
      ["unseen / retained", s.counts ? `${s.counts.unseen} / ${s.counts.retained}` : undefined],
      ["figures over the forgotten", s.forgotten_figures],
    ]));
    const rows = Object.entries(s.verdict || {}).map(([name, r]) =>
      [name, fmt(r.value), fmt(r.oracle), fmt(r.checked), fmt(r.threshold), r.passed ? "passed" : "failed"]);
    if (rows.length) box.append(table(["check", "current", "oracle", "compared", "threshold", ""], rows, "verdict"));
    const acc = Object.entries(s.accuracy || {}).map(([set, a]) => [set, fmt(a.current), fmt(a.oracle)]);
    if (acc.length) box.append(table(["accuracy on", "current", "oracle"], acc, "accuracy"));
    if (s.skipped && s.skipped.length) box.append(el("p", {class: "hint", text: `not measured: ${s.skipped.join(", ")}`}));
    for (const src of s.plots || []) box.append(el("img", {src, alt: src.split("/").pop(), class: "plot"}));
  }

  // Re-render the server's sections together, so that the model, the calendar and the receipts always agree.
  async function refresh() {
    const names = ["model", "calendar", "receipts"];
    try {
      const parts = await Promise.all(names.map(async (name) => {
        const response = await fetch(`/fragments/${name}`, {credentials: "same-origin", cache: "no-store"});
        if (!response.ok) throw new Error((await response.json()).error);
        return response.text();
      }));
      names.forEach((name, i) => { $(`#${name}`).innerHTML = parts[i]; });  // server-rendered and escaped
    } catch (e) {
      showError(e.message);
    }
  }

  // -- wiring --------------------------------------------------------------------------------------
  document.addEventListener("click", (event) => {
    const cell = event.target.closest("button.cell.day");
    if (cell) return showDay(cell.dataset.day);
    const action = event.target.closest("button[data-action]");
    if (!action) return;
    if (action.dataset.action === "maintain") start("/api/maintain", {});
    if (action.dataset.action === "verify") start("/api/verify", {receipt: action.dataset.receipt});
    if (action.dataset.action === "figures") {
      request("GET", `/api/verification/${action.dataset.receipt}`).then(showVerification, (e) => showError(e.message));
    }
  });
  form.addEventListener("change", (event) => { if (event.target.name === "kind") showFields(); });
  form.addEventListener("submit", (event) => { event.preventDefault(); preview(); });
  showFields();
  if (document.body.dataset.job) follow(document.body.dataset.job);
})();
