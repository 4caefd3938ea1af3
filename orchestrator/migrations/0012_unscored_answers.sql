-- The background scoring retry looks for recent answers that have no score yet;
-- this keeps that sweep from reading the whole answers table.
CREATE INDEX answers_submitted_at ON answers (submitted_at);
