-- evstore 0.2.0 -> 0.3.0
-- Every object added to or changed in src/evstore.sql after 0.2.0 must be
-- created or changed here too (t/010_upgrade.pl checks that an upgraded
-- database has exactly the schema of a fresh install, by pg_dump).

\echo Use "ALTER EXTENSION evstore UPDATE TO '0.3.0'" to load this file. \quit

-- ==== trust: projections (0.3.0) ====
-- (projection handlers' search_path, privilege re-checks)
-- Projections created before 0.3.0 keep a NULL search_path: they run with
-- pg_catalog, pg_temp as they did.
ALTER TABLE evstore.projections_catalog ADD COLUMN search_path text;
COMMENT ON COLUMN evstore.projections_catalog.search_path IS
    'The creator''s search_path (less pg_temp), captured by create_projection; the projection runs with it, then pg_temp. NULL: created before 0.3.0, runs with pg_catalog, pg_temp';
CREATE OR REPLACE VIEW evstore.projections AS
SELECT c.name, c.kind, c.owner, c.handler, c.reset_function, c.target,
       c.key_column, c.key_source, c.upsert_types, c.delete_types,
       c.column_map, c.categories, c.event_types, c.created_at, c.rebuilt_at,
       COALESCE(s.events_processed, 0) AS events_processed,
       s.last_position, s.last_error, s.last_error_position, s.last_error_at,
       c.search_path
  FROM evstore.projections_catalog c
  LEFT JOIN evstore.projection_stats() s ON s.name = c.name;



-- ==== trust: store integrity (0.3.0) ====
-- (DDL guard, direct writes, DROP EXTENSION)



-- ==== trust: fence and positions (0.3.0) ====



-- ==== trust: robustness (0.3.0) ====
-- (identifier limits, memory)



-- ==== trust: shredding (0.3.0) ====



