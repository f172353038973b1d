#!/bin/sh
# Init container seed-reset, before PostgreSQL starts.
#
# The postgres image restores the seed (/docker-entrypoint-initdb.d) only when
# it creates the database, into an empty PGDATA. A first start that dies
# between creating the database and finishing the restore would leave a
# database that never gets its seed. So a marker beside PGDATA means "created,
# seed not restored yet": it is made here while PGDATA is empty and removed by
# restore.sh once the seed is in. Found at a later start, the data directory is
# a failed first start that never served anything, and it goes. A database
# that finished its first start has no marker and is left alone.
set -eu

if [ "$PRGEN_SEED_SOURCE" = none ]; then
  # No seed (any more): the data directory is the database, whatever an
  # earlier seeded first start left. Its marker goes, so that turning a seed
  # on later never wipes a database that has served.
  rm -f "$PRGEN_SEED_MARKER"
  exit 0
fi
if [ -e "$PRGEN_SEED_MARKER" ]; then
  echo "seed-reset: an earlier first start did not finish restoring the seed; starting over"
  rm -rf "$PGDATA"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "seed-reset: no database yet; it will be created and seeded"
  : >"$PRGEN_SEED_MARKER"
fi
