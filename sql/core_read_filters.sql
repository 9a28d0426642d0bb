-- read_all's category_prefixes and include_system: semantics, combination
-- with the other filters, bad input, and that a prefix read is served by
-- the (category, global_position) index.
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
CREATE FUNCTION pg_temp.err(sql text, OUT code text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    code := 'none';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;
-- positions of what read_all returns, as one line
CREATE FUNCTION pg_temp.got(after bigint DEFAULT 0, max_count int DEFAULT 1000,
    categories text[] DEFAULT NULL, event_types text[] DEFAULT NULL,
    group_member int DEFAULT NULL, group_size int DEFAULT NULL,
    category_prefixes text[] DEFAULT NULL, include_system boolean DEFAULT true)
RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(global_position || ':' || stream_id || ':' || event_type, ' '
                               ORDER BY global_position), '(none)')
    FROM evstore.read_all(after, max_count, categories, event_types, group_member,
                          group_size, category_prefixes, include_system)
$$;

SELECT evstore.append_event('order-1', 'OrderPlaced', '{}');       -- 1
SELECT evstore.append_event('orderLine-1', 'LineAdded', '{}');     -- 2
SELECT evstore.append_event('ordinal-1', 'Counted', '{}');         -- 3
SELECT evstore.append_event('billing.invoice-1', 'Issued', '{}');  -- 4
SELECT evstore.append_event('billing.refund-1', 'Issued', '{}');   -- 5
SELECT evstore.append_event('billing-1', 'Opened', '{}');          -- 6
SELECT evstore.append_event('Order-1', 'OrderPlaced', '{}');       -- 7 (another category)
SELECT evstore.delete_stream('order-1');                           -- 8 $StreamDeleted
SELECT evstore.tombstone_stream('billing.refund-1');               -- 9 $StreamTombstoned
SELECT evstore.append_event('order-2', '$Custom', '{}');           -- 10 a "$" type of the user's
SELECT evstore.append_event('ordér-1', 'Accented', '{}');          -- 11

-- prefixes match categories byte-wise, case-sensitively
SELECT pg_temp.got(category_prefixes => '{order}');
SELECT pg_temp.got(category_prefixes => '{ord}');
SELECT pg_temp.got(category_prefixes => '{billing.}');
SELECT pg_temp.got(category_prefixes => '{billing}');
SELECT pg_temp.got(category_prefixes => '{Order}');
SELECT pg_temp.got(category_prefixes => '{ordé}');
SELECT pg_temp.got(category_prefixes => '{order-1}');    -- a prefix of the category, not of the stream id
SELECT pg_temp.got(category_prefixes => '{zzz}');
-- several prefixes, overlapping or repeated: each event once, in order
SELECT pg_temp.got(category_prefixes => '{order,orderL,billing.i,order}');
-- an empty prefix matches every category; an empty list matches nothing
SELECT pg_temp.got(category_prefixes => '{""}') = pg_temp.got() AS empty_prefix_is_everything;
SELECT pg_temp.got(category_prefixes => '{}');
-- categories and prefixes together: the union
SELECT pg_temp.got(categories => '{billing}', category_prefixes => '{orderL}');
SELECT pg_temp.got(categories => '{}', category_prefixes => '{orderL}');
SELECT pg_temp.got(categories => '{orderLine}', category_prefixes => '{}');
SELECT pg_temp.got(categories => '{orderLine}', category_prefixes => '{order}');
-- with the other filters: after_position, max_count, event_types, groups
SELECT pg_temp.got(after => 2, category_prefixes => '{order}');
SELECT pg_temp.got(max_count => 2, category_prefixes => '{order,billing}');
SELECT pg_temp.got(event_types => '{Issued,LineAdded}', category_prefixes => '{billing.,order}');
SELECT (SELECT count(*) FROM evstore.read_all(category_prefixes => '{order}', group_member => 0, group_size => 2))
     + (SELECT count(*) FROM evstore.read_all(category_prefixes => '{order}', group_member => 1, group_size => 2))
     = (SELECT count(*) FROM evstore.read_all(category_prefixes => '{order}')) AS groups_partition_a_prefix_read;

