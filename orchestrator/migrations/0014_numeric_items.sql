-- Numeric questions: a number compared with the expected value within a tolerance.
-- The kind check of 0001 is replaced; existing rows all satisfy the new one.
ALTER TABLE items DROP CONSTRAINT items_kind_check;
ALTER TABLE items ADD CONSTRAINT items_kind_check
    CHECK (kind IN ('formula', 'free_text', 'multiple_choice', 'numeric'));
