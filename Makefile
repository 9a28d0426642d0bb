# evstore: PGXS build
EXTENSION = evstore
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" evstore.control)

MODULE_big = evstore
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
SHLIB_LINK += -lcrypto -luuid
PG_CPPFLAGS += -Isrc
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers

# The install script is generated from the single source src/evstore.sql;
# upgrade scripts live in updates/ and are installed as they are.
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = $(wildcard updates/$(EXTENSION)--*--*.sql) $(wildcard history/$(EXTENSION)--*.sql)
EXTRA_CLEAN = $(EXTENSION)--$(EXTVERSION).sql

EVSTORE_CONF = $(CURDIR)/test/evstore.conf
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-instance=$(CURDIR)/tmp_regress --temp-config=$(EVSTORE_CONF) --load-extension=evstore
ISOLATION = $(patsubst specs/%.spec,%,$(sort $(wildcard specs/*.spec)))
ISOLATION_OPTS = --temp-instance=$(CURDIR)/tmp_isolation --temp-config=$(EVSTORE_CONF) --load-extension=evstore
TAP_TESTS = 1

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on every header of src/ (they are few and small)
$(OBJS): $(wildcard src/*.h)

$(EXTENSION)--$(EXTVERSION).sql: src/evstore.sql evstore.control
	cp $< $@

.PHONY: test-regress test-isolation test-tap

# Suites one by one (scripts/test.sh runs all three and counts results).
test-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

test-isolation:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)

test-tap:
	$(prove_installcheck)
