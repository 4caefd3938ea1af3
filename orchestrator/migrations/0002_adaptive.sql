-- Adaptive interviews: authored item difficulty, per-session engine state, time
-- limits, and the stored result.

-- 1 (easy) to 5 (hard); the item's IRT parameters start from it. NULL on versions
-- stored before difficulty was authored; those read as 3.
ALTER TABLE items ADD COLUMN difficulty smallint CHECK (difficulty BETWEEN 1 AND 5);

-- sessions.items now grows as the engine picks each next question, so it can be
-- one longer than position (a question is waiting) or equal (the next is being chosen).
ALTER TABLE sessions
    -- Seeds the session's randomised choices, so a replay picks the same items.
    ADD COLUMN cat_seed bigint NOT NULL DEFAULT 0,
    -- Item ids the exposure control made ineligible for this session.
    ADD COLUMN ineligible jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(ineligible) = 'array'),
    ADD COLUMN deadline timestamptz,
    ADD COLUMN extra_time_percent int NOT NULL DEFAULT 0 CHECK (extra_time_percent >= 0),
    ADD COLUMN max_items int NOT NULL DEFAULT 0 CHECK (max_items >= 0),
    -- Why the session finished (see Result.stop_reason); NULL while in progress.
    ADD COLUMN stop_reason text;

-- Every result computed for a session; the newest is current. A late score (after a
-- scorer outage) appends a newer result rather than changing the old one.
CREATE TABLE results (
    result_id       bigserial        PRIMARY KEY,
    session_id      uuid             NOT NULL REFERENCES sessions (session_id),
    ability         double precision NOT NULL,
    standard_error  double precision NOT NULL CHECK (standard_error >= 0),
    answers_scored  int              NOT NULL CHECK (answers_scored >= 0),
    -- The xlinterview.v1.Result message (protobuf JSON mapping).
    result          jsonb            NOT NULL,
    created_at      timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX results_session_latest ON results (session_id, result_id DESC);
CREATE TRIGGER results_append_only BEFORE UPDATE OR DELETE ON results
    FOR EACH ROW EXECUTE FUNCTION xli_forbid_change();
