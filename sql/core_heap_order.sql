-- Events are stored at the end of the heap, in position order, even when
-- VACUUM has recorded free space left over on the store's full pages.
-- (Small events used to be scattered one per old page, which made appends
-- to a large store read and dirty random pages.)
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
CREATE EXTENSION IF NOT EXISTS pg_freespacemap;
-- 2,000 events of uneven, mostly large size: full pages with small holes
SELECT count(evstore.append_events('big-' || s,
    (SELECT jsonb_agg(jsonb_build_object('type', 'Loaded',
                                         'data', jsonb_build_object('pad', repeat('x', 150 + (s * 37 + v * 11) % 200))))
       FROM generate_series(1, 100) v)))
  FROM generate_series(1, 20) s;
VACUUM evstore.events;
SELECT max((ctid::text::point)[0])::int AS old_last_page FROM evstore.events \gset
-- the free space map now knows of holes that fit a small event
SELECT count(*) > 10 AS holes_known
  FROM generate_series(0, :old_last_page - 1) b
 WHERE pg_freespace('evstore.events'::regclass, b) >= 128;
-- small events, one append each, then a batch
SELECT count(evstore.append_event('small-' || i, 'Tiny', '{}')) FROM generate_series(1, 50) i;
SELECT (evstore.append_events('small-batch', '[{"type": "Tiny", "data": {}}, {"type": "Tiny", "data": {}}, {"type": "Tiny", "data": {}}]')).stream_version;
-- all of them at or after the old last page, packed together
SELECT min((ctid::text::point)[0]) >= :old_last_page AS after_old_data,
       count(DISTINCT (ctid::text::point)[0]) <= 3 AS packed,
       count(*) AS events
  FROM evstore.events WHERE stream_id LIKE 'small-%';
-- and the heap is in position order for them
SELECT bool_and(blk_ok) AS in_position_order FROM (
  SELECT (ctid::text::point)[0] >= lag((ctid::text::point)[0], 1, 0::float8) OVER (ORDER BY global_position) AS blk_ok
    FROM evstore.events WHERE stream_id LIKE 'small-%') s;
DROP EXTENSION pg_freespacemap;
