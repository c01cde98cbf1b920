#!/usr/bin/env bash
# Prepares what compose/compose.yaml mounts, from compose/.env: a private CA and the broker's TLS
# certificate (roles reach RabbitMQ over amqps only), and the broker's definitions — one user per
# role with only the permissions it needs, a monitoring user and an admin for the management UI
# (scripts/rabbitmq-users.sh --definitions). Refuses missing, short or placeholder passwords.
#
#   cp compose/.env.example compose/.env && chmod 600 compose/.env && $EDITOR compose/.env
#   compose/setup.sh            # writes compose/secrets/ (git-ignored); re-run after changing .env
#   compose/setup.sh --renew    # also replaces the CA and certificates
#
# The server key is readable by all (0644) so the broker's unprivileged user in its container can
# read it: keep compose/secrets/ on a host only its operators can log into.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
secrets=$here/secrets
die() { printf 'compose/setup.sh: error: %s\n' "$*" >&2; exit 1; }

renew=0
case ${1:-} in
  --renew) renew=1 ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (see --help)" ;;
esac

[[ -f $here/.env ]] || die "no compose/.env: cp compose/.env.example compose/.env, then set its passwords"
set -a
# shellcheck source=/dev/null
. "$here/.env"
set +a
command -v openssl >/dev/null || die "openssl is needed (apt-get install -y openssl)"

mkdir -p "$secrets"
chmod 755 "$secrets"
# Passwords first: a refused .env writes nothing.
SR_ADMIN_PASSWORD=${SR_ADMIN_PASSWORD:-} bash "$root/scripts/rabbitmq-users.sh" \
  --definitions "$secrets/definitions.json" --vhost "${SR_RABBITMQ_VHOST:-sr}"
chmod 644 "$secrets/definitions.json"
if ((renew)) || [[ ! -f $secrets/ca.pem || ! -f $secrets/server.pem || ! -f $secrets/server.key ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf -- "$tmp"' EXIT
  openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=successive-refinement compose CA" \
    -keyout "$tmp/ca.key" -out "$secrets/ca.pem" 2>/dev/null
  openssl req -newkey rsa:3072 -nodes -subj "/CN=rabbitmq" -keyout "$secrets/server.key" -out "$tmp/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:rabbitmq,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$tmp/ext"
  openssl x509 -req -in "$tmp/server.csr" -CA "$secrets/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days 825 -extfile "$tmp/ext" -out "$secrets/server.pem" 2>/dev/null
  # The CA key is not kept: renewing makes a new CA (and the roles read the new ca.pem).
  chmod 644 "$secrets/ca.pem" "$secrets/server.pem" "$secrets/server.key"
  echo "compose/setup.sh: wrote a new CA and server certificate in compose/secrets/" >&2
fi

echo "compose/setup.sh: ready — docker compose -f compose/compose.yaml up -d --build" >&2
