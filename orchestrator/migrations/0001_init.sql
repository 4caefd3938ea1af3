-- Foundation schema of the interviewer. PostgreSQL is the source of truth;
-- Redis only caches session state.

-- Rows of these tables are history: they may be added, never changed.
CREATE FUNCTION xli_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

-- Question versions. A changed question gets a new version, so every stored
-- answer keeps pointing at exactly the text and reference it was asked with.
CREATE TABLE items (
    item_id     text        NOT NULL,
    version     int         NOT NULL CHECK (version >= 1),
    kind        text        NOT NULL CHECK (kind IN ('formula', 'free_text', 'multiple_choice')),
    skill_area  text        NOT NULL,
    prompt      text        NOT NULL,
    spec        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, version)
);
CREATE TRIGGER items_immutable BEFORE UPDATE OR DELETE ON items
    FOR EACH ROW EXECUTE FUNCTION xli_forbid_change();

CREATE TABLE sessions (
    session_id      uuid        PRIMARY KEY,
    candidate_name  text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('in_progress', 'finished')),
    -- The ordered [{"item_id": ..., "version": ...}] this interview asks.
    items           jsonb       NOT NULL CHECK (jsonb_typeof(items) = 'array'),
    -- 0-based index into items of the question being waited on; equals the
    -- number of answers stored.
    position        int         NOT NULL DEFAULT 0 CHECK (position >= 0),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CHECK ((status = 'finished') = (finished_at IS NOT NULL))
);

CREATE TABLE answers (
    answer_id        uuid        PRIMARY KEY,
    session_id       uuid        NOT NULL REFERENCES sessions (session_id),
    item_id          text        NOT NULL,
    item_version     int         NOT NULL,
    position         int         NOT NULL CHECK (position >= 0),
    answer           text        NOT NULL,
    idempotency_key  text        NOT NULL,
    submitted_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (item_id, item_version) REFERENCES items (item_id, version),
    UNIQUE (session_id, idempotency_key),
    UNIQUE (session_id, position)
);
CREATE TRIGGER answers_append_only BEFORE UPDATE OR DELETE ON answers
    FOR EACH ROW EXECUTE FUNCTION xli_forbid_change();

-- Every grading of an answer; the newest row per answer is its current score,
-- older rows stay so a re-score can be compared with what was shown.
CREATE TABLE scores (
    score_id       bigserial        PRIMARY KEY,
    answer_id      uuid             NOT NULL REFERENCES answers (answer_id),
    value          double precision NOT NULL CHECK (value >= 0 AND value <= 1),
    confidence     double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    -- The full xlinterview.v1.Score message (protobuf JSON mapping).
    score          jsonb            NOT NULL,
    model_name     text             NOT NULL DEFAULT '',
    model_version  text             NOT NULL DEFAULT '',
    backend        text             NOT NULL DEFAULT '',
    created_at     timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX scores_answer_latest ON scores (answer_id, score_id DESC);
CREATE TRIGGER scores_append_only BEFORE UPDATE OR DELETE ON scores
    FOR EACH ROW EXECUTE FUNCTION xli_forbid_change();

CREATE TABLE audit_log (
    id          bigserial   PRIMARY KEY,
    session_id  uuid,
    event       text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_session ON audit_log (session_id, id);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION xli_forbid_change();
