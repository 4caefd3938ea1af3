-- The Score message also as serialised protobuf, which is what the orchestrator reads.
-- Every read of a session's turns used to parse the jsonb copy back into a message
-- (json decode plus protobuf's pure-Python json_format), 12-16% of the orchestrator's
-- CPU under load; parsing the binary form is a single C call. The jsonb column stays
-- the queryable record. Rows stored before this migration keep NULL here and are read
-- from the jsonb: scores are append-only, so they are never rewritten to fill it.
ALTER TABLE scores ADD COLUMN score_pb bytea;
