-- Which answers have their first score. The first stored score of an answer wins
-- (two requests may score one answer at once: a retry with the same key, the sweep
-- of unscored answers). That rule used to take a transaction of five round trips (an
-- advisory lock, a read, two inserts, the commit); this primary key lets one
-- statement claim the answer and store its score and audit event, and a second
-- claimant waits for the first to commit and then stores nothing.
CREATE TABLE first_scores (
    answer_id  uuid        PRIMARY KEY REFERENCES answers (answer_id),
    scored_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER first_scores_append_only BEFORE UPDATE OR DELETE ON first_scores
    FOR EACH ROW EXECUTE FUNCTION xli_forbid_change();
-- Answers scored before this migration already have their first score.
INSERT INTO first_scores (answer_id, scored_at)
    SELECT answer_id, min(created_at) FROM scores GROUP BY answer_id;
