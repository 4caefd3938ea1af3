-- Reviewers' grades of scored answers (the Reviews service). The grade itself is a
-- `scores` row, so everything that reads an answer's newest score (reports, results,
-- calibration) reads the reviewer's grade without knowing about reviews; this table
-- says which score rows are reviewers' grades, who gave them and which model score
-- they replaced. Append-only: a second review of an answer is a new row and becomes
-- current, and the earlier one stays as the record of what was decided before.
CREATE TABLE reviews (
    review_id          bigserial   PRIMARY KEY,
    answer_id          uuid        NOT NULL REFERENCES answers (answer_id),
    -- The score row holding the reviewer's grade; one review per grade.
    score_id           bigint      NOT NULL UNIQUE REFERENCES scores (score_id),
    -- The model's score the reviewer was shown and graded over.
    reviewed_score_id  bigint      NOT NULL REFERENCES scores (score_id),
    reviewer_user_id   uuid        NOT NULL REFERENCES users (user_id),
    comment            text        NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (score_id <> reviewed_score_id)
);
-- The newest review of an answer (its current grade, and the learning loop's export).
CREATE INDEX reviews_answer_latest ON reviews (answer_id, review_id DESC);
CREATE TRIGGER reviews_append_only BEFORE UPDATE OR DELETE ON reviews
    FOR EACH ROW EXECUTE FUNCTION xli_forbid_change();

-- The review queue starts from the flagged scores only, a small share of all scores,
-- instead of reading every answer's newest score; each candidate is then checked to be
-- its answer's newest score (scores_answer_latest). The predicate must be written the
-- same way in the query for the planner to use the index (orchestrator/reviews.py).
-- Scores stored before the scorer had review flags lack the key and are not flagged.
CREATE INDEX scores_needing_review ON scores (answer_id, score_id) INCLUDE (confidence)
    WHERE (score ->> 'needs_review') = 'true';
