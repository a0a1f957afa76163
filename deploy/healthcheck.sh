#!/bin/sh
# Health check for cron, systemd timers or an orchestrator. Exit codes are grpc_health_probe's:
# 0 serving, 2 cannot connect, 3 RPC failed, 4 not serving.
# Usage: healthcheck.sh [SOCKET] (default: $BERTH_SOCKET, else /run/berth/berth.sock)
exec berth --socket "${1:-${BERTH_SOCKET:-/run/berth/berth.sock}}" health --connect-timeout 2s --rpc-timeout 2s
