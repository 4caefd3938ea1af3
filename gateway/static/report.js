// One interview's report: summary, a per-skill chart (plotly.js, served by the
// gateway) with the same numbers as a table, and every answer with its score,
// evidence and feedback. Printable through the browser's print.
"use strict";

(function () {
  const S = window.XliStaff;
  const $ = (id) => document.getElementById(id);
  const id = new URLSearchParams(window.location.search).get("id");

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

  function skillLabel(skill) {
    return skill.replace(/_/g, " ");
  }

  function renderChart(skills) {
    const node = $("skills-chart");
    if (!window.Plotly || !skills.length) {
      node.hidden = true;
      return;
    }
    const styles = getComputedStyle(document.documentElement);
    const color = (name) => styles.getPropertyValue(name).trim();
    window.Plotly.newPlot(node, [{
      type: "bar",
      x: skills.map((s) => skillLabel(s.skill_area)),
      y: skills.map((s) => Math.round(s.mean_score * 100)),
      marker: { color: color("--accent") },
      hovertemplate: "%{x}: %{y}%<extra></extra>",
    }], {
      margin: { t: 10, r: 10, b: 60, l: 50 },
      yaxis: { range: [0, 100], title: { text: "Mean score (%)" }, color: color("--text") },
      xaxis: { color: color("--text") },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: color("--text") },
    }, { displayModeBar: false, responsive: true, staticPlot: true });
  }

  function renderTurn(turn, position, skill) {
    const li = document.createElement("li");
    li.className = "report-turn card";
    li.append(text("h3", `Question ${position}${skill ? ` · ${skillLabel(skill)}` : ""}`));
    li.append(text("p", turn.prompt, "prompt"));
    li.append(text("p", "Answer", "small muted"), text("div", turn.answer, "answer-block"));
    const score = turn.score;
    if (!score) {
      li.append(text("p", "Not scored yet.", "muted"));
      return li;
    }
    li.append(text("p", `Score ${S.percent(score.value)} · confidence ${S.percent(score.confidence)}`, "overall"));
    if (score.feedback) li.append(text("p", `Feedback: ${score.feedback}`));
    if (score.evidence.length) li.append(text("p", "Evidence", "small muted"), list(score.evidence));
    if (score.criteria.length) {
      li.append(text("p", "Criteria", "small muted"), list(score.criteria.map(
        (c) => `${c.met ? "✓ met" : "✗ not met"} — ${c.name}${c.detail ? `: ${c.detail}` : ""}`)));
    }
    const p = score.provenance;
    const by = [`Scored by: ${score.signals.join(", ")}`];
    if (p && p.model_name) by.push(`model ${p.model_name} v${p.model_version} on ${p.backend}`);
    li.append(text("p", by.join(" · "), "small muted"));
    return li;
  }

  async function load() {
    try {
      if (!id) throw new Error("No interview chosen: open a report from the dashboard.");
      const report = await S.api("GET", `/api/v1/interviews/${encodeURIComponent(id)}/report`);
      const interview = report.interview;
      const turns = report.session ? report.session.turns : [];
      document.title = `${interview.candidate_name} · Interview report`;
      $("report-heading").textContent = `Report: ${interview.candidate_name}`;
      $("report-status").textContent = S.statusText(interview.status);
      $("report-overall").textContent = turns.length ? S.percent(report.session.overall_score) : "—";
      $("report-answered").textContent = String(turns.length);
      $("skills-rows").replaceChildren(...report.skills.map((s) => {
        const tr = document.createElement("tr");
        tr.append(text("td", skillLabel(s.skill_area)), text("td", S.percent(s.mean_score)), text("td", String(s.answered)));
        return tr;
      }));
      $("answers").replaceChildren(...turns.map((t, i) => renderTurn(t, i + 1, report.item_skills[t.item_id])));
      $("no-answers").hidden = turns.length > 0;
      $("loading").hidden = true;
      $("report").hidden = false;
      renderChart(report.skills);
      $("report-heading").focus();
    } catch (err) {
      $("loading").hidden = true;
      $("error-message").textContent = err.message;
      $("error").hidden = false;
      if (err instanceof S.ApiError && err.status === 401) {
        const back = document.createElement("a");
        back.href = "/dashboard";
        back.textContent = "Sign in on the dashboard";
        $("error").append(back);
      }
    }
  }

  $("print").addEventListener("click", () => window.print());
  load();
})();
