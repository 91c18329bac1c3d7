#!/bin/bash
# price_cart.sh — adds up the cart (prices in cents) and writes the result with
# a here-document, pretty-printed over several lines: stdout only has to be
# ONE JSON value, whitespace and newlines are fine.
set -e

customer=$(echo "$INPUT" | jq -r '.customer')
subtotal=$(echo "$INPUT" | jq '[.items[] | .qty * .price_cents] | add')
tax=$(( subtotal * 20 / 100 ))
total=$(( subtotal + tax ))

cat <<JSON
{
  "customer": "$customer",
  "lines": $(echo "$INPUT" | jq -c '[.items[] | {sku, qty, cents: (.qty * .price_cents)}]'),
  "subtotal_cents": $subtotal,
  "tax_cents": $tax,
  "total_cents": $total
}
JSON
