# Test fixture: run by `bash <file>` (no execute bit, no set -e injected).
false
jq -n --arg input "$INPUT" --arg pwd "$PWD" --arg step "$FLOXY_STEP_NAME" \
  '{input: $input, pwd: $pwd, step: $step, after_false: true}'
