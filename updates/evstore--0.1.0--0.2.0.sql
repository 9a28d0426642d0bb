-- evstore 0.1.0 -> 0.2.0
-- Every object added to src/evstore.sql after 0.1.0 must be created here
-- too (t/010_upgrade.pl checks that an upgraded database has exactly the
-- schema of a fresh install).

\echo Use "ALTER EXTENSION evstore UPDATE TO '0.2.0'" to load this file. \quit
