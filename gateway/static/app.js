// The candidate page: open an invite, answer one question at a time, see each
// score and why, and a summary at the end. Plain DOM, no build step, no outside
// requests. Every value from the server is written with textContent, never as HTML.
"use strict";

(function () {
  const API = "/api/v1/sessions";
  const INVITES = "/api/v1/invites";
  // What survives a refresh: the session and the token the invite turned into, and
  // the turn on screen (its question, and once submitted the idempotency key until a
  // response arrives, then the result).
  const SESSION_KEY = "xli.session";
  const TOKEN_KEY = "xli.token";
  const TURN_KEY = "xli.turn";
  // Options of the multiple-choice questions seen, so the summary can show the
  // chosen option's text: a session's turns only carry the answer (the index).
  const OPTIONS_KEY = "xli.options";
  // Waits between automatic resends of an answer whose response never arrived.
  const RETRY_DELAYS_MS = [1000, 2000, 4000];
  const RETRYABLE_STATUSES = new Set([429, 502, 503, 504]);
  // The gateway's answer when the answer is stored but its score is late (the scorer is
  // slow or down). The server scores it in the background and the event stream brings
  // the result; meanwhile the page resends rarely, as Retry-After asks, to spare the scorer.
  const SCORING_DELAYED_TYPE = "urn:xlinterview:problem:scoring-delayed";
  const SCORING_DELAYED_RESENDS = 3;
  const SCORING_DELAYED_WAIT_MS = 5000; // when Retry-After is missing or unreadable
  const MAX_RETRY_AFTER_MS = 60000;
  // The session's server deadline, so the clock survives a reload without a request.
  const DEADLINE_KEY = "xli.deadline";
  // The clock ticks every second for the eye; screen readers are told only when this
  // many minutes are left, so the page does not talk over the candidate's work.
  const ANNOUNCE_AT_MIN = [10, 5, 1];
  // The Date header has whole seconds only, so it corrects the client's clock only
  // when that is clearly wrong, not by the header's own rounding.
  const CLOCK_SKEW_MS = 5000;

  const $ = (id) => document.getElementById(id);
  const el = {
    error: $("error"), errorMessage: $("error-message"), errorReference: $("error-reference"), errorRetry: $("error-retry"),
    views: { loading: $("view-loading"), start: $("view-start"), question: $("view-question"), summary: $("view-summary") },
    startForm: $("start-form"), startButton: $("start-button"), startGreeting: $("start-greeting"),
    startHeading: $("start-heading"), noInvite: $("no-invite"),
    finishEarly: $("finish-early"), startTime: $("start-time"),
    timer: $("timer"), timerClock: $("timer-clock"), timerAnnounce: $("timer-announce"), timeUp: $("time-up"),
    progressFill: $("progress-fill"), questionHeading: $("question-heading"), skill: $("question-skill"), prompt: $("question-prompt"),
    context: $("question-context"), contextPrompt: $("question-context-prompt"), followUp: $("question-follow-up"),
    sheet: $("sheet"), sheetCaption: $("sheet-caption"), sheetHead: $("sheet-head"), sheetBody: $("sheet-body"),
    answerForm: $("answer-form"), answerField: $("answer-field"), answerError: $("answer-error"),
    submitButton: $("submit-button"), submitStatus: $("submit-status"), continueButton: $("continue-button"),
    result: $("result"), resultHeading: $("result-heading"), resultFeedback: $("result-feedback"),
    criteriaBlock: $("result-criteria-block"), criteria: $("result-criteria"),
    evidenceBlock: $("result-evidence-block"), evidence: $("result-evidence"), signals: $("result-signals"),
    nextButton: $("next-button"),
    summaryHeading: $("summary-heading"), summaryOverall: $("summary-overall"), summaryTurns: $("summary-turns"),
    summaryCancelled: $("summary-cancelled"),
  };
  // The invite token from the link (#invite=...), read once and taken out of the
  // address bar so it is not bookmarked or shared by accident.
  let inviteToken = null;
  // The countdown to the server's deadline; `pending` holds the minutes still to announce.
  const clock = { deadline: null, timer: null, pending: [], up: false, offsetMs: 0 };
  // Set when the event stream says the hiring team cancelled the interview, so the
  // summary tells the candidate the interview ended through no action of theirs.
  let endedByTeam = false;
  // The session's event stream (Server-Sent Events read with fetch, which unlike
  // EventSource can send the candidate's token in a header).
  const events = { controller: null, sessionId: null };

  // ------------------------------------------------------------------ storage

  const store = {
    get(key) {
      try { return JSON.parse(localStorage.getItem(key)); } catch (_) { return null; }
    },
    set(key, value) {
      try { localStorage.setItem(key, JSON.stringify(value)); } catch (_) { /* private mode: no resume */ }
    },
    remove(key) {
      try { localStorage.removeItem(key); } catch (_) { /* ignore */ }
    },
  };

  // crypto.randomUUID only exists on secure origins (https, localhost); a gateway
  // reached over plain http on a LAN still needs unique keys.
  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    const b = window.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, problem, requestId, retryAfter) {
      super((problem && (problem.detail || problem.title)) || `Request failed (${status})`);
      this.status = status;
      this.problem = problem;
      this.requestId = (problem && problem.request_id) || requestId;
      // The Retry-After header (delta-seconds, as the gateway sends it), or null.
      this.retryAfter = retryAfter;
    }
  }

  class NetworkError extends Error {}

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    const token = store.get(TOKEN_KEY);
    if (token && path.startsWith(API)) init.headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      throw new NetworkError("Could not reach the server. Check your connection.");
    }
    noteServerClock(response);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      throw new ApiError(response.status, data, response.headers.get("x-request-id"), response.headers.get("retry-after"));
    }
    return data;
  }

  const sessionPath = (sessionId) => `${API}/${encodeURIComponent(sessionId)}`;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const isScoringDelayed = (err) =>
    err instanceof ApiError && err.status === 503 && Boolean(err.problem) && err.problem.type === SCORING_DELAYED_TYPE;

  // How long Retry-After asks to wait, within sane bounds; `fallbackMs` when absent.
  function retryAfterMs(err, fallbackMs) {
    const seconds = Number.parseInt(err.retryAfter, 10);
    if (!Number.isFinite(seconds) || seconds < 0) return fallbackMs;
    return Math.min(Math.max(seconds * 1000, 1000), MAX_RETRY_AFTER_MS);
  }
  const percent = (value) => `${Math.round(Math.max(0, Math.min(1, value || 0)) * 100)}%`;

  // ------------------------------------------------------------------ views

  function show(view, focusTarget) {
    for (const [name, node] of Object.entries(el.views)) node.hidden = name !== view;
    el.finishEarly.hidden = view !== "question";
    el.timer.hidden = view !== "question" || !clock.timer;
    if (focusTarget) focusTarget.focus();
  }

  // ------------------------------------------------------------------ timer

  function noteServerClock(response) {
    const server = Date.parse(response.headers.get("date") || "");
    if (Number.isNaN(server)) return;
    const offset = server - Date.now();
    clock.offsetMs = Math.abs(offset) > CLOCK_SKEW_MS ? offset : 0;
  }

  function secondsLeft() {
    return Math.max(0, Math.ceil((clock.deadline - (Date.now() + clock.offsetMs)) / 1000));
  }

  function clockText(seconds) {
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = String(seconds % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  const minutesText = (minutes) => (minutes === 1 ? "1 minute" : `${minutes} minutes`);

  // Starts (or corrects) the countdown to the session's server deadline.
  function startClock(deadlineText) {
    const deadline = Date.parse(deadlineText || "");
    if (Number.isNaN(deadline) || clock.up) return;
    store.set(DEADLINE_KEY, { sessionId: sessionId(), deadline: deadlineText });
    if (clock.deadline !== deadline) {
      clock.deadline = deadline;
      // Thresholds already behind (e.g. after a reload) are not announced late.
      const left = secondsLeft();
      clock.pending = ANNOUNCE_AT_MIN.filter((minutes) => minutes * 60 < left);
    }
    if (!clock.timer) clock.timer = setInterval(tick, 1000);
    tick();
  }

  function stopClock() {
    clearInterval(clock.timer);
    clock.timer = null;
    el.timer.hidden = true;
  }

  function tick() {
    const left = secondsLeft();
    el.timerClock.textContent = clockText(left);
    el.timer.hidden = el.views.question.hidden;
    el.timer.classList.toggle("timer-low", left <= 60);
    if (clock.pending.some((minutes) => left <= minutes * 60)) {
      clock.pending = clock.pending.filter((minutes) => left > minutes * 60);
      if (left > 0) el.timerAnnounce.textContent = `${minutesText(Math.ceil(left / 60))} left.`;
    }
    if (left <= 0) onTimeUp();
  }

  // The server refuses answers after the deadline; the page says so and stops
  // taking input rather than let the candidate type into a closed interview.
  async function onTimeUp() {
    if (clock.up) return;
    clock.up = true;
    stopClock();
    el.timeUp.hidden = false;
    for (const control of el.answerForm.querySelectorAll("input, textarea, button")) control.disabled = true;
    const turn = store.get(TURN_KEY);
    // An answer already on its way was sent in time: its result comes first.
    if (turn && turn.key && !turn.result) return;
    await finish();
  }

  // ------------------------------------------------------------------ live events

  function openEvents() {
    const id = sessionId();
    const token = store.get(TOKEN_KEY);
    if (!id || !token || events.sessionId === id || !window.ReadableStream || !window.TextDecoder) return;
    closeEvents();
    const controller = new AbortController();
    Object.assign(events, { controller, sessionId: id });
    (async () => {
      let retryMs = 3000;
      while (!controller.signal.aborted) {
        try {
          const response = await fetch(`${sessionPath(id)}/events`, {
            headers: { Accept: "text/event-stream", Authorization: `Bearer ${token}` },
            signal: controller.signal,
            cache: "no-store",
          });
          // Finished, gone or no longer ours: nothing more to hear; the page's own
          // requests say what happened.
          if ([401, 403, 404, 409].includes(response.status)) break;
          if (response.ok && response.body) retryMs = await readEvents(response.body, retryMs);
        } catch (_) {
          if (controller.signal.aborted) break;
        }
        await sleep(retryMs);
      }
    })();
  }

  function closeEvents() {
    if (events.controller) events.controller.abort();
    Object.assign(events, { controller: null, sessionId: null });
  }

  // Reads `event:`/`data:` blocks until the stream ends; returns the retry delay the
  // server asked for.
  async function readEvents(body, retryMs) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return retryMs;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
          else if (line.startsWith("retry:")) retryMs = Number(line.slice(6)) || retryMs;
        }
        if (!data) continue;
        let payload;
        try { payload = JSON.parse(data); } catch (_) { continue; }
        onEvent(name, payload);
      }
    }
  }

  function onEvent(name, data) {
    if (name === "answer_scored") {
      // The result of the answer this page waits on, if its own response was lost.
      const turn = store.get(TURN_KEY);
      if (turn && turn.key && turn.key === data.idempotency_key) {
        const { item_id: _item, idempotency_key: _key, ...result } = data;
        completeTurn(turn, result);
      }
    } else if (name === "time_warning" || name === "time_up") {
      startClock(data.deadline);
    } else if (name === "interview_finished" && el.views.summary.hidden) {
      endedByTeam = Boolean(data.cancelled);
      finish();
    }
  }

  function showError(err, onRetry) {
    el.errorMessage.textContent = err && err.message ? err.message : "Something went wrong.";
    const ref = err && err.requestId;
    el.errorReference.hidden = !ref;
    el.errorReference.textContent = ref ? `Reference: ${ref}` : "";
    el.errorRetry.hidden = !onRetry;
    el.errorRetry.onclick = onRetry ? () => { clearError(); onRetry(); } : null;
    el.error.hidden = false;
  }

  function clearError() {
    el.error.hidden = true;
    el.errorRetry.onclick = null;
  }

  function forget() {
    stopClock();
    closeEvents();
    Object.assign(clock, { deadline: null, pending: [], up: false });
    el.timeUp.hidden = true;
    store.remove(DEADLINE_KEY);
    store.remove(SESSION_KEY);
    store.remove(TOKEN_KEY);
    store.remove(TURN_KEY);
    store.remove(OPTIONS_KEY);
  }

  // The landing view: with a usable invite, who it is for and a start button;
  // without one, how to get one.
  function showStart(message, preview) {
    if (!preview) forget();
    el.startForm.hidden = !preview;
    el.noInvite.hidden = Boolean(preview);
    el.startGreeting.textContent = preview ? `Hello ${preview.candidate_name}.` : "";
    const minutes = preview && preview.time_limit_seconds ? Math.round(preview.time_limit_seconds / 60) : 0;
    el.startTime.hidden = !minutes;
    el.startTime.textContent = minutes
      ? `You have ${minutesText(minutes)} from the moment you start. A clock shows the time left; screen readers hear it at ${ANNOUNCE_AT_MIN.join(", ")} minutes left.`
      : "";
    el.startButton.disabled = false;
    show("start", el.startHeading);
    if (message) showError({ message });
  }

  function columnName(index) {
    let name = "";
    for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) name = String.fromCharCode(65 + ((n - 1) % 26)) + name;
    return name;
  }

  function renderSheet(sheet) {
    el.sheetHead.replaceChildren();
    el.sheetBody.replaceChildren();
    const rows = (sheet && sheet.rows) || [];
    if (!rows.length) {
      el.sheet.hidden = true;
      return;
    }
    const width = Math.max(...rows.map((r) => r.length));
    const title = sheet.name ? `Sheet “${sheet.name}” (read-only)` : "Sample sheet (read-only)";
    el.sheetCaption.textContent = title;
    el.sheet.setAttribute("aria-label", title);

    const head = document.createElement("tr");
    const corner = document.createElement("td");
    corner.setAttribute("aria-hidden", "true");
    head.append(corner);
    for (let c = 0; c < width; c++) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = columnName(c);
      head.append(th);
    }
    el.sheetHead.append(head);

    rows.forEach((row, r) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = String(r + 1);
      tr.append(th);
      for (let c = 0; c < width; c++) {
        const td = document.createElement("td");
        const value = c < row.length ? row[c] : null;
        if (typeof value === "number") {
          td.className = "num";
          td.textContent = String(value);
        } else if (typeof value === "boolean") {
          td.className = "bool";
          td.textContent = value ? "TRUE" : "FALSE";
        } else if (value !== null && value !== undefined) {
          td.textContent = String(value);
        }
        tr.append(td);
      }
      el.sheetBody.append(tr);
    });
    el.sheet.hidden = false;
  }

  function renderAnswerField(question, answer, locked) {
    const field = el.answerField;
    field.replaceChildren();
    if (question.kind === "QUESTION_KIND_MULTIPLE_CHOICE") {
      const fieldset = document.createElement("fieldset");
      const legend = document.createElement("legend");
      legend.textContent = "Choose one answer";
      fieldset.append(legend);
      question.options.forEach((option, i) => {
        const id = `choice-${i}`;
        const wrap = document.createElement("div");
        wrap.className = "choice";
        const input = document.createElement("input");
        Object.assign(input, { type: "radio", name: "choice", id, value: String(i), disabled: locked });
        input.checked = answer === String(i);
        const label = document.createElement("label");
        label.htmlFor = id;
        label.textContent = option;
        wrap.append(input, label);
        fieldset.append(wrap);
      });
      field.append(fieldset);
      return;
    }

    const label = document.createElement("label");
    const hint = document.createElement("p");
    hint.className = "hint";
    hint.id = "answer-hint";
    let input;
    if (question.kind === "QUESTION_KIND_FORMULA") {
      label.textContent = "Your formula";
      hint.textContent = "Start with =, e.g. =SUM(B2:B9). Cell references point into the sheet above.";
      input = document.createElement("input");
      input.type = "text";
      input.className = "mono";
      input.setAttribute("spellcheck", "false");
      input.setAttribute("autocomplete", "off");
      input.setAttribute("autocapitalize", "off");
    } else if (question.kind === "QUESTION_KIND_NUMERIC") {
      input = renderNumericInput(question, label, hint);
    } else {
      label.textContent = "Your answer";
      hint.textContent = "Explain in a few sentences.";
      input = document.createElement("textarea");
      input.rows = 6;
    }
    input.id = "answer-input";
    // -1 means no limit set by the branch above (a number has its own, shorter one).
    if (input.maxLength < 0) input.maxLength = 20000;
    input.value = answer || "";
    input.readOnly = locked;
    input.setAttribute("aria-describedby", "answer-hint answer-error");
    label.htmlFor = "answer-input";
    field.append(label, hint);
    // The unit also sits after the box for the eye; the label already says it to
    // screen readers, so the suffix is hidden from them.
    if (question.kind === "QUESTION_KIND_NUMERIC" && question.unit) {
      const row = document.createElement("div");
      row.className = "numeric-row";
      const suffix = document.createElement("span");
      suffix.className = "unit";
      suffix.setAttribute("aria-hidden", "true");
      suffix.textContent = question.unit;
      row.append(input, suffix);
      field.append(row);
    } else {
      field.append(input);
    }
  }

  // A text box, not type=number: that would refuse "1,234" or "$99" and hide what was
  // typed. inputmode=decimal still brings up a number keypad on phones. The server
  // reads the number and says why when it is not one.
  function renderNumericInput(question, label, hint) {
    label.textContent = question.unit ? `Your answer (${question.unit})` : "Your answer (a number)";
    const places = question.decimals === null || question.decimals === undefined
      ? ""
      : ` Give it to ${question.decimals === 1 ? "1 decimal place" : `${question.decimals} decimal places`}.`;
    hint.textContent = `Type the number, e.g. 1234.5; thousands separators, a currency sign or a % are fine.${places}`;
    const input = document.createElement("input");
    input.type = "text";
    input.inputMode = "decimal";
    input.className = "numeric";
    // The server's limit for a number (common/numeric.py MAX_NUMBER_CHARS).
    input.maxLength = 64;
    input.setAttribute("spellcheck", "false");
    input.setAttribute("autocomplete", "off");
    return input;
  }

  function readAnswer(question) {
    if (question.kind === "QUESTION_KIND_MULTIPLE_CHOICE") {
      const checked = el.answerField.querySelector('input[name="choice"]:checked');
      return checked ? checked.value : "";
    }
    const input = $("answer-input");
    return input ? input.value.trim() : "";
  }

  function firstAnswerControl() {
    return el.answerField.querySelector("input, textarea");
  }

  // Shows `turn.question`; with `turn.result` also the score, with `turn.key` the
  // answer as sent and still waiting for its score.
  function renderTurn(turn) {
    const q = turn.question;
    const total = q.total || 0;
    const heading = total ? `Question ${q.position} of ${total}` : `Question ${q.position || ""}`.trim();
    // A follow-up shares its original's number: it is more of the same question, not a new one.
    el.questionHeading.textContent = q.follow_up ? `${heading}: follow-up` : heading;
    el.progressFill.style.width = total ? `${Math.round(((q.position - 1) / total) * 100)}%` : "0";
    el.skill.hidden = !q.skill_area;
    // Skill areas are ids such as "formulas_functions"; shown as words, as the report shows them.
    el.skill.textContent = (q.skill_area || "").replace(/_/g, " ");
    el.context.hidden = !(q.follow_up && q.original_prompt);
    el.contextPrompt.textContent = q.follow_up ? q.original_prompt || "" : "";
    el.followUp.hidden = !q.follow_up;
    el.prompt.textContent = q.prompt;
    renderSheet(q.kind === "QUESTION_KIND_FORMULA" ? q.sheet : null);

    const locked = Boolean(turn.key || turn.result);
    renderAnswerField(q, turn.answer, locked);
    el.answerError.hidden = true;
    el.submitButton.hidden = Boolean(turn.result);
    el.submitButton.disabled = locked;
    el.submitStatus.textContent = "";
    el.continueButton.hidden = true;
    renderResult(turn.result);
  }

  function renderResult(result) {
    if (!result) {
      el.result.hidden = true;
      el.resultHeading.textContent = "";
      el.resultFeedback.textContent = "";
      return;
    }
    const score = result.score;
    el.result.hidden = false;
    el.result.classList.remove("good", "bad");
    if (score) {
      el.result.classList.add(score.value >= 0.5 ? "good" : "bad");
      el.resultHeading.textContent = `Score: ${percent(score.value)}`;
      el.resultFeedback.textContent = score.feedback || "";
    } else {
      el.resultHeading.textContent = "Answer received";
      el.resultFeedback.textContent = "Your answer is stored and waiting to be scored.";
    }

    const criteria = (score && score.criteria) || [];
    el.criteria.replaceChildren(...criteria.map((c) => {
      const li = document.createElement("li");
      const mark = document.createElement("span");
      mark.className = c.met ? "met" : "unmet";
      mark.textContent = c.met ? "✓ met" : "✗ not met";
      li.append(mark, ` — ${c.name}${c.detail ? `: ${c.detail}` : ""}`);
      return li;
    }));
    el.criteriaBlock.hidden = criteria.length === 0;

    const evidence = (score && score.evidence) || [];
    el.evidence.replaceChildren(...evidence.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
    el.evidenceBlock.hidden = evidence.length === 0;

    const parts = [];
    if (score && score.signals && score.signals.length) parts.push(`Scored by: ${score.signals.join(", ")}`);
    if (score && score.confidence) parts.push(`confidence ${percent(score.confidence)}`);
    const p = score && score.provenance;
    if (p && p.model_name) parts.push(`model ${p.model_name}${p.model_version ? ` v${p.model_version}` : ""}${p.backend ? ` on ${p.backend}` : ""}`);
    el.signals.textContent = parts.join(" · ");

    el.nextButton.textContent = result.finished || !result.next_question ? "See your results" : "Next question";
  }

  function renderSummary(session) {
    stopClock();
    closeEvents();
    store.set(SESSION_KEY, session.session_id);
    store.remove(TURN_KEY);
    const options = store.get(OPTIONS_KEY) || {};
    el.summaryHeading.textContent = session.candidate_name ? `Interview complete, ${session.candidate_name}` : "Interview complete";
    el.summaryOverall.textContent = `Overall score: ${percent(session.overall_score)}`;
    el.summaryCancelled.hidden = !endedByTeam;
    el.summaryTurns.replaceChildren(...session.turns.map((turn) => {
      const li = document.createElement("li");
      const prompt = document.createElement("p");
      if (turn.follow_up) {
        const label = document.createElement("strong");
        label.textContent = "Follow-up: ";
        prompt.append(label);
      }
      prompt.append(turn.prompt);
      const answer = document.createElement("p");
      answer.append("Your answer: ");
      const code = document.createElement("span");
      code.className = "answer";
      code.textContent = answerText(turn, options);
      answer.append(code);
      const score = document.createElement("p");
      score.className = "muted";
      score.textContent = turn.score
        ? `Score ${percent(turn.score.value)}${turn.score.feedback ? ` — ${turn.score.feedback}` : ""}`
        : "Not scored yet";
      li.append(prompt, answer, score);
      return li;
    }));
    show("summary", el.summaryHeading);
  }

  // ------------------------------------------------------------------ flow

  function sessionId() {
    return store.get(SESSION_KEY);
  }

  function rememberOptions(question) {
    if (question.kind !== "QUESTION_KIND_MULTIPLE_CHOICE") return;
    const options = store.get(OPTIONS_KEY) || {};
    options[question.item_id] = question.options;
    store.set(OPTIONS_KEY, options);
  }

  function answerText(turn, options) {
    const choices = options[turn.item_id];
    const index = Number(turn.answer);
    if (choices && /^\d+$/.test(turn.answer) && index < choices.length) return choices[index];
    return turn.answer || "(empty)";
  }

  function showQuestion(question) {
    rememberOptions(question);
    // A draft typed before a reload or a lost connection is kept for its question.
    const previous = store.get(TURN_KEY);
    const draft = previous && previous.sessionId === sessionId() && previous.question &&
      previous.question.item_id === question.item_id && !previous.result ? previous.answer : undefined;
    const turn = { sessionId: sessionId(), question, answer: draft };
    store.set(TURN_KEY, turn);
    clearError();
    renderTurn(turn);
    show("question", el.questionHeading);
  }

  async function handleLoadError(err, retry) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 401)) {
      showStart("Your interview could not be found or your access has expired. Please use your invite link again.");
    } else if (err instanceof ApiError && err.status === 409) {
      await finish();
    } else {
      showError(err, retry);
    }
  }

  async function loadCurrentQuestion() {
    try {
      showQuestion(await api("GET", `${sessionPath(sessionId())}/question`));
    } catch (err) {
      await handleLoadError(err, loadCurrentQuestion);
    }
  }

  async function finish() {
    try {
      renderSummary(await api("POST", `${sessionPath(sessionId())}/finish`));
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 401)) showStart("Your interview could not be found.");
      else showError(err, finish);
    }
  }

  // Shows the result of the pending answer `turn`, once: from the submit response or
  // from the event stream, whichever comes first.
  function completeTurn(turn, result) {
    if (!stillPending(turn)) return;
    const done = { sessionId: turn.sessionId, question: turn.question, answer: turn.answer, result };
    store.set(TURN_KEY, done);
    el.submitStatus.textContent = "";
    // An error about this answer (e.g. scoring was late) is stale once its result is here.
    clearError();
    if (clock.up) {
      finish();
      return;
    }
    renderTurn(done);
    el.nextButton.focus();
  }

  function stillPending(turn) {
    const stored = store.get(TURN_KEY);
    return Boolean(stored && stored.key && stored.key === turn.key && !stored.result);
  }

  // Sends the stored pending answer, resending with the same idempotency key when
  // the response is lost, so a retry can never record the answer twice.
  async function sendPending() {
    const turn = store.get(TURN_KEY);
    if (!turn || !turn.key) return;
    el.submitButton.disabled = true;
    el.submitStatus.textContent = "Scoring your answer…";
    let attempt = 0;
    let delayedResends = 0;
    while (stillPending(turn)) {
      try {
        const result = await api("POST", `${sessionPath(turn.sessionId)}/answers`, {
          item_id: turn.question.item_id,
          answer: turn.answer,
          idempotency_key: turn.key,
        });
        completeTurn(turn, result);
        return;
      } catch (err) {
        // The result came over the event stream meanwhile: nothing left to do.
        if (!stillPending(turn)) return;
        if (isScoringDelayed(err)) {
          // The answer is stored: keep the key and wait for the score, which the event
          // stream may bring first (then the loop ends without another resend).
          // The interview's clock runs meanwhile, so the candidate may also move on: the
          // answer counts, and its score reaches the summary once the server has it.
          el.continueButton.hidden = false;
          if (delayedResends < SCORING_DELAYED_RESENDS) {
            delayedResends++;
            el.submitStatus.textContent =
              "Your answer is saved. Scoring is taking longer than usual… You can wait, or continue to the next question.";
            await sleep(retryAfterMs(err, SCORING_DELAYED_WAIT_MS));
            continue;
          }
          el.submitStatus.textContent = "Your answer is saved.";
          showError({
            message: "Your answer is saved, but scoring is taking longer than usual. Your result will appear here when it is ready, or try again.",
            requestId: err.requestId,
          }, sendPending);
          return;
        }
        const retryable = err instanceof NetworkError || (err instanceof ApiError && RETRYABLE_STATUSES.has(err.status));
        if (retryable && attempt < RETRY_DELAYS_MS.length) {
          el.submitStatus.textContent = "Connection problem — trying again…";
          await sleep(RETRY_DELAYS_MS[attempt++]);
          continue;
        }
        el.submitStatus.textContent = "";
        if (retryable) {
          // Keep the key: the answer may have been stored, and a later resend must
          // return that result rather than store a second answer.
          showError(err, sendPending);
          return;
        }
        // The server refused the answer; it was not stored, so the candidate may
        // edit it and submit again under a new key.
        const unlocked = { sessionId: turn.sessionId, question: turn.question, answer: turn.answer };
        store.set(TURN_KEY, unlocked);
        if (err instanceof ApiError && (err.status === 404 || err.status === 401)) {
          showStart("Your interview could not be found or your access has expired.");
          return;
        }
        if (err instanceof ApiError && err.status === 409) {
          // The interview moved on (answered in another tab, or finished): show
          // where it is now rather than the stale question.
          await loadCurrentQuestion();
          if (!el.views.question.hidden) showError(err);
          return;
        }
        renderTurn(unlocked);
        showError(err);
        const control = firstAnswerControl();
        if (control) control.focus();
        return;
      }
    }
  }

  async function onSubmitAnswer(event) {
    event.preventDefault();
    const turn = store.get(TURN_KEY);
    if (!turn || turn.key || turn.result || clock.up) return;
    const answer = readAnswer(turn.question);
    if (!answer) {
      const kind = turn.question.kind;
      el.answerError.textContent = kind === "QUESTION_KIND_MULTIPLE_CHOICE"
        ? "Choose one of the options."
        : kind === "QUESTION_KIND_NUMERIC" ? "Please type a number first." : "Please enter an answer first.";
      el.answerError.hidden = false;
      const control = firstAnswerControl();
      if (control) control.focus();
      return;
    }
    clearError();
    const pending = { ...turn, answer, key: newKey() };
    store.set(TURN_KEY, pending);
    renderTurn(pending);
    await sendPending();
  }

  // Leaves an answer whose score is late: it is stored and counts, so the interview goes
  // on without waiting; the pending turn is dropped, which ends its resends.
  async function onContinue() {
    const turn = store.get(TURN_KEY);
    if (!turn || !turn.key || turn.result) return;
    store.remove(TURN_KEY);
    el.continueButton.hidden = true;
    el.submitStatus.textContent = "";
    clearError();
    await loadCurrentQuestion();
  }

  async function onNext() {
    const turn = store.get(TURN_KEY);
    const result = turn && turn.result;
    if (!result) return;
    if (result.finished || !result.next_question || clock.up) {
      await finish();
    } else {
      showQuestion(result.next_question);
    }
  }

  async function onStart(event) {
    event.preventDefault();
    if (!inviteToken) return;
    clearError();
    el.startButton.disabled = true;
    try {
      const started = await api("POST", `${INVITES}/accept`, { invite_token: inviteToken });
      forget();
      inviteToken = null;
      store.set(TOKEN_KEY, started.access_token);
      store.set(SESSION_KEY, started.session.session_id);
      startClock(started.session.deadline);
      openEvents();
      if (started.question) showQuestion(started.question);
      else await finish();
    } catch (err) {
      showError(err);
    } finally {
      el.startButton.disabled = false;
    }
  }

  // Reads #invite=<token> from the address and looks the invite up without using it.
  async function openInvite() {
    const match = /(?:^#|&)invite=([A-Za-z0-9_-]+)/.exec(window.location.hash);
    if (!match) return false;
    history.replaceState(null, "", window.location.pathname + window.location.search);
    try {
      const preview = await api("POST", `${INVITES}/preview`, { invite_token: match[1] });
      inviteToken = match[1];
      showStart(null, preview);
    } catch (err) {
      // A used link opened again on the same device: carry on with that interview.
      if (err instanceof ApiError && err.status === 409 && sessionId()) return false;
      showStart(err instanceof ApiError ? err.message : null);
      if (!(err instanceof ApiError)) showError(err, () => window.location.reload());
    }
    return true;
  }

  // Reads the deadline from the session (e.g. resumed from storage written before it
  // was kept); failures are left to the page's other requests to report.
  async function refreshDeadline() {
    try {
      const session = await api("GET", sessionPath(sessionId()));
      if (session.status === "SESSION_STATUS_IN_PROGRESS") startClock(session.deadline);
    } catch (_) { /* the question request says what is wrong */ }
  }

  async function onFinishEarly() {
    if (!window.confirm("End the interview now? Unanswered questions will not be scored.")) return;
    await finish();
  }

  async function resume() {
    if (await openInvite()) return;
    const id = sessionId();
    if (!id || !store.get(TOKEN_KEY)) {
      showStart();
      return;
    }
    const saved = store.get(DEADLINE_KEY);
    if (saved && saved.sessionId === id) startClock(saved.deadline);
    else refreshDeadline();
    openEvents();
    const turn = store.get(TURN_KEY);
    if (turn && turn.sessionId === id && turn.question && (turn.key || turn.result)) {
      renderTurn(turn);
      show("question", el.questionHeading);
      if (turn.key && !turn.result) await sendPending();
      return;
    }
    await loadCurrentQuestion();
  }

  el.startForm.addEventListener("submit", onStart);
  el.answerForm.addEventListener("submit", onSubmitAnswer);
  // Every keystroke is kept locally, so typing survives a reload or a dropped network.
  el.answerForm.addEventListener("input", () => {
    const turn = store.get(TURN_KEY);
    if (!turn || turn.key || turn.result) return;
    store.set(TURN_KEY, { ...turn, answer: readAnswer(turn.question) });
  });
  el.nextButton.addEventListener("click", onNext);
  el.continueButton.addEventListener("click", onContinue);
  el.finishEarly.addEventListener("click", onFinishEarly);
  resume();
})();
