#!/bin/sh
# Init container seed-download, after seed-reset: fetches the seed from
# PRGEN_SEED_URL, but only when the database is still to be created (the same
# test the postgres image makes before it runs /docker-entrypoint-initdb.d).
set -eu

if [ -s "$PGDATA/PG_VERSION" ]; then
  echo "seed-download: the database exists; nothing to download"
  exit 0
fi
echo "seed-download: downloading the seed"
# The URL may be presigned: it is never printed.
curl --fail --silent --show-error --location --proto =https --proto-redir =https \
  --retry 5 --retry-connrefused --connect-timeout 30 \
  --output "$PRGEN_SEED_FILE.part" "$PRGEN_SEED_URL"
mv "$PRGEN_SEED_FILE.part" "$PRGEN_SEED_FILE"
echo "seed-download: $(wc -c <"$PRGEN_SEED_FILE") bytes"
