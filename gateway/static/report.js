// One interview's report: summary, a per-skill chart (plotly.js, served by the
// gateway) with the same numbers as a table, and every answer with its score,
// evidence and feedback; answers the scorer flagged for a human check are marked, with
// their count at the top. Printable through the browser's print.
"use strict";

(function () {
  const S = window.XliStaff;
  const $ = (id) => document.getElementById(id);
  const id = new URLSearchParams(window.location.search).get("id");

  const { text, list, skillLabel } = S;

  const fixed = (value) => (value >= 0 ? "+" : "−") + Math.abs(value).toFixed(2);
  const interval = (low, high) => `${fixed(low)} to ${fixed(high)}`;

  // With the finished interview's estimates: ability per skill with its 95% interval
  // as error bars around the reference group's average (0). Before that: mean scores.
  function renderChart(report) {
    const node = $("skills-chart");
    const abilities = report.skill_abilities;
    if (!window.Plotly || !(abilities.length || report.skills.length)) {
      node.hidden = true;
      return;
    }
    const styles = getComputedStyle(document.documentElement);
    const color = (name) => styles.getPropertyValue(name).trim();
    let trace;
    let yaxis;
    if (abilities.length) {
      const reach = Math.max(3, ...abilities.map((s) => Math.max(Math.abs(s.ci_low), Math.abs(s.ci_high)))) + 0.25;
      trace = {
        type: "scatter",
        mode: "markers",
        x: abilities.map((s) => skillLabel(s.skill_area)),
        y: abilities.map((s) => s.ability),
        error_y: {
          type: "data", symmetric: false,
          array: abilities.map((s) => s.ci_high - s.ability),
          arrayminus: abilities.map((s) => s.ability - s.ci_low),
          color: color("--accent"), thickness: 2, width: 8,
        },
        marker: { color: color("--accent"), size: 11 },
      };
      yaxis = {
        range: [-reach, reach], zeroline: true, zerolinecolor: color("--muted"),
        title: { text: "Ability (0 = average)" }, color: color("--text"),
      };
    } else {
      trace = {
        type: "bar",
        x: report.skills.map((s) => skillLabel(s.skill_area)),
        y: report.skills.map((s) => Math.round(s.mean_score * 100)),
        marker: { color: color("--accent") },
      };
      yaxis = { range: [0, 100], title: { text: "Mean score (%)" }, color: color("--text") };
    }
    window.Plotly.newPlot(node, [trace], {
      margin: { t: 10, r: 50, b: 100, l: 60 },
      yaxis,
      // Long skill names are tilted; automargin keeps the last one inside the chart.
      xaxis: { color: color("--text"), automargin: true },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: color("--text") },
    }, { displayModeBar: false, responsive: true, staticPlot: true });
  }

  function renderAbility(report) {
    const result = report.result;
    $("ability-pending").hidden = Boolean(result);
    $("ability-body").hidden = !result;
    if (!result) return;
    $("ability-summary").textContent = report.ability.summary;
    $("ability-numbers").textContent =
      `Ability ${fixed(result.ability)} (95% interval ${interval(result.ci_low, result.ci_high)}, ` +
      `standard error ${result.standard_error.toFixed(2)}) from ${result.answers_scored} scored answers.`;
  }

  function skillRows(report) {
    const abilities = new Map(report.skill_abilities.map((s) => [s.skill_area, s]));
    const areas = [...new Set([...abilities.keys(), ...report.skills.map((s) => s.skill_area)])];
    const means = new Map(report.skills.map((s) => [s.skill_area, s]));
    return areas.map((area) => {
      const a = abilities.get(area);
      const m = means.get(area);
      const tr = document.createElement("tr");
      tr.append(
        text("td", skillLabel(area)),
        text("td", a ? `${fixed(a.ability)} (${interval(a.ci_low, a.ci_high)})` : "—"),
        text("td", a ? a.level : "—"),
        text("td", m ? S.percent(m.mean_score) : "—"),
        text("td", String(a ? a.answers : m ? m.answered : 0)),
      );
      return tr;
    });
  }

  const flagged = (turn) => Boolean(turn.score && turn.score.needs_review);
  const REVIEW_SIGNAL = "human.review";

  // The count at the top, and links to each flagged answer so a reviewer can go
  // straight to them.
  // Each turn's question number and anchor: a follow-up shares its original's number
  // (it is more of the same question, as on the candidate's page), so the numbers
  // match what the candidate saw and the count of questions.
  function numberTurns(turns) {
    let question = 0;
    return turns.map((turn) => {
      if (!turn.follow_up || question === 0) question += 1;
      const label = turn.follow_up ? `Question ${question}: follow-up` : `Question ${question}`;
      return { turn, label, anchor: turn.follow_up ? `answer-${question}-follow-up` : `answer-${question}` };
    });
  }

  function renderReview(report, numbered) {
    const targets = numbered.filter(({ turn }) => flagged(turn));
    const count = report.answers_needing_review;
    $("report-review").textContent = String(count);
    $("review-card").classList.toggle("has-review", count > 0);
    $("review-note").hidden = count === 0;
    if (!count) return;
    $("review-count").textContent = count === 1
      ? "1 answer is flagged for human review."
      : `${count} answers are flagged for human review.`;
    const links = targets.map(({ label, anchor }) => {
      const a = document.createElement("a");
      a.href = `#${anchor}`;
      a.textContent = label;
      return a;
    });
    $("review-links").replaceChildren(
      ...links.flatMap((a, i) => (i ? [document.createTextNode(", "), a] : [text("span", "Go to: "), a])),
      ...(links.length ? [document.createTextNode(".")] : []),
    );
  }

  function renderTurn({ turn, label, anchor }, skill) {
    const li = document.createElement("li");
    li.className = "report-turn card";
    li.id = anchor;
    const heading = text("h3", `${label}${skill ? ` · ${skillLabel(skill)}` : ""}`);
    li.append(heading);
    const score = turn.score;
    if (flagged(turn)) {
      li.classList.add("needs-review");
      // In the heading too, so someone moving through headings hears it.
      heading.append(text("span", " · flagged for review", "review-flag"));
      const reason = score.review_reason || "no reason given";
      const flag = text("p", "", "review-flag");
      const glyph = text("span", "⚑ ");
      glyph.setAttribute("aria-hidden", "true");
      flag.append(glyph, text("strong", "Flagged for human review: "), document.createTextNode(`${reason} `));
      const review = text("a", "Review it", "review-it");
      review.href = "/dashboard/review";
      flag.append(review);
      li.append(flag);
    }
    li.append(text("p", turn.prompt, "prompt"));
    if (turn.follow_up) {
      li.append(text("p", "Asked because the answer before missed an important point; its score grades both answers together.", "small muted"));
    }
    li.append(text("p", "Answer", "small muted"), text("div", turn.answer, "answer-block"));
    if (!score) {
      li.append(text("p", "Not scored yet.", "muted"));
      return li;
    }
    const line = text("p", `Score ${S.percent(score.value)} · confidence ${S.percent(score.confidence)}`, "overall");
    // A reviewer's grade replaced the model's score: said next to the score.
    if ((score.signals || []).includes(REVIEW_SIGNAL)) line.append(" ", text("span", "Graded by a reviewer", "reviewed-label"));
    li.append(line);
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
      const numbered = numberTurns(turns);
      $("report-answered").textContent = String(turns.filter((t) => !t.follow_up).length);
      $("report-time").textContent = S.timeAllowed(interview);
      renderReview(report, numbered);
      renderAbility(report);
      $("skills-rows").replaceChildren(...skillRows(report));
      $("answers").replaceChildren(...numbered.map((n) => renderTurn(n, report.item_skills[n.turn.item_id])));
      $("no-answers").hidden = turns.length > 0;
      $("loading").hidden = true;
      $("report").hidden = false;
      renderChart(report);
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
