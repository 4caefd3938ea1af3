// Shared by the staff pages: tokens in sessionStorage (gone when the tab closes), and
// API calls that refresh an expired access token once before giving up.
"use strict";

window.XliStaff = (function () {
  const TOKENS_KEY = "xli.staff.tokens";

  function tokens() {
    try { return JSON.parse(sessionStorage.getItem(TOKENS_KEY)); } catch (_) { return null; }
  }

  function saveTokens(pair) {
    sessionStorage.setItem(TOKENS_KEY, JSON.stringify({ access: pair.access_token, refresh: pair.refresh_token, user: pair.user }));
  }

  function signOut() {
    sessionStorage.removeItem(TOKENS_KEY);
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `Request failed (${status})`);
      this.status = status;
      this.problem = problem;
    }
  }

  async function send(method, path, body, access) {
    const init = { method, headers: { Accept: "application/json" } };
    if (access) init.headers.Authorization = `Bearer ${access}`;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, { detail: "Could not reach the server. Check your connection." });
    }
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  async function api(method, path, body) {
    const current = tokens();
    try {
      return await send(method, path, body, current && current.access);
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401 || !current || !current.refresh) throw err;
      // The access token ran out: trade the refresh token once, then retry.
      try {
        saveTokens(await send("POST", "/api/v1/auth/refresh", { refresh_token: current.refresh }));
      } catch (_) {
        signOut();
        throw err;
      }
      return send(method, path, body, tokens().access);
    }
  }

  async function signIn(email, password) {
    saveTokens(await send("POST", "/api/v1/auth/login", { email, password }));
  }

  const percent = (value) => `${Math.round(Math.max(0, Math.min(1, value || 0)) * 100)}%`;
  const STATUS_TEXT = {
    INTERVIEW_STATUS_INVITED: "Invited",
    INTERVIEW_STATUS_IN_PROGRESS: "In progress",
    INTERVIEW_STATUS_FINISHED: "Finished",
    INTERVIEW_STATUS_CANCELLED: "Cancelled",
    INTERVIEW_STATUS_EXPIRED: "Invite expired",
  };
  const statusText = (status) => STATUS_TEXT[status] || "Unknown";
  // "1 h 30 min (+50% extra time)": the candidate's time, accommodation named.
  function timeAllowed(interview) {
    const minutes = Math.round((interview.time_limit_seconds || 0) / 60);
    const hours = Math.floor(minutes / 60);
    const text = hours ? `${hours} h${minutes % 60 ? ` ${minutes % 60} min` : ""}` : `${minutes} min`;
    return interview.extra_time_percent ? `${text} (+${interview.extra_time_percent}% extra time)` : text;
  }

  // Page building for the staff pages: values from the server go in as text, never as HTML.
  function text(tag, value, className) {
    const node = document.createElement(tag);
    node.textContent = value;
    if (className) node.className = className;
    return node;
  }

  function list(items) {
    const ul = document.createElement("ul");
    ul.append(...items.map((item) => text("li", item)));
    return ul;
  }

  // "formulas_functions" → "formulas functions".
  const skillLabel = (skill) => (skill || "").replace(/_/g, " ");

  return { api, signIn, signOut, tokens, ApiError, percent, statusText, timeAllowed, text, list, skillLabel };
})();
