# Shared helpers for evstore's TAP tests.
package EvstoreTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(evstore_node catalog_description schema_dump writer_scripts);

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

# psql scripts for concurrent writers, one file per writer, written into the
# node's base directory; returns their paths.  Each transaction appends to a
# random stream acct-0 .. acct-(streams-1): a batch of two (20%), an append
# with an expected version that races other writers (share "checked"), or an
# "any" append; then it sleeps up to 20 ms and commits (rolls back 10%).
# With read_then_wait, the expected version is read, then the writer sleeps
# before appending with it, so races are likelier.  Each script ends by
# inserting its number into writers_done.  With stream_names => [...], the
# streams are those instead.  Call srand() first.
sub writer_scripts
{
	my ($node, %o) = @_;
	my @files;
	for my $w (1 .. $o{writers})
	{
		my $sql = "SET client_min_messages = error;\n" . ($o{preamble} // '');
		for my $i (1 .. $o{txns})
		{
			my $stream = $o{stream_names}
			  ? $o{stream_names}[ int(rand(@{ $o{stream_names} })) ]
			  : 'acct-' . int(rand($o{streams}));
			my $delay = sprintf('%.3f', rand(0.02));
			$sql .= "BEGIN;\n";
			my $r = rand();
			if ($r < 0.2)
			{
				$sql .= "SELECT evstore.append_events('$stream', '[{\"type\":\"B1\",\"data\":{\"w\":$w,\"i\":$i}},{\"type\":\"B2\",\"data\":{}}]');\n";
			}
			elsif ($r < 0.2 + $o{checked})
			{
				# may conflict with a concurrent writer: ES001 aborts the transaction
				if ($o{read_then_wait})
				{
					$sql .= "SELECT evstore.stream_version('$stream') AS v \\gset\n";
					$sql .= "SELECT pg_sleep($delay);\n";
					$sql .= "SELECT evstore.append_event('$stream', 'Checked', '{\"w\":$w}', NULL, :v);\n";
				}
				else
				{
					$sql .= "SELECT evstore.append_event('$stream', 'Checked', '{\"w\":$w}', NULL, evstore.stream_version('$stream'));\n";
				}
			}
			else
			{
				$sql .= "SELECT evstore.append_event('$stream', 'Deposited', '{\"w\":$w,\"i\":$i}');\n";
			}
			$sql .= "SELECT pg_sleep($delay);\n";
			$sql .= (rand() < 0.1 ? "ROLLBACK;\n" : "COMMIT;\n");
		}
		$sql .= "INSERT INTO writers_done VALUES ($w);\n";
		my $file = $node->basedir . "/writer_$w.sql";
		open my $fh, '>', $file or die $!;
		print $fh $sql;
		close $fh;
		push @files, $file;
	}
	return @files;
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

# The full definition of every object of the extension, as pg_dump writes it
# with --binary-upgrade (a plain dump names only CREATE EXTENSION), with what
# differs between two databases of identical schema taken out: OIDs,
# relfilenodes, frozen xids, sequence positions and the \restrict key.
sub schema_dump
{
	my ($node, $db) = @_;
	my ($dump, $err) = PostgreSQL::Test::Utils::run_command(
		[ 'pg_dump', '--schema-only', '--binary-upgrade', '-d', $node->connstr($db) ]);
	die "pg_dump of $db failed: $err" if $err ne '' || $dump eq '';
	my @keep;
	for my $line (split /\n/, $dump)
	{
		if ($line =~ /binary_upgrade_create_empty_extension/)
		{
			$line =~ s/'\{[0-9,]*\}'/'{oids}'/;
			push @keep, $line;
			next;
		}
		# sequence positions are data, not schema
		$line =~ s/setval\('([^']+)', \d+, (true|false)\)/setval('$1', N)/;
		next if $line =~ /binary_upgrade_set_next|^\\(un)?restrict |^-- For binary upgrade|relfrozenxid|^WHERE oid = |^-- Dumped |^UPDATE pg_catalog\.pg_class$/;
		push @keep, $line;
	}
	return join("\n", @keep) . "\n";
}

1;
