#!/usr/bin/env bash
# Seed report 000's FastAPI `/chat` service (a Pokémon expert), as llmgate configuration only.
#
#   .venv/bin/llmgate fake-upstream --port 8000 &        # stands in for api.openai.com
#   OPENAI_API_KEY=sk-... .venv/bin/llmgate serve &      # prints the generated admin key once
#   KEY=<that key> bash docs/recipes/chat-service.sh
#
# The OpenAI key is read by the gateway from its own environment ($env://OPENAI_API_KEY): it is
# never stored, returned by the admin API, or logged.  For the real OpenAI, drop "override".
# KEY is the admin key (or LLMGATE_ADMIN_KEY); the script stops at the first call that fails.
set -euo pipefail
ADMIN=${ADMIN:-http://127.0.0.1:9180}
PROXY=${PROXY:-http://127.0.0.1:9080}
ENDPOINT=${ENDPOINT:-http://127.0.0.1:8000/v1/chat/completions}
KEY=${KEY:-${LLMGATE_ADMIN_KEY:-}}
: "${KEY:?set KEY to the admin key (printed by the first llmgate serve; llmgate admin-key rotate makes a new one)}"
ORIGIN=${ORIGIN:-http://localhost:3000}

curl -fsS "$ADMIN/apisix/admin/routes/chat" -H "X-API-KEY: $KEY" -X PUT -d '
{
  "uri": "/chat",
  "methods": ["POST", "OPTIONS"],
  "plugins": {
    "ai-prompt-template": {
      "templates": [{
        "name": "pokemon",
        "template": {
          "model": "gpt-3.5-turbo",
          "messages": [{"role": "user", "content": "{{prompt}}"}]
        }
      }]
    },
    "ai-prompt-decorator": {
      "prepend": [{
        "role": "system",
        "content": "Eres un experto en Pokémons, sabes sobre la historia pokémon, el comercio pokémon y todo lo que hay a respecto de pokémon"
      }]
    },
    "ai-proxy": {
      "provider": "openai",
      "auth": {"header": {"Authorization": "Bearer $env://OPENAI_API_KEY"}},
      "options": {
        "model": "gpt-3.5-turbo",
        "temperature": 0,
        "max_tokens": 100,
        "top_p": 1,
        "frequency_penalty": 0,
        "presence_penalty": 0
      },
      "override": {"endpoint": "'"$ENDPOINT"'"}
    },
    "cors": {"allow_origins": "'"$ORIGIN"'", "allow_methods": "POST,OPTIONS"}
  }
}'
echo
curl -fsS -i "$PROXY/chat" -H "Origin: $ORIGIN" -H "Content-Type: application/json" \
  -X POST -d '{"prompt": "¿Quién es Pikachu?"}'
echo
