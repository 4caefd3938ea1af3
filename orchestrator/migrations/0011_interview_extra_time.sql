-- Extra time granted to a candidate as an accommodation, set when the interview is
-- created and handed to the session when the invite is used. The upper bound is a
-- setting (XLI_MAX_EXTRA_TIME_PERCENT), checked by the service, not fixed here.
ALTER TABLE interviews
    ADD COLUMN extra_time_percent integer NOT NULL DEFAULT 0 CHECK (extra_time_percent >= 0);
