// The hiring dashboard: sign in, create an interview and hand out its invite link,
// and follow every candidate's status and score. Values from the server are written
// with textContent, never as HTML.
"use strict";

(function () {
  const S = window.XliStaff;
  const $ = (id) => document.getElementById(id);
  const el = {
    error: $("error"), errorMessage: $("error-message"), signOut: $("sign-out"),
    reviewLink: $("review-link"), reviewPending: $("review-pending"),
    views: { login: $("view-login"), main: $("view-main") },
    loginForm: $("login-form"), loginEmail: $("login-email"), loginPassword: $("login-password"),
    loginButton: $("login-button"), loginHeading: $("login-heading"), mainHeading: $("main-heading"),
    createForm: $("create-form"), createName: $("create-name"), createEmail: $("create-email"), createExtraTime: $("create-extra-time"), createButton: $("create-button"),
    invite: $("invite"), inviteHeading: $("invite-heading"), inviteFor: $("invite-for"), inviteUrl: $("invite-url"),
    copyInvite: $("copy-invite"), copyStatus: $("copy-status"),
    rows: $("interview-rows"), listStatus: $("list-status"),
  };

  function show(view, focus) {
    for (const [name, node] of Object.entries(el.views)) node.hidden = name !== view;
    el.signOut.hidden = view !== "main";
    el.reviewLink.hidden = view !== "main";
    if (focus) focus.focus();
  }

  function showError(err) {
    el.errorMessage.textContent = err && err.message ? err.message : "Something went wrong.";
    el.error.hidden = false;
  }

  function clearError() { el.error.hidden = true; }

  function handle(err) {
    if (err instanceof S.ApiError && err.status === 401) {
      S.signOut();
      show("login", el.loginHeading);
    }
    showError(err);
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  // The score, and how many of its answers the scorer flagged for a human check:
  // until someone has looked at them the score is provisional.
  function scoreCell(interview) {
    const td = cell(interview.answered ? S.percent(interview.overall_score) : "—");
    const flagged = interview.answers_needing_review || 0;
    if (flagged) {
      const note = document.createElement("div");
      note.className = "review-flag small";
      const flag = document.createElement("span");
      flag.setAttribute("aria-hidden", "true");
      flag.textContent = "⚑ ";
      note.append(flag, `${flagged} answer${flagged === 1 ? "" : "s"} to review`);
      td.append(note);
    }
    return td;
  }

  // How many answers wait in the review queue, in the header link; the list works without it.
  async function loadPending() {
    try {
      const queue = await S.api("GET", "/api/v1/reviews?limit=1");
      el.reviewPending.textContent = queue.pending ? ` (${queue.pending} waiting)` : "";
    } catch (_) {
      el.reviewPending.textContent = "";
    }
  }

  async function loadInterviews() {
    el.listStatus.textContent = "Loading…";
    try {
      const interviews = await S.api("GET", "/api/v1/interviews");
      el.rows.replaceChildren(...interviews.map((i) => {
        const tr = document.createElement("tr");
        const name = cell(i.candidate_name);
        if (i.candidate_email) {
          const email = document.createElement("div");
          email.className = "muted small";
          email.textContent = i.candidate_email;
          name.append(email);
        }
        const report = document.createElement("td");
        const link = document.createElement("a");
        link.href = `/dashboard/report?id=${encodeURIComponent(i.interview_id)}`;
        link.textContent = "Report";
        link.setAttribute("aria-label", `Report for ${i.candidate_name}`);
        report.append(link);
        tr.append(
          name,
          cell(S.statusText(i.status)),
          cell(S.timeAllowed(i)),
          cell(String(i.answered)),
          scoreCell(i),
          cell(i.created_at ? new Date(i.created_at).toLocaleString() : ""),
          report,
        );
        return tr;
      }));
      el.listStatus.textContent = interviews.length ? `${interviews.length} interview(s).` : "No interviews yet.";
      // After the list, not beside it: two calls at once could both try to refresh the token.
      await loadPending();
    } catch (err) {
      el.listStatus.textContent = "";
      handle(err);
    }
  }

  async function onLogin(event) {
    event.preventDefault();
    clearError();
    el.loginButton.disabled = true;
    try {
      await S.signIn(el.loginEmail.value.trim(), el.loginPassword.value);
      el.loginPassword.value = "";
      show("main", el.mainHeading);
      await loadInterviews();
    } catch (err) {
      showError(err);
      el.loginPassword.focus();
    } finally {
      el.loginButton.disabled = false;
    }
  }

  async function onCreate(event) {
    event.preventDefault();
    clearError();
    const name = el.createName.value.trim();
    if (!name) {
      showError({ message: "Enter the candidate's name." });
      el.createName.focus();
      return;
    }
    const extra = el.createExtraTime.value.trim() === "" ? 0 : Number(el.createExtraTime.value);
    if (!Number.isInteger(extra) || extra < 0) {
      showError({ message: "Extra time is a whole number of percent, 0 or more." });
      el.createExtraTime.focus();
      return;
    }
    el.createButton.disabled = true;
    try {
      const created = await S.api("POST", "/api/v1/interviews", {
        candidate_name: name,
        candidate_email: el.createEmail.value.trim(),
        extra_time_percent: extra,
      });
      el.inviteFor.textContent =
        `Interview created for ${created.interview.candidate_name}; time allowed: ${S.timeAllowed(created.interview)}.`;
      el.inviteUrl.value = created.invite_url;
      el.copyStatus.textContent = "";
      el.invite.hidden = false;
      el.createName.value = "";
      el.createEmail.value = "";
      el.createExtraTime.value = "0";
      el.inviteHeading.focus();
      await loadInterviews();
    } catch (err) {
      handle(err);
    } finally {
      el.createButton.disabled = false;
    }
  }

  async function onCopy() {
    try {
      await navigator.clipboard.writeText(el.inviteUrl.value);
      el.copyStatus.textContent = "Copied.";
    } catch (_) {
      // Clipboard access needs a secure origin; selecting lets the user copy by hand.
      el.inviteUrl.select();
      el.copyStatus.textContent = "Selected: press Ctrl+C to copy.";
    }
  }

  el.loginForm.addEventListener("submit", onLogin);
  el.createForm.addEventListener("submit", onCreate);
  el.copyInvite.addEventListener("click", onCopy);
  el.signOut.addEventListener("click", () => {
    S.signOut();
    show("login", el.loginHeading);
  });

  if (S.tokens()) {
    show("main", null);
    loadInterviews();
  } else {
    show("login", null);
  }
})();
