#!/bin/sh
# Make sure the PostgreSQL server the storage contract suite uses answers on 127.0.0.1:5432.
# Starts the local cluster only if it is installed and down; never fails the run by itself:
# the PostgreSQL tests skip with a clear reason when the server cannot be reached.
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
    exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
        pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    done
    i=0
    while [ $i -lt 30 ]; do
        pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
        i=$((i + 1)); sleep 1
    done
fi
echo "ensure-postgres: PostgreSQL is not answering on 127.0.0.1:5432; its tests will skip" >&2
exit 0
