-- Basic behaviour of the core functions
-- every test file starts from an empty store
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
SELECT evstore.category('order-123'), evstore.category('order'), evstore.category('a-b-c');
SELECT * FROM evstore.append_event('lead-1', 'LeadCreated', '{"name": "Kim"}');
SELECT stream_id, stream_version, event_type, data FROM evstore.read_stream('lead-1');
