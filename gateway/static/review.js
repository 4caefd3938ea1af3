// The review queue: answers the scorer was unsure of, least confident first, each with
// what a reviewer needs to judge it and a 0-5 grade that becomes the answer's score
// (sent as level / 5). Values from the server are written with textContent, never as HTML.
"use strict";

(function () {
  const S = window.XliStaff;
  const $ = (id) => document.getElementById(id);
  const LIMIT = 50;
  const LEVELS = ["wrong", "a little right", "partly right", "more right than wrong", "mostly right", "fully right"];
  const KIND_TEXT = {
    formula: "Formula",
    free_text: "Free text",
    multiple_choice: "Multiple choice",
    numeric: "Number",
  };
  const state = { pending: 0, saved: 0, shown: 0 };

  const { text, list, skillLabel } = S;
  // "QUESTION_KIND_FREE_TEXT" (the API's enum) or "free_text" → "free_text".
  const kindKey = (kind) => String(kind || "").replace(/^QUESTION_KIND_/, "").toLowerCase();
  const waiting = (n) => (n === 1 ? "1 answer waiting for review." : `${n} answers waiting for review.`);

  function canGrade() {
    const current = S.tokens();
    const role = current && current.user ? current.user.role : "";
    return role !== "ROLE_ANALYST";
  }

  function showError(message, signIn) {
    $("error-message").textContent = message;
    $("error").hidden = false;
    if (signIn && !$("error").querySelector("a")) {
      const back = document.createElement("a");
      back.href = "/dashboard";
      back.textContent = "Sign in on the dashboard";
      $("error").append(back);
    }
  }

  function renderCount() {
    const left = Math.max(0, state.pending - state.saved);
    let message = waiting(left);
    if (state.saved) message += ` You graded ${state.saved} here.`;
    else if (state.pending > state.shown) message += ` The ${state.shown} the scorer is least sure of are below.`;
    $("queue-count").textContent = message;
  }

  // The candidate's answer as the scorer graded it; multiple choice stores the option's index.
  function answerText(task) {
    if (kindKey(task.kind) === "multiple_choice" && /^\d+$/.test(task.answer.trim())) {
      return `Option ${Number(task.answer.trim()) + 1} (the evidence below names it)`;
    }
    return task.answer;
  }

  function renderModelScore(task, into) {
    into.append(text("h3", "The scorer's score"));
    const score = task.model_score;
    if (!score) {
      into.append(text("p", "Not scored yet: it can be graded once the scorer has scored it.", "muted"));
      return;
    }
    into.append(text("p", `Score ${S.percent(score.value)} · confidence ${S.percent(score.confidence)}`, "overall"));
    if (score.feedback) into.append(text("p", `Feedback: ${score.feedback}`));
    if (score.evidence && score.evidence.length) into.append(text("p", "Evidence", "small muted"), list(score.evidence));
    if (score.criteria && score.criteria.length) {
      into.append(text("p", "Criteria", "small muted"), list(score.criteria.map(
        (c) => `${c.met ? "✓ met" : "✗ not met"} — ${c.name}${c.detail ? `: ${c.detail}` : ""}`)));
    }
    if (score.signals && score.signals.length) into.append(text("p", `Scored by: ${score.signals.join(", ")}`, "small muted"));
  }

  function renderForm(task, n) {
    const form = document.createElement("form");
    form.className = "grade-form";
    form.noValidate = true;

    const field = document.createElement("div");
    field.className = "field";
    const fieldset = document.createElement("fieldset");
    const hintId = `task-${n}-grade-hint`;
    fieldset.setAttribute("aria-describedby", hintId);
    fieldset.append(
      text("legend", "Your grade"),
      text("p", "0 is wrong, 5 fully right; the grade becomes the answer's score (4 of 5 = 80%).", "hint"),
    );
    fieldset.lastChild.id = hintId;
    const scale = document.createElement("div");
    scale.className = "grade-scale";
    LEVELS.forEach((words, level) => {
      const choice = document.createElement("div");
      choice.className = "choice";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = `task-${n}-grade`;
      input.id = `task-${n}-grade-${level}`;
      input.value = String(level);
      const label = text("label", `${level} — ${words}`);
      label.htmlFor = input.id;
      choice.append(input, label);
      scale.append(choice);
    });
    fieldset.append(scale);
    field.append(fieldset);

    const comment = document.createElement("div");
    comment.className = "field";
    const label = document.createElement("label");
    label.htmlFor = `task-${n}-comment`;
    label.append("Feedback ", text("span", "(optional; kept with the grade, and the candidate may see it)", "muted"));
    const textarea = document.createElement("textarea");
    textarea.id = `task-${n}-comment`;
    textarea.maxLength = 2000;
    textarea.rows = 3;
    textarea.className = "comment";
    comment.append(label, textarea);

    const alert = document.createElement("div");
    alert.className = "notice notice-error";
    alert.setAttribute("role", "alert");
    alert.hidden = true;
    alert.append(document.createElement("p"));

    const actions = document.createElement("div");
    actions.className = "actions";
    const button = text("button", "Save grade");
    button.type = "submit";
    const status = text("span", "", "saved-status");
    status.setAttribute("role", "status");
    actions.append(button, status);

    form.append(field, comment, alert, actions);
    if (!task.model_score || !canGrade()) {
      for (const control of form.elements) control.disabled = true;
      if (task.model_score) form.append(text("p", "Analysts can read the queue; admins and interviewers grade.", "small muted"));
    }
    form.addEventListener("submit", (event) => onSave(event, task, form, { alert, button, status, textarea }));
    return form;
  }

  function renderTask(task, n) {
    const li = document.createElement("li");
    li.className = "card review-task";
    li.dataset.answerId = task.answer_id;
    const skill = skillLabel(task.skill_area);
    const heading = text("h2", `${task.candidate_name || "Unnamed candidate"}${skill ? ` · ${skill}` : ""}`);
    heading.id = `task-${n}-heading`;
    heading.tabIndex = -1;
    li.append(heading);

    const about = [KIND_TEXT[kindKey(task.kind)] || "Question"];
    if (task.follow_up) about.push("follow-up");
    if (task.submitted_at) about.push(`answered ${new Date(task.submitted_at).toLocaleString()}`);
    const meta = text("p", about.join(" · "), "small muted");
    li.append(meta);
    if (task.interview_id) {
      const link = document.createElement("a");
      link.href = `/dashboard/report?id=${encodeURIComponent(task.interview_id)}`;
      link.textContent = `Report for ${task.candidate_name || "this candidate"}`;
      const where = document.createElement("p");
      where.className = "small";
      where.append(link);
      li.append(where);
    }

    const reason = task.model_score && task.model_score.review_reason;
    const flag = text("p", "", "review-flag");
    const glyph = text("span", "⚑ ");
    glyph.setAttribute("aria-hidden", "true");
    flag.append(glyph, text("strong", "Why it is here: "), document.createTextNode(reason || "the scorer flagged it"));
    li.append(flag);

    li.append(text("h3", "Question"), text("p", task.prompt, "prompt"));
    if (task.follow_up) {
      li.append(text("p", "A follow-up question: the answer below includes the answer before it, graded together.", "small muted"));
    }
    li.append(text("h3", "What a right answer looks like"));
    const references = (task.references || []).filter((r) => r);
    li.append(references.length ? list(references) : text("p", "No reference answer is stored for this question.", "muted"));
    li.append(text("h3", "The candidate's answer"), text("div", answerText(task), "answer-block"));
    renderModelScore(task, li);
    if (task.review) {
      li.append(text("p", `Graded before: ${Math.round(task.review.value * 5)} of 5.`, "small muted"));
    }
    li.append(renderForm(task, n));
    return li;
  }

  // After a grade: the next card still to grade (after this one, then from the top),
  // or the final status when none is left.
  function moveOn(li) {
    const cards = [...$("tasks").children];
    const at = cards.indexOf(li);
    const open = (card) => !card.classList.contains("reviewed");
    const next = cards.slice(at + 1).find(open) || cards.slice(0, at).find(open);
    if (next) {
      next.querySelector("h2").focus();
      return;
    }
    const left = Math.max(0, state.pending - state.saved);
    const done = $("done-status");
    done.textContent = left
      ? `All done on this page. ${waiting(left)} Reload the page to see them.`
      : "All done: nothing else is waiting for review.";
    done.hidden = false;
    done.focus();
  }

  async function onSave(event, task, form, parts) {
    event.preventDefault();
    const { alert, button, status, textarea } = parts;
    alert.hidden = true;
    const picked = form.querySelector('input[type="radio"]:checked');
    if (!picked) {
      alert.firstChild.textContent = "Choose a grade from 0 to 5.";
      alert.hidden = false;
      form.querySelector('input[type="radio"]').focus();
      return;
    }
    const level = Number(picked.value);
    button.disabled = true;
    status.textContent = "Saving…";
    try {
      await S.api("POST", `/api/v1/reviews/${encodeURIComponent(task.answer_id)}`, {
        score: level / 5,
        comment: textarea.value.trim(),
      });
      for (const control of form.elements) control.disabled = true;
      const li = form.closest("li");
      li.classList.add("reviewed");
      status.textContent = `Saved: ${level} of 5.`;
      state.saved += 1;
      renderCount();
      moveOn(li);
    } catch (err) {
      status.textContent = "";
      button.disabled = false;
      alert.firstChild.textContent = err && err.message ? err.message : "Saving failed.";
      alert.hidden = false;
      if (err instanceof S.ApiError && err.status === 401) showError("You are signed out.", true);
    }
  }

  async function load() {
    try {
      if (!S.tokens()) {
        throw new S.ApiError(401, { detail: "Sign in to see the review queue." });
      }
      const queue = await S.api("GET", `/api/v1/reviews?limit=${LIMIT}`);
      state.pending = queue.pending;
      state.shown = queue.tasks.length;
      renderCount();
      if (!queue.tasks.length) $("queue-count").textContent = "Nothing is waiting for review.";
      $("tasks").replaceChildren(...queue.tasks.map((task, i) => renderTask(task, i + 1)));
      $("loading").hidden = true;
      $("queue").hidden = false;
      $("queue-heading").focus();
    } catch (err) {
      $("loading").hidden = true;
      showError(err.message, err instanceof S.ApiError && err.status === 401);
    }
  }

  load();
})();
