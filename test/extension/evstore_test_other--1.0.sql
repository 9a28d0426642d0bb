\echo Use "CREATE EXTENSION evstore_test_other" to load this file. \quit

-- Each statement is tried in its own subtransaction; the outcome (its
-- SQLSTATE, or 'accepted') is kept in a table of this extension.
CREATE TABLE evstore_test_other_results (what text PRIMARY KEY, outcome text NOT NULL);

DO $$
DECLARE
    stmt text;
    outcome text;
BEGIN
    FOREACH stmt IN ARRAY ARRAY[
        'ALTER TABLE evstore.events DISABLE TRIGGER events_append_only',
        'ALTER TABLE evstore.events ADD COLUMN forged int',
        'ALTER TABLE evstore.events ALTER COLUMN data TYPE jsonb USING ''{"forged": true}''',
        'ALTER SEQUENCE evstore.global_position_seq RESTART',
        'CREATE RULE forged AS ON INSERT TO evstore.events DO INSTEAD NOTHING',
        'INSERT INTO evstore.streams VALUES (''forged'', ''forged'', 5, 0, now(), now(), NULL, false)']
    LOOP
        BEGIN
            EXECUTE stmt;
            outcome := 'accepted';
        EXCEPTION WHEN others THEN
            outcome := SQLSTATE;
        END;
        INSERT INTO evstore_test_other_results VALUES (stmt, outcome);
    END LOOP;
END $$;
