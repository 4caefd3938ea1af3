"""``xli-calibrate``: re-estimates the items' IRT parameters from the stored interviews.

Items start from parameters set by their authored difficulty and kind
(:func:`orchestrator.adaptive.item_parameters`). Once an item version has
``XLI_CALIBRATION_MIN_RESPONSES`` scored responses in finished interviews, this
estimates its discrimination and thresholds from them — 2PL for right/wrong items,
the graded-response model for partial-credit items — by marginal maximum likelihood
(Bock–Aitkin EM over a quadrature grid, ability ~ N(0, 1)) with weak priors
(log a normal, b normal, both centred on the authored parameters) so that a sparsely
answered item stays near its authored value instead of running off. Responses are
read exactly as the engine reads them (:func:`orchestrator.adaptive.counted_values`
and :func:`orchestrator.adaptive.score_category`).

Adaptive selection does not bias the estimates: which item came next depended only
on responses that are themselves in the likelihood, so the missing responses are
ignorable. That is also why items below the threshold stay in the estimation with
their current parameters held fixed: they carry information about the candidates'
abilities.

The results are appended to ``item_calibrations``; the orchestrator reads the newest
row of each item version when it starts, so a calibration takes effect at the next
(re)start. ``--dry-run`` estimates and prints without storing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from common.errors import Unavailable
from common.logging import configure_logging
from orchestrator.adaptive import counted_values, current_parameters, item_parameters, score_category
from orchestrator.bank import ItemVersion
from orchestrator.db import Database, ItemCalibration, ItemRef, ScoredSession
from orchestrator.settings import MissingSetting, OrchestratorSettings

log = logging.getLogger(__name__)

METHOD = "mml-em"

# The ability grid: N(0, 1) has no mass worth integrating beyond ±5.
QUADRATURE_POINTS = 41
QUADRATURE_BOUND = 5.0
# Weak priors: log a ~ N(log a₀, 0.5²) lets a range over roughly a₀/2.7..a₀·2.7 and
# b ~ N(b₀, 2²) over the whole scale; a few hundred responses outweigh either.
PRIOR_LOG_A_SD = 0.5
PRIOR_B_SD = 2.0
MAX_ITERATIONS = 500
# Largest change of any a or b between EM cycles that counts as converged: far below
# the standard error of any estimate from a few hundred responses.
TOLERANCE = 1e-3
# A parameter change smaller than this is not reported as a change.
REPORT_PRECISION = 0.005

# Newton steps per M-step, the step of the numerical Hessian, halvings per line search.
_NEWTON_STEPS = 10
_HESSIAN_STEP = 1e-5
_HALVINGS = 30
_MAX_STEP = 1.0
_TINY = 1e-300


@dataclass(frozen=True)
class ItemModel:
    """One item of an estimation.

    Attributes:
        a: Discrimination: where estimation starts and the prior's centre, or the
            fixed value when ``free`` is false.
        thresholds: Ascending category boundaries (one fewer than the categories), in
            the same roles as ``a``.
        free: Estimate the item; false holds it fixed (it still informs abilities).
    """

    a: float
    thresholds: tuple[float, ...]
    free: bool = True

    @property
    def categories(self) -> int:
        return len(self.thresholds) + 1


@dataclass(frozen=True)
class Estimate:
    """What :func:`estimate_parameters` found.

    Attributes:
        parameters: ``(a, thresholds)`` per item, in the order given (fixed ones unchanged).
        iterations: EM cycles run.
        converged: Whether the largest change fell below the tolerance.
        log_posterior: The marginal log-likelihood plus the log-priors of the free
            items, for the parameters the last cycle started from.
    """

    parameters: list[tuple[float, tuple[float, ...]]]
    iterations: int
    converged: bool
    log_posterior: float


Progress = Callable[[int, float, float], None]


def _log_prior(phi: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-item log prior density (up to a constant) of ``phi`` and its gradient:
    log a ~ N(prior log a, PRIOR_LOG_A_SD²), each b ~ N(prior b, PRIOR_B_SD²)."""
    scale = np.r_[PRIOR_LOG_A_SD, np.full(phi.shape[1] - 1, PRIOR_B_SD)]
    deviation = (phi - prior) / scale
    return -0.5 * (deviation**2).sum(axis=1), -deviation / scale


