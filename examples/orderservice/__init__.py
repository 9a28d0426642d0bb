"""An order service on evstore: a small but real application.

- orders.py:     the Order aggregate and its command handler (snapshot + later
                 events, decide, append with the expected version, retry on
                 ES001, client-generated event ids for idempotent requests)
- subscriber.py: a worker consuming a durable subscription (mark_processed,
                 subscription_ack)
- publisher.py:  tails the evstore output plugin over the replication protocol
                 and confirms positions only after publishing
- store.py:      the few evstore calls the application needs (psycopg 3)
"""
