-- `updated_at` is stored with its sign bit flipped (`schedule::seconds_to_column` of the core
-- crate), so the column sorts as the unsigned Unix seconds do. Before, a plain cast wrapped
-- stamps at or past 2^63 to negative numbers that sorted before every real one in the
-- scheduling indexes. The real value in SQL is `updated_at::numeric + 9223372036854775808`.
--
-- Runs with `search_path` set to the backend's schema only.
-- Never edit this file once released: add a new migration instead.

UPDATE workflows SET updated_at = updated_at # (-9223372036854775807 - 1);
