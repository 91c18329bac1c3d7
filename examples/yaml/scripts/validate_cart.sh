#!/bin/bash
# validate_cart.sh — checks the cart in $INPUT and normalises it.
# Written the way floxy-pro (Go) users write handlers: set -e, debug output on
# stderr, jq to read $INPUT, one JSON value on stdout.
set -e

if [ "$FLOXY_DEBUG" = "true" ]; then
  echo "[DEBUG] validate_cart.sh - Input: $INPUT" >&2
fi

count=$(echo "$INPUT" | jq '.items // [] | length')
if [ "$count" -eq 0 ]; then
  echo "cart is empty: nothing to invoice" >&2
  exit 1
fi

customer=$(echo "$INPUT" | jq -r '.customer // "guest"')

# jq -n builds the output from scratch; --argjson passes JSON, --arg strings.
jq -n \
  --arg customer "$customer" \
  --argjson items "$(echo "$INPUT" | jq -c '.items')" \
  --argjson count "$count" \
  '{
    customer: $customer,
    items: $items,
    item_count: $count,
    validated: true
  }'