def _group_objective(
    phi: np.ndarray, counts: np.ndarray, nodes: np.ndarray, prior: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-item expected complete-data log-posterior and its gradient.

    Args:
        phi: ``(n, K)`` parameters per item: log a, then the K-1 thresholds.
        counts: ``(n, K, Q)`` expected responses per category at each node.
        nodes: ``(Q,)`` ability nodes.
        prior: ``(n, K)`` the priors' centres, in the layout of ``phi``.

    Returns:
        ``(n,)`` objective values and ``(n, K)`` gradients.
    """
    a = np.exp(phi[:, 0])
    z = a[:, None, None] * (nodes[None, None, :] - phi[:, 1:, None])
    s, p = _probabilities(phi, nodes)
    p = np.maximum(p, _TINY)
    log_prior, prior_grad = _log_prior(phi, prior)
    value = (counts * np.log(p)).sum(axis=(1, 2)) + log_prior
    ratio = counts / p
    # Threshold j's cumulative probability enters category j with + and j-1 with -.
    slope = (ratio[:, 1:] - ratio[:, :-1]) * s * (1.0 - s)
    grad = np.empty_like(phi)
    grad[:, 0] = (slope * z).sum(axis=(1, 2))
    grad[:, 1:] = -a[:, None] * slope.sum(axis=2)
    return value, grad + prior_grad


def _valid(phi: np.ndarray) -> np.ndarray:
    """Rows whose thresholds are strictly ascending and finite."""
    return np.isfinite(phi).all(axis=1) & (np.diff(phi[:, 1:], axis=1) > 1e-6).all(axis=1)


def _m_step(phi: np.ndarray, counts: np.ndarray, nodes: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Maximises each item's expected log-posterior: damped Newton steps with a
    numerical Hessian of the analytic gradient and a halving line search, all items of
    one category count at once. Never lowers any item's objective."""
    n, k = phi.shape
    eye = np.eye(k)
    for _ in range(_NEWTON_STEPS):
        value, grad = _group_objective(phi, counts, nodes, prior)
        hessian = np.empty((n, k, k))
        for j in range(k):
            _, up = _group_objective(phi + _HESSIAN_STEP * eye[j], counts, nodes, prior)
            _, down = _group_objective(phi - _HESSIAN_STEP * eye[j], counts, nodes, prior)
            hessian[:, :, j] = (up - down) / (2 * _HESSIAN_STEP)
        curvature = -0.5 * (hessian + hessian.transpose(0, 2, 1))
        # Where the objective is not locally concave, shift it until it is.
        shift = np.maximum(0.0, 1e-6 - np.linalg.eigvalsh(curvature)[:, 0])
        step = np.linalg.solve(curvature + shift[:, None, None] * eye, grad[:, :, None])[:, :, 0]
        # A trust region: far from the optimum a Newton step can be wild (e.g. a
        # thousandfold a for an item everybody got right).
        step /= np.maximum(1.0, np.abs(step).max(axis=1) / _MAX_STEP)[:, None]
        length = np.ones(n)
        done = np.zeros(n, dtype=bool)
        new = phi.copy()
        for _ in range(_HALVINGS):
            trial = phi + length[:, None] * step
            ok = ~done & _valid(trial)
            trial_value, _ = _group_objective(np.where(ok[:, None], trial, phi), counts, nodes, prior)
            ok &= trial_value >= value
            new[ok] = trial[ok]
            done |= ok
            if done.all():
                break
            length[~done] /= 2
        moved = np.abs(new - phi).max()
        phi = new
        if moved < 1e-7:
            break
    return phi


def estimate_parameters(
    models: Sequence[ItemModel],
    person: Sequence[int] | np.ndarray,
    item: Sequence[int] | np.ndarray,
    category: Sequence[int] | np.ndarray,
    *,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
    progress: Progress | None = None,
) -> Estimate:
    """Marginal maximum-likelihood (MAP) item parameters by EM over a quadrature grid.

    Every response is one (person, item, category) triple; a person answers any subset
    of the items. Abilities are N(0, 1), which fixes the scale. Free items have
    priors log a ~ N(log a₀, :data:`PRIOR_LOG_A_SD`²) and b ~ N(b₀,
    :data:`PRIOR_B_SD`²) around their given parameters, where estimation also starts.

    Args:
        models: The items, indexed by ``item``.
        person: Per response, who answered (any integer labels).
        item: Per response, the index into ``models``.
        category: Per response, the score category 0..categories-1.
        max_iterations: Most EM cycles.
        tolerance: Stop once no free parameter moves more than this in a cycle.
        progress: Called after each cycle with (cycle, log-posterior of the parameters
            it started from, largest change); the log-posterior never decreases.

    Raises:
        ValueError: When a response names an unknown item or a category the item lacks.
    """
    answered = np.asarray(item, dtype=np.int64)
    got = np.asarray(category, dtype=np.int64)
    labels = np.asarray(person)
    if not (len(labels) == len(answered) == len(got)):
        raise ValueError("person, item and category must have one entry per response")
    categories = np.array([m.categories for m in models], dtype=np.int64)
    if len(answered) and (answered.min() < 0 or answered.max() >= len(models)):
        raise ValueError("a response names an item index outside the models")
    if len(answered) and (got.min() < 0 or (got >= categories[answered]).any()):
        raise ValueError("a response has a category its item does not have")
    parameters = [(m.a, tuple(m.thresholds)) for m in models]
    if not any(m.free for m in models) or not len(answered):
        return Estimate(parameters, 0, True, 0.0)

    # Responses grouped by person (for the E-step sums) and by item and category (for
    # the expected counts), as sorted orders and group starts for np.add.reduceat.
    _, who = np.unique(labels, return_inverse=True)
    by_person = np.argsort(who, kind="stable")
    person_starts = np.flatnonzero(np.r_[True, np.diff(who[by_person]) != 0])
    widest = int(categories.max())
    cell = answered * widest + got
    by_cell = np.argsort(cell, kind="stable")
    cell_starts = np.flatnonzero(np.r_[True, np.diff(cell[by_cell]) != 0])
    cells = cell[by_cell][cell_starts]

    nodes = np.linspace(-QUADRATURE_BOUND, QUADRATURE_BOUND, QUADRATURE_POINTS)
    log_weights = -0.5 * nodes**2
    log_weights -= np.log(np.exp(log_weights).sum())

    # Items with the same number of categories share one array of parameters each.
    groups = []
    for k in sorted(set(categories.tolist())):
        members = np.flatnonzero(categories == k)
        phi = np.array([[np.log(models[i].a), *models[i].thresholds] for i in members], dtype=float)
        free = np.array([models[i].free for i in members])
        groups.append((k, members, phi, phi.copy(), free))

    log_posterior = 0.0
    converged = False
    iteration = 0
    for iteration in range(1, max_iterations + 1):
        # E-step: each person's posterior over the nodes, then the expected number of
        # responses in each category of each item at each node.
        table = np.zeros((len(models), widest, QUADRATURE_POINTS))
        for k, members, phi, _, _ in groups:
            table[members, :k] = np.log(np.maximum(_probabilities(phi, nodes)[1], _TINY))
        log_likelihood = np.add.reduceat(table[answered, got][by_person], person_starts, axis=0) + log_weights
        peak = log_likelihood.max(axis=1, keepdims=True)
        posterior = np.exp(log_likelihood - peak)
        total = posterior.sum(axis=1, keepdims=True)
        posterior /= total
        marginal = float((peak + np.log(total)).sum())
        expected = np.zeros((len(models) * widest, QUADRATURE_POINTS))
        expected[cells] = np.add.reduceat(posterior[who][by_cell], cell_starts, axis=0)
        expected = expected.reshape(len(models), widest, QUADRATURE_POINTS)

        # M-step: each free item separately.
        change = 0.0
        log_posterior = marginal
        for k, members, phi, prior, free in groups:
            if not free.any():
                continue
            log_posterior += float(_log_prior(phi[free], prior[free])[0].sum())
            updated = _m_step(phi[free], expected[members[free], :k], nodes, prior[free])
            change = max(change, float(np.abs(_natural(updated) - _natural(phi[free])).max()))
            phi[free] = updated
        if progress is not None:
            progress(iteration, log_posterior, change)
        if change < tolerance:
            converged = True
            break

    for _, members, phi, _, free in groups:
        for i, row in zip(members[free], phi[free], strict=True):
            parameters[i] = (float(np.exp(row[0])), tuple(float(b) for b in row[1:]))
    return Estimate(parameters, iteration, converged, log_posterior)


def _probabilities(phi: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n, K-1, Q)`` cumulative and ``(n, K, Q)`` category probabilities of the GRM."""
    a = np.exp(phi[:, 0])
    s = 0.5 * (1.0 + np.tanh(0.5 * a[:, None, None] * (nodes[None, None, :] - phi[:, 1:, None])))
    n, _, q = s.shape
    cumulative = np.concatenate([np.ones((n, 1, q)), s, np.zeros((n, 1, q))], axis=1)
    return s, cumulative[:, :-1] - cumulative[:, 1:]


def _natural(phi: np.ndarray) -> np.ndarray:
    """``phi`` with log a turned back into a, so changes are measured in a and b."""
    out = phi.copy()
    out[:, 0] = np.exp(out[:, 0])
    return out


# -- from stored interviews to stored calibrations -------------------------------------


@dataclass(frozen=True)
class ResponseData:
    """Every scored response of finished interviews, as estimation input.

    Attributes:
        refs: The item versions answered, indexed by ``item``.
        person: Per response, the interview's index.
        item: Per response, the index into ``refs``.
        category: Per response, the score category as the engine counts it.
    """

    refs: list[ItemRef]
    person: np.ndarray
    item: np.ndarray
    category: np.ndarray

    def counts(self) -> dict[ItemRef, int]:
        """Responses per item version."""
        return {self.refs[i]: n for i, n in Counter(self.item.tolist()).items()}


def collect_responses(versions: Mapping[ItemRef, ItemVersion], sessions: Sequence[ScoredSession]) -> ResponseData:
    """The responses of ``sessions``, each in the category the engine recorded for it.

    Args:
        versions: Every stored item version.
        sessions: Finished interviews (``Database.scored_sessions``).

    Raises:
        KeyError: When a session asked an item version that is not stored.
    """
    refs: dict[ItemRef, int] = {}
    person, item, category = [], [], []
    for index, session in enumerate(sessions):
        for position, value in counted_values(session.items, session.scores).items():
            ref = session.items[position].version_ref
            person.append(index)
            item.append(refs.setdefault(ref, len(refs)))
            category.append(score_category(versions[ref].item, value))
    return ResponseData(list(refs), np.array(person, int), np.array(item, int), np.array(category, int))


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate`.

    Attributes:
        calibrations: New parameters of the item versions with enough responses.
        previous: The parameters the engine used so far, for those versions.
        kept: Item versions answered too rarely: they keep their parameters.
        responses: Scored responses per answered item version.
        iterations: EM cycles run.
        converged: Whether EM converged.
    """

    calibrations: list[ItemCalibration]
    previous: dict[ItemRef, tuple[float, list[float]]]
    kept: list[ItemRef]
    responses: dict[ItemRef, int]
    iterations: int
    converged: bool

    def changed(self, precision: float = REPORT_PRECISION) -> list[ItemCalibration]:
        """The calibrations that move a parameter by at least ``precision``, largest first."""

        def shift(c: ItemCalibration) -> float:
            a, thresholds = self.previous[c.ref]
            return max(abs(c.discrimination - a), *(abs(x - y) for x, y in zip(c.thresholds, thresholds)))

        return sorted((c for c in self.calibrations if shift(c) >= precision), key=shift, reverse=True)


def calibrate(
    versions: Sequence[ItemVersion],
    sessions: Sequence[ScoredSession],
    current: Mapping[ItemRef, ItemCalibration],
    min_responses: int,
    *,
    progress: Progress | None = None,
    max_iterations: int = MAX_ITERATIONS,
) -> Calibration:
    """Estimates new parameters for the item versions with at least ``min_responses``.

    Free items start from, and have priors centred on, their authored parameters, so
    repeated calibrations do not compound earlier estimates. Items answered less
    often are held at their current parameters (``current`` calibration or authored).

    Args:
        versions: Every stored item version.
        sessions: Finished interviews.
        current: The newest stored calibration per item version.
        min_responses: Fewest responses an item version needs to be estimated.
        progress: Called after each EM cycle (see :func:`estimate_parameters`).
        max_iterations: Most EM cycles.
    """
    by_ref = {ItemRef(v.item_id, v.version): v for v in versions}
    data = collect_responses(by_ref, sessions)
    counts = data.counts()
    models = []
    for ref in data.refs:
        version = by_ref[ref]
        free = counts[ref] >= min_responses
        a, thresholds = item_parameters(version.item) if free else current_parameters(version, current)
        models.append(ItemModel(a, tuple(thresholds), free))
    estimate = estimate_parameters(
        models, data.person, data.item, data.category, progress=progress, max_iterations=max_iterations
    )
    calibrations = [
        ItemCalibration(ref, a, thresholds, counts[ref], METHOD)
        for ref, model, (a, thresholds) in zip(data.refs, models, estimate.parameters, strict=True)
        if model.free
    ]
    return Calibration(
        calibrations=calibrations,
        previous={c.ref: current_parameters(by_ref[c.ref], current) for c in calibrations},
        kept=[ref for ref, model in zip(data.refs, models, strict=True) if not model.free],
        responses=counts,
        iterations=estimate.iterations,
        converged=estimate.converged,
    )


# -- the command ---------------------------------------------------------------------


def format_changes(result: Calibration) -> str:
    """A table of the item versions whose parameters change, largest change first."""
    changed = result.changed()
    if not changed:
        return "no item's parameters changed"
    width = max(len(c.ref.item_id) for c in changed)

    def bs(values: Sequence[float]) -> str:
        return "/".join(f"{v:.2f}" for v in values)

    lines = [f"{'item':<{width}}  {'ver':>3}  {'answers':>7}  {'a now':>6} → {'new':<6}  b now → new"]
    for c in changed:
        a, thresholds = result.previous[c.ref]
        lines.append(
            f"{c.ref.item_id:<{width}}  {c.ref.version:>3}  {c.responses:>7}  {a:>6.2f} → {c.discrimination:<6.2f}"
            f"  {bs(thresholds)} → {bs(c.thresholds)}"
        )
    return "\n".join(lines)


def _progress_printer(stream: TextIO) -> Progress:
    """Shows the EM cycles on ``stream``: one updating line on a terminal, else every tenth."""
    tty = stream.isatty()

    def show(iteration: int, log_posterior: float, change: float) -> None:
        line = f"EM cycle {iteration}: log-posterior {log_posterior:,.1f}, largest change {change:.4f}"
        if tty:
            print(f"\r{line}\033[K", end="", file=stream, flush=True)
        elif iteration == 1 or iteration % 10 == 0:
            print(line, file=stream, flush=True)

    return show


async def run(
    url: str, settings: OrchestratorSettings, *, min_responses: int, dry_run: bool, out: TextIO, err: TextIO
) -> Calibration:
    """Reads the stored interviews, calibrates, prints the changes and (unless
    ``dry_run``) stores the new calibrations."""
    db = await Database.connect(url, timeout_s=settings.db_timeout_s, startup_timeout_s=settings.startup_timeout_s)
    try:
        await db.migrate()
        versions = await db.item_versions()
        sessions = await db.scored_sessions()
        current = await db.latest_calibrations()
        print(f"{len(sessions)} finished interviews, {len(versions)} item versions", file=out)
        # EM is CPU-bound for seconds to minutes: off the event loop.
        result = await asyncio.to_thread(
            calibrate, versions, sessions, current, min_responses, progress=_progress_printer(err)
        )
        if err.isatty():
            print(file=err)
        if not result.calibrations:
            print(f"no item version has {min_responses} responses yet: all keep their parameters", file=out)
            return result
        state = "converged" if result.converged else "did NOT converge"
        print(
            f"estimated {len(result.calibrations)} item versions ({state} after {result.iterations} EM cycles);"
            f" {len(result.kept)} with fewer than {min_responses} responses keep theirs",
            file=out,
        )
        print(format_changes(result), file=out)
        if dry_run:
            print("dry run: nothing stored", file=out)
        else:
            await db.store_calibrations(result.calibrations)
            print(f"stored {len(result.calibrations)} calibrations; the orchestrator uses them after its next (re)start", file=out)
        return result
    finally:
        await db.close()


@contextlib.contextmanager
def database_url(settings: OrchestratorSettings) -> Iterator[str]:
    """``DATABASE_URL``, or else the embedded PostgreSQL ``xli-up`` keeps in
    ``XLI_DATA_DIR/postgres``: the running one, or started for this command.

    Raises:
        MissingSetting: When neither is there.
    """
    if settings.database_url:
        yield settings.database_url
        return
    from stack.backing import BackingServiceError, EmbeddedPostgres, running_postgres_port  # local set-up only

    data_dir = settings.data_dir.resolve() / "postgres"
    if not (data_dir / "pgdata" / "PG_VERSION").exists():
        raise MissingSetting(
            f"DATABASE_URL is not set and there is no embedded PostgreSQL in {data_dir}"
            " (run `make up` once, or set DATABASE_URL)"
        )
    port = running_postgres_port(data_dir / "pgdata")
    try:
        if port is not None:
            # `make up` is running: use its server.
            yield EmbeddedPostgres(data_dir, port).url
            return
        with EmbeddedPostgres(data_dir) as postgres:
            yield postgres.url
    except BackingServiceError as exc:
        raise Unavailable(f"cannot start the embedded PostgreSQL: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status: 0 done, 1 PostgreSQL unreachable,
    2 no database configured."""
    settings = OrchestratorSettings()
    parser = argparse.ArgumentParser(
        prog="xli-calibrate", description="Re-estimates the items' IRT parameters from the stored interviews."
    )
    parser.add_argument("--dry-run", action="store_true", help="estimate and print, store nothing")
    parser.add_argument(
        "--min-responses",
        type=int,
        default=settings.calibration_min_responses,
        help="fewest responses an item version needs to be estimated"
        f" (default XLI_CALIBRATION_MIN_RESPONSES = {settings.calibration_min_responses})",
    )
    args = parser.parse_args(argv)
    if args.min_responses < 1:
        parser.error("--min-responses must be at least 1")
    configure_logging("xli-calibrate", "WARNING", json=False)
    try:
        with database_url(settings) as url:
            asyncio.run(
                run(url, settings, min_responses=args.min_responses, dry_run=args.dry_run, out=sys.stdout, err=sys.stderr)
            )
    except MissingSetting as exc:
        print(f"cannot calibrate: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"cannot calibrate: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
