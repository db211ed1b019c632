#!/usr/bin/env bash
# Start (or stop) the machine's PostgreSQL for the test suite: loopback only, wal_level=logical
# so the CDC can use logical decoding, and a password for the postgres role on TCP.
# Installs PostgreSQL from Debian's packages when it is missing.
set -euo pipefail
action=${1:-start}
password=${STRANGLER_PG_PASSWORD:-strangler}
port=${STRANGLER_PG_PORT:-5432}

ensure_installed() {
  if ! command -v pg_lsclusters >/dev/null || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
    echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
}

cluster() {
  # The newest installed version and its first cluster, created if there is none.
  version=$(ls /usr/lib/postgresql | sort -V | tail -1)
  name=$(pg_lsclusters -h | awk -v v="$version" '$1==v {print $2; exit}')
  if [ -z "$name" ]; then
    name=main
    pg_createcluster "$version" "$name" -p "$port" >/dev/null
  fi
}

psql_admin() { runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qAt "$@"; }

configure() {
  conf=/etc/postgresql/$version/$name/conf.d
  mkdir -p "$conf"
  cat > "$conf/strangler.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_connections = 300
max_slot_wal_keep_size = 4GB
fsync = on
CONF
}

status() { pg_lsclusters -h | awk -v v="$version" -v n="$name" '$1==v && $2==n {print $4}'; }

case "$action" in
  start)
    ensure_installed
    cluster
    configure
    if [ "$(status)" = online ]; then
      if [ "$(psql_admin -c 'SHOW wal_level')" != logical ]; then
        pg_ctlcluster "$version" "$name" restart
      fi
    else
      pg_ctlcluster "$version" "$name" start
    fi
    for _ in $(seq 1 60); do
      psql_admin -c 'SELECT 1' >/dev/null 2>&1 && break
      sleep 0.5
    done
    psql_admin -c "ALTER ROLE postgres PASSWORD '$password'" >/dev/null
    echo "postgres.sh: PostgreSQL $version/$name up on 127.0.0.1:$port (wal_level=$(psql_admin -c 'SHOW wal_level'))"
    ;;
  stop)
    cluster
    pg_ctlcluster "$version" "$name" stop || true
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