-- include_system => false leaves out every type starting with "$"
SELECT pg_temp.got(include_system => false);
SELECT pg_temp.got(category_prefixes => '{order}', include_system => false);
SELECT pg_temp.got(categories => '{billing.refund}', include_system => false);
SELECT pg_temp.got(include_system => NULL) = pg_temp.got() AS null_is_default;
-- the default keeps today's behaviour, positional calls with six arguments too
SELECT pg_temp.got() = (SELECT string_agg(global_position || ':' || stream_id || ':' || event_type, ' ' ORDER BY global_position)
                        FROM evstore.read_all(0, 1000, NULL, NULL, NULL, NULL)) AS six_arguments_unchanged;
SELECT count(*) FROM evstore.read_all(0, 1000, '{order}', NULL, NULL, NULL);

-- bad input
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(category_prefixes => ARRAY['order', NULL])$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(category_prefixes => ARRAY[['a', 'b']])$$);

-- served by the (category, global_position) index, never a walk of the log:
-- the index scans one read makes (pg_stat_get_xact_numscans, counted in
-- this backend until its statistics are flushed, so before and after are
-- taken inside one function call)
CREATE FUNCTION pg_temp.scans(prefixes text[], OUT events bigint, OUT category_idx bigint,
    OUT pkey bigint, OUT bucket_idx bigint)
LANGUAGE plpgsql AS $$
DECLARE
    c0 bigint := pg_stat_get_xact_numscans('evstore.events_category_position_idx'::regclass);
    p0 bigint := pg_stat_get_xact_numscans('evstore.events_pkey'::regclass);
    b0 bigint := pg_stat_get_xact_numscans('evstore.events_bucket_position_idx'::regclass);
BEGIN
    SELECT count(*) INTO events FROM evstore.read_all(category_prefixes => prefixes);
    category_idx := pg_stat_get_xact_numscans('evstore.events_category_position_idx'::regclass) - c0;
    pkey := pg_stat_get_xact_numscans('evstore.events_pkey'::regclass) - p0;
    bucket_idx := pg_stat_get_xact_numscans('evstore.events_bucket_position_idx'::regclass) - b0;
END $$;
-- 8 categories: at most one descent each, one more to find the end, and one
-- scan per matching category (2)
SELECT events, category_idx BETWEEN 3 AND 8 + 1 + 2 AS category_index_used,
       pkey AS pkey_scans, bucket_idx AS bucket_scans
FROM pg_temp.scans('{billing.}');

-- under the C collation a prefix's categories are neighbours in the index:
-- the walk starts at the prefix and stops after it (here 3 descents: two
-- matches and the first category past them, plus the 2 scans)
CREATE DATABASE read_filters_c TEMPLATE template0 LOCALE 'C';
\c read_filters_c
SET client_min_messages = warning;
CREATE EXTENSION evstore;
RESET client_min_messages;
SELECT count(*) FROM (
    SELECT evstore.append_event(s, 'T', '{}')
    FROM unnest(ARRAY['order-1', 'orderLine-1', 'ordinal-1', 'billing.invoice-1', 'billing.refund-1',
                      'billing-1', 'Order-1', 'ordér-1', 'order-2', 'billing.invoice-2']) s) x;
CREATE FUNCTION pg_temp.got(prefixes text[]) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(global_position || ':' || stream_id, ' ' ORDER BY global_position), '(none)')
    FROM evstore.read_all(category_prefixes => prefixes)
$$;
SELECT pg_temp.got('{order}');
SELECT pg_temp.got('{billing.}');
SELECT pg_temp.got('{billing,Order,ordé}');
SELECT pg_temp.got('{orderLine,order,o}');
SELECT pg_temp.got('{zzz,a}');
CREATE FUNCTION pg_temp.category_scans(prefixes text[], OUT events bigint, OUT category_idx bigint)
LANGUAGE plpgsql AS $$
DECLARE
    c0 bigint := pg_stat_get_xact_numscans('evstore.events_category_position_idx'::regclass);
BEGIN
    SELECT count(*) INTO events FROM evstore.read_all(category_prefixes => prefixes);
    category_idx := pg_stat_get_xact_numscans('evstore.events_category_position_idx'::regclass) - c0;
END $$;
SELECT events, category_idx <= 3 + 2 AS only_the_prefix_range FROM pg_temp.category_scans('{billing.}');
\c contrib_regression
DROP DATABASE read_filters_c;
