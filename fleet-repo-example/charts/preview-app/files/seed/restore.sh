#!/bin/sh
# Restores the seed. The postgres image's entrypoint runs it from
# /docker-entrypoint-initdb.d, which it does only when it creates the database
# (an empty PGDATA): once, never on an upgrade or a restart. The server it runs
# against listens on its Unix socket only, so neither the app nor its
# migration sees the database before the seed is in.
#
# Plain SQL, gzipped or not, goes through psql; a pg_dump custom-format
# archive (pg_dump -Fc, starts with "PGDMP") through pg_restore.
set -eu

if [ ! -f "$PRGEN_SEED_FILE" ]; then
  echo "$0: no seed at $PRGEN_SEED_FILE" >&2
  exit 1
fi
magic=$(head -c 5 "$PRGEN_SEED_FILE" | od -An -tx1 | tr -d ' \n')
case "$magic" in
  5047444d50)
    echo "$0: restoring a pg_dump archive"
    pg_restore --exit-on-error --no-owner --no-privileges \
      --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" "$PRGEN_SEED_FILE"
    ;;
  1f8b*)
    echo "$0: restoring gzipped SQL"
    gunzip -t "$PRGEN_SEED_FILE" # whole and sound: a pipe would hide a broken end
    gunzip -c "$PRGEN_SEED_FILE" |
      psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB"
    ;;
  *)
    echo "$0: restoring SQL"
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
      --file "$PRGEN_SEED_FILE"
    ;;
esac
# A downloaded seed has done its work; a ConfigMap's is read-only and stays.
if [ -w "$(dirname "$PRGEN_SEED_FILE")" ]; then
  rm -f "$PRGEN_SEED_FILE"
fi
rm -f "$PRGEN_SEED_MARKER"
echo "$0: seed restored"
