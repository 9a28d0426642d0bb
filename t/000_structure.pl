# The layout rules of src/ (issue 11), checked on the built tree: version
# differences only in compat.h, OpenSSL only in shredding_cipher.c, one
# relcache callback and one pair of shared-memory hooks, no cycle between
# modules (from the symbols the objects define and use), and an SQL
# signature comment above every SQL-callable C function.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;

my @c = sort glob('src/*.c');
my @h = sort glob('src/*.h');
ok(@c > 10, 'src/ has its C files');

sub grep_files
{
	my ($re, @files) = @_;
	my @hits;
	for my $f (@files)
	{
		my $n = 0;
		for my $line (split /\n/, slurp_file($f))
		{
			$n++;
			push @hits, "$f:$n" if $line =~ $re;
		}
	}
	return @hits;
}

is_deeply([ grep_files(qr/PG_VERSION_NUM/, grep { $_ ne 'src/compat.h' } @c, @h) ],
	[], 'PG_VERSION_NUM appears only in src/compat.h');
is_deeply([ grep_files(qr/#\s*include\s*<openssl\//, @c, @h) ],
	[ grep_files(qr/#\s*include\s*<openssl\//, 'src/shredding_cipher.c') ],
	'OpenSSL headers are included only by src/shredding_cipher.c');
is(scalar(grep_files(qr/\bCacheRegisterRelcacheCallback\s*\(/, @c)), 1,
	'evstore registers one relcache callback');
is_deeply([ grep_files(qr/\bshmem_(request|startup)_hook\s*=[^=]/, @c) ],
	[ grep_files(qr/\bshmem_(request|startup)_hook\s*=[^=]/, 'src/shmem.c') ],
	'only src/shmem.c installs shared-memory hooks');
is(scalar(grep_files(qr/\bshmem_(request|startup)_hook\s*=[^=]/, 'src/shmem.c')), 2,
	'src/shmem.c installs one request and one startup hook');

# SQL-callable functions: "/* evstore.name(...) ... */" right above "Datum"
my @unsigned;
for my $f (@c)
{
	my $src = slurp_file($f);
	for my $fn ($src =~ /PG_FUNCTION_INFO_V1\((\w+)\)/g)
	{
		push @unsigned, "$f:$fn"
		  unless $src =~ /\/\*[^\n]*\([^\n]*\*\/\nDatum\n\Q$fn\E\(PG_FUNCTION_ARGS\)/;
	}
}
is_deeply(\@unsigned, [], 'every SQL-callable C function has its SQL signature comment');

# modules: which module's symbols each object uses
sub module_of
{
	my ($file) = @_;
	return 'entry' if $file =~ m{/(evstore|shmem)\.o$};
	return $1 if $file =~ m{/(projections|shredding|decoder|wakeup)[_.]};
	return 'core';
}
my @objs = grep { -e $_ } map { s/\.c$/.o/r } @c;
SKIP:
{
	skip 'no object files (run from a built tree)', 2 unless @objs == @c;
	my (%defined_in, %uses);
	for my $o (@objs)
	{
		my ($out) = run_command([ 'nm', $o ]);
		for (split /\n/, $out)
		{
			$defined_in{$2} = module_of($o) if /^[0-9a-f]+ ([TDBRC]) (\S+)$/;
			push @{ $uses{ module_of($o) } }, $1 if /^\s+U (\S+)$/;
		}
	}
	my %edge;
	for my $m (keys %uses)
	{
		for my $sym (@{ $uses{$m} })
		{
			my $to = $defined_in{$sym};
			$edge{$m}{$to} = 1 if defined $to && $to ne $m;
		}
	}
	ok(!exists $edge{core}{entry} && scalar(keys %{ $edge{entry} }) > 0,
		'only the entry point (evstore.c, shmem.c) calls into every module');
	# depth-first search for a cycle between modules
	my (%state, @cycle);
	my $visit;
	$visit = sub {
		my ($m, @path) = @_;
		return if @cycle;
		if (($state{$m} // 0) == 1) { @cycle = (@path, $m); return; }
		return if ($state{$m} // 0) == 2;
		$state{$m} = 1;
		$visit->($_, @path, $m) for sort keys %{ $edge{$m} };
		$state{$m} = 2;
	};
	$visit->($_) for sort keys %edge;
	is(join(' -> ', @cycle), '', 'no cycle between modules (core, wakeup, projections, shredding, decoder)');
}

done_testing();
