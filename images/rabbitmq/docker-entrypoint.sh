#!/bin/sh
# As the official image's entry point does: `rabbitmq-server` runs as user rabbitmq (data dirs handed to it
# first, since a fresh named volume is root's); anything else runs as given.
set -e
if [ "$1" = rabbitmq-server ] && [ "$(id -u)" = 0 ]; then
  chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
  exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
fi
exec "$@"
