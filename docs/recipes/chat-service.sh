#!/usr/bin/env bash
# Seed report 000's FastAPI `/chat` service (a Pokémon expert), as llmgate configuration only.
#
#   llmgate fake-upstream --port 8000 &           # stands in for api.openai.com
#   OPENAI_API_KEY=sk-... LLMGATE_ADMIN_KEY=edd1c9f034335f136f87ad84b625c8f1 llmgate serve &
#   bash docs/recipes/chat-service.sh
#
# The OpenAI key is read by the gateway from its own environment ($env://OPENAI_API_KEY): it is
# never stored, returned by the admin API, or logged.  For the real OpenAI, drop "override".
set -euo pipefail
ADMIN=${ADMIN:-http://127.0.0.1:9180}
PROXY=${PROXY:-http://127.0.0.1:9080}
ENDPOINT=${ENDPOINT:-http://127.0.0.1:8000/v1/chat/completions}
KEY=${KEY:-edd1c9f034335f136f87ad84b625c8f1}
ORIGIN=${ORIGIN:-http://localhost:3000}

curl -s "$ADMIN/apisix/admin/routes/chat" -H "X-API-KEY: $KEY" -X PUT -d '
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
curl -s -i "$PROXY/chat" -H "Origin: $ORIGIN" -H "Content-Type: application/json" \
  -X POST -d '{"prompt": "¿Quién es Pikachu?"}'
echo
