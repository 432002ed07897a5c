#!/bin/sh
# Writes mosquitto/passwd (hashed, PBKDF2-SHA512) for the bridge and operator users from ../.env,
# and for each device given as "device_id:password" arguments. The file is never committed.
#   ./mosquitto/make-passwd.sh bms-0001:$(python3 -c 'import secrets;print(secrets.token_urlsafe(24))')
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../.env"
out="$here/passwd"
: > "$out"
chmod 600 "$out"
# mosquitto_passwd from the broker image, so the host needs nothing but docker.
run() { docker run --rm -v "$here:/work" eclipse-mosquitto:2.0 mosquitto_passwd -b /work/passwd "$1" "$2"; }
run "$MQTT_BRIDGE_USER" "$MQTT_BRIDGE_PASSWORD"
run "$MQTT_OPERATOR_USER" "$MQTT_OPERATOR_PASSWORD"
for pair in "$@"; do
  run "${pair%%:*}" "${pair#*:}"
done
echo "wrote $out"
