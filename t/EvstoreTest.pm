# Shared helpers for evstore's TAP tests.
package EvstoreTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(evstore_node catalog_description);

# A started node configured like the pg_regress instances (test/evstore.conf),
# with evstore created in database "postgres" unless $opts{no_extension}.
sub evstore_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $opts{allows_streaming} ? 'logical' : 0);
	$node->append_conf('postgresql.conf', slurp_file('test/evstore.conf'));
	$node->append_conf('postgresql.conf', $opts{extra_conf}) if $opts{extra_conf};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION evstore')
	  unless $opts{no_extension};
	return $node;
}

# A canonical text description of everything the extension owns, to compare
# an upgraded database with a fresh install.
sub catalog_description
{
	my ($node, $db) = @_;
	return $node->safe_psql($db, q{
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'evstore'),
members AS (
  SELECT d.classid, d.objid FROM pg_depend d, ext
  WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT x FROM (
  SELECT 'object ' || pg_describe_object(classid, objid, 0) AS x FROM members
  UNION ALL
  SELECT 'column ' || c.oid::regclass || '.' || a.attnum || ' ' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
         || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
  UNION ALL
  SELECT 'constraint ' || co.conrelid::regclass || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
  FROM members m JOIN pg_constraint co ON m.classid = 'pg_class'::regclass AND co.conrelid = m.objid
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
  FROM members m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, '')
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
  WHERE p.prokind IN ('f', 'p')
  UNION ALL
  SELECT 'relacl ' || c.oid::regclass || ' ' || coalesce(c.relacl::text, '') || ' ' || c.relkind::text
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  UNION ALL
  SELECT 'view ' || c.oid::regclass || ' ' || pg_get_viewdef(c.oid)
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  WHERE c.relkind IN ('v', 'm')
  UNION ALL
  SELECT 'config ' || unnest(extconfig)::regclass || ' ' || coalesce(array_to_string(extcondition, ','), '')
  FROM pg_extension WHERE extname = 'evstore'
) s ORDER BY x COLLATE "C"});
}

1;
