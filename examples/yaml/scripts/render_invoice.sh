#!/bin/bash
# render_invoice.sh — turns cents into a printable amount with bash builtins
# and prints the final invoice with jq -n.
set -e

total_cents=$(echo "$INPUT" | jq '.total_cents')
total=$(printf '%d.%02d' $(( total_cents / 100 )) $(( total_cents % 100 )))
number="INV-$(date -u +%Y)-${FLOXY_INSTANCE_ID:-0}"

jq -n \
  --arg number "$number" \
  --arg total "$total" \
  --argjson cart "$INPUT" \
  '{
    invoice: $number,
    customer: $cart.customer,
    lines: ($cart.lines | length),
    total: $total,
    currency: "EUR"
  }'
