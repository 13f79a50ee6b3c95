-- Schema version 3: `updated_at` is stored with its sign bit flipped
-- (`schedule::seconds_to_column` of the core crate), so the column sorts as the unsigned Unix
-- seconds do. Before, a plain cast wrapped stamps at or past 2^63 to negative numbers that
-- sorted before every real one in the scheduling index. SQLite has no XOR: the flip is an
-- addition of 2^63 modulo 2^64, written so that no step overflows.

UPDATE workflows SET updated_at = CASE
    WHEN updated_at >= 0 THEN updated_at - 9223372036854775807 - 1
    ELSE updated_at + 9223372036854775807 + 1
END;
