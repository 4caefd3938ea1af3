-- Item parameters estimated from stored answers (`xli-calibrate`). Every calibration
-- of an item version is appended; the newest row per (item_id, version) is current,
-- and a version without a row keeps the parameters of its authored difficulty. A new
-- version of an item has no rows: it starts again from its authored difficulty.
CREATE TABLE item_calibrations (
    calibration_id  bigserial          PRIMARY KEY,
    item_id         text               NOT NULL,
    version         int                NOT NULL,
    -- The IRT discrimination a.
    discrimination  double precision   NOT NULL CHECK (discrimination > 0),
    -- Ascending category boundaries b: one for right/wrong (2PL) items, one fewer than
    -- the categories for graded-response items.
    thresholds      double precision[] NOT NULL CHECK (cardinality(thresholds) >= 1),
    -- Scored responses to this version the estimate is based on.
    responses       int                NOT NULL CHECK (responses >= 0),
    -- How the parameters were estimated, e.g. 'mml-em'.
    method          text               NOT NULL,
    created_at      timestamptz        NOT NULL DEFAULT now(),
    FOREIGN KEY (item_id, version) REFERENCES items (item_id, version)
);
CREATE INDEX item_calibrations_latest ON item_calibrations (item_id, version, calibration_id DESC);
CREATE TRIGGER item_calibrations_append_only BEFORE UPDATE OR DELETE ON item_calibrations
    FOR EACH ROW EXECUTE FUNCTION xli_forbid_change();
